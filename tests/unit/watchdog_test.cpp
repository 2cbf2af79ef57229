#include "pollkill/watchdog.h"

#include <gtest/gtest.h>

#include <vector>

namespace pollkill {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// A fixed, arbitrary origin: the watchdog must never read the real clock.
const Clock::time_point kStart = Clock::time_point{} + std::chrono::hours(1000);
constexpr std::uint64_t kStartCpu = 5'000'000;  // CPU the tree had already used at start

// What `drive` saw: the first verdict and when (since start), or no verdict.
struct Drive {
  std::optional<Verdict> verdict;
  Clock::duration at{};
};

// Feeds a sample every `interval` from start until `limit`, at a constant CPU rate (CPUs)
// and with a constant progress flag; stops at the first verdict.
Drive drive(Watchdog& watchdog, Clock::duration interval, double cpus, bool progress,
            Clock::duration limit) {
  const auto interval_usec = std::chrono::duration_cast<std::chrono::microseconds>(interval);
  std::uint64_t cpu = kStartCpu;
  for (auto t = kStart + interval; t - kStart <= limit; t += interval) {
    cpu += static_cast<std::uint64_t>(cpus * static_cast<double>(interval_usec.count()));
    if (auto verdict = watchdog.observe({t, cpu, progress})) return {verdict, t - kStart};
  }
  return {};
}

WatchdogConfig hang_config() {
  WatchdogConfig config;
  config.hang_after = minutes(2);
  return config;
}

WatchdogConfig spin_config() {
  WatchdogConfig config;
  config.spin_after = minutes(10);
  return config;
}

TEST(WatchdogTest, HangDetectedWithinHangAfterPlusOneInterval) {
  struct Case {
    Clock::duration interval;
  };
  for (const auto& c :
       std::vector<Case>{{milliseconds(250)}, {seconds(1)}, {milliseconds(700)}, {seconds(7)}}) {
    Watchdog watchdog(hang_config(), kStart, kStartCpu);
    const Drive run = drive(watchdog, c.interval, 0.0, false, minutes(5));
    ASSERT_TRUE(run.verdict) << c.interval.count();
    EXPECT_EQ(run.verdict->status, Status::hung);
    EXPECT_EQ(run.verdict->reason, "no CPU use (below 0.01 CPU) and no progress for 2m0s");
    EXPECT_GE(run.at, minutes(2));
    EXPECT_LT(run.at, minutes(2) + c.interval);
  }
}

TEST(WatchdogTest, IdleFromStartIsHungAtFirstSampleAtOrAfterHangAfter) {
  Watchdog watchdog(hang_config(), kStart, kStartCpu);
  EXPECT_FALSE(watchdog.observe({kStart + seconds(119), kStartCpu, false}));
  auto verdict = watchdog.observe({kStart + seconds(120), kStartCpu, false});
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->status, Status::hung);
}

TEST(WatchdogTest, ProgressResetsTheHangStreak) {
  Watchdog watchdog(hang_config(), kStart, kStartCpu);
  ASSERT_FALSE(watchdog.observe({kStart + seconds(100), kStartCpu, false}));
  ASSERT_FALSE(watchdog.observe({kStart + seconds(110), kStartCpu, true}));  // progress
  // The new streak starts at 110s, so 229s is not yet 2 minutes of idleness.
  EXPECT_FALSE(watchdog.observe({kStart + seconds(229), kStartCpu, false}));
  auto verdict = watchdog.observe({kStart + seconds(230), kStartCpu, false});
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->status, Status::hung);
}

TEST(WatchdogTest, CpuUseAboveHangThresholdResetsTheHangStreak) {
  Watchdog watchdog(hang_config(), kStart, kStartCpu);
  ASSERT_FALSE(watchdog.observe({kStart + seconds(100), kStartCpu, false}));
  // 0.5 CPU over the next 10s: not idle.
  ASSERT_FALSE(watchdog.observe({kStart + seconds(110), kStartCpu + 5'000'000, false}));
  EXPECT_FALSE(watchdog.observe({kStart + seconds(229), kStartCpu + 5'000'000, false}));
  EXPECT_TRUE(watchdog.observe({kStart + seconds(230), kStartCpu + 5'000'000, false}));
}

