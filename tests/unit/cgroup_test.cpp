// Unit tests for the cgroup edge that do not need a kernel: parsers and the run-root decision
// against a fake hierarchy in a temporary directory. The limit plans are in limits_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "pollkill/cgroup.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/error.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHybridMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(Mountinfo, HybridLayout) {
  CgroupMounts m = parse_mountinfo(kHybridMountinfo);
  ASSERT_TRUE(m.cgroup2);
  EXPECT_EQ(*m.cgroup2, "/sys/fs/cgroup/unified");
  EXPECT_EQ(m.layout, CgroupLayout::hybrid);
  EXPECT_EQ(m.v1_controllers, (std::vector<std::string>{"cpu", "memory", "pids"}));
}

TEST(Mountinfo, PureLayoutWithOptionalFieldsAndEscapes) {
  CgroupMounts m = parse_mountinfo(
      "25 30 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
      "26 30 0:23 / /mnt/my\\040cg rw shared:10 master:2 - cgroup2 none rw\n");
  ASSERT_TRUE(m.cgroup2);
  EXPECT_EQ(*m.cgroup2, "/sys/fs/cgroup");  // the first one wins
  EXPECT_EQ(m.layout, CgroupLayout::pure);
  CgroupMounts escaped = parse_mountinfo("26 30 0:23 / /mnt/my\\040cg rw - cgroup2 none rw\n");
  EXPECT_EQ(*escaped.cgroup2, "/mnt/my cg");
}

TEST(Mountinfo, ReadOnlyNamespaceMountAndStacking) {
  // A container's own mount: read-only, its root is the namespace's root.
  CgroupMounts ro = parse_mountinfo(
      "40 30 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n");
  EXPECT_TRUE(ro.cgroup2_read_only);
  EXPECT_EQ(ro.cgroup2_root, "/");
  // A host mount seen from inside a cgroup namespace, covered by a fresh writable one on the
  // same mount point: the covering one is what paths reach.
  CgroupMounts stacked = parse_mountinfo(
      "25 30 0:22 /.. /sys/fs/cgroup ro shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
      "41 25 0:22 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
      "42 30 0:22 / /mnt/other rw - cgroup2 cgroup2 ro\n");
  EXPECT_EQ(*stacked.cgroup2, "/sys/fs/cgroup");
  EXPECT_FALSE(stacked.cgroup2_read_only);
  EXPECT_EQ(stacked.cgroup2_root, "/");
  CgroupMounts host = parse_mountinfo(kHybridMountinfo);
  EXPECT_FALSE(host.cgroup2_read_only);
}

TEST(Mountinfo, V1Only) {
  CgroupMounts m =
      parse_mountinfo("32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  EXPECT_FALSE(m.cgroup2);
  EXPECT_EQ(m.layout, CgroupLayout::v1_only);
}

TEST(OwnCgroup, FindsTheUnifiedLine) {
  EXPECT_EQ(parse_own_cgroup("4:memory:/x\n0::/user.slice/a.scope\n"), "/user.slice/a.scope");
  EXPECT_EQ(parse_own_cgroup("0::/\n"), "/");
  EXPECT_EQ(parse_own_cgroup("4:memory:/x\n"), "");
}

TEST(Keyed, ParsesCpuStatAndMax) {
  auto m =
      parse_keyed("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nbad line here\nlimit max\n");
  EXPECT_EQ(m.at("usage_usec"), 1234u);
  EXPECT_EQ(m.at("system_usec"), 234u);
  EXPECT_EQ(m.at("limit"), UINT64_MAX);
  EXPECT_EQ(m.count("bad"), 0u);
}

TEST(Pids, ParsesProcs) {
  EXPECT_EQ(parse_pids("12\n345\n\n6\n"), (std::vector<int>{12, 345, 6}));
  EXPECT_TRUE(parse_pids("").empty());
}

// A fake cgroup2 mount: directories with a cgroup.procs file.
class RunRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pollkill-runroot-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    mount_ = tmpl;
    make_cgroup(mount_);
    host_.mounts.cgroup2 = mount_;
    host_.mounts.layout = CgroupLayout::pure;
    host_.own_cgroup = "/";
    host_.root_user = true;
  }
  void TearDown() override { fs::remove_all(mount_); }
  static void make_cgroup(const fs::path& p) {
    fs::create_directories(p);
    std::ofstream(p / "cgroup.procs").put('\n');
  }
  fs::path mount_;
  HostCgroups host_;
  Policy policy_;
};

