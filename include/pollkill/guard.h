// The guard: a small process outside the task cgroups that reaps everything if pollkill
// itself dies (even by SIGKILL, which no handler can catch).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "pollkill/cgroup.h"
#include "pollkill/fd.h"

namespace pollkill {

/// Forked right after the run cgroup is created, the guard blocks reading a pipe whose only
/// write end pollkill holds (close-on-exec, so no task inherits it). When the pipe closes,
/// whether pollkill finished or was killed, the guard destroys the run cgroup: kills every
/// process in it, waits for it to empty, removes it, then exits. It ignores SIGINT, SIGTERM
/// and SIGHUP so that a terminal's signal to the process group reaches pollkill's own
/// handling instead.
///
/// In subreaper mode there is no run cgroup (`run` null): pollkill tells the guard each
/// task's lingering init (watch_tree) and when it is done with it (forget_tree), through the
/// same pipe. When the pipe closes, the guard kills the tree under every init it still
/// holds (SIGSTOP all, SIGKILL all, as ProcTree::kill_members) and then the init. What this
/// guarantees: if pollkill dies and the guard survives, every process that is still in a
/// task's tree is killed; the init, which does not die with pollkill (its parent-death
/// signal is caught), keeps the tree together until the guard gets to it. What it does not:
/// if the guard is killed too, each init only kills its task's main process (the
/// parent-death signal) and the rest of the tree stays.
///
/// The guard runs in a session of its own, so that a SIGKILL to pollkill's process group or
/// session (`timeout -s KILL`, job control) does not take it along. In cgroup mode it creates
/// the run's liveness cgroup and forks a liveness process straight into it (clone3 with
/// CLONE_INTO_CGROUP; where that fails, realize moves it there): the run counts as
/// alive (gc.h) while the guard lives, in every PID namespace; the guard kills it after the
/// run cgroup is gone and removes that cgroup too.
class Guard {
 public:
  static Guard start(RunCgroup& run) { return start(&run); }
  static Guard start(RunCgroup* run);

  /// subreaper mode: the guard kills the tree under `init` (started at `starttime`, clock
  /// ticks after boot) if pollkill dies before forget_tree.
  void watch_tree(pid_t init, std::uint64_t starttime);
  void forget_tree(pid_t init);

  Guard() = default;
  Guard(Guard&& other) noexcept;
  Guard& operator=(Guard&& other) noexcept;
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  ~Guard() { stop(); }

  /// Closes the pipe and waits for the guard to finish. Idempotent.
  void stop() noexcept;
  pid_t pid() const noexcept { return pid_; }
  /// cgroup mode: the guard's liveness process, for RunCgroup::realize to put into the run's
  /// liveness cgroup (gc.h). -1 in subreaper mode.
  pid_t liveness_pid() const noexcept { return liveness_pid_; }
  /// Whether the liveness process was born in the liveness cgroup (clone3 with
  /// CLONE_INTO_CGROUP, the usual case), so that realize need not move it.
  bool liveness_placed() const noexcept { return liveness_placed_; }

 private:
  pid_t pid_ = -1;
  pid_t liveness_pid_ = -1;
  bool liveness_placed_ = false;
  UniqueFd pipe_;
};

}  // namespace pollkill