TEST(WatchdogTest, BusyTaskThatWritesProgressIsNeverSpinning) {
  WatchdogConfig config = spin_config();
  config.hang_after = minutes(2);
  Watchdog watchdog(config, kStart, kStartCpu);
  const Drive run = drive(watchdog, milliseconds(250), 1.0, true, std::chrono::hours(2));
  EXPECT_FALSE(run.verdict);
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 1.0);
}

TEST(WatchdogTest, SpinnerDetected) {
  Watchdog watchdog(spin_config(), kStart, kStartCpu);
  const Drive run = drive(watchdog, seconds(1), 0.98, false, std::chrono::hours(1));
  ASSERT_TRUE(run.verdict);
  EXPECT_EQ(run.verdict->status, Status::spinning);
  EXPECT_EQ(run.verdict->reason,
            "CPU busy (0.98 CPU received, 0.98 wanted) with no progress for 10m0s");
  EXPECT_GE(run.at, minutes(10));
  EXPECT_LT(run.at, minutes(10) + seconds(1));
}

TEST(WatchdogTest, CpuBelowSpinThresholdIsNeitherSpinningNorHung) {
  WatchdogConfig config = spin_config();
  config.hang_after = minutes(2);
  Watchdog watchdog(config, kStart, kStartCpu);
  EXPECT_FALSE(drive(watchdog, seconds(1), 0.5, false, std::chrono::hours(1)).verdict);
}

TEST(WatchdogTest, TimeoutAndCpuLimit) {
  struct Case {
    const char* name;
    std::optional<Duration> wall_time;
    std::optional<Duration> cpu_time;
    double cpus;
    Status status;
    std::string reason;
    Clock::duration at;
  };
  const std::vector<Case> cases{
      {"timeout", seconds(30), std::nullopt, 0.0, Status::timeout, "wall time 30s exceeded",
       seconds(30)},
      {"cpu_limit", std::nullopt, seconds(10), 2.04, Status::cpu_limit,
       "CPU time 10s exceeded (used 10.2s)", seconds(5)},
      {"neither reached", minutes(10), minutes(10), 1.0, Status::ok, "", {}},
  };
  for (const auto& c : cases) {
    WatchdogConfig config;
    config.wall_time = c.wall_time;
    config.cpu_time = c.cpu_time;
    Watchdog watchdog(config, kStart, kStartCpu);
    const Drive run = drive(watchdog, seconds(5), c.cpus, false, minutes(1));
    if (c.status == Status::ok) {
      EXPECT_FALSE(run.verdict) << c.name;
      continue;
    }
    ASSERT_TRUE(run.verdict) << c.name;
    EXPECT_EQ(run.verdict->status, c.status) << c.name;
    EXPECT_EQ(run.verdict->reason, c.reason) << c.name;
    EXPECT_EQ(run.at, c.at) << c.name;
  }
}

TEST(WatchdogTest, CpuLimitCountsFromStartCpuUsage) {
  WatchdogConfig config;
  config.cpu_time = seconds(10);
  Watchdog watchdog(config, kStart, kStartCpu);
  // 9.999s of CPU since start is under the limit, whatever the tree had before.
  EXPECT_FALSE(watchdog.observe({kStart + seconds(10), kStartCpu + 9'999'000, false}));
  EXPECT_TRUE(watchdog.observe({kStart + seconds(11), kStartCpu + 10'000'000, false}));
}

