// pollkill under hostile conditions around it rather than in the task: the runner itself
// stopped across a deadline, and (run_relay_test.cpp) readers that stall or go away.
#include <signal.h>
#include <unistd.h>

#include "harness.h"

namespace pollkill::testing {
namespace {

class RunStalledRunner : public ::testing::TestWithParam<Via> {};

// Regression: pollkill SIGSTOPped from before the task's end until after its wall time used
// to record `timeout` with exit_code 0: when it ran again, the wall timer's verdict was taken
// although the task had already ended.
TEST_P(RunStalledRunner, ATaskThatEndedWhileTheRunnerWasStoppedKeepsItsStatus) {
  PK_REQUIRE_CGROUP2();
  const std::string marker = unique_marker();
  auto run = start_task(GetParam(), {"--wall-time", "2s"}, {"sleep", "1." + marker});
  ASSERT_TRUE(
      wait_until([&] { return !processes_matching(marker, "sleep").empty(); }, Seconds(10)));
  run->signal(SIGSTOP);
  // The task ends (about 1 s) and the wall time passes (2 s) while pollkill is stopped.
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker, "sleep").empty(); }, Seconds(10)));
  ::usleep(2500 * 1000);
  run->signal(SIGCONT);
  RunOutput r = finish_task(*run);
  ASSERT_FALSE(r.timed_out) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.json->dump();
  EXPECT_EQ((*r.json)["exit_code"], 0) << r.json->dump();
  expect_nothing_left(r, marker);
}

INSTANTIATE_TEST_SUITE_P(Both, RunStalledRunner, both_vias(), via_name);

}  // namespace
}  // namespace pollkill::testing
