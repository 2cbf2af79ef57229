// The watchdog's decision: a pure function of samples and time, with no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "pollkill/policy.h"
#include "pollkill/status.h"

namespace pollkill {

using Clock = std::chrono::steady_clock;

/// One observation of a task, taken by the supervisor every poll interval.
struct Sample {
  Clock::time_point at;
  std::uint64_t cpu_usage_usec = 0;  ///< cumulative CPU of the whole tree (cpu.stat usage_usec)
  bool progress = false;             ///< observable work since the previous sample (see docs)
};

/// What the watchdog decided: a status (timeout, cpu_limit, hung or spinning) and a
/// sentence for the result's `reason`, e.g. "no CPU use and no progress for 2m0s".
struct Verdict {
  Status status;
  std::string reason;
};

/// The settings the decision needs, taken from a policy.
struct WatchdogConfig {
  std::optional<Duration> wall_time;
  std::optional<Duration> cpu_time;
  std::optional<Duration> hang_after;
  double hang_cpu_below = 0.01;
  std::optional<Duration> spin_after;
  double spin_cpu_above = 0.9;

  static WatchdogConfig from(const Policy& policy);
};

/// Decides from a stream of samples whether a task must be stopped.
///
/// Rules, checked at each sample in this order:
///  - cpu_limit: cumulative CPU since start >= cpu_time.
///  - timeout:   time since start >= wall_time.
///  - spinning:  every interval for at least spin_after had CPU use >= spin_cpu_above
///               (CPUs, i.e. usec of CPU per usec of wall time) and no progress.
///  - hung:      every interval for at least hang_after had CPU use < hang_cpu_below and
///               no progress.
/// An interval with progress resets both the hang and the spin streak; an interval whose CPU
/// use falls outside a band resets that band's streak. A busy task that keeps making progress
/// is therefore never spinning.
class Watchdog {
 public:
  /// `start` is when the task started; its CPU use starts at `start_cpu_usage_usec`.
  Watchdog(WatchdogConfig config, Clock::time_point start, std::uint64_t start_cpu_usage_usec = 0);

  /// Feeds one sample (taken after the previous one); returns a verdict once one is due
  /// (and again on every later sample). A sample no later than the previous one adds no
  /// interval (no rate, no streak growth; its CPU counts toward the next interval), but its
  /// progress still resets the streaks and the cpu_limit and timeout checks still apply.
  /// A streak starts at the beginning of its first qualifying interval, so a task idle from
  /// `start` is hung at the first sample at or after start + hang_after.
  std::optional<Verdict> observe(const Sample& sample);

  /// The CPU use (CPUs) over the most recent interval with positive length; 0 before any.
  /// The first interval runs from `start` to the first sample.
  double last_cpu_rate() const noexcept { return last_rate_; }

  /// When the next time-based verdict (wall time) falls due, for timer arming; empty if none.
  std::optional<Clock::time_point> wall_deadline() const;

 private:
  WatchdogConfig config_;
  Clock::time_point start_;
  std::uint64_t start_cpu_;
  Clock::time_point prev_at_;
  std::uint64_t prev_cpu_;
  std::optional<Clock::time_point> idle_since_;
  std::optional<Clock::time_point> spin_since_;
  double last_rate_ = 0.0;
};

}  // namespace pollkill