TEST(WatchdogTest, OrderOfPrecedence) {
  // Samples that satisfy every enabled rule at once: cpu_limit > timeout > thrashing >
  // spinning > hung.
  struct Case {
    bool cpu_time, wall_time, thrash, spin, hang;
    Status expected;
  };
  const std::vector<Case> cases{
      {true, true, true, true, true, Status::cpu_limit},
      {false, true, true, true, true, Status::timeout},
      {false, false, true, true, true, Status::thrashing},
      {false, false, false, true, true, Status::spinning},
      {false, false, false, false, true, Status::hung},
  };
  for (const auto& c : cases) {
    WatchdogConfig config;
    if (c.cpu_time) config.cpu_time = seconds(1);
    if (c.wall_time) config.wall_time = seconds(1);
    if (c.spin) config.spin_after = seconds(1);
    if (c.hang) config.hang_after = seconds(1);
    // Make every interval both idle and busy by setting the bands to overlap. The memory stall
    // share is 0.9 in the first second and 0.3 in the second: the hang and spin streaks start
    // after the stalled interval and last 1s, while the 2s window's share is 0.6.
    config.hang_cpu_below = 10.0;
    config.spin_cpu_above = 0.5;
    if (c.thrash) config.thrash_after = seconds(2);
    config.thrash_full_above = 0.5;
    Watchdog watchdog(config, Sample{kStart, kStartCpu, false, 0, 0});
    auto verdict =
        watchdog.observe({kStart + seconds(1), kStartCpu + 1'000'000, false, 0, 900'000});
    if (!verdict) {
      verdict = watchdog.observe({kStart + seconds(2), kStartCpu + 2'000'000, false, 0, 1'200'000});
    }
    ASSERT_TRUE(verdict);
    EXPECT_EQ(verdict->status, c.expected);
  }
}

TEST(WatchdogTest, EmptyConfigNeverGivesAVerdict) {
  Watchdog idle(WatchdogConfig{}, kStart, kStartCpu);
  EXPECT_FALSE(drive(idle, seconds(10), 0.0, false, std::chrono::hours(24)).verdict);
  Watchdog busy(WatchdogConfig{}, kStart, kStartCpu);
  EXPECT_FALSE(drive(busy, seconds(10), 4.0, false, std::chrono::hours(24)).verdict);
  EXPECT_FALSE(busy.wall_deadline());
}

TEST(WatchdogTest, WallDeadline) {
  WatchdogConfig config;
  config.wall_time = seconds(30);
  Watchdog watchdog(config, kStart, kStartCpu);
  EXPECT_EQ(watchdog.wall_deadline(), kStart + seconds(30));

  // A limit beyond the clock's range saturates instead of overflowing.
  config.wall_time = Duration::max();
  Watchdog forever(config, kStart, kStartCpu);
  EXPECT_EQ(forever.wall_deadline(), Clock::time_point::max());
  EXPECT_FALSE(forever.observe({kStart + std::chrono::hours(24 * 365), kStartCpu, false}));
}

TEST(WatchdogTest, ZeroOrNegativeElapsedDoesNotDivideByZero) {
  WatchdogConfig config = hang_config();
  config.spin_after = minutes(1);
  Watchdog watchdog(config, kStart, kStartCpu);
  // A sample at start itself, and one going back in time: no rate, no verdict, no NaN.
  EXPECT_FALSE(watchdog.observe({kStart, kStartCpu + 1'000'000, false}));
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 0.0);
  ASSERT_FALSE(watchdog.observe({kStart + seconds(1), kStartCpu + 1'000'000, false}));
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 1.0);  // the CPU at `start` counted here
  EXPECT_FALSE(watchdog.observe({kStart + milliseconds(500), kStartCpu + 1'000'000, false}));
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 1.0);
}

TEST(WatchdogTest, FirstIntervalCountsFromStart) {
  Watchdog watchdog(WatchdogConfig{}, kStart, kStartCpu);
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 0.0);
  watchdog.observe({kStart + seconds(2), kStartCpu + 1'000'000, false});
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 0.5);
}

