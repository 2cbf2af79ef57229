#include "pollkill/sandbox.h"

#include <gtest/gtest.h>

#include "pollkill/seccomp.h"

namespace pollkill {
namespace {

TEST(SandboxPlan, EnvironmentInheritsThenSets) {
  SandboxPolicy s;
  s.env = {{"B", "new"}, {"C", "3"}};
  EXPECT_EQ(task_environment(s, {"A=1", "B=old", "PATH=/bin"}),
            (std::vector<std::string>{"A=1", "PATH=/bin", "B=new", "C=3"}));
}

TEST(SandboxPlan, ClearEnvKeepsOnlyPassEnvThenSets) {
  SandboxPolicy s;
  s.clear_env = true;
  s.pass_env = {"PATH", "MISSING"};
  s.env = {{"HOME", "/tmp"}};
  EXPECT_EQ(task_environment(s, {"A=1", "PATH=/bin", "PATHX=no", "HOME=/root"}),
            (std::vector<std::string>{"PATH=/bin", "HOME=/tmp"}));
  s.pass_env.clear();
  s.env.clear();
  EXPECT_TRUE(task_environment(s, {"A=1"}).empty());
}

TEST(SandboxPlan, DefaultPolicyNeedsNothing) {
  const SandboxPlan plan = prepare_sandbox(default_policy(), {"A=1"});
  EXPECT_EQ(plan.env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(plan.clone_flags, 0u);
  EXPECT_FALSE(plan.pid_init || plan.new_cgroup_ns || plan.loopback_up || plan.uid);
  EXPECT_TRUE(plan.mounts.empty());
  EXPECT_TRUE(plan.rlimits.empty());
  EXPECT_TRUE(plan.seccomp.empty());
}

TEST(SandboxPlan, MissingPathToHideIsAnErrorBeforeAnythingRuns) {
  if (::geteuid() != 0) GTEST_SKIP() << "namespaces need root";
  Policy p;
  p.sandbox.namespaces.mount = true;
  p.sandbox.hide = {"/no/such/path/for/pollkill"};
  EXPECT_THROW(prepare_sandbox(p, {}), Error);
}

TEST(SeccompFilter, NoFilterUnlessAsked) {
  EXPECT_TRUE(build_seccomp_filter(SeccompPolicy{}).empty());
  SeccompPolicy deny;
  deny.deny = {"socket"};
  EXPECT_GT(build_seccomp_filter(deny).size(), 4u);
  SeccompPolicy allow_list;
  allow_list.default_action = {SeccompAction::kill, 1};
  allow_list.allow = {"read", "write", "exit_group"};
  EXPECT_GT(build_seccomp_filter(allow_list).size(), 4u);
}

}  // namespace
}  // namespace pollkill
