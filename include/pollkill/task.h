// One running task attempt as a state machine, independent of who drives the event loop and
// of where the task's processes live: the launcher builds it with the task's container (its
// cgroup, or its tree under pollkill's init) and the slot's clock, the engine calls the on_*
// handlers as the loop reports events, and the watch decides.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pollkill/container.h"
#include "pollkill/demand.h"
#include "pollkill/evidence_capture.h"
#include "pollkill/policy.h"
#include "pollkill/progress.h"
#include "pollkill/result.h"
#include "pollkill/spawn.h"
#include "pollkill/watchdog.h"

namespace pollkill {

/// How long to wait for a cgroup to empty after cgroup.kill before reporting what is left.
inline constexpr Duration kKillWait{5000};

/// Time as a TaskWatch sees it: the clock, the one deadline it arms (the end of an evidence
/// capture's budget, of the kill grace, then of the kill wait), and the one descriptor it may
/// ask to be watched (a running evidence capture's). The engine's is CLOCK_MONOTONIC, the
/// slot's timerfd and its event loop; unit tests drive a fake one.
class WatchClock {
 public:
  virtual ~WatchClock() = default;
  virtual Clock::time_point now() const = 0;
  /// Arms the deadline `after` from now, replacing a pending one; when it expires the owner
  /// calls on_deadline().
  virtual void arm_deadline(Duration after) = 0;
  /// Calls on_capture_end() once `fd` is readable (an EvidenceCapture's fd()); -1 stops
  /// watching the previous one.
  virtual void watch_capture(int fd) = 0;
};

/// What a sample reads, decided once per attempt from the policy (pure): only what a rule
/// needs, so that a task without the rule pays nothing for it.
struct SampleReads {
  bool cpu = false;       ///< cpu.stat usage_usec (or the tree's counters)
  bool progress = false;  ///< the processes' wchar and the heartbeat
  /// The CPU waited for (cpu.pressure and the threads' schedstat): the hang and spin rules
  /// compare the CPU wanted.
  bool cpu_wait = false;
  bool memory_full = false;  ///< memory.pressure `full` (the thrash rule)

  /// `scans`: the container finds its members by scanning (it samples the CPU anyway).
  static SampleReads for_policy(const Policy& policy, bool scans);
};

/// Where a verdict's evidence goes (the task's log directory); an empty `dir`: nowhere, none
/// is taken. `file_stem` names the files (`<stem>.evidence.json`); empty: "<id>.<attempt>".
struct EvidenceDestination {
  std::filesystem::path dir;
  std::string id;
  int attempt = 1;
  std::string file_stem;
};

/// Makes the task's container once the watch owns the main process (a ProcTreeContainer
/// reads its init through it).
using ContainerFactory = std::function<std::unique_ptr<TaskContainer>(Child& main)>;

/// The state of one running task attempt: from spawn until its main process is reaped and
/// its container is empty (or the survivors were given up on after kKillWait).
///
/// The owner registers: pidfd() (call on_main_exit when readable, then stop watching it), the
/// container's end (its populated_notify_fd() through EventLoop::add_kernfs_notify, or
/// tree_fd(): call on_events), a sampling timer (on_sample) and the clock's deadline
/// (on_deadline). `policy` and `clock` must outlive the watch.
///
/// A sample reads only what a decision needs: the CPU when a CPU rule (cpu_time, hang_after,
/// spin_after) is set or the container tracks its members by scanning, the processes'
/// progress when hang or spin detection is on, and what the container keeps for its final
/// figures. With none of these a sample of a cgroup costs nothing; the task's end is seen
/// through cgroup.events, never by polling it.
///
/// Hang and spin rules read a quiet task only as often as their thresholds need: once a
/// reading finds that the task's cgroup used no CPU, waited for none, stalled on no memory and
/// made no progress since the previous one, the next reading comes after a sixteenth of the shorter
/// of hang_after and spin_after (whole poll intervals; every interval when that is shorter than
/// two). No CPU at all over such a stretch means no CPU and no progress in each of its intervals,
/// so the rules decide as if every interval had been read, a verdict at most that sixteenth late. A
/// stretch in which the CPU did grow cannot be split into intervals: it counts as progress (no
/// streak runs through it) and the task is read at every interval again. Not with cpu_time (its
/// overrun would be seen late), a heartbeat file (written from outside the task) or a
/// container that must scan for its members.
class TaskWatch {
 public:
  TaskWatch(const Policy& policy, Child child, const ContainerFactory& make_container,
            WatchClock& clock, Clock::time_point start, EvidenceDestination evidence = {});
  TaskWatch(const TaskWatch&) = delete;
  TaskWatch& operator=(const TaskWatch&) = delete;

