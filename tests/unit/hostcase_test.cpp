// The host classification `pollkill doctor` prints, on fake layouts: which case, what the
// line says, and for each limit whether it is available and the fix.
#include "pollkill/hostcase.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pollkill {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kAll = {"cpuset",  "cpu",  "io",   "memory",
                                       "hugetlb", "pids", "rdma", "misc"};

// A pure cgroup v2 host at /sys/fs/cgroup; the run root is `root` (relative to the mount).
HostFacts pure_host(const std::string& root, std::vector<std::string> controllers) {
  HostFacts f;
  f.host.mounts.cgroup2 = "/sys/fs/cgroup";
  f.host.mounts.layout = CgroupLayout::pure;
  f.host.own_cgroup = root;
  f.kernel_controllers = kAll;
  RunRoot r;
  r.path = root == "/" ? fs::path("/sys/fs/cgroup") : fs::path("/sys/fs/cgroup" + root);
  r.source = root == "/" ? "own cgroup (the hierarchy root)" : "own cgroup";
  r.hierarchy_root = root == "/";
  r.move_self_to_leaf = root != "/";
  f.run_root = r;
  f.run_root_controllers = std::move(controllers);
  return f;
}

const LimitAvailability& limit(const HostAssessment& a, const std::string& name) {
  for (const auto& l : a.limits) {
    if (l.name == name) return l;
  }
  throw std::runtime_error("no limit " + name);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct Expect {
  std::string name;
  HostFacts facts;
  HostCase kind;
  std::string detail_part;
  bool memory, cpu, pids;
  std::string cpu_fix_part;  ///< when cpu is unavailable
};

std::vector<Expect> cases() {
  std::vector<Expect> out;
  out.push_back({"pure root", pure_host("/", kAll), HostCase::pure_root,
                 "/sys/fs/cgroup offers cpuset cpu io memory hugetlb pids rdma misc", true, true,
                 true, ""});
  out.push_back({"delegated", pure_host("/job.slice/a", {"cpu", "memory", "pids"}),
                 HostCase::delegated, "'/sys/fs/cgroup/job.slice/a' offers cpu memory pids", true,
                 true, true, ""});
  // The accelerator host: only memory delegated.
  out.push_back({"partly delegated", pure_host("/job.slice/a", {"memory"}),
                 HostCase::partly_delegated, "offers memory; not delegated: cpu, pids", true, false,
                 false, "echo +cpu > /sys/fs/cgroup/job.slice/cgroup.subtree_control"});
  {
    // The same, with another process beside pollkill: no controller can be enabled.
    HostFacts f = pure_host("/job.slice/a", {"memory"});
    f.others = {4242};
    f.others_described = {"pid 4242 (bash)"};
    out.push_back({"partly delegated, shared", f, HostCase::partly_delegated,
                   "also holds 1 other process (pid 4242 (bash))", false, false, false,
                   "echo +cpu"});
  }
  {
    HostFacts f = pure_host("/", {"memory", "pids"});
    f.host.mount_is_hierarchy_root = false;
    f.run_root->hierarchy_root = false;
    f.run_root->source = "own cgroup (the cgroup namespace's root)";
    f.kernel_controllers = kAll;
    out.push_back({"cgroup namespace", f, HostCase::cgroup_namespace,
                   "starts at a cgroup namespace's root", true, false, true,
                   "this container's cgroup (the cgroup namespace's root) was not given cpu"});
  }
  {
    HostFacts f = pure_host("/", {"hugetlb"});
    f.host.mounts.cgroup2 = "/sys/fs/cgroup/unified";
    f.host.mounts.layout = CgroupLayout::hybrid;
    f.host.mounts.v1_controllers = {"cpu", "memory", "pids"};
    f.run_root->path = "/sys/fs/cgroup/unified";
    out.push_back({"hybrid", f, HostCase::hybrid, "beside cgroup v1 (cpu, memory, pids)", false,
                   false, false, "keeps cpu in cgroup v1"});
  }
  {
    HostFacts f = pure_host("/", {"memory", "pids"});
    f.kernel_controllers = {"memory", "pids"};  // cpu turned off on the command line
    out.push_back({"kernel without cpu", f, HostCase::pure_root, "offers memory pids", true, false,
                   true, "cgroup_disable="});
  }
  {
    HostFacts f;
    f.host.mounts.cgroup2 = "/sys/fs/cgroup";
    f.host.mounts.cgroup2_read_only = true;
    f.run_root_error = "the cgroup2 mount '/sys/fs/cgroup' is read-only: ...";
    f.run_root_fix = "remount it read-write ...";
    out.push_back(
        {"read-only mount", f, HostCase::no_cgroup, "is read-only", false, false, false, ""});
  }
  {
    HostFacts f;
    f.host.mounts.layout = CgroupLayout::v1_only;
    out.push_back({"v1 only", f, HostCase::no_cgroup, "no cgroup2 hierarchy is mounted (v1-only)",
                   false, false, false, ""});
  }
  return out;
}

TEST(AssessHost, EachCaseNamesItselfAndItsLimits) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    HostAssessment a = assess_host(c.facts);
    EXPECT_EQ(a.kind, c.kind) << to_string(a.kind);
    EXPECT_TRUE(has(a.detail, c.detail_part)) << a.detail;
    EXPECT_EQ(limit(a, "memory").available, c.memory) << limit(a, "memory").detail;
    EXPECT_EQ(limit(a, "cpu").available, c.cpu) << limit(a, "cpu").detail;
    EXPECT_EQ(limit(a, "pids").available, c.pids) << limit(a, "pids").detail;
    for (const auto& l : a.limits) {
      // Every unavailable limit says why; outside no_cgroup (where the host line carries
      // the fix) it also says what to do.
      if (!l.available) {
        EXPECT_FALSE(l.detail.empty()) << l.name;
        if (a.kind != HostCase::no_cgroup) {
          EXPECT_FALSE(l.fix.empty()) << l.name;
        }
      } else {
        EXPECT_TRUE(l.fix.empty()) << l.name;
      }
    }
    if (!c.cpu && !c.cpu_fix_part.empty()) {
      EXPECT_TRUE(has(limit(a, "cpu").fix, c.cpu_fix_part)) << limit(a, "cpu").fix;
    }
    const auto& time = limit(a, "wall_time, cpu_time, hang, spin");
    EXPECT_TRUE(time.available);  // through cpu.stat, or /proc in subreaper mode
  }
}

