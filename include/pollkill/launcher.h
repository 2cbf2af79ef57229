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
#include "pollkill/output.h"
#include "pollkill/policy.h"
#include "pollkill/result.h"
#include "pollkill/sandbox.h"
#include "pollkill/session.h"
#include "pollkill/task.h"

namespace pollkill {

class RunningAttempt;

/// One place for a running task in the engine. Its timers are made and registered once and
/// reused by the attempts that run in it one after another (disarmed between them): the
/// deadline its TaskWatch arms (the clock it is given) and the wall-time timer, which makes
/// the wall time exact rather than rounded up to the next sample.
class Slot final : public WatchClock {
 public:
  explicit Slot(EventLoop& loop);
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot();

  Clock::time_point now() const override { return Clock::now(); }
  void arm_deadline(Duration after) override { deadline_.arm(after); }

  /// The attempt running here; null when the slot is free.
  RunningAttempt* current() const { return current_.get(); }
  std::unique_ptr<RunningAttempt>& occupant() { return current_; }
  const Timer& wall() const { return wall_; }
  /// /dev/null for the attempts' stdin, opened once.
  int null_input();
  /// Disarms both timers, so that neither fires for the next attempt.
  void disarm() const;

 private:
  EventLoop& loop_;
  Timer deadline_;
  Timer wall_;
  EventLoop::Id deadline_id_ = 0;
  EventLoop::Id wall_id_ = 0;
  UniqueFd null_input_;
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
  /// Empty: pollkill's own stdin, stdout and stderr (`run`), relayed through pipes that count
  /// the bytes when the policy has an output limit. Else stdin is /dev/null and stdout and
  /// stderr go to these files (created or truncated), whose sizes the output limit counts at
  /// each sample (batch).
  std::string stdout_path, stderr_path;
  const SandboxPlan* sandbox = nullptr;  ///< the invocation's [sandbox] and [seccomp]
};

/// A launched attempt, from its spawn to its end.
class RunningAttempt {
 public:
  RunningAttempt(Session& session, EventLoop& loop, Slot& slot, AttemptSpec spec);
  RunningAttempt(const RunningAttempt&) = delete;
  RunningAttempt& operator=(const RunningAttempt&) = delete;
  ~RunningAttempt();

  const AttemptSpec& spec() const { return spec_; }
  /// Over: the task is gone (or given up on), or it never started (its result is set).
  bool finished() const { return !watch_ || watch_->finished(); }
  /// A sample: the watchdog's, then (log files) the output limit.
  void on_sample(Clock::time_point now);
  void on_deadline();
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
  UniqueFd stdout_, stderr_;
  std::optional<OutputRelay> relay_;
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
