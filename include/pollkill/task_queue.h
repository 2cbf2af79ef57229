// What a batch starts next: retries whose backoff has passed (earliest first), then the next
// task of the task file (or the one task of `run`); a task whose final record the results of
// an earlier run hold (--resume) is skipped and counted. The engine and `--launcher srun` both
// take their work from here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>

#include "pollkill/policy.h"
#include "pollkill/report.h"
#include "pollkill/results.h"
#include "pollkill/retry.h"
#include "pollkill/taskfile.h"
#include "pollkill/watchdog.h"

namespace pollkill {

/// One attempt of one task, waiting to start.
struct QueuedAttempt {
  TaskSpec task;
  int attempt = 1;
  /// What the task's earlier attempts ended with, for `retry.escalate`.
  EscalationSteps escalation{};
};

class TaskQueue {
 public:
  /// The tasks of `file` (validated already), parsed with `base` as their policy's base.
  /// `resumed`: what earlier records say, by task number (seq): a task with a final record is
  /// skipped, any other starts at the attempt after the highest recorded.
  TaskQueue(TaskFile& file, const Policy& base,
            std::unordered_map<std::uint64_t, RecordedTask> resumed = {});
  /// One task (`run`, the Slurm element).
  explicit TaskQueue(TaskSpec task);

  /// The next attempt to start at `now`; nullopt when none is due (a retry may be waiting:
  /// next_retry()). Tasks skipped on the way are counted in `summary`.
  std::optional<QueuedAttempt> next(Clock::time_point now, Summary& summary);
  /// Queues `attempt` to start at `at`.
  void retry(QueuedAttempt attempt, Clock::time_point at);
  /// When the earliest queued retry is due; nullopt when none is queued.
  std::optional<Clock::time_point> next_retry() const;
  /// Every task was handed out and no retry is queued.
  bool exhausted() const { return !file_ && !single_ && retries_.empty(); }

 private:
  TaskFile* file_ = nullptr;  ///< null once read to its end
  const Policy* base_ = nullptr;
  std::optional<TaskSpec> single_;
  std::unordered_map<std::uint64_t, RecordedTask> resumed_;
  std::multimap<Clock::time_point, QueuedAttempt> retries_;
};

}  // namespace pollkill