// A task's load in one stretch of time: CPU received and waited for (CPUs), memory stall share
// (nullopt: no memory figure), and whether it made progress.
struct Load {
  double received;
  double waiting = 0.0;
  std::optional<double> memory_full = std::nullopt;
  bool progress = false;
};

// Feeds a sample every `interval` for `length` at `load`, continuing from `state`; stops at the
// first verdict. Returns the verdict (if any) and when it came, relative to kStart.
struct Feed {
  Clock::time_point at = kStart;
  std::uint64_t cpu = kStartCpu;
  std::uint64_t wait = 0;
  std::uint64_t memory_full = 0;
};
Drive feed(Watchdog& watchdog, Feed& state, Clock::duration interval, const Load& load,
           Clock::duration length) {
  const double usec =
      static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(interval).count());
  for (const auto end = state.at + length; state.at + interval <= end;) {
    state.at += interval;
    state.cpu += static_cast<std::uint64_t>(load.received * usec);
    state.wait += static_cast<std::uint64_t>(load.waiting * usec);
    Sample sample{state.at, state.cpu, load.progress, state.wait, std::nullopt};
    if (load.memory_full) {
      state.memory_full += static_cast<std::uint64_t>(*load.memory_full * usec);
      sample.memory_full_usec = state.memory_full;
    }
    if (auto verdict = watchdog.observe(sample)) return {verdict, state.at - kStart};
  }
  return {};
}

Sample start_sample() {
  return Sample{kStart, kStartCpu, false, 0, 0};
}

TEST(WatchdogTest, SpinAndHangAreDecidedOnCpuWanted) {
  // A saturated machine: three hogs per core give a spinner a third of a core; it wants one.
  struct Case {
    const char* name;
    Load load;
    std::optional<Status> expected;
    std::string reason;
  };
  const std::vector<Case> cases{
      {"spinner under contention",
       {0.31, 0.67},
       Status::spinning,
       "CPU busy (0.31 CPU received, 0.98 wanted) with no progress for 3s"},
      {"spinner alone",
       {0.99, 0.0},
       Status::spinning,
       "CPU busy (0.99 CPU received, 0.99 wanted) with no progress for 3s"},
      {"two threads on one free core",
       {1.0, 1.0},
       Status::spinning,
       "CPU busy (1.00 CPU received, 2.00 wanted) with no progress for 3s"},
      {"wait unknown: only what it received", {0.31, 0.0}, std::nullopt, ""},
      {"busy writer under contention", {0.31, 0.67, std::nullopt, true}, std::nullopt, ""},
      {"sleeping", {0.0, 0.0}, Status::hung, "no CPU use (below 0.01 CPU) and no progress for 3s"},
      {"starved: waits for half a CPU it never gets", {0.002, 0.5}, std::nullopt, ""},
      {"always runnable, never running",
       {0.002, 0.9},
       Status::spinning,
       "CPU busy (0.00 CPU received, 0.90 wanted) with no progress for 3s"},
      {"barely runnable",
       {0.002, 0.007},
       Status::hung,
       "no CPU use (below 0.01 CPU) and no progress for 3s"},
      {"half a core wanted", {0.2, 0.3}, std::nullopt, ""},
  };
  for (const auto& c : cases) {
    WatchdogConfig config;
    config.spin_after = seconds(3);
    config.hang_after = seconds(3);
    Watchdog watchdog(config, start_sample());
    Feed state;
    const Drive run = feed(watchdog, state, milliseconds(250), c.load, seconds(30));
    if (!c.expected) {
      EXPECT_FALSE(run.verdict) << c.name << ": " << run.verdict->reason;
      continue;
    }
    ASSERT_TRUE(run.verdict) << c.name;
    EXPECT_EQ(run.verdict->status, *c.expected) << c.name;
    EXPECT_EQ(run.verdict->reason, c.reason) << c.name;
    // Within spin_after (hang_after) plus one poll interval of the start of the streak.
    EXPECT_GE(run.at, seconds(3)) << c.name;
    EXPECT_LE(run.at, seconds(3) + milliseconds(250)) << c.name;
  }
}