TEST_F(RunRootTest, HierarchyRootIsUsedAsIs) {
  RunRoot r = resolve_run_root(host_, std::nullopt, policy_, nullptr, true);
  EXPECT_EQ(r.path, mount_);
  EXPECT_FALSE(r.move_self_to_leaf);
  EXPECT_TRUE(r.hierarchy_root);
}

TEST_F(RunRootTest, ExplicitRootsInOrder) {
  make_cgroup(mount_ / "flag");
  make_cgroup(mount_ / "policy");
  make_cgroup(mount_ / "env");
  policy_.runner.cgroup_root = "/policy";
  EXPECT_EQ(resolve_run_root(host_, "flag", policy_, "env", false).path, mount_ / "flag");
  EXPECT_EQ(resolve_run_root(host_, std::nullopt, policy_, "env", false).path, mount_ / "policy");
  policy_.runner.cgroup_root.reset();
  RunRoot env = resolve_run_root(host_, std::nullopt, policy_, "/env", false);
  EXPECT_EQ(env.path, mount_ / "env");
  EXPECT_EQ(env.source, "POLLKILL_CGROUP_ROOT");
  // An absolute path under the mount is taken as it is.
  EXPECT_EQ(resolve_run_root(host_, (mount_ / "flag").string(), policy_, nullptr, false).path,
            mount_ / "flag");
}

