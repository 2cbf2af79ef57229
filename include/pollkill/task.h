// One running task attempt as a state machine, independent of who drives the event loop and
// of where the task's processes live: the launcher builds it with the task's container (its
// cgroup, or its tree under pollkill's init) and the slot's clock, the engine calls the on_*
// handlers as the loop reports events, and the watch decides.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pollkill/container.h"
#include "pollkill/policy.h"
#include "pollkill/progress.h"
#include "pollkill/result.h"
#include "pollkill/spawn.h"
#include "pollkill/watchdog.h"

namespace pollkill {

/// How long to wait for a cgroup to empty after cgroup.kill before reporting what is left.
inline constexpr Duration kKillWait{5000};

/// Time as a TaskWatch sees it: the clock, and the one deadline it arms (the end of the kill
/// grace, then the end of the kill wait). The engine's is CLOCK_MONOTONIC and the slot's
/// timerfd; unit tests drive a fake one.
class WatchClock {
 public:
  virtual ~WatchClock() = default;
  virtual Clock::time_point now() const = 0;
  /// Arms the deadline `after` from now, replacing a pending one; when it expires the owner
  /// calls on_deadline().
  virtual void arm_deadline(Duration after) = 0;
};

/// Makes the task's container once the watch owns the main process (a ProcTreeContainer
/// reads its init through it).
using ContainerFactory = std::function<std::unique_ptr<TaskContainer>(Child& main)>;

/// The state of one running task attempt: from spawn until its main process is reaped and
/// its container is empty (or the survivors were given up on after kKillWait).
///
/// The owner registers: pidfd() (call on_main_exit when readable, then stop watching it), the
/// container's end (cgroup.events through inotify, or tree_fd(): call on_events), a sampling
/// timer (on_sample) and the clock's deadline (on_deadline). `policy` and `clock` must outlive
/// the watch.
///
/// A sample reads only what a decision needs: the CPU when a CPU rule (cpu_time, hang_after,
/// spin_after) is set or the container tracks its members by scanning, the processes'
/// progress when hang or spin detection is on, and what the container keeps for its final
/// figures. With none of these a sample of a cgroup costs nothing; the task's end is seen
/// through cgroup.events, never by polling it.
class TaskWatch {
 public:
  TaskWatch(const Policy& policy, Child child, const ContainerFactory& make_container,
            WatchClock& clock, Clock::time_point start);
  TaskWatch(const TaskWatch&) = delete;
  TaskWatch& operator=(const TaskWatch&) = delete;

  bool finished() const { return done_; }
  bool main_running() const { return child_.running(); }
  /// Readable when the main process ended (its pidfd, or the lingering init's status pipe).
  int pidfd() const { return child_.exit_fd(); }
  /// subreaper mode: readable when the whole tree is gone (the init's pidfd); -1 otherwise.
  int tree_fd() const { return child_.lingering() ? child_.pidfd() : -1; }
  TaskContainer& container() { return *container_; }

  void on_main_exit();
  void on_events();
  /// A verdict (watchdog, output limit, stop_with) is taken only from a task still running:
  /// a main process that already exited, even one whose end the loop has not reported yet,
  /// is reaped first and keeps its own status.
  void on_sample(Clock::time_point now);
  void on_deadline();
  /// pollkill was asked to stop: SIGTERM, grace, kill; a second call skips the grace.
  void cancel(int sig);
  /// Counts output (relayed bytes or log file sizes) against the `output` limit.
  void on_output(std::uint64_t total);
  /// Stops the task with a verdict decided outside the watchdog (e.g. an adaptive limit).
  void stop_with(Status status, std::string reason);
  /// Fills the result's status, reason, exit, CPU, memory and reaping fields; `wall_s` is the
  /// clock's time from `started` to the task's end (to now if it has not ended): output
  /// still being delivered after the end does not count.
  void fill(Result& result, const Outcome& base, Clock::time_point started);

 private:
  enum class Phase { running, terminating, killed };

  /// Before a verdict: reaps a main process that already ended (and kills its orphans, or
  /// sees the container empty). True when the task is over or stopping without a verdict.
  bool ended_already();
  void refresh_populated();
  void begin_termination(Duration grace);
  void kill_now();
  void enter_killed();
  void check_done();

  const Policy& policy_;
  WatchClock& clock_;
  Child child_;  ///< before container_, which may refer to it
  std::unique_ptr<TaskContainer> container_;
  Watchdog watchdog_;
  ProgressProbe probe_;
  bool watch_progress_;
  bool sample_cpu_;  ///< a CPU rule is set (or the container scans): read the CPU at each sample
  Phase phase_ = Phase::running;
  bool populated_ = true;
  bool done_ = false;
  bool gave_up_ = false;
  std::optional<Child::Exit> main_exit_;
  std::optional<Verdict> verdict_;
  std::optional<Clock::time_point> ended_at_;  ///< when done_ became true
  std::optional<int> cancel_signal_;
  std::set<int> reaped_;
  std::vector<UnkillableProcess> unkillable_;
};

}  // namespace pollkill