TEST(WatchdogTest, SpinReasonAveragesTheWholeStreak) {
  WatchdogConfig config;
  config.spin_after = seconds(4);
  Watchdog watchdog(config, start_sample());
  Feed state;
  // Two seconds at 0.2 received + 0.8 waiting, then two at 0.6 + 0.4: 0.40 received, 1.00 wanted.
  ASSERT_FALSE(feed(watchdog, state, seconds(1), {0.2, 0.8}, seconds(2)).verdict);
  const Drive run = feed(watchdog, state, seconds(1), {0.6, 0.4}, seconds(2));
  ASSERT_TRUE(run.verdict);
  EXPECT_EQ(run.verdict->reason,
            "CPU busy (0.40 CPU received, 1.00 wanted) with no progress for 4s");
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_rate(), 0.6);
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_wanted(), 1.0);
}

TEST(WatchdogTest, ACpuWaitCounterThatGoesDownCountsAsNoWait) {
  WatchdogConfig config;
  config.spin_after = seconds(2);
  Watchdog watchdog(config, Sample{kStart, kStartCpu, false, 10'000'000});
  // The wait counter drops (a reset): the interval wanted only what it received (0.3).
  ASSERT_FALSE(watchdog.observe({kStart + seconds(1), kStartCpu + 300'000, false, 0}));
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_wanted(), 0.3);
  ASSERT_FALSE(watchdog.observe({kStart + seconds(2), kStartCpu + 600'000, false, 700'000}));
  EXPECT_DOUBLE_EQ(watchdog.last_cpu_wanted(), 1.0);
}

WatchdogConfig thrash_config() {
  WatchdogConfig config;
  config.thrash_after = seconds(32);  // checkpoints every 2s
  config.thrash_full_above = 0.6;
  return config;
}

TEST(WatchdogTest, ThrashingFromTheMemoryFullStallShareOverTheWindow) {
  struct Case {
    const char* name;
    std::vector<std::pair<Load, Clock::duration>> phases;
    std::optional<Clock::duration> at;  ///< when the verdict comes; nullopt: none
  };
  const Load stalled{0.05, 0.0, 0.8};
  const Load calm{0.5, 0.0, 0.0};
  const std::vector<Case> cases{
      {"stalled from the start", {{stalled, minutes(5)}}, seconds(32)},
      {"stalled but writing output", {{{0.05, 0.0, 0.8, true}, minutes(5)}}, seconds(32)},
      {"under the threshold", {{{0.05, 0.0, 0.55}, minutes(5)}}, std::nullopt},
      {"a burst then calm", {{stalled, seconds(20)}, {calm, minutes(5)}}, std::nullopt},
      // Stalled from 60s on at 0.8: a 32s window reaches 0.6 once 75% of it is stalled, at
      // 84s (checkpoints every 2s fall on 52s).
      {"calm then stalled", {{calm, seconds(60)}, {stalled, minutes(5)}}, seconds(84)},
      {"no memory figure", {{{0.05, 0.0, std::nullopt}, minutes(5)}}, std::nullopt},
  };
  for (const auto& c : cases) {
    Watchdog watchdog(thrash_config(), start_sample());
    Feed state;
    Drive run;
    for (const auto& [load, length] : c.phases) {
      run = feed(watchdog, state, milliseconds(500), load, length);
      if (run.verdict) break;
    }
    if (!c.at) {
      EXPECT_FALSE(run.verdict) << c.name << ": " << run.verdict->reason;
      continue;
    }
    ASSERT_TRUE(run.verdict) << c.name;
    EXPECT_EQ(run.verdict->status, Status::thrashing) << c.name;
    EXPECT_GE(run.at, *c.at) << c.name;
    // The window is at most a sixteenth longer than thrash_after, plus one interval.
    EXPECT_LE(run.at, *c.at + seconds(2) + milliseconds(500)) << c.name;
  }
}

TEST(WatchdogTest, ThrashingReasonAndNoVerdictBeforeTheWindowIsFull) {
  Watchdog watchdog(thrash_config(), start_sample());
  // Entirely stalled, but only 31.5s old: no verdict yet.
  ASSERT_FALSE(watchdog.observe({kStart + milliseconds(31'500), kStartCpu, false, 0, 31'500'000}));
  auto verdict = watchdog.observe({kStart + seconds(32), kStartCpu, false, 0, 23'360'000});
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->status, Status::thrashing);
  EXPECT_EQ(verdict->reason,
            "stalled on memory 73% of the time over 32s (memory.pressure full, at or above 60%)");
}

TEST(WatchdogTest, MemoryStallIsNeitherHungNorSpinningWhenThrashDetectionIsOn) {
  struct Case {
    const char* name;
    bool thrash_on;
    Load load;
    std::optional<Status> expected;
  };
  const std::vector<Case> cases{
      // Refaulting sleeps: idle by CPU, but stalled on memory, so not hung.
      {"idle and stalled, thrash on", true, {0.0, 0.0, 0.7}, Status::thrashing},
      {"idle and stalled, thrash off", false, {0.0, 0.0, 0.7}, Status::hung},
      // Direct reclaim burns CPU: busy by CPU, but stalled, so not spinning.
      {"busy and stalled, thrash on", true, {1.0, 0.0, 0.7}, Status::thrashing},
      {"busy and stalled, thrash off", false, {1.0, 0.0, 0.7}, Status::spinning},
      {"busy and a little stalled, thrash on", true, {1.0, 0.0, 0.1}, Status::spinning},
  };
  for (const auto& c : cases) {
    WatchdogConfig config;
    config.hang_after = seconds(5);
    config.spin_after = seconds(5);
    if (c.thrash_on) {
      config.thrash_after = seconds(30);
      config.thrash_full_above = 0.6;
    }
    Watchdog watchdog(config, start_sample());
    Feed state;
    const Drive run = feed(watchdog, state, milliseconds(250), c.load, minutes(2));
    ASSERT_TRUE(run.verdict) << c.name;
    EXPECT_EQ(run.verdict->status, c.expected) << c.name;
  }
}

TEST(WatchdogTest, ThrashWindowKeepsFewCheckpointsWhateverThePollInterval) {
  // An hour-long window polled every 10ms: 360,000 samples, a bounded set of checkpoints
  // (observable only as memory use; here as a verdict that still comes on time).
  WatchdogConfig config;
  config.thrash_after = minutes(60);
  Watchdog watchdog(config, start_sample());
  Feed state;
  const Drive run = feed(watchdog, state, milliseconds(10), {0.0, 0.0, 0.9}, minutes(70));
  ASSERT_TRUE(run.verdict);
  EXPECT_GE(run.at, minutes(60));
  EXPECT_LE(run.at, minutes(60) + seconds(226));
}

TEST(WatchdogTest, ConfigFromPolicy) {
  Policy policy{};
  policy.limits.wall_time = seconds(30);
  policy.limits.cpu_time = seconds(10);
  policy.watchdog.hang_after = minutes(2);
  policy.watchdog.hang_cpu_below = 0.05;
  policy.watchdog.spin_after = minutes(10);
  policy.watchdog.spin_cpu_above = 0.8;
  const WatchdogConfig config = WatchdogConfig::from(policy);
  EXPECT_EQ(config.wall_time, seconds(30));
  EXPECT_EQ(config.cpu_time, seconds(10));
  EXPECT_EQ(config.hang_after, minutes(2));
  EXPECT_DOUBLE_EQ(config.hang_cpu_below, 0.05);
  EXPECT_EQ(config.spin_after, minutes(10));
  EXPECT_DOUBLE_EQ(config.spin_cpu_above, 0.8);
}

}  // namespace
}  // namespace pollkill
