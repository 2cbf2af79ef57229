// Many runs in a row leave nothing behind: no cgroup directories, no descriptors, whether
// pollkill runs as a program or as a library (pollkill::run_task) inside this process.
#include <unistd.h>

#include "harness.h"
#include "pollkill/supervisor.h"

namespace pollkill::testing {
namespace {

constexpr int kRuns = 200;

TEST(RunLeaks, ManyBinaryRunsLeaveNoCgroupsAndNoDescriptors) {
  PK_REQUIRE_CGROUP2();
  // One warm-up run, so that whatever the harness opens once (its result directory) is
  // counted in the baseline.
  RunOutput warm = run_task_cli({}, {"/bin/true"});
  ASSERT_EQ(warm.exit_code, 0) << warm.describe();
  const std::size_t fds_before = open_fd_count();
  ASSERT_GE(fds_before, 3u) << "cannot count descriptors";
  std::vector<pid_t> pids;
  for (int i = 0; i < kRuns; ++i) {
    RunOutput r = run_task_cli({}, {"/bin/true"}, Seconds(20));
    pids.push_back(r.pid);
    ASSERT_FALSE(r.timed_out) << "run " << i << ": " << r.describe();
    ASSERT_EQ(r.exit_code, 0) << "run " << i << ": " << r.describe();
    ASSERT_TRUE(r.json) << "run " << i << ": " << r.describe();
    ASSERT_EQ((*r.json)["status"], "ok") << "run " << i;
    ASSERT_EQ(r.err, "") << "run " << i;
  }
  EXPECT_EQ(open_fd_count(), fds_before);
  auto left = find_leftover_cgroups(pids);
  std::string list;
  for (const auto& d : left) list += "\n  " + d.string();
  EXPECT_TRUE(left.empty()) << left.size() << " run cgroups left behind:" << list;
  cleanup("", pids);
}

TEST(RunLeaks, ManyInProcessRunsKeepDescriptorsAndCgroupsFlat) {
  PK_REQUIRE_CGROUP2();
  RunRequest request;
  request.command = {"/bin/true"};
  request.policy = default_policy();
  // Warm-up: the first run may open things once for good (e.g. caches).
  Result first = run_task(request);
  ASSERT_EQ(first.status, Status::ok) << first.reason;
  const pid_t self = ::getpid();
  const std::size_t fds_before = open_fd_count();
  const std::size_t dirs_before = count_cgroup_dirs_excluding_others(self);
  for (int i = 0; i < kRuns; ++i) {
    Result result = run_task(request);
    ASSERT_EQ(result.status, Status::ok) << "run " << i << ": " << result.reason;
    ASSERT_EQ(result.exit_code, 0) << "run " << i;
    ASSERT_EQ(result.processes_reaped, 0u) << "run " << i;
  }
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_EQ(count_cgroup_dirs_excluding_others(self), dirs_before);
  auto left = find_leftover_cgroups(self);
  EXPECT_TRUE(left.empty()) << left.size() << " run cgroups of this process left behind";
  cleanup("", {self});
}

}  // namespace
}  // namespace pollkill::testing