TEST_F(RunRootTest, ExplicitRootMustBeACgroup) {
  try {
    resolve_run_root(host_, "/not-a-cgroup", policy_, nullptr, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a cgroup v2 directory"), std::string::npos)
        << e.what();
  }
}

TEST_F(RunRootTest, NonRootOwnCgroupMovesSelfOnlyWhenControllersAreNeeded) {
  make_cgroup(mount_ / "job");
  host_.own_cgroup = "/job";
  EXPECT_TRUE(resolve_run_root(host_, std::nullopt, policy_, nullptr, true).move_self_to_leaf);
  RunRoot r = resolve_run_root(host_, std::nullopt, policy_, nullptr, false);
  EXPECT_EQ(r.path, mount_ / "job");
  EXPECT_FALSE(r.move_self_to_leaf);
}

// Inside a cgroup namespace the mount's root is the namespace's root: an ordinary cgroup
// pollkill must move out of before it can enable controllers there.
TEST_F(RunRootTest, NamespaceRootIsNotTheHierarchyRoot) {
  host_.mount_is_hierarchy_root = false;
  RunRoot r = resolve_run_root(host_, std::nullopt, policy_, nullptr, true);
  EXPECT_EQ(r.path, mount_);
  EXPECT_TRUE(r.move_self_to_leaf);
  EXPECT_FALSE(r.hierarchy_root);
  EXPECT_EQ(r.source, "own cgroup (the cgroup namespace's root)");
  EXPECT_FALSE(resolve_run_root(host_, std::nullopt, policy_, nullptr, false).move_self_to_leaf);
  // Given explicitly, the same.
  RunRoot flag = resolve_run_root(host_, "/", policy_, nullptr, true);
  EXPECT_TRUE(flag.move_self_to_leaf);
  EXPECT_FALSE(flag.hierarchy_root);
  // Outside a namespace it is the real root.
  host_.mount_is_hierarchy_root = true;
  RunRoot real = resolve_run_root(host_, std::nullopt, policy_, nullptr, true);
  EXPECT_FALSE(real.move_self_to_leaf);
  EXPECT_TRUE(real.hierarchy_root);
}

TEST_F(RunRootTest, OwnCgroupOutsideTheNamespaceFallsBackAsRoot) {
  make_cgroup(mount_ / "pollkill");
  host_.mount_is_hierarchy_root = false;
  host_.own_cgroup = "/../sibling";
  RunRoot r = resolve_run_root(host_, std::nullopt, policy_, nullptr, true);
  EXPECT_EQ(r.path, mount_ / "pollkill");
  host_.root_user = false;
  try {
    resolve_run_root(host_, std::nullopt, policy_, nullptr, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the cgroup namespace"), std::string::npos)
        << e.what();
  }
}

TEST_F(RunRootTest, ReadOnlyMountIsAnErrorNamingTheFix) {
  host_.mounts.cgroup2_read_only = true;
  for (const std::optional<std::string>& flag :
       {std::optional<std::string>(), std::optional<std::string>("/")}) {
    try {
      resolve_run_root(host_, flag, policy_, nullptr, false);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("is read-only"), std::string::npos) << e.what();
      EXPECT_NE(e.hint().find("mount -o remount,rw " + mount_.string()), std::string::npos)
          << e.hint();
    }
  }
}

TEST_F(RunRootTest, UndelegatedSystemdCgroupFallsBackToPollkillAsRoot) {
  make_cgroup(mount_ / "user.slice" / "session-1.scope");
  make_cgroup(mount_ / "pollkill");
  host_.own_cgroup = "/user.slice/session-1.scope";
  host_.systemd_pid1 = true;
  RunRoot r = resolve_run_root(host_, std::nullopt, policy_, nullptr, false);
  EXPECT_EQ(r.path, mount_ / "pollkill");
  EXPECT_EQ(r.source, "root fallback");
}

TEST_F(RunRootTest, UndelegatedSystemdCgroupWithoutRootNamesTheFix) {
  make_cgroup(mount_ / "user.slice" / "session-1.scope");
  host_.own_cgroup = "/user.slice/session-1.scope";
  host_.systemd_pid1 = true;
  host_.root_user = false;
  try {
    resolve_run_root(host_, std::nullopt, policy_, nullptr, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not delegated"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("systemd-run --user --scope -p Delegate=yes"), std::string::npos);
  }
}

TEST_F(RunRootTest, ScopePollkillStartedCountsAsDelegatedWithoutAMark) {
  make_cgroup(mount_ / "system.slice" / "pollkill-1-0a1b2c3d.scope");
  host_.own_cgroup = "/system.slice/pollkill-1-0a1b2c3d.scope";
  host_.systemd_pid1 = true;
  EXPECT_FALSE(own_cgroup_usable(host_));  // no trusted.delegate mark on a tmpfs directory
  host_.own_delegated = true;
  EXPECT_TRUE(own_cgroup_usable(host_));
  RunRoot r = resolve_run_root(host_, std::nullopt, policy_, nullptr, true);
  EXPECT_EQ(r.path, mount_ / "system.slice" / "pollkill-1-0a1b2c3d.scope");
  EXPECT_EQ(r.source, "own cgroup (a delegated systemd scope)");
  EXPECT_TRUE(r.move_self_to_leaf);
}

TEST_F(RunRootTest, NoCgroup2MountIsAnError) {
  host_.mounts.cgroup2.reset();
  host_.mounts.layout = CgroupLayout::v1_only;
  EXPECT_THROW(resolve_run_root(host_, std::nullopt, policy_, nullptr, false), Error);
}

TEST(RunCgroupName, PidAndRandomPart) {
  std::string a = RunCgroup::make_name();
  std::string b = RunCgroup::make_name();
  std::string prefix = "pollkill-" + std::to_string(::getpid()) + "-";
  EXPECT_EQ(a.rfind(prefix, 0), 0u);
  EXPECT_EQ(a.size(), prefix.size() + 8);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace pollkill
