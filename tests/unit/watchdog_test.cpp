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
  EXPECT_EQ(run.verdict->reason, "CPU busy (0.98 CPU, at or above 0.9) with no progress for 10m0s");
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
  // One sample that satisfies every rule at once: cpu_limit > timeout > spinning > hung.
  struct Case {
    bool cpu_time, wall_time, spin, hang;
    Status expected;
  };
  const std::vector<Case> cases{
      {true, true, true, true, Status::cpu_limit},
      {false, true, true, true, Status::timeout},
      {false, false, true, true, Status::spinning},
      {false, false, false, true, Status::hung},
  };
  for (const auto& c : cases) {
    WatchdogConfig config;
    if (c.cpu_time) config.cpu_time = seconds(1);
    if (c.wall_time) config.wall_time = seconds(1);
    if (c.spin) config.spin_after = seconds(1);
    if (c.hang) config.hang_after = seconds(1);
    // Make one interval both idle and busy by setting the bands to overlap.
    config.hang_cpu_below = 10.0;
    config.spin_cpu_above = 0.5;
    Watchdog watchdog(config, kStart, kStartCpu);
    auto verdict = watchdog.observe({kStart + seconds(2), kStartCpu + 2'000'000, false});
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
