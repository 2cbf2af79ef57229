#include "pollkill/task_queue.h"

namespace pollkill {

TaskQueue::TaskQueue(TaskFile& file, const Policy& base,
                     std::unordered_map<std::uint64_t, RecordedTask> resumed)
    : file_(&file), base_(&base), resumed_(std::move(resumed)) {}

TaskQueue::TaskQueue(TaskSpec task) : single_(std::move(task)) {}

std::optional<QueuedAttempt> TaskQueue::next(Clock::time_point now, Summary& summary) {
  if (!retries_.empty() && retries_.begin()->first <= now) {
    QueuedAttempt due = std::move(retries_.begin()->second);
    retries_.erase(retries_.begin());
    return due;
  }
  if (single_) {
    QueuedAttempt one{std::move(*single_), 1};
    single_.reset();
    return one;
  }
  while (file_) {
    std::optional<TaskSpec> task = file_->next(*base_);
    if (!task) {
      file_ = nullptr;
      break;
    }
    QueuedAttempt next{std::move(*task), 1};
    auto it = resumed_.find(next.task.seq);
    if (it != resumed_.end()) {
      const RecordedTask recorded = it->second;
      resumed_.erase(it);  // memory shrinks as the batch goes
      if (recorded.final) {
        summary.add_skipped(recorded.final_status);  // its record is in the results already
        continue;
      }
      next.attempt = recorded.attempts + 1;
      next.escalation = recorded.escalation;
    }
    return next;
  }
  return std::nullopt;
}

void TaskQueue::retry(QueuedAttempt attempt, Clock::time_point at) {
  retries_.emplace(at, std::move(attempt));
}

std::optional<Clock::time_point> TaskQueue::next_retry() const {
  if (retries_.empty()) return std::nullopt;
  return retries_.begin()->first;
}

}  // namespace pollkill
