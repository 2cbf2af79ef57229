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

// "73%": a measured share of wall time.
std::string format_percent(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f%%", share * 100.0);
  return buf;
}

std::uint64_t growth(std::uint64_t before, std::uint64_t after) {
  return after >= before ? after - before : 0;
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
  config.thrash_after = policy.watchdog.thrash_after;
  config.thrash_full_above = policy.watchdog.thrash_full_above;
  return config;
}

Watchdog::Watchdog(WatchdogConfig config, Clock::time_point start,
                   std::uint64_t start_cpu_usage_usec)
    : Watchdog(std::move(config), Sample{start, start_cpu_usage_usec}) {}

Watchdog::Watchdog(WatchdogConfig config, const Sample& start)
    : config_(std::move(config)),
      start_(start.at),
      start_cpu_(start.cpu_usage_usec),
      prev_at_(start.at),
      prev_cpu_(start.cpu_usage_usec),
      prev_wait_(start.cpu_wait_usec),
      prev_memory_full_(start.memory_full_usec) {
  track_memory(start);
}

void Watchdog::track_memory(const Sample& sample) {
  if (!config_.thrash_after || !sample.memory_full_usec) return;
  // Checkpoints a sixteenth of the window apart bound the memory kept per task whatever the
  // poll interval, at the price of a window up to a sixteenth longer than thrash_after.
  const auto spacing = std::chrono::duration_cast<Clock::duration>(*config_.thrash_after) / 16;
  if (checkpoints_.empty() || sample.at - checkpoints_.back().at >= spacing) {
    checkpoints_.push_back({sample.at, *sample.memory_full_usec});
  }
}

std::optional<Verdict> Watchdog::thrash_verdict(const Sample& sample) {
  if (!config_.thrash_after || !sample.memory_full_usec || checkpoints_.empty()) return {};
  // The newest checkpoint at least thrash_after old opens the window; older ones are done.
  std::optional<Checkpoint> from;
  while (!checkpoints_.empty() &&
         reached(sample.at - checkpoints_.front().at, *config_.thrash_after)) {
    from = checkpoints_.front();
    checkpoints_.pop_front();
  }
  if (!from) return {};
  checkpoints_.push_front(*from);  // still the window's start at the next sample
  const auto window = std::chrono::duration_cast<std::chrono::microseconds>(sample.at - from->at);
  const std::uint64_t stalled = *sample.memory_full_usec >= from->memory_full
                                    ? *sample.memory_full_usec - from->memory_full
                                    : 0;
  const double share = static_cast<double>(stalled) / static_cast<double>(window.count());
  if (share < config_.thrash_full_above) return {};
  return Verdict{Status::thrashing, "stalled on memory " + format_percent(share) +
                                        " of the time over " +
                                        format_duration(*config_.thrash_after) +
                                        " (memory.pressure full, at or above " +
                                        format_threshold(config_.thrash_full_above * 100.0) + "%)"};
}

std::optional<Verdict> Watchdog::observe(const Sample& sample) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;

  if (sample.progress) {
    idle_since_.reset();
    spin_since_.reset();
  }

  const auto interval = duration_cast<microseconds>(sample.at - prev_at_);
  if (interval.count() > 0) {
    const double usec = static_cast<double>(interval.count());
    // Counters only grow; a smaller reading (a reset) counts as no growth.
    const std::uint64_t cpu_delta = growth(prev_cpu_, sample.cpu_usage_usec);
    const std::uint64_t wait_delta = growth(prev_wait_, sample.cpu_wait_usec);
    last_rate_ = static_cast<double>(cpu_delta) / usec;
    last_wanted_ = static_cast<double>(cpu_delta + wait_delta) / usec;
    const bool memory_stalled =
        config_.thrash_after && prev_memory_full_ && sample.memory_full_usec &&
        static_cast<double>(growth(*prev_memory_full_, *sample.memory_full_usec)) / usec >=
            config_.thrash_full_above;
    if (memory_stalled) {
      idle_since_.reset();
      spin_since_.reset();
    } else if (!sample.progress) {
      // The streak began when this interval began: the previous sample (or start).
      const Mark began{prev_at_, prev_cpu_, prev_wait_};
      if (last_wanted_ < config_.hang_cpu_below) {
        if (!idle_since_) idle_since_ = began;
      } else {
        idle_since_.reset();
      }
      if (last_wanted_ >= config_.spin_cpu_above) {
        if (!spin_since_) spin_since_ = began;
      } else {
        spin_since_.reset();
      }
    }
    prev_at_ = sample.at;
    prev_cpu_ = sample.cpu_usage_usec;
    prev_wait_ = sample.cpu_wait_usec;
    prev_memory_full_ = sample.memory_full_usec;
    track_memory(sample);
  }

  if (config_.cpu_time) {
    const std::uint64_t used = growth(start_cpu_, sample.cpu_usage_usec);
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
  if (auto verdict = thrash_verdict(sample)) return verdict;
  if (config_.spin_after && spin_since_ &&
      reached(sample.at - spin_since_->at, *config_.spin_after)) {
    // What the whole streak received and wanted, not just its last interval.
    const double streak =
        static_cast<double>(duration_cast<microseconds>(sample.at - spin_since_->at).count());
    const std::uint64_t received = growth(spin_since_->cpu, sample.cpu_usage_usec);
    const std::uint64_t waited = growth(spin_since_->wait, sample.cpu_wait_usec);
    return Verdict{Status::spinning,
                   "CPU busy (" + format_rate(static_cast<double>(received) / streak) +
                       " CPU received, " +
                       format_rate(static_cast<double>(received + waited) / streak) +
                       " wanted) with no progress for " + format_duration(*config_.spin_after)};
  }
  if (config_.hang_after && idle_since_ &&
      reached(sample.at - idle_since_->at, *config_.hang_after)) {
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
