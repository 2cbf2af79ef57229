// The CPU-wanted readers against the real kernel: a spinner on a saturated machine wants a
// whole CPU while it receives a fraction of one, a sleeper wants none, in a cgroup (PSI and
// schedstat) and through /proc alone (subreaper mode: schedstat).
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cgroup_fixtures.h"
#include "harness.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/demand.h"
#include "pollkill/pressure.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// What a task received and wanted over a window, measured the way the engine will: cpu.stat
// usage_usec for received; CpuWaitMeter for the wait, fed from the cgroup's cpu.pressure and
// its threads' schedstat (or either alone).
struct Demand {
  double received = 0;
  double wanted = 0;        ///< PSI and schedstat together (cgroup mode)
  double wanted_psi = 0;    ///< cpu.pressure alone
  double wanted_sched = 0;  ///< schedstat alone (subreaper mode)
};

Demand measure(const TestCgroup& cg, pid_t pid, std::chrono::milliseconds window) {
  const CgroupDir dir = CgroupDir::open(cg.path());
  const PressureFile cpu = PressureFile::open(dir, "cpu.pressure");
  EXPECT_TRUE(cpu) << "no cpu.pressure in " << cg.path() << " (a kernel without PSI?)";
  const CgroupThreads threads(dir);
  CpuWaitMeter both, psi_only, sched_only;
  auto observe = [&](SteadyClock::time_point at) {
    const auto psi = cpu.read();
    const auto some = psi ? std::optional<std::uint64_t>(psi->some_usec) : std::nullopt;
    const auto stats = read_schedstats(threads.read());
    both.observe(at, some, stats);
    psi_only.observe(at, some, {});
    // Subreaper mode lists threads through /proc/PID/task, not cgroup.threads.
    sched_only.observe(at, std::nullopt, read_schedstats(threads_of({pid})));
    return dir.read_keyed("cpu.stat")->at("usage_usec");
  };
  const auto t0 = SteadyClock::now();
  const auto cpu0 = observe(t0);
  std::this_thread::sleep_for(window);
  const auto t1 = SteadyClock::now();
  const auto cpu1 = observe(t1);
  const double usec =
      static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count());
  Demand d;
  d.received = static_cast<double>(cpu1 - cpu0) / usec;
  d.wanted = d.received + static_cast<double>(both.total_usec()) / usec;
  d.wanted_psi = d.received + static_cast<double>(psi_only.total_usec()) / usec;
  d.wanted_sched = d.received + static_cast<double>(sched_only.total_usec()) / usec;
  return d;
}

std::string describe(const Demand& d) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "received %.3f, wanted %.3f (PSI alone %.3f, schedstat alone %.3f)", d.received,
                d.wanted, d.wanted_psi, d.wanted_sched);
  return buf;
}

TEST(Demand, SpinnerOnASaturatedMachineWantsAWholeCpu) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "spin"});
  CpuHogs hogs(3);  // three per CPU, as in the issue
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Demand d = measure(cg, pid, std::chrono::milliseconds(2000));
  RecordProperty("demand", describe(d));
  std::printf("spinner beside %zu hogs: %s\n", hogs.count(), describe(d).c_str());
  // One of (3 x CPUs + 1) runnable threads gets about a quarter to a third of a CPU; it is
  // runnable all the time, so it wants a whole one. The spin band's default is 0.9.
  EXPECT_LT(d.received, 0.6) << describe(d);
  EXPECT_GE(d.wanted, 0.9) << describe(d);
  EXPECT_GE(d.wanted_sched, 0.9) << describe(d);
  EXPECT_LE(d.wanted, 1.1) << describe(d);
  // PSI alone is a lower bound: never above what schedstat measured (with a margin for the
  // two readings not being taken at the same instant).
  EXPECT_LE(d.wanted_psi, d.wanted_sched + 0.05) << describe(d);
  EXPECT_GT(d.wanted_psi, d.received) << describe(d);
}

