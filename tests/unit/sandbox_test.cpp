#include "pollkill/sandbox.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "pollkill/seccomp.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;

const std::string kStrict = std::string(POLLKILL_SOURCE_DIR) + "/policies/strict.toml";

// A lock directory of the test's own, removed at the end.
class LockDir {
 public:
  LockDir() {
    std::string templ = (fs::temp_directory_path() / "pk-uid-locks-XXXXXX").string();
    if (::mkdtemp(templ.data())) path_ = templ;
  }
  ~LockDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Uids far from anything a host hands out.
constexpr std::uint32_t kTestUids = 3900000100u;

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

TEST(SandboxPlan, BoundUnixSocketPathsAreTheAbsoluteOnesOnce) {
  const std::string text =
      "Num       RefCount Protocol Flags    Type St Inode Path\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 20417 /run/dbus/system_bus_socket\n"
      "0000000000000000: 00000003 00000000 00000000 0001 03 20520 /run/dbus/system_bus_socket\n"
      "0000000000000000: 00000002 00000000 00000000 0002 01 15190 /dev/log\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 31337 @/tmp/.X11-unix/X0\n"
      "0000000000000000: 00000003 00000000 00000000 0001 03 41000\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 41001 private/smtp\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 41002 /var/lib/a b.sock\n";
  EXPECT_EQ(
      bound_unix_socket_paths(text),
      (std::vector<std::string>{"/run/dbus/system_bus_socket", "/dev/log", "/var/lib/a b.sock"}));
  EXPECT_TRUE(bound_unix_socket_paths("").empty());
  EXPECT_TRUE(bound_unix_socket_paths("Num RefCount Protocol Flags Type St Inode Path\n").empty());
}

TEST(SandboxPolicyKeys, DynamicUidsAndDenyNewNamespacesAreRead) {
  const Policy p = parse_policy(R"(version = 1
[seccomp]
deny_new_namespaces = true
[sandbox]
dynamic_uids = "70000-70009"
)",
                                "p.toml");
  EXPECT_TRUE(p.seccomp.deny_new_namespaces);
  EXPECT_TRUE(p.seccomp.active());
  EXPECT_EQ(p.sandbox.dynamic_uids, (UidRange{70000, 70009}));
  EXPECT_EQ(parse_policy(to_toml(p), "round trip"), p);
  EXPECT_EQ(default_policy().sandbox.dynamic_uids, (UidRange{65536, 99999}));
  EXPECT_FALSE(default_policy().seccomp.deny_new_namespaces);
}

TEST(SandboxPolicyKeys, BadDynamicUidsPointAtTheValue) {
  for (const char* bad : {"\"70000\"", "\"9-1\"", "\"0-10\"", "\"1-4294967295\"", "\"a-b\"",
                          "\"-5\"", "\"5-\"", "7"}) {
    const std::string text = std::string("version = 1\n[sandbox]\ndynamic_uids = ") + bad + "\n";
    try {
      parse_policy(text, "p.toml");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const PolicyError& e) {
      EXPECT_EQ(e.line(), 3) << bad;
      EXPECT_EQ(e.column(), 16) << bad;
      EXPECT_NE(e.message().find("sandbox.dynamic_uids"), std::string::npos) << e.what();
    }
  }
}

