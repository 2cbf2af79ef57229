// One attempt of one task: its task cgroup with the v2 and v1 limits written (or, in
// subreaper mode, pollkill's init for it), its stdin, stdout and stderr, the spawn, a program
// that could not be executed turned into a result, and the TaskWatch with its registrations in
// the event loop. The engine launches attempts here and finishes them here.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/event_loop.h"
#include "pollkill/live_view.h"
#include "pollkill/output.h"
#include "pollkill/policy.h"
#include "pollkill/result.h"
#include "pollkill/sandbox.h"
#include "pollkill/session.h"
#include "pollkill/task.h"

namespace pollkill {

class RunningAttempt;

/// One place for a running task in the engine. Its two deadlines are registered once and
/// reused by the attempts that run in it one after another (disarmed between them): the
/// deadline its TaskWatch arms (the clock it is given) and the wall-time deadline, which makes
/// the wall time exact rather than rounded up to the next sample. Both are the event loop's
/// (one timerfd for every slot), not a descriptor of the slot's own.
class Slot final : public WatchClock {
 public:
  explicit Slot(EventLoop& loop);
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot();

  Clock::time_point now() const override { return Clock::now(); }
  void arm_deadline(Duration after) override { loop_.arm_deadline(deadline_id_, after); }
  void watch_capture(int fd) override;

  /// The attempt running here; null when the slot is free.
  RunningAttempt* current() const { return current_.get(); }
  std::unique_ptr<RunningAttempt>& occupant() { return current_; }
  /// The attempt's wall time ends `after` from now.
  void arm_wall(Duration after) { loop_.arm_deadline(wall_id_, after); }
  /// Disarms both deadlines, so that neither fires for the next attempt.
  void disarm();

 private:
  EventLoop& loop_;
  EventLoop::Id deadline_id_ = 0;
  EventLoop::Id wall_id_ = 0;
  std::optional<EventLoop::Id> capture_id_;  ///< a running evidence capture's fd
  std::unique_ptr<RunningAttempt> current_;
};

/// One attempt as the engine asks for it.
struct AttemptSpec {
  std::string id;
  int attempt = 1;
  std::vector<std::string> command;
  std::vector<std::string> env;  ///< the program's whole environment, "NAME=value"
  std::string cwd;               ///< empty: pollkill's own
  Policy policy;                 ///< the task's effective policy (its wall time decided)
  std::string cgroup_name;       ///< "task-<seq>-<attempt>"; `run`: "task-run"
  /// Empty: pollkill's own stdin, stdout and stderr (`run`). Else stdin is /dev/null and
  /// stdout and stderr go to these files, created or truncated (batch). With an output limit
  /// the task writes into pipes that pollkill copies to either and counts (OutputRelay): at
  /// most the limit reaches them, whatever the poll interval.
  std::string stdout_path, stderr_path;
  const SandboxPlan* sandbox = nullptr;  ///< the invocation's [sandbox] and [seccomp]
  /// Where a verdict's evidence is written ([evidence] on), named `<evidence_stem>.evidence.
  /// json` and `.txt` (the log files' stem); an empty directory: no evidence is taken.
  std::string evidence_dir, evidence_stem;
};

/// A launched attempt, from its spawn to its end.
class RunningAttempt {
 public:
  RunningAttempt(Session& session, EventLoop& loop, Slot& slot, AttemptSpec spec);
  RunningAttempt(const RunningAttempt&) = delete;
  RunningAttempt& operator=(const RunningAttempt&) = delete;
  ~RunningAttempt();

  const AttemptSpec& spec() const { return spec_; }
  /// When it was launched.
  Clock::time_point started() const { return start_; }
  /// The attempt as the live view shows it (`--progress=full`): id, elapsed and state, and
  /// with `figures` its CPU (the watch's last sample, else one read of the container) and its
  /// memory now (where a memory controller counts it). Never throws: a figure that cannot be
  /// read is not known.
  LiveTask live(Clock::time_point now, bool figures);
  /// Over: the task is gone (or given up on) and what it wrote through the relay was
  /// delivered (or dropped: pollkill was asked to stop, or the destination went away), or it
  /// never started (its result is set). Delivering what a task left waits for a slow reader
  /// but never blocks: signals and the other slots are served meanwhile.
  bool finished();
  /// A sample: the watchdog's.
  void on_sample(Clock::time_point now);
  void on_deadline();
  void on_capture_end();
  /// pollkill was asked to stop (a second call kills at once).
  void cancel(int sig);
  /// Ends a finished attempt: its result filled, its registrations removed, the watch, its
  /// descriptors and its task cgroup gone, the guard told. Returns the result.
  Result finish();

 private:
  friend std::unique_ptr<RunningAttempt> launch(Session&, EventLoop&, Slot&, AttemptSpec, bool);
  void start();
  void spawn_task();
  void give_up(const Error& error);
  void unregister() noexcept;
  /// Registers the relay's stream for what it waits for next (its pipe, its destination).
  void relay_wait(int stream);
  void remove_cgroup() noexcept;

  Session& session_;
  EventLoop& loop_;
  Slot& slot_;
  AttemptSpec spec_;
  Result result_;
  Clock::time_point start_{};
  std::filesystem::path cgroup_path_;
  std::optional<CgroupDir> task_dir_;
  V1TaskCgroups v1_;  ///< until the watch's container owns them
  /// The log files: held only while the task is spawned, or for good by the relay, which
  /// writes into them.
  UniqueFd stdout_, stderr_;
  std::optional<OutputRelay> relay_;
  EventLoop::Id relay_ids_[2] = {0, 0};  ///< 0: not registered
  bool cancelled_ = false;               ///< pollkill was asked to stop
  std::unique_ptr<TaskWatch> watch_;
  pid_t init_pid_ = -1;  ///< subreaper mode: the task's lingering init, known to the guard
  std::vector<EventLoop::Id> registrations_;
  std::optional<EventLoop::Id> pidfd_id_;
};

/// Launches `spec` in `slot` (which must be free): creates, writes the limits, spawns and
/// registers. An attempt that ends at once comes back finished, its result set: the program
/// could not be executed (exec_error, 126/127), or its setup failed (status error, the reason
/// the Error's message), unless `setup_errors_fatal`, when the Error is thrown instead (`run`:
/// a task that cannot be set up is pollkill's own failure, exit 125).
std::unique_ptr<RunningAttempt> launch(Session& session, EventLoop& loop, Slot& slot,
                                       AttemptSpec spec, bool setup_errors_fatal);

}  // namespace pollkill
