#include "pollkill/progress.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <string_view>

#include "pollkill/fd.h"

namespace pollkill {
namespace {

// /proc/PID/io now, opened for the read and closed; nullopt when the process is gone or not
// ours to read.
std::optional<std::string> read_proc_io(int pid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/io", pid);
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buf[512];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

std::optional<std::uint64_t> parse_field(std::string_view text, std::string_view key) {
  auto pos = text.find(key);
  if (pos == std::string_view::npos) return std::nullopt;
  pos += key.size();
  while (pos < text.size() && text[pos] == ' ') ++pos;
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

}  // namespace

std::optional<std::uint64_t> parse_wchar(const std::string& proc_io) {
  return parse_field(proc_io, "wchar:");
}

std::optional<IoCounters> parse_io_counters(const std::string& proc_io) {
  auto rchar = parse_field(proc_io, "rchar:");
  auto wchar = parse_field(proc_io, "wchar:");
  auto syscr = parse_field(proc_io, "syscr:");
  auto syscw = parse_field(proc_io, "syscw:");
  if (!rchar || !wchar || !syscr || !syscw) return std::nullopt;
  return IoCounters{*rchar, *wchar, *syscr, *syscw};
}

bool IoCounters::could_follow(const IoCounters& earlier) const {
  return rchar >= earlier.rchar && wchar >= earlier.wchar && syscr >= earlier.syscr &&
         syscw >= earlier.syscw;
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
  std::unordered_map<int, IoCounters> now;
  now.reserve(pids.size());
  for (int pid : pids) {
    std::optional<std::string> text = read_proc_io(pid);
    if (!text) continue;  // exited meanwhile, or not ours to read
    auto counters = parse_io_counters(*text);
    if (!counters) continue;
    // A process seen at the previous call is compared with what it had then, unless a counter
    // went down: then the pid was reused by a new process, first seen now, which counts with
    // everything it wrote (it was born after the previous call). A reused pid whose counters
    // all happen to be higher can only make wchar grow by bytes the new process wrote.
    std::uint64_t before = 0;
    if (auto it = procs_.find(pid); it != procs_.end() && counters->could_follow(it->second)) {
      before = it->second.wchar;
    }
    if (counters->wchar > before) progress = true;
    now.emplace(pid, *counters);
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
