#include "pollkill/retry.h"

#include <algorithm>
#include <cmath>

#include "pollkill/policy_schema.h"
#include "pollkill/units.h"

namespace pollkill {

bool should_retry(const RetryPolicy& retry, Status status, int attempt) {
  if (status == Status::cancelled || status == Status::ok) return false;
  if (attempt >= retry.attempts) return false;
  return std::find(retry.on.begin(), retry.on.end(), to_string(status)) != retry.on.end();
}

Duration retry_backoff(const RetryPolicy& retry, int attempt) {
  constexpr Duration kDay{24 * 3600 * 1000};
  if (retry.backoff.count() <= 0 || attempt < 1) return Duration(0);
  Duration wait = retry.backoff;
  for (int i = 1; i < attempt; ++i) {
    if (wait >= kDay / 2) return kDay;
    wait *= 2;
  }
  return std::min(wait, kDay);
}

void EscalationSteps::after(Status status) {
  if (status == Status::oom || status == Status::thrashing) ++memory;
  if (status == Status::timeout) ++wall_time;
}

namespace {

// value * factor^steps, at most `max` (but never below `value`), within [value, limit].
double escalate_value(double value, std::optional<double> factor, int steps,
                      std::optional<double> max, double limit) {
  if (!factor || steps <= 0) return value;
  double out = value;
  for (int i = 0; i < steps && out < limit; ++i) out *= *factor;
  out = std::min(out, limit);
  if (max) out = std::min(out, std::max(*max, value));
  return out;
}

}  // namespace

Limits escalate_limits(const Limits& limits, const RetryEscalation& escalate,
                       const EscalationSteps& steps) {
  Limits out = limits;
  if (limits.memory && *limits.memory != kSizeMax) {
    std::optional<double> max;
    if (escalate.memory_max) max = static_cast<double>(*escalate.memory_max);
    double bytes = escalate_value(static_cast<double>(*limits.memory), escalate.memory,
                                  steps.memory, max, static_cast<double>(kSizeMax / 2));
    auto escalated = static_cast<std::uint64_t>(bytes);
    if (escalated > *limits.memory) {
      // A whole KiB, so that the printed limit reads cleanly; never above the cap.
      std::uint64_t rounded = (escalated + 1023) / 1024 * 1024;
      if (!escalate.memory_max || rounded <= *escalate.memory_max) escalated = rounded;
      out.memory = escalated;
    }
  }
  if (limits.wall_time && limits.wall_time->count() > 0) {
    std::optional<double> max;
    if (escalate.wall_time_max) max = static_cast<double>(escalate.wall_time_max->count());
    double ms = escalate_value(static_cast<double>(limits.wall_time->count()), escalate.wall_time,
                               steps.wall_time, max, static_cast<double>(kMaxDuration.count()));
    out.wall_time = Duration(static_cast<Duration::rep>(std::ceil(ms)));
  }
  return out;
}

void set_ran_with(Result& result, const Limits& limits) {
  result.memory_limit_bytes.reset();
  if (limits.memory && *limits.memory != kSizeMax) result.memory_limit_bytes = limits.memory;
  result.wall_time_limit_s.reset();
  if (limits.wall_time && limits.wall_time->count() > 0)
    result.wall_time_limit_s = static_cast<double>(limits.wall_time->count()) / 1000.0;
}

std::optional<std::uint64_t> largest_escalated_memory(const Limits& limits,
                                                      const RetryPolicy& retry) {
  if (!limits.memory) return std::nullopt;
  EscalationSteps steps;
  steps.memory = std::max(0, retry.attempts - 1);
  return escalate_limits(limits, retry.escalate, steps).memory;
}

void WallTimeStats::add(double seconds) {
  ++count_;
  if (values_.size() < kCapacity) {
    values_.push_back(seconds);
    return;
  }
  // Reservoir sampling (algorithm R) with a xorshift generator: replace a random slot with
  // probability kCapacity / count.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  std::uint64_t slot = rng_ % count_;
  if (slot < kCapacity) values_[slot] = seconds;
}

double WallTimeStats::median() const {
  if (values_.empty()) return 0;
  std::vector<double> sorted = values_;
  auto mid = sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2);
  std::nth_element(sorted.begin(), mid, sorted.end());
  double upper = *mid;
  if (sorted.size() % 2 == 1) return upper;
  double lower = *std::max_element(sorted.begin(), mid);
  return (lower + upper) / 2;
}

WallTimeLimit effective_wall_time(const Limits& limits, const WallTimeStats& stats) {
  if (!limits.wall_time_percent) {
    if (limits.wall_time) return {limits.wall_time, "wall_time"};
    return {};
  }
  char percent[32];
  std::snprintf(percent, sizeof percent, "%g%%", *limits.wall_time_percent);
  if (stats.count() < 5) {
    if (limits.wall_time_max)
      return {limits.wall_time_max,
              "wall_time_max (fewer than 5 ok tasks for " + std::string(percent) + ")"};
    return {};
  }
  double median = stats.median();
  // At most the longest duration a policy may state, so the cast cannot overflow and the
  // deadline fits the clock whatever the median and the percentage.
  auto ms = static_cast<Duration::rep>(
      std::clamp(std::ceil(median * 1000.0 * *limits.wall_time_percent / 100.0), 1.0,
                 static_cast<double>(kMaxDuration.count())));
  Duration adaptive{ms};
  std::string source = std::string(percent) + " of the median ok wall time " +
                       format_duration(Duration(static_cast<Duration::rep>(median * 1000)));
  if (limits.wall_time_max && *limits.wall_time_max < adaptive) {
    return {limits.wall_time_max, "wall_time_max (" + source + " is more)"};
  }
  return {adaptive, source};
}

}  // namespace pollkill
