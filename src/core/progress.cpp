#include "pollkill/progress.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "pollkill/fd.h"

namespace pollkill {
namespace {

std::optional<std::string> pread_text(int fd) {
  char buf[512];
  ssize_t n = ::pread(fd, buf, sizeof buf, 0);
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
  std::unordered_map<int, Proc> now;
  now.reserve(pids.size());
  std::size_t open_io = 0;
  for (int pid : pids) {
    Proc proc;
    bool known = false;
    if (auto it = procs_.find(pid); it != procs_.end()) {
      proc = std::move(it->second);
      known = true;
    }
    std::optional<std::string> text;
    if (proc.io) text = pread_text(proc.io.get());
    if (!text) {
      // Not kept open, or the process it was opened for is gone and the pid was reused: then
      // this is a new process, first seen now.
      if (proc.io) known = false, proc.io.reset();
      UniqueFd io(::open(("/proc/" + std::to_string(pid) + "/io").c_str(), O_RDONLY | O_CLOEXEC));
      if (!io) continue;  // exited meanwhile, or not ours to read
      text = pread_text(io.get());
      if (!text) continue;
      if (open_io < kMaxOpenIo) proc.io = std::move(io);
    }
    auto wchar = parse_wchar(*text);
    if (!wchar) continue;
    if (*wchar > (known ? proc.wchar : 0)) progress = true;
    proc.wchar = *wchar;
    if (proc.io) ++open_io;
    now.emplace(pid, std::move(proc));
  }
  procs_ = std::move(now);
  if (heartbeat_) {
    HeartbeatState state = read_heartbeat();
    if (!(state == heartbeat_state_)) progress = true;
    heartbeat_state_ = state;
  }
  return progress;
}

}  // namespace pollkill
