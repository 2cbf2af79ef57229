#include "pollkill/engine.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <utility>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/proctree.h"
#include "pollkill/taskfile.h"

namespace pollkill {
namespace {

constexpr std::size_t kLiveVerdicts = 3;      ///< the newest verdicts the full view keeps
constexpr Duration kPlainStatusEvery{10000};  ///< not a terminal, `full`: the progress line

}  // namespace

// One slot and what runs in it.
struct Engine::Place {
  explicit Place(EventLoop& loop) : slot(loop) {}
  Slot slot;
  QueuedAttempt what;
  std::string wall_source;  ///< where the wall time came from (adaptive limits)
  bool adaptive = false;
  Limits limits;  ///< the limits the attempt runs with (adaptive and escalated)
};

Engine::Engine(EngineRequest request)
    : request_(std::move(request)),
      session_(SessionRequest{request_.policy, request_.cgroup_root, request_.plan,
                              request_.gc_dead_runs},
               request_.sandbox) {}

Engine::~Engine() {
  diag::set_eraser({});  // the display's, when run() left by an exception
  places_.clear();       // the attempts (and their descriptors) before the session and the loop
}

std::size_t Engine::running() const {
  return static_cast<std::size_t>(std::count_if(
      places_.begin(), places_.end(), [](const auto& p) { return p->slot.current() != nullptr; }));
}

EngineOutcome Engine::run(TaskQueue& queue, RecordWriter* records, AppendFile* joblog) {
  queue_ = &queue;
  records_ = records;
  joblog_ = joblog;
  loop_.emplace([this](int sig) { on_signal(sig); });  // signals blocked from here on
  session_.start();
  EventLoop& loop = *loop_;
  for (int i = 0; i < request_.jobs; ++i) places_.push_back(std::make_unique<Place>(loop));
  const Duration poll = request_.policy.watchdog.poll_interval;
  loop.add_timer(sample_timer_, [this] { on_sample(); });
  sample_timer_.arm(poll, poll);
  if (request_.retries) {
    backoff_timer_.emplace();
    loop.add_timer(*backoff_timer_, [] {});  // only wakes the loop for a due retry
  }
  if (records_ || joblog_) {
    sync_timer_.emplace();
    loop.add_timer(*sync_timer_, [this] {
      sync_armed_ = false;
      if (records_) records_->sync();
      if (joblog_) joblog_->sync();
    });
  }
  if (request_.progress != ProgressMode::off) {
    terminal_ = terminal_size(STDERR_FILENO);
    if (terminal_) loop.add_signal(SIGWINCH, [this] { on_resize(); });
    // Messages go above the display: it is erased first (a line not on a terminal ended).
    diag::set_eraser([this] {
      if (terminal_) return in_place_.erase();
      return std::string(std::exchange(plain_line_, 0) > 0 ? "\n" : "");
    });
    const bool view = terminal_ && request_.progress == ProgressMode::full;
    const Duration every(view ? 500 : 250);
    progress_timer_.emplace();
    loop.add_timer(*progress_timer_, [this] { draw_progress(); });
    progress_timer_->arm(every, every);
    last_status_ = Clock::now();
  }

  // A cancel that arrived before the loop (pollkill's start-up, the session's setup) is
  // pending: taken now, so that no task starts after it.
  loop.poll_signals();
  start_ready();
  for (;;) {
    if (running() == 0 && (cancel_signal_ || queue.exhausted())) break;
    loop.wait();
    for (auto& place : places_) {
      if (place->slot.current() && place->slot.current()->finished()) finish(*place);
    }
    start_ready();
  }

  if (cancel_signal_ && request_.record_unstarted) {
    // `run`: its one task was cancelled before it could start; it still gets its record.
    Summary unused;
    while (std::optional<QueuedAttempt> next = queue.next(Clock::now(), unused)) {
      Outcome outcome;
      outcome.cancel_signal = cancel_signal_;
      Result result;
      result.id = next->task.id;
      result.attempt = next->attempt;
      result.command = next->task.command;
      result.started_at = std::chrono::system_clock::now();
      result.mode = session_.mode_name();
      Classification c = classify(outcome, result.command);
      result.status = c.status;
      result.reason = c.reason + " before the task started";
      result.cancel_signal = cancel_signal_;
      record(result, *next);
    }
  }
  if (request_.progress != ProgressMode::off) end_progress();
  if (records_) records_->sync();
  if (joblog_) joblog_->sync();
  places_.clear();
  session_.close();
  loop_.reset();
  return EngineOutcome{std::move(summary_), cancel_signal_, std::move(last_)};
}

void Engine::start_ready() {
  if (!cancel_signal_) {
    for (auto& place : places_) {
      // An attempt that ends at once (it could not be executed) leaves its slot free.
      while (!place->slot.current()) {
        std::optional<QueuedAttempt> next = queue_->next(Clock::now(), summary_);
        if (!next) break;
        start(*place, std::move(*next));
      }
      if (!place->slot.current()) break;
    }
  }
  if (!backoff_timer_) return;
  if (auto at = queue_->next_retry()) {
    backoff_timer_->arm(std::chrono::duration_cast<Duration>(*at - Clock::now()));
    backoff_armed_ = true;
  } else if (backoff_armed_) {
    backoff_timer_->disarm();  // called after every wakeup: no syscall unless it was armed
    backoff_armed_ = false;
  }
}

void Engine::start(Place& place, QueuedAttempt what) {
  const TaskSpec& task = what.task;
  AttemptSpec spec;
  spec.id = task.id;
  spec.attempt = what.attempt;
  spec.command = task.command;
  spec.cwd = task.cwd;
  spec.sandbox = &request_.sandbox;
  try {
    spec.policy = task_policy(task, request_.policy);
  } catch (const Error& e) {
    if (request_.setup_errors_fatal) throw;
    Result result;
    result.id = task.id;
    result.attempt = what.attempt;
    result.command = task.command;
    result.started_at = std::chrono::system_clock::now();
    result.mode = session_.mode_name();
    result.status = Status::error;
    result.reason = e.what();
    record(result, what);
    return;
  }
  if (spec.policy.retry.attempts < 1) spec.policy.retry.attempts = 1;
  WallTimeLimit wall = effective_wall_time(spec.policy.limits, ok_walls_);
  place.adaptive = spec.policy.limits.wall_time_percent.has_value();
  place.wall_source = wall.source;
  spec.policy.limits.wall_time = wall.limit;
  spec.policy.limits =
      escalate_limits(spec.policy.limits, spec.policy.retry.escalate, what.escalation);
  place.limits = spec.policy.limits;
  spec.env = request_.sandbox.env;
  for (const auto& e : task.env) {
    auto eq = e.find('=');
    std::erase_if(spec.env,
                  [&](const std::string& x) { return x.compare(0, eq + 1, e, 0, eq + 1) == 0; });
    spec.env.push_back(e);
  }
  const std::string stem = id_file_name(task.id) + "." + std::to_string(what.attempt);
  if (!request_.logs_dir.empty()) {
    const std::string base = request_.logs_dir + "/" + stem;
    spec.stdout_path = base + ".out";
    spec.stderr_path = base + ".err";
  }
  spec.evidence_dir = !request_.logs_dir.empty() ? request_.logs_dir : request_.evidence_dir;
  spec.evidence_stem = !request_.evidence_stem.empty() ? request_.evidence_stem : stem;
  spec.cgroup_name = !request_.cgroup_name.empty() ? request_.cgroup_name
                                                   : "task-" + std::to_string(task.number()) + "-" +
                                                         std::to_string(what.attempt);
  place.what = std::move(what);
  place.slot.occupant() =
      launch(session_, *loop_, place.slot, std::move(spec), request_.setup_errors_fatal);
  if (place.slot.current()->finished()) finish(place);
}

void Engine::finish(Place& place) {
  std::unique_ptr<RunningAttempt> attempt = std::move(place.slot.occupant());
  Result result = attempt->finish();
  attempt.reset();  // its descriptors closed before the next attempt in this slot
  if (place.adaptive && result.status == Status::timeout) {
    result.reason += " (" + place.wall_source + ")";
  }
  set_ran_with(result, place.limits);
  record(result, place.what);
}

// Writes the attempt's record and decides what comes next for the task.
void Engine::record(Result& result, const QueuedAttempt& what) {
  Policy task = request_.policy;
  try {
    task = task_policy(what.task, request_.policy);
  } catch (const Error&) {
  }
  const bool retry =
      request_.retries && !cancel_signal_ && should_retry(task.retry, result.status, what.attempt);
  if (result.status == Status::cancelled && !result.cancel_signal) {
    result.cancel_signal = cancel_signal_;
  }
  result.final = !retry;
  if (records_) {
    records_->write(result);
    arm_sync();
  }
  if (result.final && joblog_) {
    joblog_->append(format_joblog_line(joblog_entry(result, what.task.number())));
  }
  summary_.add(SummaryRecord::from(result));
  // Every attempt as it ends: -v, and the full view's plain form (not on a terminal).
  if (request_.verbosity > 1 || (request_.progress == ProgressMode::full && !terminal_)) {
    diag::notice(result.id + " (attempt " + std::to_string(result.attempt) +
                 "): " + std::string(to_string(result.status)) + ": " + result.reason +
                 (result.evidence ? " (evidence: " + *result.evidence + ")" : ""));
  }
  if (request_.progress == ProgressMode::full && terminal_) {
    verdicts_.push_back(LiveVerdict{result.id, result.attempt, result.status, result.reason});
    if (verdicts_.size() > kLiveVerdicts) verdicts_.pop_front();
  }
  if (result.status == Status::ok) ok_walls_.add(result.wall_s);
  if (retry) {
    EscalationSteps escalation = what.escalation;
    escalation.after(result.status);
    queue_->retry(QueuedAttempt{what.task, what.attempt + 1, escalation},
                  Clock::now() + retry_backoff(task.retry, what.attempt));
  }
  last_ = result;
}

void Engine::on_signal(int sig) {
  if (!cancel_signal_) {
    cancel_signal_ = sig;
    if (request_.verbosity > 0) {
      // After the terminal's "^C". A progress display is erased (or its line ended) instead.
      if (request_.progress == ProgressMode::off) diag::text("\n");
      diag::notice(std::string(sig == SIGINT ? "interrupted" : "terminated") +
                   ": stopping; running tasks are being reaped");
    }
  }
  // The first signal asks each task to stop (SIGTERM, then the kill after kill_grace); a
  // second one kills at once.
  for (auto& place : places_) {
    if (RunningAttempt* attempt = place->slot.current()) attempt->cancel(sig);
  }
}

void Engine::on_sample() {
  const auto now = Clock::now();
  SharedProcSnapshot round;  // subreaper mode: one read of /proc for every task's tree
  for (auto& place : places_) {
    if (RunningAttempt* attempt = place->slot.current()) attempt->on_sample(now);
  }
}

void Engine::arm_sync() {
  if (sync_armed_ || !sync_timer_) return;
  sync_armed_ = true;
  sync_timer_->arm(request_.sync_interval);
}

void Engine::draw_progress() {
  const auto now = Clock::now();
  const ProgressCounts counts = ProgressCounts::of(
      summary_, request_.total, running(), std::chrono::duration<double>(now - started_).count());
  if (terminal_) {
    // One column short of the width: a line that reaches the last column leaves the cursor
    // waiting to wrap, where a clear-to-end-of-line would take its last character.
    const std::size_t width = std::max<std::size_t>(terminal_->width, 2) - 1;
    if (request_.progress == ProgressMode::full) {
      draw_view(now, counts);
    } else {
      diag::text(in_place_.redraw({format_progress_line(counts, width)}));
    }
  } else if (request_.progress == ProgressMode::line) {
    // Not a terminal (--progress asked for it): no escape sequences; blanks clear the rest
    // of a longer line before.
    std::string line = format_progress_line(counts, std::string::npos);
    const std::size_t length = line.size();
    if (length < plain_line_) line.append(plain_line_ - length, ' ');
    plain_line_ = length;
    diag::text("\r" + line);
  } else if (now - last_status_ >= kPlainStatusEvery) {
    last_status_ = now;
    diag::text(format_progress_line(counts, std::string::npos) + "\n");
  }
}

void Engine::draw_view(Clock::time_point now, const ProgressCounts& counts) {
  const std::size_t width = std::max<std::size_t>(terminal_->width, 2) - 1;
  // A line left for the cursor below the frame's last: the frame never scrolls itself away.
  const std::size_t height = terminal_->height > 1 ? terminal_->height - 1 : 1;
  std::vector<RunningAttempt*> attempts;
  for (auto& place : places_)
    if (RunningAttempt* attempt = place->slot.current()) attempts.push_back(attempt);
  // The longest running first; figures (a read or two each) only for the rows shown.
  std::sort(attempts.begin(), attempts.end(),
            [](const auto* a, const auto* b) { return a->started() < b->started(); });
  const std::size_t rows = live_view_rows(height, attempts.size(), verdicts_.size());
  std::vector<LiveTask> tasks;
  for (std::size_t i = 0; i < rows && i < attempts.size(); ++i)
    tasks.push_back(attempts[i]->live(now, true));
  diag::text(in_place_.redraw(format_live_view(counts, tasks, verdicts_, width, height)));
}

// The display gives way to the end-of-batch summary: the final progress line stays.
void Engine::end_progress() {
  diag::set_eraser({});
  const ProgressCounts counts =
      ProgressCounts::of(summary_, request_.total, running(),
                         std::chrono::duration<double>(Clock::now() - started_).count());
  if (terminal_) {
    const std::size_t width = std::max<std::size_t>(terminal_->width, 2) - 1;
    std::string out = in_place_.erase();  // the cursor at the start of the frame's first line
    if (out.empty()) out = "\r";
    diag::text(out + format_progress_line(counts, width) + "\x1b[K\n");
  } else if (request_.progress == ProgressMode::line) {
    draw_progress();
    diag::text("\n");
  } else {
    diag::text(format_progress_line(counts, std::string::npos) + "\n");
  }
}

void Engine::on_resize() {
  if (auto size = terminal_size(STDERR_FILENO)) terminal_ = size;
  in_place_.resized(terminal_->width);
  draw_progress();
}

}  // namespace pollkill
