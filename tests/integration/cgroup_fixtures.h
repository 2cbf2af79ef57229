// Cgroup layouts that integration tests build for pollkill to run in: the controller checks
// shared by the limit tests, and a "job" cgroup that pollkill is started in (alone, beside
// other processes, or with only some controllers delegated to it).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"

namespace pollkill::testing {

/// Whether this test process lives in the hierarchy root ("0::/").
bool own_cgroup_is_root();

/// The controllers the limit tests' run root offers: the hierarchy root's own when this
/// process lives there (the VM), else what the root enables for its children.
std::vector<std::string> root_controllers();

/// Skips (host) or fails (VM) unless every controller is available at the hierarchy root.
#define PK_REQUIRE_CONTROLLERS(...)                                                      \
  do {                                                                                   \
    PK_REQUIRE_CGROUP2();                                                                \
    auto have_ = ::pollkill::testing::root_controllers();                                \
    for (const char* c_ : {__VA_ARGS__}) {                                               \
      if (std::find(have_.begin(), have_.end(), c_) == have_.end()) {                    \
        if (std::getenv("POLLKILL_IN_VM"))                                               \
          FAIL() << "the VM must offer the " << c_ << " controller";                     \
        GTEST_SKIP() << "the cgroup v2 '" << c_ << "' controller is not available here " \
                     << "(hybrid host); this test runs in the VM (tests/vm/run)";        \
      }                                                                                  \
    }                                                                                    \
  } while (0)

/// A command (sh -c) that prints one attribute of its own cgroup: `attr` of the cgroup named
/// by /proc/self/cgroup under the cgroup2 mount (inside a cgroup namespace too).
std::vector<std::string> print_own_attr(const std::string& attr);

/// A cgroup "pk-job-<marker>" that pollkill is started in, so that its own cgroup is not the
/// hierarchy root. With `delegated` controllers it sits in an outer cgroup "pk-outer-<marker>"
/// whose cgroup.subtree_control enables only those: a partly delegated subtree. TearDown
/// fails the test if pollkill left a cgroup in the job or a controller enabled there, then
/// removes everything (killing what the test left running).
class JobCgroup : public ::testing::Test {
 protected:
  /// Creates the cgroups; call from SetUp after the test's requirement checks.
  void make_job(const std::vector<std::string>& delegated = {});
  void TearDown() override;

  /// Starts `sh -c 'move into the job cgroup; [extra]; exec pollkill ARGS'`.
  std::unique_ptr<Pollkill> start_in_job(const std::string& extra,
                                         const std::vector<std::string>& args);
  /// Starts `sleep 1000.<marker>` inside the job cgroup (another process beside pollkill,
  /// not its child) and waits until it is there.
  std::unique_ptr<Pollkill> start_sibling(const std::string& marker);
  /// The job's cgroup.procs.
  std::vector<pid_t> job_procs() const;

  std::filesystem::path outer_;  ///< empty without `delegated`
  std::filesystem::path job_;
};

/// A cgroup of the test's own under the cgroup2 mount ("pk-test-<marker>") and the processes the
/// test starts in it, for tests that drive the core's kernel readers directly (no pollkill
/// binary). The destructor kills everything in it (thawing it first), reaps what it started
/// and removes it. Needs PK_REQUIRE_CGROUP2 first.
class TestCgroup {
 public:
  TestCgroup();
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// Starts ARGV in the cgroup (fork; the child joins it, then execs) with stdout to a file
  /// (never a pipe it could fill); returns its pid. With `wait_ready` waits (up to 30 s) until
  /// it prints a line "ready".
  pid_t start(const std::vector<std::string>& argv, bool wait_ready = true);
  /// What the `index`th process started (0: the first) wrote to stdout so far.
  std::string output(std::size_t index) const;
  /// Writes cgroup.freeze and waits (up to 10 s) until cgroup.events says so.
  void freeze(bool frozen);
  std::vector<pid_t> procs() const;

 private:
  std::filesystem::path path_;
  std::vector<pid_t> started_;
  TempDir outputs_;
};

/// Busy loops outside every test cgroup (children of the test process, killed with it), to
/// saturate the machine: `per_cpu` per CPU this process may run on.
class CpuHogs {
 public:
  explicit CpuHogs(int per_cpu);
  ~CpuHogs();
  CpuHogs(const CpuHogs&) = delete;
  CpuHogs& operator=(const CpuHogs&) = delete;
  std::size_t count() const { return pids_.size(); }

 private:
  std::vector<pid_t> pids_;
};

}  // namespace pollkill::testing
