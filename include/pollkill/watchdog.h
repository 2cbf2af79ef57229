// The watchdog's decision: a pure function of samples and time, with no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "pollkill/policy.h"
#include "pollkill/status.h"

namespace pollkill {

using Clock = std::chrono::steady_clock;

/// One observation of a task, taken by the supervisor every poll interval. Every counter is
/// cumulative; the watchdog works on the differences between samples.
struct Sample {
  Clock::time_point at;
  std::uint64_t cpu_usage_usec = 0;  ///< CPU received by the whole tree (cpu.stat usage_usec)
  bool progress = false;             ///< observable work since the previous sample (see docs)
  /// Time the task's threads were runnable but waiting for a CPU, summed over threads (usec;
  /// demand.h's CpuWaitMeter: cpu.pressure "some" and the threads' schedstat run delay).
  /// CPU received plus this is the CPU the task *wanted*: what the spin and hang rules use.
  /// 0 throughout where nothing measures it: the rules then see only the CPU received.
  std::uint64_t cpu_wait_usec = 0;
  /// Time every non-idle thread of the task was stalled on memory at once (usec; the task
  /// cgroup's memory.pressure "full" total). nullopt where there is no such figure (subreaper
  /// mode): the thrash rule then never applies.
  std::optional<std::uint64_t> memory_full_usec = std::nullopt;
};

/// What the watchdog decided: a status (timeout, cpu_limit, thrashing, spinning or hung) and a
/// sentence for the result's `reason`, e.g. "no CPU use (below 0.01 CPU) and no progress for
/// 2m0s".
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
  /// Thrash detection: off when unset (the planned `[watchdog] thrash_after`).
  std::optional<Duration> thrash_after;
  /// Share of wall time (0 < x <= 1) with every thread stalled on memory at or above which a
  /// window of thrash_after counts as thrashing (the planned `thrash_full_above`); why 0.1:
  /// docs/POLICY.md, "Thrashing".
  double thrash_full_above = 0.1;

  static WatchdogConfig from(const Policy& policy);
};

/// Decides from a stream of samples whether a task must be stopped.
///
/// Per interval between two samples, the watchdog computes the CPU *received* (usage growth
/// per wall time, in CPUs) and the CPU *wanted*: received plus the growth of cpu_wait_usec
/// (time runnable but waiting for a CPU). A task that would use a whole core but gets a third
/// of one on a saturated machine wants 1.0 CPU and receives 0.33.
///
/// Rules, checked at each sample in this order:
///  - cpu_limit: cumulative CPU since start >= cpu_time.
///  - timeout:   time since start >= wall_time.
///  - thrashing: over a window of at least thrash_after (see below), every thread of the task
///               was stalled on memory (memory_full_usec growth) for a share of the wall time
///               >= thrash_full_above. Progress does not matter: a thrashing task crawls.
///  - spinning:  every interval for at least spin_after wanted >= spin_cpu_above CPUs and had
///               no progress.
///  - hung:      every interval for at least hang_after wanted < hang_cpu_below CPUs and had
///               no progress (a task waiting for a CPU is not idle).
/// An interval with progress resets both the hang and the spin streak; an interval whose CPU
/// wanted falls outside a band resets that band's streak. With thrash detection on, an
/// interval stalled on memory at or above thrash_full_above resets both streaks too: such a
/// task is neither idle nor burning CPU of its own accord, and the thrash rule judges it.
/// Thrashing comes before spinning and hung because a thrashing task looks like either
/// (direct reclaim burns CPU; refaults sleep): the cause is what the verdict should name.
///
/// The thrash window: the watchdog keeps checkpoints (time, memory_full_usec) at least
/// thrash_after / 16 apart (at most 18 of them) and judges the share between now and the
/// newest checkpoint at least thrash_after old, so the window is thrash_after long plus at
/// most thrash_after / 16 and one poll interval. The first checkpoint is the start (or the
/// first sample that carries memory_full_usec), so no thrashing verdict comes before
/// thrash_after has passed.
class Watchdog {
 public:
  /// `start` is when the task started; its CPU use starts at `start_cpu_usage_usec`.
  Watchdog(WatchdogConfig config, Clock::time_point start, std::uint64_t start_cpu_usage_usec = 0);
  /// The same with every counter's value at the start (a Sample taken then; progress ignored).
  Watchdog(WatchdogConfig config, const Sample& start);

  /// Feeds one sample (taken after the previous one); returns a verdict once one is due
  /// (and again on every later sample). A sample no later than the previous one adds no
  /// interval (no rate, no streak growth; its CPU counts toward the next interval), but its
  /// progress still resets the streaks and the cpu_limit and timeout checks still apply.
  /// A streak starts at the beginning of its first qualifying interval, so a task idle from
  /// `start` is hung at the first sample at or after start + hang_after. Counters that go
  /// down (a reset) count as no growth.
  std::optional<Verdict> observe(const Sample& sample);

  /// The CPU received (CPUs) over the most recent interval with positive length; 0 before
  /// any. The first interval runs from `start` to the first sample.
  double last_cpu_rate() const noexcept { return last_rate_; }
  /// The CPU wanted (received + waiting for a CPU) over that interval.
  double last_cpu_wanted() const noexcept { return last_wanted_; }

  /// When the next time-based verdict (wall time) falls due, for timer arming; empty if none.
  std::optional<Clock::time_point> wall_deadline() const;

 private:
  /// Where a streak began: the interval's start and the counters then, so that a verdict can
  /// say what the whole streak received and wanted.
  struct Mark {
    Clock::time_point at;
    std::uint64_t cpu;
    std::uint64_t wait;
  };
  struct Checkpoint {
    Clock::time_point at;
    std::uint64_t memory_full;
  };

  void track_memory(const Sample& sample);
  std::optional<Verdict> thrash_verdict(const Sample& sample);

  WatchdogConfig config_;
  Clock::time_point start_;
  std::uint64_t start_cpu_;
  Clock::time_point prev_at_;
  std::uint64_t prev_cpu_;
  std::uint64_t prev_wait_;
  std::optional<std::uint64_t> prev_memory_full_;
  std::optional<Mark> idle_since_;
  std::optional<Mark> spin_since_;
  std::deque<Checkpoint> checkpoints_;
  double last_rate_ = 0.0;
  double last_wanted_ = 0.0;
};

}  // namespace pollkill
