// The engine every local mode drives: one session, one event loop, `jobs` slots, and the
// attempts the task queue hands out launched in them, each recorded through one writer when
// it ends. `run` is a batch of one task whose record goes to --result; `batch` is many tasks
// with retries, resume and a results file; the Slurm element runs one task through `run`.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/event_loop.h"
#include "pollkill/launcher.h"
#include "pollkill/limits.h"
#include "pollkill/live_view.h"
#include "pollkill/policy.h"
#include "pollkill/report.h"
#include "pollkill/result.h"
#include "pollkill/results.h"
#include "pollkill/retry.h"
#include "pollkill/sandbox.h"
#include "pollkill/session.h"
#include "pollkill/task_queue.h"
#include "pollkill/terminal.h"

namespace pollkill {

/// What an invocation asks of the engine.
struct EngineRequest {
  Policy policy;  ///< the base policy: a task's own limit keys go on top (task_policy)
  std::optional<std::string> cgroup_root;  ///< --cgroup-root
  std::vector<LimitWrite> plan;            ///< every task's limit writes together
  SandboxPlan sandbox;  ///< prepared before anything was created (prepare_sandbox)
  int jobs = 1;         ///< tasks at once
  /// Each attempt's stdout and stderr go to "<logs_dir>/<id>.<attempt>.out" and ".err" (the
  /// id made safe for a file name), stdin is /dev/null. Empty: pollkill's own (`run`).
  std::string logs_dir;
  /// Where a verdict's evidence goes ([evidence] on): the logs directory when there is one
  /// (`<id>.<attempt>.evidence.json` beside `.out`), else this (`run --evidence-dir`); both
  /// empty: no evidence. `evidence_stem` names the files of a one-task engine (the Slurm
  /// element's "<seq>.<attempt>"); empty: the log files' stem.
  std::string evidence_dir, evidence_stem;
  /// The task cgroup's name; empty: "task-<number>-<attempt>" (TaskSpec::number). (`run`:
  /// "task-run".)
  std::string cgroup_name;
  bool retries = false;       ///< [retry] applies: a failed attempt may run again (batch)
  bool gc_dead_runs = false;  ///< remove dead pollkills' run cgroups first (batch)
  /// A task that cannot be set up is pollkill's own failure (an Error, `run`: exit 125), not
  /// a record of status error.
  bool setup_errors_fatal = false;
  /// A task the queue still holds when a cancel stops the engine gets a record of status
  /// cancelled ("... before the task started") instead of none (`run`; a batch leaves them
  /// to --resume).
  bool record_unstarted = false;
  /// Batch messages: 0 none (`run`, -q), 1 the cancellation notice, 2 also every attempt.
  int verbosity = 0;
  /// What is shown on stderr while the tasks run (docs/ARCHITECTURE.md, "The live view"). On
  /// a terminal: the progress line, four times a second, or the view of the running tasks
  /// twice a second, both fitted to its size and redrawn in place (again at once on SIGWINCH),
  /// erased for any message and replaced by the final progress line at the end. Not on a
  /// terminal, no escape sequences: `line` rewrites one line with carriage returns; `full`
  /// writes a line per ended attempt and the progress line every 10 seconds.
  ProgressMode progress = ProgressMode::off;
  std::uint64_t total = 0;      ///< tasks in all, for the progress line
  Duration sync_interval{100};  ///< most time between a record and its fdatasync
};

/// How the engine's run ended.
struct EngineOutcome {
  Summary summary;                   ///< every final record, and what --resume skipped
  std::optional<int> cancel_signal;  ///< the signal that stopped it
  std::optional<Result> last;        ///< the last attempt's result (`run`: its only one)
};

class Engine {
 public:
  /// Prepares without creating anything: opens the session (its decisions). Throws Error.
  explicit Engine(EngineRequest request);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();

  /// Runs until the queue is exhausted and every attempt has ended, or until a signal
  /// (SIGINT, SIGTERM, SIGHUP) stops it: then no attempt starts, and every running one is
  /// asked to stop (SIGTERM, its grace, the kill; a second signal kills at once). Each ended
  /// attempt goes to `records` (and, final, to `joblog`); a failed one is queued again when
  /// its task's [retry] says so. Everything the session made is gone when it returns.
  EngineOutcome run(TaskQueue& queue, RecordWriter* records, AppendFile* joblog);

 private:
  struct Place;
  void start_ready();
  void start(Place& place, QueuedAttempt what);
  void finish(Place& place);
  void record(Result& result, const QueuedAttempt& what);
  void on_signal(int sig);
  void on_sample();
  void arm_sync();
  void draw_progress();
  void draw_view(Clock::time_point now, const ProgressCounts& counts);
  void end_progress();
  void on_resize();
  std::size_t running() const;

  EngineRequest request_;
  std::optional<EventLoop> loop_;  ///< before the session: signals stay blocked until it closed
  Session session_;
  std::vector<std::unique_ptr<Place>> places_;
  TaskQueue* queue_ = nullptr;
  RecordWriter* records_ = nullptr;
  AppendFile* joblog_ = nullptr;
  Timer sample_timer_;
  /// Made only when used: retries, records to sync, a progress line.
  std::optional<Timer> backoff_timer_, sync_timer_, progress_timer_;
  bool sync_armed_ = false;
  bool backoff_armed_ = false;
  Summary summary_;
  WallTimeStats ok_walls_;
  std::optional<int> cancel_signal_;
  std::optional<Result> last_;
  Clock::time_point started_ = Clock::now();
  /// The progress display: the terminal's size (none: stderr is not a terminal), the frame
  /// drawn on it, the newest verdicts (full view), what was last written elsewhere.
  std::optional<TerminalSize> terminal_;
  InPlace in_place_;
  std::deque<LiveVerdict> verdicts_;
  Clock::time_point last_status_{};
  std::size_t plain_line_ = 0;  ///< not a terminal, `line`: the length of the line shown
};

}  // namespace pollkill
