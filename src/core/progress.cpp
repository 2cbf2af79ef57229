#include "pollkill/progress.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "pollkill/fd.h"

namespace pollkill {
namespace {

std::optional<std::string> read_proc_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buf[512];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

std::optional<std::uint64_t> parse_wchar(const std::string& proc_io) {
  auto pos = proc_io.find("wchar:");
  if (pos == std::string::npos) return std::nullopt;
  pos += 6;
  while (pos < proc_io.size() && proc_io[pos] == ' ') ++pos;
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(proc_io.data() + pos, proc_io.data() + proc_io.size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

ProgressProbe::ProgressProbe(std::optional<std::string> heartbeat)
    : heartbeat_(std::move(heartbeat)) {
  if (heartbeat_) heartbeat_state_ = read_heartbeat();
}

ProgressProbe::HeartbeatState ProgressProbe::read_heartbeat() const {
  HeartbeatState state;
  struct stat st;
  if (::stat(heartbeat_->c_str(), &st) == 0) {
    state.exists = true;
    state.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    state.size = st.st_size;
    state.inode = st.st_ino;
  }
  return state;
}

bool ProgressProbe::observe(const std::vector<int>& pids) {
  bool progress = false;
  std::unordered_map<int, std::uint64_t> now;
  now.reserve(pids.size());
  for (int pid : pids) {
    auto text = read_proc_file("/proc/" + std::to_string(pid) + "/io");
    if (!text) continue;  // exited meanwhile, or not ours to read
    auto wchar = parse_wchar(*text);
    if (!wchar) continue;
    auto it = wchar_.find(pid);
    std::uint64_t before = it == wchar_.end() ? 0 : it->second;
    if (*wchar > before) progress = true;
    now.emplace(pid, *wchar);
  }
  wchar_ = std::move(now);
  if (heartbeat_) {
    HeartbeatState state = read_heartbeat();
    if (!(state == heartbeat_state_)) progress = true;
    heartbeat_state_ = state;
  }
  return progress;
}

}  // namespace pollkill
