#include "pollkill/container.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "pollkill/error.h"

namespace pollkill {

std::vector<UnkillableProcess> TaskContainer::survivors() {
  std::vector<UnkillableProcess> out;
  for (int pid : pids()) out.push_back(describe_process(pid));
  return out;
}

CgroupContainer::CgroupContainer(CgroupDir dir, V1TaskCgroups v1)
    : dir_(std::move(dir)),
      kill_method_(choose_kill_method(dir_)),
      // A task cgroup's files do not come and go while it runs: decide once. Without the
      // memory controller there is nothing to sample; with memory.peak (Linux 5.19+) the kernel
      // keeps the peak itself.
      sample_memory_(dir_.has("memory.current") && !dir_.has("memory.peak")),
      v1_(std::move(v1)) {}

std::uint64_t CgroupContainer::cpu_usage_usec() {
  // cpu.stat is read at every sample of a task with a cpu_time limit (no quiet stride there),
  // and for the live view: the one sampled file kept open, and pread.
  if (!cpu_stat_) {
    cpu_stat_.reset(::openat(dir_.fd(), "cpu.stat", O_RDONLY | O_CLOEXEC));
    if (!cpu_stat_) return 0;
  }
  char buf[512];
  ssize_t n = ::pread(cpu_stat_.get(), buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  auto stat = parse_keyed(std::string_view(buf, static_cast<size_t>(n)));
  auto it = stat.find("usage_usec");
  return it == stat.end() ? 0 : it->second;
}

std::optional<std::uint64_t> CgroupContainer::memory_current() {
  if (auto current = dir_.read_u64("memory.current")) return current;
  if (const CgroupDir* v1_memory = v1_.dir_for("memory"))
    return v1_memory->read_u64("memory.usage_in_bytes");
  return std::nullopt;
}

std::vector<int> CgroupContainer::pids() {
  // Read only with hang or spin detection, and at a quiet task's stride: opened for the read
  // and closed, so that a running task holds no descriptor for it (docs/PERFORMANCE.md).
  UniqueFd procs(::openat(dir_.fd(), "cgroup.procs", O_RDONLY | O_CLOEXEC));
  if (!procs) return {};
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(procs.get(), buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    // A seq_file read fills the buffer unless it reached the end: a short read is the end, and
    // saves a second walk of the cgroup's tasks just to learn that.
    if (static_cast<size_t>(n) < sizeof buf) break;
  }
  return parse_pids(text);
}

int CgroupContainer::populated_notify_fd() {
  if (!cgroup_events_) {
    cgroup_events_.reset(::openat(dir_.fd(), "cgroup.events", O_RDONLY | O_CLOEXEC));
    if (!cgroup_events_) throw_errno("open cgroup.events of the task cgroup");
  }
  return cgroup_events_.get();
}

bool CgroupContainer::populated() {
  // Read after every cgroup.events notification, through the descriptor the event loop
  // watches (the read re-arms it): kept open, pread at offset 0.
  if (!cgroup_events_) {
    cgroup_events_.reset(::openat(dir_.fd(), "cgroup.events", O_RDONLY | O_CLOEXEC));
    if (!cgroup_events_) return false;
  }
  char buf[256];
  ssize_t n = ::pread(cgroup_events_.get(), buf, sizeof buf - 1, 0);
  if (n <= 0) return false;
  auto events = parse_keyed(std::string_view(buf, static_cast<size_t>(n)));
  auto it = events.find("populated");
  return it != events.end() && it->second != 0;
}

std::vector<int> CgroupContainer::signal_all(int sig) {
  return signal_cgroup(dir_, sig);
}

std::vector<int> CgroupContainer::kill_all() {
  return kill_cgroup(dir_, kill_method_);
}

void CgroupContainer::sample() {
  if (!sample_memory_) return;
  if (auto current = dir_.read_u64("memory.current")) {
    memory_peak_sampled_ = std::max(memory_peak_sampled_.value_or(0), *current);
  }
}

void CgroupContainer::fill_usage(Result& result) {
  if (auto stat = dir_.read_keyed("cpu.stat")) {
    result.cpu_user_s = static_cast<double>((*stat)["user_usec"]) / 1e6;
    result.cpu_system_s = static_cast<double>((*stat)["system_usec"]) / 1e6;
  }
  const CgroupDir* v1_memory = v1_.dir_for("memory");
  const CgroupDir* v1_pids = v1_.dir_for("pids");
  if (auto peak = dir_.read_u64("memory.peak")) {
    result.memory_peak_bytes = *peak;
  } else if (auto v1_peak =
                 v1_memory ? v1_memory->read_u64("memory.max_usage_in_bytes") : std::nullopt) {
    result.memory_peak_bytes = *v1_peak;
  } else {
    result.memory_peak_bytes = memory_peak_sampled_;
  }
  if (auto events = dir_.read_keyed("memory.events")) {
    result.oom_kills = (*events)["oom_kill"];
  } else if (auto oom = v1_memory ? v1_memory->read_keyed("memory.oom_control") : std::nullopt) {
    // "oom_kill" in memory.oom_control: Linux 4.13 and newer.
    if (oom->count("oom_kill")) result.oom_kills = (*oom)["oom_kill"];
  }
  if (auto peak = dir_.read_u64("pids.peak")) {
    result.pids_peak = *peak;
  } else if (auto v1_peak = v1_pids ? v1_pids->read_u64("pids.peak") : std::nullopt) {
    result.pids_peak = *v1_peak;
  }
}

bool CgroupContainer::partial_oom_kill() {
  const CgroupDir* memory = v1_.dir_for("memory");
  if (!memory) return false;
  auto oom = memory->read_keyed("memory.oom_control");
  return oom && (*oom)["oom_kill"] > 0;
}

// The files below are read only by the rules that need them, at a quiet task's stride: each
// is opened for its read and closed (docs/PERFORMANCE.md, "Descriptors"). A file that cannot
// be opened (the cgroup already gone) reads as nothing, as a missing one does: a sample never
// throws.
std::vector<pid_t> CgroupContainer::threads() {
  try {
    return CgroupThreads(dir_).read();
  } catch (const Error&) {
    return {};
  }
}

namespace {

std::optional<PressureTotals> read_pressure(const CgroupDir& dir, std::string_view attr) {
  try {
    return PressureFile::open(dir, attr).read();
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<std::uint64_t> CgroupContainer::cpu_pressure_some_usec() {
  auto totals = read_pressure(dir_, "cpu.pressure");
  if (!totals) return std::nullopt;
  return totals->some_usec;
}

std::optional<std::uint64_t> CgroupContainer::memory_full_usec() {
  auto totals = read_pressure(dir_, "memory.pressure");
  if (!totals) return std::nullopt;
  return totals->full_usec;
}

EvidenceTarget CgroupContainer::evidence_target(pid_t main_pid) {
  EvidenceTarget target;
  target.cgroup = &dir_;
  target.main_pid = main_pid;
  return target;
}

ProcTreeContainer::ProcTreeContainer(Child& init, ProcDir proc)
    : init_(init), tree_(init.pid(), std::move(proc)) {}

std::uint64_t ProcTreeContainer::cpu_usage_usec() {
  if (init_.process_running()) tree_.scan_for_sample();
  return tree_.cpu_usage_usec();
}

std::vector<int> ProcTreeContainer::pids() {
  return tree_.live_members();
}

bool ProcTreeContainer::populated() {
  if (!init_.process_running()) return false;
  rusage usage{};
  if (!init_.reap_process(&usage)) return true;
  // The init has no child left, so the tree is empty, unless it was killed from outside:
  // then what it had went to pollkill.
  final_usage_ = usage;
  take_over_orphans();
  return false;
}

std::vector<int> ProcTreeContainer::signal_all(int sig) {
  if (!init_.process_running()) return {};
  return tree_.signal_members(sig);
}

std::vector<int> ProcTreeContainer::kill_all() {
  if (!init_.process_running()) return {};
  return tree_.kill_members();
}

void ProcTreeContainer::sample() {}

std::vector<pid_t> ProcTreeContainer::threads() {
  return threads_of(tree_.live_members());
}

EvidenceTarget ProcTreeContainer::evidence_target(pid_t /*main_pid: the init*/) {
  EvidenceTarget target;
  target.tree_root = init_.pid();
  // The watch's main process is pollkill's init; the task's main process is its first child.
  std::optional<ProcStat> first;
  for (pid_t pid : tree_.live_members()) {
    auto stat = ProcDir().stat(pid);
    if (!stat) continue;
    if (stat->state == 'T') target.keep_stopped.push_back(pid);
    if (stat->ppid == init_.pid() && (!first || stat->starttime < first->starttime)) {
      first = stat;
    }
  }
  if (first) target.main_pid = first->pid;
  return target;
}

void ProcTreeContainer::fill_usage(Result& result) {
  if (final_usage_) {
    const auto seconds = [](const timeval& tv) {
      return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    result.cpu_user_s = seconds(final_usage_->ru_utime);
    result.cpu_system_s = seconds(final_usage_->ru_stime);
  } else {
    result.cpu_user_s = static_cast<double>(tree_.cpu_user_usec()) / 1e6;
    result.cpu_system_s = static_cast<double>(tree_.cpu_system_usec()) / 1e6;
  }
  // No cgroup: nothing measures the tree's memory or process count as the kernel's
  // controllers would, and nothing reports an OOM kill as the task's.
  result.memory_peak_bytes = std::nullopt;
  result.oom_kills = std::nullopt;
  result.pids_peak = std::nullopt;
}

void ProcTreeContainer::take_over_orphans() {
  for (pid_t pid : tree_.known_orphans_of(::getpid())) {
    ProcTree orphan(pid);
    orphan.kill_members();
    ::kill(pid, SIGKILL);  // pollkill's own unreaped child: the pid cannot be reused yet
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

SubreaperScope::SubreaperScope() {
  if (::prctl(PR_GET_CHILD_SUBREAPER, &previous_, 0, 0, 0) != 0)
    throw_errno("prctl(PR_GET_CHILD_SUBREAPER)");
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    throw_errno("become a child subreaper (prctl PR_SET_CHILD_SUBREAPER, Linux 3.4)");
}

SubreaperScope::~SubreaperScope() {
  ::prctl(PR_SET_CHILD_SUBREAPER, previous_, 0, 0, 0);
}

std::vector<pid_t> children_of_self(const ProcDir& proc) {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  for (const ProcStat& p : proc.snapshot()) {
    if (p.ppid == self) out.push_back(p.pid);
  }
  return out;
}

int reap_stray_children(const std::vector<pid_t>& keep, ProcDir proc) {
  int killed = 0;
  const pid_t self = ::getpid();
  // A killed stray's own children are reparented to pollkill in turn: repeat until a scan
  // finds no child of pollkill left.
  for (bool found = true; found;) {
    found = false;
    for (const ProcStat& p : proc.snapshot()) {
      if (p.ppid != self || std::find(keep.begin(), keep.end(), p.pid) != keep.end()) continue;
      found = true;
      if (p.state != 'Z') {
        ProcTree stray(p.pid, proc);
        killed += static_cast<int>(stray.kill_members().size());
        ::kill(p.pid, SIGKILL);  // our own unreaped child: the pid cannot have been reused
        ++killed;
      }
      while (::waitpid(p.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  return killed;
}

}  // namespace pollkill
