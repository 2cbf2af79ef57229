// Unit tests for the cgroup v1 limits backend that need no kernel: the v1 mount and
// /proc/self/cgroup parsers, and where v1 cgroups go (against a fake v1 hierarchy in a
// temporary directory). The v1 limit plan and the split between backends are in
// limits_test.cpp. The backend itself runs
// for real only in the hybrid VM (tests/integration/hybrid_test.cpp).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "pollkill/cgroup_v1.h"
#include "pollkill/cgroupfs.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;

TEST(V1Mounts, ListsEachHierarchyWithItsControllersAndRoot) {
  CgroupMounts m = parse_mountinfo(
      "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "35 31 0:32 /lxc/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "36 31 0:32 / /mnt/memory\\040again rw - cgroup cgroup rw,memory\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  ASSERT_EQ(m.v1_mounts.size(), 2u);  // the second memory mount and name=systemd are left out
  EXPECT_EQ(m.v1_mounts[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(m.v1_mounts[0].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(m.v1_mounts[0].root, "/");
  EXPECT_EQ(m.v1_mounts[1].mount_point, "/sys/fs/cgroup/memory");
  EXPECT_EQ(m.v1_mounts[1].root, "/lxc/c1");
  EXPECT_EQ(m.layout, CgroupLayout::hybrid);
}

TEST(V1OwnCgroups, ParsesEveryControllerLine) {
  auto own = parse_own_v1_cgroups(
      "9:name=systemd:/\n8:pids:/a\n4:memory:/process_api/2c7c\n1:cpu,cpuacct:/b:c\n0::/\n");
  EXPECT_EQ(own.size(), 4u) << "pids, memory, cpu, cpuacct";
  EXPECT_EQ(own["memory"], "/process_api/2c7c");
  EXPECT_EQ(own["pids"], "/a");
  EXPECT_EQ(own["cpu"], "/b:c");  // a ':' in the path stays
  EXPECT_EQ(own["cpuacct"], "/b:c");
  EXPECT_EQ(own.count("name=systemd"), 0u);
  EXPECT_TRUE(parse_own_v1_cgroups("0::/\n").empty());
}

// A fake v1 hierarchy: directories with a cgroup.procs file.
class PlaceV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pk-v1-" + std::to_string(::getpid()));
    make_cgroup(dir_ / "memory");
    make_cgroup(dir_ / "memory" / "user");
    make_cgroup(dir_ / "memory" / "user" / "me");
    mounts_.v1_mounts.push_back({dir_ / "memory", "/", {"memory"}});
    mounts_.v1_mounts.push_back({dir_ / "pids", "/outer", {"pids"}});
    make_cgroup(dir_ / "pids" / "inner");
  }
  void TearDown() override { fs::remove_all(dir_); }
  static void make_cgroup(const fs::path& path) {
    fs::create_directories(path);
    std::ofstream(path / "cgroup.procs").put('\n');
  }
  fs::path dir_;
  CgroupMounts mounts_;
};

TEST_F(PlaceV1Test, UsesOwnCgroupOrTheGivenRoot) {
  auto own = parse_own_v1_cgroups("4:memory:/user/me\n8:pids:/outer/inner\n");
  V1Placement memory = place_v1("memory", mounts_, own, std::nullopt);
  EXPECT_TRUE(memory.usable) << memory.why_not;
  EXPECT_EQ(memory.base, dir_ / "memory" / "user" / "me");
  // The mount's root is /outer: /outer/inner is "inner" below the mount point.
  V1Placement pids = place_v1("pids", mounts_, own, std::nullopt);
  EXPECT_TRUE(pids.usable) << pids.why_not;
  EXPECT_EQ(pids.base, dir_ / "pids" / "inner");
  V1Placement given = place_v1("memory", mounts_, own, std::string("/user"));
  EXPECT_TRUE(given.usable) << given.why_not;
  EXPECT_EQ(given.base, dir_ / "memory" / "user");
}

TEST_F(PlaceV1Test, SaysWhyNot) {
  auto own = parse_own_v1_cgroups("4:memory:/gone\n8:pids:/elsewhere\n");
  V1Placement cpu = place_v1("cpu", mounts_, own, std::nullopt);
  EXPECT_FALSE(cpu.usable);
  EXPECT_NE(cpu.why_not.find("no cgroup v1 cpu hierarchy is mounted"), std::string::npos);
  V1Placement memory = place_v1("memory", mounts_, own, std::nullopt);
  EXPECT_FALSE(memory.usable);
  EXPECT_NE(memory.why_not.find("is not a cgroup v1 memory directory"), std::string::npos)
      << memory.why_not;
  V1Placement pids = place_v1("pids", mounts_, own, std::nullopt);
  EXPECT_FALSE(pids.usable);
  EXPECT_NE(pids.why_not.find("outside the mount"), std::string::npos) << pids.why_not;
  if (::geteuid() != 0) {
    ::chmod((dir_ / "memory" / "user").c_str(), 0555);
    V1Placement ro = place_v1("memory", mounts_, own, std::string("/user"));
    EXPECT_FALSE(ro.usable);
    EXPECT_NE(ro.why_not.find("not writable"), std::string::npos) << ro.why_not;
  }
}

}  // namespace
}  // namespace pollkill
