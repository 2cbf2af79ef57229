// The mode decision (cgroup or subreaper, and why) and what subreaper mode cannot enforce.
#include "pollkill/mode.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pollkill/error.h"

namespace pollkill {
namespace {

TEST(ModeDecision, AutoIsCgroupWhenARunRootResolves) {
  RunRoot root{"/sys/fs/cgroup/x", "own cgroup", false};
  auto d = decide_mode(RunMode::automatic, [&] { return root; });
  EXPECT_EQ(d.mode, RunMode::cgroup);
  ASSERT_TRUE(d.root);
  EXPECT_NE(d.why.find("/sys/fs/cgroup/x"), std::string::npos) << d.why;
}

TEST(ModeDecision, AutoIsSubreaperWithTheReasonWhenNoRunRoot) {
  auto d = decide_mode(RunMode::automatic,
                       []() -> RunRoot { throw Error("no cgroup2 hierarchy is mounted", "fix"); });
  EXPECT_EQ(d.mode, RunMode::subreaper);
  EXPECT_FALSE(d.root);
  EXPECT_EQ(d.why, "no cgroup2 hierarchy is mounted");
}

TEST(ModeDecision, ForcedCgroupLetsTheErrorThrough) {
  EXPECT_THROW(decide_mode(RunMode::cgroup, []() -> RunRoot { throw Error("none", "fix"); }),
               Error);
}

TEST(ModeDecision, ForcedSubreaperNeverLooksForACgroup) {
  bool called = false;
  auto d = decide_mode(RunMode::subreaper, [&]() -> RunRoot {
    called = true;
    return {};
  });
  EXPECT_EQ(d.mode, RunMode::subreaper);
  EXPECT_FALSE(called);
}

TEST(SubreaperLimits, CgroupOnlyLimitsAreNamedAndFollowMissingControllers) {
  Limits limits;
  limits.memory = 1 << 20;
  limits.pids = 10;
  limits.wall_time = Duration(1000);  // enforced in both modes
  auto keys = cgroup_only_limits(limits);
  EXPECT_EQ(keys, (std::vector<std::string>{"memory", "pids"}));
  try {
    check_subreaper_limits(keys, MissingControllers::error);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("memory, pids"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("subreaper mode has no"), std::string::npos) << e.what();
  }
  EXPECT_EQ(check_subreaper_limits(keys, MissingControllers::warn), keys);
  EXPECT_TRUE(check_subreaper_limits({}, MissingControllers::error).empty());
}

}  // namespace
}  // namespace pollkill
