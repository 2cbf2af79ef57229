#include "pollkill/watchdog.h"

#include <cstdio>
#include <limits>
#include <utility>

#include "pollkill/units.h"

namespace pollkill {
namespace {

// Whether `elapsed` has reached `limit`, without overflowing when a policy sets a limit far
// beyond what the finer duration type can hold (such a limit is simply never reached).
template <typename Fine>
bool reached(Fine elapsed, Duration limit) {
  using std::chrono::duration_cast;
  if (limit > duration_cast<Duration>(Fine::max())) return false;
  return elapsed >= duration_cast<Fine>(limit);
}

std::chrono::microseconds usec(std::uint64_t value) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return std::chrono::microseconds(static_cast<std::int64_t>(value > kMax ? kMax : value));
}

// Thresholds read best as written in the policy ("0.01", "0.9"); %g keeps them that way.
std::string format_threshold(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", cpus);
  return buf;
}

std::string format_rate(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", cpus);
  return buf;
}

Duration to_ms(std::chrono::microseconds d) {
  return std::chrono::duration_cast<Duration>(d);
}

}  // namespace

WatchdogConfig WatchdogConfig::from(const Policy& policy) {
  WatchdogConfig config;
  config.wall_time = policy.limits.wall_time;
  config.cpu_time = policy.limits.cpu_time;
  config.hang_after = policy.watchdog.hang_after;
  config.hang_cpu_below = policy.watchdog.hang_cpu_below;
  config.spin_after = policy.watchdog.spin_after;
  config.spin_cpu_above = policy.watchdog.spin_cpu_above;
  return config;
}

Watchdog::Watchdog(WatchdogConfig config, Clock::time_point start,
                   std::uint64_t start_cpu_usage_usec)
    : config_(std::move(config)),
      start_(start),
      start_cpu_(start_cpu_usage_usec),
      prev_at_(start),
      prev_cpu_(start_cpu_usage_usec) {}

std::optional<Verdict> Watchdog::observe(const Sample& sample) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;

  if (sample.progress) {
    idle_since_.reset();
    spin_since_.reset();
  }

  const auto interval = duration_cast<microseconds>(sample.at - prev_at_);
  if (interval.count() > 0) {
    // usage_usec only grows; a smaller reading (a counter reset) counts as no CPU use.
    const std::uint64_t cpu_delta =
        sample.cpu_usage_usec >= prev_cpu_ ? sample.cpu_usage_usec - prev_cpu_ : 0;
    last_rate_ = static_cast<double>(cpu_delta) / static_cast<double>(interval.count());
    if (!sample.progress) {
      // The streak began when this interval began: the previous sample (or start).
      if (last_rate_ < config_.hang_cpu_below) {
        if (!idle_since_) idle_since_ = prev_at_;
      } else {
        idle_since_.reset();
      }
      if (last_rate_ >= config_.spin_cpu_above) {
        if (!spin_since_) spin_since_ = prev_at_;
      } else {
        spin_since_.reset();
      }
    }
    prev_at_ = sample.at;
    prev_cpu_ = sample.cpu_usage_usec;
  }

  if (config_.cpu_time) {
    const std::uint64_t used =
        sample.cpu_usage_usec >= start_cpu_ ? sample.cpu_usage_usec - start_cpu_ : 0;
    if (reached(usec(used), *config_.cpu_time)) {
      return Verdict{Status::cpu_limit, "CPU time " + format_duration(*config_.cpu_time) +
                                            " exceeded (used " +
                                            format_duration(to_ms(usec(used))) + ")"};
    }
  }
  if (config_.wall_time && reached(sample.at - start_, *config_.wall_time)) {
    return Verdict{Status::timeout,
                   "wall time " + format_duration(*config_.wall_time) + " exceeded"};
  }
  if (config_.spin_after && spin_since_ && reached(sample.at - *spin_since_, *config_.spin_after)) {
    return Verdict{Status::spinning, "CPU busy (" + format_rate(last_rate_) + " CPU, at or above " +
                                         format_threshold(config_.spin_cpu_above) +
                                         ") with no progress for " +
                                         format_duration(*config_.spin_after)};
  }
  if (config_.hang_after && idle_since_ && reached(sample.at - *idle_since_, *config_.hang_after)) {
    return Verdict{Status::hung, "no CPU use (below " + format_threshold(config_.hang_cpu_below) +
                                     " CPU) and no progress for " +
                                     format_duration(*config_.hang_after)};
  }
  return std::nullopt;
}

std::optional<Clock::time_point> Watchdog::wall_deadline() const {
  if (!config_.wall_time) return std::nullopt;
  // Saturate rather than overflow: a deadline past the clock's range is "never".
  if (!reached(Clock::time_point::max() - start_, *config_.wall_time)) {
    return Clock::time_point::max();
  }
  return start_ + std::chrono::duration_cast<Clock::duration>(*config_.wall_time);
}

}  // namespace pollkill