TEST(AssessHost, NoCgroupCarriesTheRunRootsReasonAndFix) {
  HostFacts f;
  f.host.mounts.cgroup2 = "/sys/fs/cgroup";
  f.run_root_error = "no cgroup pollkill may use: its own cgroup '/a' is not writable";
  f.run_root_fix = "pass --cgroup-root";
  HostAssessment a = assess_host(f);
  EXPECT_EQ(a.kind, HostCase::no_cgroup);
  EXPECT_EQ(a.detail, f.run_root_error);
  EXPECT_EQ(a.fix, f.run_root_fix);
}

TEST(AssessHost, SharedRunRootExplainsEbusyAndTheFix) {
  HostFacts f = pure_host("/job", {"memory", "cpu", "pids"});
  f.others = {1, 2, 3, 4, 5};
  f.others_described = {"pid 1 (a)", "pid 2 (b)", "pid 3 (c)", "pid 4 (d)", "pid 5 (e)"};
  HostAssessment a = assess_host(f);
  EXPECT_EQ(a.kind, HostCase::delegated);
  EXPECT_TRUE(has(a.detail, "5 other processes (pid 1 (a), pid 2 (b), pid 3 (c), and 2 more)"))
      << a.detail;
  EXPECT_TRUE(has(a.detail, "EBUSY")) << a.detail;
  const auto& memory = limit(a, "memory");
  EXPECT_FALSE(memory.available);
  EXPECT_TRUE(has(memory.fix, "a cgroup of its own")) << memory.fix;
  EXPECT_TRUE(has(memory.fix, "/sys/fs/cgroup/job")) << memory.fix;
}

TEST(ControllerFix, NamesTheParentsSubtreeControlForEachCase) {
  HostFacts f = pure_host("/a/b", {"memory"});
  EXPECT_TRUE(has(controller_fix(f.host, *f.run_root, kAll, {"cpu"}),
                  "`echo +cpu > /sys/fs/cgroup/a/cgroup.subtree_control`"));
  EXPECT_TRUE(has(controller_fix(f.host, *f.run_root, kAll, {"cpu", "pids"}),
                  "`echo '+cpu +pids' > /sys/fs/cgroup/a/cgroup.subtree_control`"));
  EXPECT_TRUE(has(controller_fix(f.host, *f.run_root, kAll, {"cpu"}), "missing_controllers"));
  // Unknown kernel controllers: no claim about the kernel.
  EXPECT_FALSE(has(controller_fix(f.host, *f.run_root, {}, {"cpu"}), "kernel offers no"));
  EXPECT_TRUE(has(controller_fix(f.host, *f.run_root, {"memory"}, {"cpu"}),
                  "the kernel offers no cpu controller"));
}

TEST(HostCaseNames, AreTheWordsDoctorPrints) {
  EXPECT_EQ(to_string(HostCase::pure_root), "pure cgroup v2, hierarchy root");
  EXPECT_EQ(to_string(HostCase::delegated), "delegated subtree");
  EXPECT_EQ(to_string(HostCase::partly_delegated), "partly delegated subtree");
  EXPECT_EQ(to_string(HostCase::cgroup_namespace), "cgroup namespace");
  EXPECT_EQ(to_string(HostCase::hybrid), "hybrid");
  EXPECT_EQ(to_string(HostCase::no_cgroup), "no usable cgroup");
}

TEST(DefaultJobs, AffinityLoweredToTheCpuQuota) {
  EXPECT_EQ(jobs_for(8, ""), 8);
  EXPECT_EQ(jobs_for(8, "max 100000\n"), 8);
  EXPECT_EQ(jobs_for(8, "150000 100000\n"), 2);
  EXPECT_EQ(jobs_for(8, "50000 100000\n"), 1);
  EXPECT_EQ(jobs_for(2, "400000 100000\n"), 2);
  EXPECT_EQ(jobs_for(0, ""), 1);
  EXPECT_GE(default_jobs(), 1);
}

}  // namespace
}  // namespace pollkill