TEST(SandboxPolicyKeys, DynamicUserNeedsATaskThatLeavesNothingBehind) {
  const std::string complete =
      "version = 1\n[sandbox]\nuser = \"dynamic\"\nnamespaces = [\"mount\", \"ipc\"]\n"
      "private_tmp = true\nread_only = [\"/\"]\n";
  EXPECT_NO_THROW(parse_policy(complete, "p.toml"));
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"mount\", \"ipc\"", "\"mount\""},
           {"private_tmp = true", "private_tmp = false"},
           {"read_only = [\"/\"]", "read_only = [\"/usr\"]"}}) {
    std::string text = complete;
    text.replace(text.find(from), from.size(), to);
    try {
      parse_policy(text, "p.toml");
      ADD_FAILURE() << text << " was accepted";
    } catch (const PolicyError& e) {
      EXPECT_EQ(e.line(), 3) << e.what();  // the user key
      EXPECT_NE(e.message().find("leaves nothing behind"), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(load_policy_file(kStrict));
}

TEST(SeccompFilter, DenyNewNamespacesAddsRulesAndRefusesAnAllowedClone3) {
  SeccompPolicy plain;
  plain.deny = {"ptrace"};
  SeccompPolicy namespaces = plain;
  namespaces.deny_new_namespaces = true;
  // Seven flags for clone, eight for unshare, one rule for clone3.
  EXPECT_GT(build_seccomp_filter(namespaces).size(), build_seccomp_filter(plain).size() + 16);
  SeccompPolicy allow_list;
  allow_list.default_action = {SeccompAction::kill, 1};
  allow_list.allow = {"read", "write", "exit_group", "clone", "clone3"};
  allow_list.deny_new_namespaces = true;
  EXPECT_THROW(build_seccomp_filter(allow_list), Error);
  allow_list.allow.pop_back();
  EXPECT_GT(build_seccomp_filter(allow_list).size(), 4u);
}

TEST(SandboxPlan, StrictMakesEverythingReadOnlyButItsOwnAreas) {
  if (::geteuid() != 0) GTEST_SKIP() << "strict needs root (user change and namespaces)";
  SandboxPlan plan;
  try {
    plan = prepare_sandbox(load_policy_file(kStrict), {"PATH=/bin", "SECRET=1"});
  } catch (const Error& e) {
    if (std::string(e.what()).find("needs root") == std::string::npos) throw;
    GTEST_SKIP() << "root without the capabilities strict needs: " << e.what();
  }
  EXPECT_FALSE(plan.uid);
  ASSERT_TRUE(plan.dynamic_uids);
  EXPECT_EQ(*plan.dynamic_uids, (UidRange{65536, 99999}));
  ASSERT_GE(plan.mounts.size(), 5u);
  EXPECT_EQ(plan.mounts[0].describe(), "make '/' a private mount");
  EXPECT_EQ(plan.mounts[1].describe(), "make '/' and every mount below it read-only");
  const auto mounted = [&plan](const std::string& target, const std::string& fstype) {
    return std::any_of(plan.mounts.begin(), plan.mounts.end(), [&](const MountStep& m) {
      return m.target == target && m.fstype == fstype;
    });
  };
  EXPECT_TRUE(mounted("/proc", "proc"));
  EXPECT_TRUE(mounted("/tmp", "tmpfs"));
  EXPECT_TRUE(mounted("/run", "tmpfs"));
  EXPECT_EQ(plan.owned_by_task.front(), "/tmp");
  EXPECT_TRUE(plan.init_arguments.start && plan.init_arguments.size > 0);
  EXPECT_FALSE(plan.seccomp.empty());
}

TEST(DynamicUid, TakesFreeUidsAndGivesThemBack) {
  if (::geteuid() != 0) GTEST_SKIP() << "taking a uid needs root (its process check)";
  LockDir locks;
  ASSERT_FALSE(locks.path().empty());
  const UidRange range{kTestUids, kTestUids + 1};
  DynamicUid first = take_dynamic_uid(range, locks.path());
  DynamicUid second = take_dynamic_uid(range, locks.path());
  EXPECT_EQ(first.uid, kTestUids);
  EXPECT_EQ(second.uid, kTestUids + 1);
  try {
    take_dynamic_uid(range, locks.path());
    ADD_FAILURE() << "a third uid from a range of two";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 in use"), std::string::npos) << e.what();
  }
  first.lock.reset();
  EXPECT_EQ(take_dynamic_uid(range, locks.path()).uid, kTestUids);
}

TEST(DynamicUid, AUidWithALiveProcessIsNotTaken) {
  if (::geteuid() != 0) GTEST_SKIP() << "taking a uid needs root (its process check)";
  LockDir locks;
  const uid_t busy = kTestUids + 2;
  EXPECT_FALSE(uid_has_processes(busy));
  // A process of that uid, and (through its own pid namespace in the real case) invisible to
  // pollkill's /proc: the kernel's count is what tells.
  const pid_t other = ::fork();
  if (other == 0) {
    if (::setresgid(busy, busy, busy) == 0 && ::setresuid(busy, busy, busy) == 0) ::pause();
    ::_exit(1);
  }
  ASSERT_GT(other, 0);
  bool seen = false;
  for (int i = 0; i < 500 && !seen; ++i) {
    seen = uid_has_processes(busy);
    if (!seen) ::usleep(10000);
  }
  EXPECT_TRUE(seen);
  EXPECT_EQ(take_dynamic_uid({busy, busy + 1}, locks.path()).uid, busy + 1);
  EXPECT_THROW(take_dynamic_uid({busy, busy}, locks.path()), Error);
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
  EXPECT_FALSE(uid_has_processes(busy));
  EXPECT_EQ(take_dynamic_uid({busy, busy}, locks.path()).uid, busy);
}

TEST(DynamicUid, ALockDirectoryOthersMayWriteIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "taking a uid needs root (its process check)";
  LockDir locks;
  ASSERT_EQ(::chmod(locks.path().c_str(), 0777), 0);
  EXPECT_THROW(take_dynamic_uid({kTestUids, kTestUids}, locks.path()), Error);
}

}  // namespace
}  // namespace pollkill
