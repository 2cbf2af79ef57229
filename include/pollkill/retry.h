// Batch decisions that depend only on numbers: retries, backoff and the adaptive wall time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/policy.h"
#include "pollkill/result.h"
#include "pollkill/status.h"

namespace pollkill {

/// Whether an attempt that ended with `status` is run again: its status is in `retry.on`,
/// it was attempt number `attempt` of at most `retry.attempts`, and it was not cancelled.
bool should_retry(const RetryPolicy& retry, Status status, int attempt);

/// The wait before attempt `attempt + 1`: backoff, doubling for each later attempt
/// (backoff * 2^(attempt-1)), saturating at one day.
Duration retry_backoff(const RetryPolicy& retry, int attempt);

/// How many times an attempt's limits are escalated (`retry.escalate`): once per earlier
/// attempt of the task that ended `oom` or `thrashing` (memory) or `timeout` (wall time).
struct EscalationSteps {
  int memory = 0;
  int wall_time = 0;
  /// Counts an attempt that ended with `status`.
  void after(Status status);
  friend bool operator==(const EscalationSteps&, const EscalationSteps&) = default;
};

/// `limits` as an attempt runs them after `steps`: memory times escalate.memory^steps.memory
/// (rounded up to a whole KiB), at most escalate.memory_max; wall_time likewise. A limit
/// that is not set stays unset; one already above its maximum is not lowered.
Limits escalate_limits(const Limits& limits, const RetryEscalation& escalate,
                       const EscalationSteps& steps);

/// Sets the result's memory_limit_bytes and wall_time_limit_s from the limits its attempt
/// ran with.
void set_ran_with(Result& result, const Limits& limits);

/// The largest memory limit any attempt of a task with `limits` and `retry` can run with
/// (every retry after oom); nullopt without a memory limit.
std::optional<std::uint64_t> largest_escalated_memory(const Limits& limits,
                                                      const RetryPolicy& retry);

/// Wall times of the tasks that ended ok, for the adaptive limit. Exact for the first
/// kCapacity values; after that a uniform reservoir sample of that many, so memory stays
/// bounded however long the batch.
class WallTimeStats {
 public:
  static constexpr std::size_t kCapacity = 4096;
  void add(double seconds);
  std::uint64_t count() const { return count_; }
  /// The median of the values (or of the sample); 0 when empty.
  double median() const;

 private:
  std::vector<double> values_;
  std::uint64_t count_ = 0;
  std::uint64_t rng_ = 0x9e3779b97f4a7c15ull;
};

/// The wall-time limit for the next task and a sentence saying where it came from.
struct WallTimeLimit {
  std::optional<Duration> limit;
  std::string source;  ///< e.g. "300% of the median ok wall time 1.2s", "wall_time_max"
};
/// A fixed wall_time applies as it is. A percentage needs at least five ok tasks: then
/// percent/100 * median (at least 1ms, at most kMaxDuration), capped by wall_time_max; before
/// that only the cap.
WallTimeLimit effective_wall_time(const Limits& limits, const WallTimeStats& stats);

}  // namespace pollkill