  bool finished() const { return done_; }
  bool main_running() const { return child_.running(); }
  /// Readable when the main process ended (its pidfd, or the lingering init's status pipe).
  int pidfd() const { return child_.exit_fd(); }
  /// subreaper mode: readable when the whole tree is gone (the init's pidfd); -1 otherwise.
  int tree_fd() const { return child_.lingering() ? child_.pidfd() : -1; }
  TaskContainer& container() { return *container_; }

  /// Where the watch is: the task runs; a verdict's evidence is being captured; SIGTERM was
  /// sent and the kill grace runs (a verdict or a cancel); the task was killed and its
  /// container is emptying.
  enum class Phase { running, capturing, terminating, killed };
  Phase phase() const { return phase_; }
  /// The CPU the task has used, for the live view: the last sample's when samples read the
  /// CPU (nothing read again), else read now from the container. Microseconds.
  std::uint64_t cpu_usage_usec();

  void on_main_exit();
  void on_events();
  /// A verdict (watchdog, output limit, stop_with) is taken only from a task still running:
  /// a main process that already exited, even one whose end the loop has not reported yet,
  /// is reaped first and keeps its own status.
  void on_sample(Clock::time_point now);
  void on_deadline();
  /// The evidence capture's process ended (its fd became readable).
  void on_capture_end();
  /// pollkill was asked to stop: SIGTERM, grace, kill; a second call skips the grace (and
  /// ends an evidence capture at once).
  void cancel(int sig);
  /// Counts output (relayed bytes or log file sizes) against the `output` limit.
  void on_output(std::uint64_t total);
  /// Stops the task with a verdict decided outside the watchdog (e.g. an adaptive limit).
  void stop_with(Status status, std::string reason);
  /// Fills the result's status, reason, exit, CPU, memory and reaping fields, and the
  /// evidence's path and signature; `wall_s` is the clock's time from `started` to the task's
  /// end (to now if it has not ended): output still being delivered after the end does not
  /// count.
  void fill(Result& result, const Outcome& base, Clock::time_point started);

 private:
  /// Before a verdict: reaps a main process that already ended (and kills its orphans, or
  /// sees the container empty). True when the task is over or stopping without a verdict.
  bool ended_already();
  Sample start_sample(Clock::time_point start);
  void refresh_populated();
  /// The verdict's evidence first when `[evidence] on` names it, then terminate(grace).
  void begin_termination(Duration grace);
  bool start_capture();
  void end_capture(EvidenceOutcome outcome);
  void terminate(Duration grace);
  void kill_now();
  void enter_killed();
  void check_done();

  const Policy& policy_;
  WatchClock& clock_;
  Child child_;  ///< before container_, which may refer to it
  std::unique_ptr<TaskContainer> container_;
  SampleReads reads_;
  CpuWaitMeter wait_meter_;
  Watchdog watchdog_;
  ProgressProbe probe_;
  EvidenceDestination evidence_dest_;
  std::optional<EvidenceCapture> capture_;  ///< after container_: it reads the task's cgroup
  EvidenceTarget capture_target_;  ///< what the capture froze, as it was before: what to thaw
  std::optional<EvidenceOutcome> evidence_;
  Duration grace_after_capture_{0};
  /// While the task is quiet (nothing the rules measure grew and nothing progressed since the
  /// last reading), the rules read the task only every `quiet_stride_` samples (1: every
  /// sample); see on_sample. `stride_` is the one in force, `skipped_` counts the samples
  /// since the last reading, `last_reading_` is that reading.
  int quiet_stride_ = 1;
  int stride_ = 1;
  int skipped_ = 0;
  std::optional<Sample> last_reading_;
  Phase phase_ = Phase::running;
  bool populated_ = true;
  bool done_ = false;
  bool gave_up_ = false;
  std::optional<Child::Exit> main_exit_;
  std::optional<Verdict> verdict_;
  std::optional<std::uint64_t> sampled_cpu_usec_;  ///< the last sample's, when it read the CPU
  std::optional<Clock::time_point> ended_at_;      ///< when done_ became true
  std::optional<int> cancel_signal_;
  std::set<int> reaped_;
  std::vector<UnkillableProcess> unkillable_;
};

}  // namespace pollkill
