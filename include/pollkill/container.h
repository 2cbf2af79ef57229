// What holds a task's processes: its cgroup, or (subreaper mode) its process tree under
// pollkill's lingering init. TaskWatch decides; a container only observes and kills.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/cgroup_v1.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/demand.h"
#include "pollkill/evidence_capture.h"
#include "pollkill/fd.h"
#include "pollkill/pressure.h"
#include "pollkill/proctree.h"
#include "pollkill/result.h"
#include "pollkill/spawn.h"

namespace pollkill {

class TaskContainer {
 public:
  virtual ~TaskContainer() = default;
  /// CPU used by every process of the task so far, in microseconds (never decreasing).
  virtual std::uint64_t cpu_usage_usec() = 0;
  /// The task's live processes now (for progress: their /proc/PID/io).
  virtual std::vector<int> pids() = 0;
  /// Whether any process of the task is left.
  virtual bool populated() = 0;
  /// A descriptor for EventLoop::add_kernfs_notify that reports a possible change of
  /// populated(), and that populated() reads (which re-arms it); -1 where the end is seen
  /// otherwise (subreaper mode: the init's pidfd). Throws SystemError.
  virtual int populated_notify_fd() { return -1; }
  /// Sends `sig` to every process; returns the pids signalled.
  virtual std::vector<int> signal_all(int sig) = 0;
  /// Kills every process (nothing can fork away); returns the pids killed. Does not wait.
  virtual std::vector<int> kill_all() = 0;
  /// Called at each sample: keeps what the final figures need (e.g. the memory peak).
  virtual void sample() = 0;
  /// CPU, memory, oom and pids figures for the result; `oom_kills` feeds classify.
  virtual void fill_usage(Result& result) = 0;
  /// The OOM killer took a process but not the whole task (cgroup v1 has no memory.oom.group):
  /// the watch ends the rest, as v2's group kill would.
  virtual bool partial_oom_kill() { return false; }
  /// The processes still there when a kill did not empty the container, with their state
  /// (usually uninterruptible sleep), for the result's `unkillable`.
  virtual std::vector<UnkillableProcess> survivors();
  /// Membership is found by scanning (a process tree): sample it at every interval, so that
  /// what the task forks is known before its parent can exit.
  virtual bool scans() const { return false; }

  // What the CPU-wanted and thrash rules read (docs/ARCHITECTURE.md, "CPU wanted").
  /// The threads of the task now (for their /proc/TID/schedstat).
  virtual std::vector<pid_t> threads() = 0;
  /// The cpu.pressure `some` total (usec); nullopt where there is none (subreaper mode).
  virtual std::optional<std::uint64_t> cpu_pressure_some_usec() { return std::nullopt; }
  /// The memory.pressure `full` total (usec); nullopt where there is none.
  virtual std::optional<std::uint64_t> memory_full_usec() { return std::nullopt; }
  /// The memory the task uses now (memory.current, or v1's memory.usage_in_bytes), for the
  /// live view; nullopt without a memory controller (or a cgroup).
  virtual std::optional<std::uint64_t> memory_current() { return std::nullopt; }
  /// Where an evidence capture finds the task's processes (`main_pid`: the watch's main
  /// process; in subreaper mode that is pollkill's init, and the task's is its first child).
  /// The container must outlive the capture.
  virtual EvidenceTarget evidence_target(pid_t main_pid) = 0;
};

/// The task's cgroup v2 directory: cpu.stat, cgroup.events, cgroup.kill (or freeze + kill);
/// on a hybrid host also its cgroup v1 cgroups `v1` (removed with the container), where the
/// limits and their figures (peak, OOM kills, pids peak) live.
class CgroupContainer final : public TaskContainer {
 public:
  explicit CgroupContainer(CgroupDir dir, V1TaskCgroups v1 = {});
  const CgroupDir& dir() const { return dir_; }
  std::uint64_t cpu_usage_usec() override;
  std::vector<int> pids() override;
  bool populated() override;
  /// cgroup.events, the file populated() reads.
  int populated_notify_fd() override;
  std::vector<int> signal_all(int sig) override;
  std::vector<int> kill_all() override;
  void sample() override;
  void fill_usage(Result& result) override;
  bool partial_oom_kill() override;
  std::vector<pid_t> threads() override;
  std::optional<std::uint64_t> cpu_pressure_some_usec() override;
  std::optional<std::uint64_t> memory_full_usec() override;
  std::optional<std::uint64_t> memory_current() override;
  EvidenceTarget evidence_target(pid_t main_pid) override;

 private:
  CgroupDir dir_;
  KillMethod kill_method_;
  // The descriptors a running task holds besides dir_ (cgroup.procs, cgroup.threads and the
  // PSI files are opened per read: include/pollkill/fdlimit.h).
  UniqueFd cpu_stat_;       ///< kept open: one pread per sample instead of open/read/close
  UniqueFd cgroup_events_;  ///< likewise, for "populated"; also the end's notification
  std::optional<std::uint64_t> memory_peak_sampled_;
  bool sample_memory_;  ///< memory.current exists but memory.peak does not
  V1TaskCgroups v1_;
};

/// Subreaper mode: the tree under the task's lingering init (see Child), read from /proc.
/// CPU is the processes' own counters (utime, stime and what their waited-for children
/// used) while it runs, and at the end the init's rusage from wait4, which holds every
/// process of the tree. No memory, oom or pids figures (null): there is no cgroup.
///
/// `populated` is the init being alive: it exits only when it has no child left. When the
/// init is gone early (killed from outside), the processes it had are reparented to
/// pollkill (a child subreaper itself): the ones seen at the last scan are killed and
/// reaped here; ones born after that scan cannot be told apart from another task's and are
/// killed when pollkill's run or batch ends (docs/ARCHITECTURE.md).
class ProcTreeContainer final : public TaskContainer {
 public:
  /// `init` is owned by the caller (TaskWatch's Child); this reads its pid and reaps it
  /// through it.
  explicit ProcTreeContainer(Child& init, ProcDir proc = ProcDir());
  std::uint64_t cpu_usage_usec() override;
  std::vector<int> pids() override;
  bool populated() override;
  std::vector<int> signal_all(int sig) override;
  std::vector<int> kill_all() override;
  void sample() override;
  void fill_usage(Result& result) override;
  bool scans() const override { return true; }
  /// The threads of the members of the last scan (/proc/PID/task/).
  std::vector<pid_t> threads() override;
  EvidenceTarget evidence_target(pid_t main_pid) override;

 private:
  void take_over_orphans();

  Child& init_;
  ProcTree tree_;
  std::optional<rusage> final_usage_;
};

/// Makes the calling process a child subreaper (PR_SET_CHILD_SUBREAPER) for its lifetime:
/// processes of its tasks whose parents die are reparented to it instead of to PID 1 (or an
/// outer subreaper). Restores the previous setting at destruction. Throws SystemError.
class SubreaperScope {
 public:
  SubreaperScope();
  ~SubreaperScope();
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;

 private:
  int previous_ = 0;
};

/// The calling process's children now (for reap_stray_children's `keep`).
std::vector<pid_t> children_of_self(const ProcDir& proc = ProcDir());

/// Kills and reaps every child of pollkill except `keep` (the guard, and whatever children
/// the process had before the run began) and their trees: what subreaper mode could not
/// attribute to a task. Returns how many processes it killed.
int reap_stray_children(const std::vector<pid_t>& keep, ProcDir proc = ProcDir());

}  // namespace pollkill
