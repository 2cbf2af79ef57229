#include "pollkill/proctree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <unordered_map>

#include "pollkill/fd.h"

namespace pollkill {
namespace {

std::optional<std::string> read_small(int dirfd, const char* name) {
  UniqueFd fd(::openat(dirfd, name, O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buf[1024];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

template <typename T>
bool next_field(std::string_view& rest, T& out) {
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  auto end = rest.find(' ');
  std::string_view word = rest.substr(0, end);
  if (word.empty()) return false;
  auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), out);
  if (ec != std::errc() || p != word.data() + word.size()) return false;
  rest.remove_prefix(word.size());
  return true;
}

bool skip_fields(std::string_view& rest, int count) {
  long long ignored = 0;
  for (int i = 0; i < count; ++i) {
    if (!next_field(rest, ignored)) return false;
  }
  return true;
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  // "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  //  utime stime cutime cstime priority nice num_threads itrealvalue starttime ..."
  ProcStat st;
  auto open = text.find(" (");
  auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  auto [p, ec] = std::from_chars(text.data(), text.data() + open, st.pid);
  if (ec != std::errc() || p != text.data() + open) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty()) return std::nullopt;
  st.state = rest.front();
  rest.remove_prefix(1);
  if (!next_field(rest, st.ppid)) return std::nullopt;
  if (!skip_fields(rest, 9)) return std::nullopt;  // pgrp .. cmajflt
  if (!next_field(rest, st.utime) || !next_field(rest, st.stime)) return std::nullopt;
  long long cutime = 0, cstime = 0;  // signed in proc(5)
  if (!next_field(rest, cutime) || !next_field(rest, cstime)) return std::nullopt;
  st.cutime = cutime > 0 ? static_cast<std::uint64_t>(cutime) : 0;
  st.cstime = cstime > 0 ? static_cast<std::uint64_t>(cstime) : 0;
  if (!skip_fields(rest, 4)) return std::nullopt;  // priority nice num_threads itrealvalue
  if (!next_field(rest, st.starttime)) return std::nullopt;
  return st;
}

std::vector<pid_t> descendants_of(const std::vector<ProcStat>& snapshot, pid_t root) {
  std::unordered_multimap<pid_t, pid_t> children;
  bool present = false;
  for (const auto& p : snapshot) {
    children.emplace(p.ppid, p.pid);
    present = present || p.pid == root;
  }
  if (!present) return {};
  std::vector<pid_t> out{root};
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto [first, last] = children.equal_range(out[i]);
    for (auto it = first; it != last; ++it) {
      if (it->second != out[i]) out.push_back(it->second);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::uint64_t tree_cpu_usec(const std::vector<ProcStat>& members, long ticks_per_second) {
  if (ticks_per_second <= 0) return 0;
  std::uint64_t ticks = 0;
  for (const auto& p : members) ticks += p.utime + p.stime + p.cutime + p.cstime;
  return ticks * 1000000 / static_cast<std::uint64_t>(ticks_per_second);
}

std::vector<ProcStat> ProcDir::snapshot() const {
  std::vector<ProcStat> out;
  UniqueFd dirfd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return out;
  DIR* dir = ::fdopendir(::dup(dirfd.get()));
  if (!dir) return out;
  while (dirent* entry = ::readdir(dir)) {
    const char* name = entry->d_name;
    if (name[0] < '0' || name[0] > '9') continue;
    std::string path = std::string(name) + "/stat";
    if (auto text = read_small(dirfd.get(), path.c_str())) {
      if (auto st = parse_proc_stat(*text)) out.push_back(*st);
    }
  }
  ::closedir(dir);
  return out;
}

std::vector<pid_t> ProcDir::pids() const {
  std::vector<pid_t> out;
  DIR* dir = ::opendir(root_.c_str());
  if (!dir) return out;
  while (dirent* entry = ::readdir(dir)) {
    pid_t pid = 0;
    const char* name = entry->d_name;
    auto [p, ec] = std::from_chars(name, name + std::strlen(name), pid);
    if (ec == std::errc() && *p == '\0' && pid > 0) out.push_back(pid);
  }
  ::closedir(dir);
  return out;
}

std::optional<ProcStat> ProcDir::stat(pid_t pid) const {
  UniqueFd dirfd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return std::nullopt;
  std::string path = std::to_string(pid) + "/stat";
  auto text = read_small(dirfd.get(), path.c_str());
  if (!text) return std::nullopt;
  return parse_proc_stat(*text);
}

UnkillableProcess describe_process(pid_t pid, const ProcDir& proc) {
  UnkillableProcess p;
  p.pid = pid;
  UniqueFd dirfd(::open(proc.root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const std::string path = std::to_string(pid) + "/stat";
  auto text = dirfd ? read_small(dirfd.get(), path.c_str()) : std::nullopt;
  if (!text) return p;
  auto open = text->find('(');
  auto close = text->rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= text->size()) {
    return p;
  }
  p.comm = text->substr(open + 1, close - open - 1);
  const char state = (*text)[close + 2];
  static const std::pair<char, const char*> kNames[] = {
      {'R', "running"}, {'S', "sleeping"},     {'D', "disk sleep"}, {'Z', "zombie"},
      {'T', "stopped"}, {'t', "tracing stop"}, {'X', "dead"},       {'I', "idle"}};
  p.state = std::string(1, state);
  for (auto [c, name] : kNames) {
    if (c == state) p.state += std::string(" (") + name + ")";
  }
  return p;
}

bool signal_process(const ProcDir& proc, pid_t pid, std::uint64_t starttime, int sig) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return false;
  // The pidfd now pins this pid to one process: if that process is still the one that
  // started at `starttime`, the signal reaches it and no other.
  auto now = proc.stat(pid);
  if (!now || now->starttime != starttime) return false;
  return ::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) == 0;
}

ProcTree::ProcTree(pid_t root, ProcDir proc) : root_(root), proc_(std::move(proc)) {}

namespace {
SharedProcSnapshot* g_round = nullptr;  // the open round, if any (one thread: the engine's)
}  // namespace

SharedProcSnapshot::SharedProcSnapshot() {
  g_round = this;
}

SharedProcSnapshot::~SharedProcSnapshot() {
  g_round = nullptr;
}

const std::vector<ProcStat>* SharedProcSnapshot::of(const ProcDir& proc) {
  if (!g_round) return nullptr;
  if (!g_round->taken_ || g_round->root_ != proc.root()) {
    g_round->root_ = proc.root();
    g_round->snapshot_ = proc.snapshot();
    g_round->taken_ = true;
  }
  return &g_round->snapshot_;
}

std::vector<ProcStat> ProcTree::scan() {
  return scan_in(proc_.snapshot());
}

void ProcTree::scan_for_sample() {
  if (const std::vector<ProcStat>* shared = SharedProcSnapshot::of(proc_)) {
    scan_in(*shared);
  } else {
    scan();
  }
}

std::vector<ProcStat> ProcTree::scan_in(const std::vector<ProcStat>& all) {
  std::vector<pid_t> members = descendants_of(all, root_);
  std::vector<ProcStat> now;
  now.reserve(members.size());
  for (const auto& p : all) {
    if (std::binary_search(members.begin(), members.end(), p.pid)) now.push_back(p);
  }
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  std::uint64_t total = tree_cpu_usec(now, ticks);
  if (total >= cpu_usec_ && ticks > 0) {
    std::uint64_t user = 0;
    for (const auto& p : now) user += p.utime + p.cutime;
    user_usec_ = user * 1000000 / static_cast<std::uint64_t>(ticks);
    system_usec_ = total - std::min(total, user_usec_);
  }
  cpu_usec_ = std::max(cpu_usec_, total);
  last_ = now;
  return now;
}

std::vector<pid_t> ProcTree::live_members() const {
  std::vector<pid_t> out;
  for (const auto& p : last_) {
    if (p.pid != root_ && p.state != 'Z' && p.state != 'X') out.push_back(p.pid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<pid_t> ProcTree::known_orphans_of(pid_t parent) const {
  std::vector<pid_t> out;
  for (const auto& p : last_) {
    if (p.pid == root_) continue;
    auto now = proc_.stat(p.pid);
    if (now && now->starttime == p.starttime && now->ppid == parent) out.push_back(p.pid);
  }
  return out;
}

std::vector<pid_t> ProcTree::signal_members(int sig) {
  std::vector<pid_t> out;
  for (const auto& p : scan()) {
    if (p.pid == root_ || p.state == 'Z') continue;
    if (signal_process(proc_, p.pid, p.starttime, sig)) out.push_back(p.pid);
  }
  return out;
}

std::vector<ProcStat> ProcTree::stop_round(std::unordered_map<pid_t, bool>& is_stopped) {
  // Stop first, so that no member can fork a process the next scan would miss: a stopped
  // process forks nothing, and a child forked before its parent stopped is seen by the next
  // scan (its parent, or after reparenting the root, is a member). Repeat until a scan finds
  // nobody new. A process that keeps forking makes many rounds, so a round reads the stat of
  // new pids only: a pid seen before (a member now stopped, or a process outside the tree)
  // keeps its parent for this purpose.
  std::vector<ProcStat> stopped;
  std::unordered_map<pid_t, ProcStat> seen;
  for (int round = 0; round < 100000; ++round) {
    std::vector<ProcStat> now;
    for (pid_t pid : proc_.pids()) {
      auto it = seen.find(pid);
      if (it == seen.end()) {
        auto st = proc_.stat(pid);
        if (!st) continue;
        it = seen.emplace(pid, *st).first;
      }
      now.push_back(it->second);
    }
    bool found_new = false;
    for (pid_t pid : descendants_of(now, root_)) {
      if (pid == root_ || is_stopped.count(pid)) continue;
      const ProcStat& p = seen[pid];
      if (p.state == 'Z' || p.state == 'X') continue;
      if (signal_process(proc_, pid, p.starttime, SIGSTOP)) {
        stopped.push_back(p);
        is_stopped[pid] = true;
        found_new = true;
      }
    }
    if (!found_new) break;
  }
  return stopped;
}

std::vector<ProcStat> ProcTree::stop_members() {
  std::unordered_map<pid_t, bool> is_stopped;
  return stop_round(is_stopped);
}

std::vector<pid_t> ProcTree::kill_members() {
  std::unordered_map<pid_t, bool> is_stopped;
  std::vector<pid_t> killed;
  // A pass ends with a full scan: a member it finds that this pass did not stop (a pid
  // reused while cached) makes another pass.
  for (int pass = 0; pass < 3; ++pass) {
    const std::vector<ProcStat> stopped = stop_round(is_stopped);
    for (const auto& p : stopped) {
      if (signal_process(proc_, p.pid, p.starttime, SIGKILL)) killed.push_back(p.pid);
    }
    for (const auto& p : stopped) signal_process(proc_, p.pid, p.starttime, SIGCONT);
    bool missed = false;
    for (const auto& p : scan()) {
      if (p.pid != root_ && p.state != 'Z' && p.state != 'X' && !is_stopped.count(p.pid))
        missed = true;
    }
    if (!missed) break;
  }
  std::sort(killed.begin(), killed.end());
  killed.erase(std::unique(killed.begin(), killed.end()), killed.end());
  return killed;
}

}  // namespace pollkill
