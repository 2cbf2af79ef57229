// One running task attempt as a state machine, independent of who drives the event loop:
// `run` drives one of them, `batch` many. The loop owner registers the descriptors (pidfd,
// cgroup.events inotify, timers) and calls the on_* handlers; the watch decides.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/cgroup_v1.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/container.h"
#include "pollkill/fd.h"
#include "pollkill/policy.h"
#include "pollkill/progress.h"
#include "pollkill/result.h"
#include "pollkill/spawn.h"
#include "pollkill/watchdog.h"

namespace pollkill {

/// How long to wait for a cgroup to empty after cgroup.kill before reporting what is left.
inline constexpr Duration kKillWait{5000};

/// A non-blocking, close-on-exec CLOCK_MONOTONIC timerfd.
UniqueFd make_timerfd();
/// Arms `fd` to fire after `first` and then every `interval` (0: once); both 0 disarms.
void arm_timer(int fd, Duration first, Duration interval);
/// Reads and discards everything readable on a non-blocking descriptor.
void drain_fd(int fd);

/// pollkill's environment as "NAME=value" strings.
std::vector<std::string> current_environment();

/// /proc/PID/stat's state and comm for a process that would not die.
UnkillableProcess describe_process(int pid);

/// Applies the limit writes to a fresh task cgroup. The swap file (memory.swap.max, or v1's
/// memory.memsw.limit_in_bytes) is absent when the kernel does not account swap; then an
/// implicit swap limit of 0 cannot matter and is skipped.
void apply_limits(const CgroupDir& dir, const std::vector<LimitWrite>& plan,
                  std::vector<std::string>& not_enforced, MissingControllers missing);

/// Which limit writes the run root can enforce, and which controllers go through cgroup v1
/// instead: with runner.cgroup_v1 = "auto", a controller the run root lacks whose v1
/// hierarchy is mounted and writable (place_v1). A v2 controller must be offered by the run
/// root's cgroup.controllers, and a run root other than the hierarchy root must hold no
/// process but pollkill (other processes keep controllers from being enabled for its children:
/// EBUSY). When some limits cannot be enforced: with runner.missing_controllers = "error"
/// throws Error naming the controllers (or the other processes), why v1 could not help, the
/// cgroup and the fix; with "warn" prints a warning and returns the keys in `not_enforced`.
/// Clears root.move_self_to_leaf when no v2 controller is left to enable.
struct EnforceablePlan {
  std::vector<LimitWrite> enforceable;  ///< the v2 writes
  std::vector<std::string> not_enforced;
  std::vector<std::string> v1_controllers;  ///< controllers whose limits go through v1
  /// (controller, base directory in its v1 hierarchy) for RunCgroup::prepare.
  std::vector<std::pair<std::string, std::filesystem::path>> v1_bases;
  std::vector<std::string> v1_keys;  ///< policy keys enforced through v1 (all tasks)
};
EnforceablePlan check_controllers(const HostCgroups& host, RunRoot& root,
                                  const std::vector<LimitWrite>& plan, const RunnerPolicy& runner);

/// Blocks SIGINT, SIGTERM and SIGHUP (read through a signalfd instead) for its lifetime;
/// signals still pending at destruction are dropped.
class BlockedSignals {
 public:
  BlockedSignals();
  ~BlockedSignals();
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_;
  sigset_t old_;
};

/// The state of one running task attempt: from spawn until its main process is reaped and
/// its cgroup is empty (or the survivors were given up on after kKillWait).
///
/// The caller registers: the pidfd (call on_main_exit when readable, then stop watching it),
/// an inotify IN_MODIFY watch on the cgroup's cgroup.events (on_events, and after an inotify
/// queue overflow), a sampling timer (on_sample) and the deadline timer given with
/// set_deadline_fd (on_deadline). `policy` must outlive the watch.
///
/// A sample reads only what a decision needs: cpu.stat when a CPU rule (cpu_time, hang_after,
/// spin_after) is set, the processes' progress when hang or spin detection is on, and
/// memory.current only where the kernel keeps no memory.peak. With none of these a sample of
/// a cgroup costs nothing; the task's end is seen through cgroup.events, never by polling it.
///
/// Where the task's processes live is the mode's business: a cgroup (CgroupContainer), or in
/// subreaper mode the tree under the lingering init `child` (ProcTreeContainer; then the
/// caller also watches tree_fd() and calls on_events when it is readable).
class TaskWatch {
 public:
  /// cgroup mode: the task's cgroup `dir`.
  TaskWatch(const Policy& policy, CgroupDir dir, Child child, Clock::time_point start,
            std::uint64_t start_cpu);
  /// subreaper mode: `child` is a lingering init (spawned with subreaper_init).
  TaskWatch(const Policy& policy, Child child, Clock::time_point start);
  TaskWatch(const TaskWatch&) = delete;
  TaskWatch& operator=(const TaskWatch&) = delete;

  bool finished() const { return done_; }
  bool main_running() const { return child_.running(); }
  /// Readable when the main process ended (its pidfd, or the lingering init's status pipe).
  int pidfd() const { return child_.exit_fd(); }
  /// subreaper mode: readable when the whole tree is gone (the init's pidfd); -1 otherwise.
  int tree_fd() const { return child_.lingering() ? child_.pidfd() : -1; }

  void on_main_exit();
  void on_events();
  void on_sample(Clock::time_point now);
  void on_deadline();
  /// pollkill was asked to stop: SIGTERM, grace, kill; a second call skips the grace.
  void cancel(int sig);
  void set_deadline_fd(int fd) { deadline_fd_ = fd; }
  /// The task's cgroup v1 cgroups (hybrid hosts): results (peak, OOM kills, pids peak) are
  /// read there, an OOM kill in the v1 memory cgroup ends the whole task as memory.oom.group
  /// does on v2, and they are removed with the watch.
  void set_v1(V1TaskCgroups v1);
  /// Counts output (relayed bytes or log file sizes) against the `output` limit.
  void on_output(std::uint64_t total);
  /// Stops the task with a verdict decided outside the watchdog (e.g. an adaptive limit).
  void stop_with(Status status, std::string reason);
  /// Fills the result's status, reason, exit, CPU, memory and reaping fields.
  void fill(Result& result, const Outcome& base, Clock::time_point started);

 private:
  enum class Phase { running, terminating, killed };

  void refresh_populated();
  void begin_termination(Duration grace);
  void kill_now();
  void enter_killed();
  void check_done();

  const Policy& policy_;
  Child child_;  ///< before container_, which may refer to it
  std::unique_ptr<TaskContainer> container_;
  Watchdog watchdog_;
  ProgressProbe probe_;
  bool watch_progress_;
  bool sample_cpu_;  ///< a CPU rule is set (or subreaper mode): read the CPU at each sample
  int deadline_fd_ = -1;
  Phase phase_ = Phase::running;
  bool populated_ = true;
  bool done_ = false;
  bool gave_up_ = false;
  std::optional<Child::Exit> main_exit_;
  std::optional<Verdict> verdict_;
  std::optional<int> cancel_signal_;
  std::set<int> reaped_;
  std::vector<UnkillableProcess> unkillable_;
};

}  // namespace pollkill
