// Batch decisions that depend only on numbers: retries, backoff and the adaptive wall time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/policy.h"
#include "pollkill/status.h"

namespace pollkill {

/// Whether an attempt that ended with `status` is run again: its status is in `retry.on`,
/// it was attempt number `attempt` of at most `retry.attempts`, and it was not cancelled.
bool should_retry(const RetryPolicy& retry, Status status, int attempt);

/// The wait before attempt `attempt + 1`: backoff, doubling for each later attempt
/// (backoff * 2^(attempt-1)), saturating at one day.
Duration retry_backoff(const RetryPolicy& retry, int attempt);

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