TEST(Demand, TwoSpinningProcessesWantTwoCpus) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  // A spinning thread beside an idle one, and a second spinning process: the cgroup's figures
  // sum every thread of both (the schedstat-alone figure follows the first process only).
  const pid_t pid = cg.start({POLLKILL_STUCK, "spinner", "1"});
  cg.start({POLLKILL_STUCK, "spin"});
  CpuHogs hogs(3);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Demand d = measure(cg, pid, std::chrono::milliseconds(2000));
  std::printf("two spinners beside %zu hogs: %s\n", hogs.count(), describe(d).c_str());
  EXPECT_GE(d.wanted, 1.8) << describe(d);
  EXPECT_LE(d.wanted, 2.2) << describe(d);
}

TEST(Demand, SleeperWantsNothing) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "hang"});
  CpuHogs hogs(3);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Demand d = measure(cg, pid, std::chrono::milliseconds(1000));
  std::printf("sleeper beside %zu hogs: %s\n", hogs.count(), describe(d).c_str());
  EXPECT_LT(d.wanted, 0.01) << describe(d);
  EXPECT_LT(d.wanted_sched, 0.01) << describe(d);
}

TEST(Demand, ThrottledSpinnerWantsAWholeCpu) {
  // The task's own cpu.max keeps it runnable but off the CPU: that is waiting too.
  PK_REQUIRE_CONTROLLERS("cpu");
  if (!own_cgroup_is_root()) GTEST_SKIP() << "needs the cpu controller for a child of the root";
  std::ofstream(*cgroup2_mount() / "cgroup.subtree_control") << "+cpu";
  TestCgroup cg;
  std::ofstream(cg.path() / "cpu.max") << "30000 100000";
  const pid_t pid = cg.start({POLLKILL_STUCK, "spin"});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Demand d = measure(cg, pid, std::chrono::milliseconds(3000));
  std::printf("spinner under cpu.max 0.3: %s\n", describe(d).c_str());
  EXPECT_LT(d.received, 0.45) << describe(d);
  EXPECT_GE(d.wanted, 0.9) << describe(d);
}

// The share of wall time a pk_thrash run in a cgroup under `limit` spent with every thread
// stalled on memory (memory.pressure full), read through PressureFile.
double memory_full_share(const std::string& data, const std::string& limit, int mib) {
  TestCgroup cg;
  std::ofstream(cg.path() / "memory.max") << limit;
  std::ofstream(cg.path() / "memory.swap.max") << "0";
  const CgroupDir dir = CgroupDir::open(cg.path());
  const PressureFile memory = PressureFile::open(dir, "memory.pressure");
  EXPECT_TRUE(memory);
  const auto t0 = SteadyClock::now();
  const auto full0 = memory.read()->full_usec.value_or(0);
  const pid_t pid = cg.start({POLLKILL_THRASH, data, std::to_string(mib), "15"}, false);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const auto t1 = SteadyClock::now();
  const auto full1 = memory.read()->full_usec.value_or(0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "pk_thrash status " << status;
  const double usec =
      static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count());
  return static_cast<double>(full1 - full0) / usec;
}

TEST(Demand, MemoryFullStallGrowsForAWorkingSetLargerThanTheLimit) {
  PK_REQUIRE_CONTROLLERS("memory");
  if (!own_cgroup_is_root()) GTEST_SKIP() << "needs the memory controller for a child of the root";
  std::ofstream(*cgroup2_mount() / "cgroup.subtree_control") << "+memory";
  // The working set must be pages the kernel can drop and read back: a file on a disk (or, in
  // the VM, on the host's root through 9p with its page cache), not tmpfs (without swap its
  // pages cannot be reclaimed). This test binary is such a file, and pk_thrash only reads it.
  const std::string data = fs::canonical("/proc/self/exe").string();
  struct statfs fs {};
  if (::statfs(data.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
    GTEST_SKIP() << data << " is on tmpfs: its pages cannot be reclaimed without swap";
  }
  if (fs::file_size(data) < (48u << 20)) {
    GTEST_SKIP() << data << " is shorter than the 48 MiB working set (a build without debug info)";
  }
  const double thrashing = memory_full_share(data, "32M", 48);
  const double fitting = memory_full_share(data, "32M", 16);
  std::printf("memory full stall under memory.max 32M: working set 48 MiB %.1f%%, 16 MiB %.1f%%\n",
              thrashing * 100, fitting * 100);
  EXPECT_GT(thrashing, 0.05);
  EXPECT_LT(fitting, 0.01);
}

}  // namespace
}  // namespace pollkill::testing
