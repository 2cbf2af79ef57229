// The limits module without a kernel: the v2 and v1 limit plans, the policy keys a plan
// enforces, and how a task's limits split between the unified hierarchy and cgroup v1. The
// controller check and the writes run against real hierarchies in the integration tests
// (limits_test.cpp, host_cases_test.cpp in the VM, hybrid_test.cpp in the hybrid VM).
#include "pollkill/limits.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace pollkill {
namespace {

TEST(PlanLimits, MemoryImpliesZeroSwapAndGroupOom) {
  Limits limits;
  limits.memory = 64ull << 20;
  auto plan = plan_limits(limits);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].attr, "memory.max");
  EXPECT_EQ(plan[0].value, "67108864");
  EXPECT_EQ(plan[1].attr, "memory.swap.max");
  EXPECT_EQ(plan[1].value, "0");
  EXPECT_EQ(plan[2].attr, "memory.oom.group");
  EXPECT_EQ(controllers_for(plan), (std::vector<std::string>{"memory"}));
}

TEST(PlanLimits, EachKeyToItsFile) {
  struct Case {
    Limits limits;
    std::string attr;
    std::string value;
    std::string controller;
  };
  Limits swap_max;
  swap_max.memory = 1 << 20;
  swap_max.swap = kSizeMax;
  Limits high;
  high.memory_high = 1 << 20;
  Limits quarter;
  quarter.cpus = 0.25;
  Limits tiny;
  tiny.cpus = 0.001;
  Limits pids;
  pids.pids = 32;
  Limits pids_max;
  pids_max.pids = kSizeMax;
  const Case cases[] = {
      {swap_max, "memory.swap.max", "max", "memory"},
      {high, "memory.high", "1048576", "memory"},
      {quarter, "cpu.max", "25000 100000", "cpu"},
      {tiny, "cpu.max", "1000 100000", "cpu"},  // the kernel's minimum quota
      {pids, "pids.max", "32", "pids"},
      {pids_max, "pids.max", "max", "pids"},
  };
  for (const auto& c : cases) {
    auto plan = plan_limits(c.limits);
    auto it = std::find_if(plan.begin(), plan.end(),
                           [&](const LimitWrite& w) { return w.attr == c.attr; });
    ASSERT_NE(it, plan.end()) << c.attr;
    EXPECT_EQ(it->value, c.value) << c.attr;
    EXPECT_EQ(it->controller, c.controller) << c.attr;
  }
  EXPECT_TRUE(plan_limits(Limits{}).empty());
}

TEST(PlanLimits, SplitByAvailableControllers) {
  Limits limits;
  limits.memory = 1 << 20;
  limits.pids = 10;
  auto [ok, missing] = split_enforceable(plan_limits(limits), {"pids", "hugetlb"});
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].attr, "pids.max");
  // The implied swap limit is not reported as a limit of its own.
  EXPECT_EQ(missing, (std::vector<std::string>{"memory"}));
  limits.swap = 0;
  EXPECT_EQ(split_enforceable(plan_limits(limits), {"pids"}).second,
            (std::vector<std::string>{"memory", "swap"}));
}

TEST(PlanLimits, KeysOfLeavesOutImpliedWrites) {
  Limits limits;
  limits.memory = 1 << 20;
  limits.pids = 10;
  EXPECT_EQ(keys_of(plan_limits(limits)), (std::vector<std::string>{"memory", "pids"}));
  limits.swap = 0;
  limits.memory_high = 1 << 19;
  EXPECT_EQ(keys_of(plan_limits(limits)),
            (std::vector<std::string>{"memory", "swap", "memory_high", "pids"}));
  EXPECT_TRUE(keys_of({}).empty());
}

TEST(PlanLimitsV1, WritesTheV1Attributes) {
  struct Case {
    Limits limits;
    std::vector<std::pair<std::string, std::string>> writes;
  };
  Limits memory;
  memory.memory = 64ull << 20;
  Limits memory_swap = memory;
  memory_swap.swap = 16ull << 20;
  Limits unlimited;
  unlimited.memory = kSizeMax;
  unlimited.pids = kSizeMax;
  Limits cpu;
  cpu.cpus = 0.5;
  cpu.pids = 20;
  Limits tiny_cpu;
  tiny_cpu.cpus = 0.001;
  const Case cases[] = {
      {memory,
       {{"memory.limit_in_bytes", "67108864"}, {"memory.memsw.limit_in_bytes", "67108864"}}},
      {memory_swap,
       {{"memory.limit_in_bytes", "67108864"}, {"memory.memsw.limit_in_bytes", "83886080"}}},
      {unlimited,
       {{"memory.limit_in_bytes", "-1"},
        {"memory.memsw.limit_in_bytes", "-1"},
        {"pids.max", "max"}}},
      {cpu, {{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "50000"}, {"pids.max", "20"}}},
      {tiny_cpu, {{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "1000"}}},
  };
  for (const auto& c : cases) {
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& w : plan_limits_v1(c.limits)) got.emplace_back(w.attr, w.value);
    EXPECT_EQ(got, c.writes);
  }
  // memory_high has no v1 equivalent; swap alone neither.
  Limits high;
  high.memory_high = 1 << 20;
  high.swap = 0;
  EXPECT_TRUE(plan_limits_v1(high).empty());
  EXPECT_FALSE(v1_can_enforce("memory_high", memory));
  EXPECT_FALSE(v1_can_enforce("swap", high));
  EXPECT_TRUE(v1_can_enforce("swap", memory_swap));
}

TEST(SplitLimits, SendsMissingControllersToV1) {
  Limits limits;
  limits.memory = 64ull << 20;
  limits.memory_high = 32ull << 20;
  limits.cpus = 1;
  limits.pids = 10;
  // Pure v2: everything there.
  LimitSplit all_v2 = split_limits(limits, {"memory", "cpu", "pids"}, {});
  EXPECT_TRUE(all_v2.v1.empty());
  EXPECT_TRUE(all_v2.v1_keys.empty());
  EXPECT_TRUE(all_v2.not_enforced.empty());
  // Hybrid, v1 for memory and pids only: cpu is not enforced, memory_high has no v1 equivalent.
  LimitSplit hybrid = split_limits(limits, {}, {"memory", "pids"});
  EXPECT_TRUE(hybrid.v2.empty());
  EXPECT_EQ(hybrid.v1_keys, (std::vector<std::string>{"memory", "pids"}));
  EXPECT_EQ(hybrid.not_enforced, (std::vector<std::string>{"memory_high", "cpus"}));
  std::vector<std::string> attrs;
  for (const auto& w : hybrid.v1) attrs.push_back(w.attr);
  EXPECT_EQ(attrs, (std::vector<std::string>{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                                             "pids.max"}));
  // A controller the unified hierarchy has never goes to v1.
  LimitSplit mixed = split_limits(limits, {"pids"}, {"memory", "cpu"});
  EXPECT_EQ(mixed.v2.size(), 1u);
  EXPECT_EQ(mixed.v1_keys, (std::vector<std::string>{"memory", "cpus"}));
  // An explicit swap limit is listed; the implied one is not.
  limits.swap = 0;
  EXPECT_EQ(split_limits(limits, {}, {"memory"}).v1_keys,
            (std::vector<std::string>{"memory", "swap"}));
}

}  // namespace
}  // namespace pollkill
