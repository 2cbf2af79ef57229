// Pure pieces of batch: retry decisions, backoff, adaptive wall time, joblog lines, results
// files, the summary and gc's name parsing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "pollkill/batch.h"
#include "pollkill/fdlimit.h"
#include "pollkill/gc.h"
#include "pollkill/policy_schema.h"
#include "pollkill/report.h"
#include "pollkill/results.h"
#include "pollkill/retry.h"

namespace pollkill {
namespace {

TEST(Retry, DefaultRetriesCrashesButNotFailures) {
  RetryPolicy retry;
  retry.attempts = 3;
  EXPECT_TRUE(should_retry(retry, Status::crashed, 1));
  EXPECT_TRUE(should_retry(retry, Status::hung, 2));
  EXPECT_FALSE(should_retry(retry, Status::hung, 3));
  EXPECT_FALSE(should_retry(retry, Status::failed, 1));
  EXPECT_FALSE(should_retry(retry, Status::ok, 1));
  EXPECT_FALSE(should_retry(retry, Status::cancelled, 1));
  retry.on = {"failed", "cancelled"};
  EXPECT_TRUE(should_retry(retry, Status::failed, 1));
  EXPECT_FALSE(should_retry(retry, Status::cancelled, 1));
  EXPECT_FALSE(should_retry(RetryPolicy{}, Status::crashed, 1));  // attempts = 1
}

TEST(Retry, BackoffDoubles) {
  RetryPolicy retry;
  retry.backoff = Duration(500);
  EXPECT_EQ(retry_backoff(retry, 1), Duration(500));
  EXPECT_EQ(retry_backoff(retry, 2), Duration(1000));
  EXPECT_EQ(retry_backoff(retry, 4), Duration(4000));
  EXPECT_EQ(retry_backoff(retry, 200), Duration(24 * 3600 * 1000));
  EXPECT_EQ(retry_backoff(RetryPolicy{}, 3), Duration(0));
}

TEST(Escalation, CountsOomThrashingAndTimeoutOnly) {
  EscalationSteps steps;
  for (Status s : {Status::oom, Status::thrashing, Status::timeout, Status::failed, Status::hung,
                   Status::crashed, Status::spinning, Status::cpu_limit})
    steps.after(s);
  EXPECT_EQ(steps.memory, 2);
  EXPECT_EQ(steps.wall_time, 1);
}

TEST(Escalation, MultipliesPerStepUpToTheMaximum) {
  Limits limits;
  limits.memory = 64ull << 20;
  limits.wall_time = Duration(10'000);
  RetryEscalation e;
  e.memory = 2;
  e.memory_max = 200ull << 20;
  e.wall_time = 1.5;
  e.wall_time_max = Duration(20'000);
  EXPECT_EQ(escalate_limits(limits, e, {}), limits);  // no earlier verdict: as it is
  Limits one = escalate_limits(limits, e, {1, 0});
  EXPECT_EQ(one.memory, 128ull << 20);
  EXPECT_EQ(one.wall_time, Duration(10'000));  // a timeout did not happen
  Limits two = escalate_limits(limits, e, {2, 1});
  EXPECT_EQ(two.memory, 200ull << 20);  // 256 MiB capped
  EXPECT_EQ(two.wall_time, Duration(15'000));
  EXPECT_EQ(escalate_limits(limits, e, {0, 5}).wall_time, Duration(20'000));
  // A large step count saturates rather than overflows.
  EXPECT_EQ(escalate_limits(limits, e, {1000, 1000}).memory, 200ull << 20);
  e.memory_max.reset();
  e.wall_time_max.reset();
  Limits huge = escalate_limits(limits, e, {1000, 1000});
  EXPECT_GT(*huge.memory, 1ull << 60);
  EXPECT_LE(huge.wall_time, kMaxDuration);
}

TEST(Escalation, LeavesUnsetLimitsAndLimitsAboveTheCapAlone) {
  RetryEscalation e;
  e.memory = 2;
  e.memory_max = 1ull << 30;
  e.wall_time = 2;
  Limits none;
  EXPECT_EQ(escalate_limits(none, e, {3, 3}), none);
  Limits big;
  big.memory = 2ull << 30;  // already above memory_max: not lowered
  EXPECT_EQ(escalate_limits(big, e, {1, 0}).memory, 2ull << 30);
  Limits odd;
  odd.memory = 1000;  // x1.5 = 1500 bytes, rounded up to a whole KiB
  e.memory = 1.5;
  EXPECT_EQ(escalate_limits(odd, e, {1, 0}).memory, 2048u);
  Limits no_factor;
  no_factor.memory = 64ull << 20;
  EXPECT_EQ(escalate_limits(no_factor, RetryEscalation{}, {4, 4}), no_factor);
}

TEST(Escalation, LargestMemoryIsTheLastRetryAfterOom) {
  RetryPolicy retry;
  retry.attempts = 3;
  retry.escalate.memory = 2;
  Limits limits;
  EXPECT_EQ(largest_escalated_memory(limits, retry), std::nullopt);
  limits.memory = 64ull << 20;
  EXPECT_EQ(largest_escalated_memory(limits, retry), 256ull << 20);
  retry.escalate.memory_max = 100ull << 20;
  EXPECT_EQ(largest_escalated_memory(limits, retry), 100ull << 20);
  retry.attempts = 1;
  EXPECT_EQ(largest_escalated_memory(limits, retry), 64ull << 20);
}

TEST(Escalation, RecordsTheLimitsAnAttemptRanWith) {
  Result result;
  Limits limits;
  limits.memory = 128ull << 20;
  limits.wall_time = Duration(1500);
  set_ran_with(result, limits);
  EXPECT_EQ(result.memory_limit_bytes, 128ull << 20);
  EXPECT_EQ(result.wall_time_limit_s, 1.5);
  set_ran_with(result, Limits{});
  EXPECT_EQ(result.memory_limit_bytes, std::nullopt);
  EXPECT_EQ(result.wall_time_limit_s, std::nullopt);
}

TEST(AdaptiveWallTime, CapOnlyUntilFiveOkThenPercentOfMedian) {
  Limits limits;
  limits.wall_time_percent = 300;
  limits.wall_time_max = Duration(10000);
  WallTimeStats stats;
  EXPECT_EQ(effective_wall_time(limits, stats).limit, Duration(10000));
  for (double s : {1.0, 2.0, 3.0, 4.0}) stats.add(s);
  EXPECT_EQ(effective_wall_time(limits, stats).limit, Duration(10000));
  stats.add(0.5);  // five: 0.5 1 2 3 4 -> median 2
  auto limit = effective_wall_time(limits, stats);
  EXPECT_EQ(limit.limit, Duration(6000));
  EXPECT_NE(limit.source.find("300% of the median ok wall time 2s"), std::string::npos)
      << limit.source;
  for (int i = 0; i < 10; ++i) stats.add(8);  // median 8 -> 24s, capped at 10s
  EXPECT_EQ(effective_wall_time(limits, stats).limit, Duration(10000));
  EXPECT_NE(effective_wall_time(limits, stats).source.find("wall_time_max"), std::string::npos);
  Limits fixed;
  fixed.wall_time = Duration(2000);
  EXPECT_EQ(effective_wall_time(fixed, stats).limit, Duration(2000));
  Limits uncapped;
  uncapped.wall_time_percent = 200;
  EXPECT_FALSE(effective_wall_time(uncapped, WallTimeStats{}).limit);
}

// However long the ok tasks and however large the percentage, the limit stays a duration a
// timer can take.
TEST(AdaptiveWallTime, StaysWithinTheLongestDuration) {
  Limits limits;
  limits.wall_time_percent = kMaxWallTimePercent;
  WallTimeStats stats;
  for (int i = 0; i < 5; ++i) stats.add(3e9);  // about 95 years each
  EXPECT_EQ(effective_wall_time(limits, stats).limit, kMaxDuration);
}

TEST(AdaptiveWallTime, MemoryIsBounded) {
  WallTimeStats stats;
  for (int i = 0; i < 100000; ++i) stats.add(1.0);
  EXPECT_EQ(stats.count(), 100000u);
  EXPECT_DOUBLE_EQ(stats.median(), 1.0);
}

TEST(Joblog, LinesAreGnuParallelFormat) {
  EXPECT_EQ(joblog_header(),
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
  JoblogEntry e{3, 1700000000.25, 1.5, 1, 0, "sh -c 'exit 1'"};
  EXPECT_EQ(format_joblog_line(e), "3\t:\t1700000000.250\t   1.500\t0\t0\t1\t0\tsh -c 'exit 1'");
  EXPECT_EQ(shell_join({"echo", "a b", "it's", "x=1"}), "echo 'a b' 'it'\\''s' x=1");
  Result r;
  r.command = {"sleep", "9"};
  r.status = Status::timeout;
  r.signal = 9;
  JoblogEntry t = joblog_entry(r, 4);
  EXPECT_EQ(t.exitval, 124);
  EXPECT_EQ(t.signal, 9);
}

class ResultsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("pk-results-" + std::to_string(::getpid()) + ".jsonl"))
                .string();
    std::filesystem::remove(path_);
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::string path_;
};

Result make(const std::string& id, int attempt, bool final, Status status) {
  Result r;
  r.id = id;
  r.attempt = attempt;
  r.final = final;
  r.status = status;
  r.command = {"task", id};
  return r;
}

TEST_F(ResultsFileTest, AppendsAndReadsBack) {
  {
    AppendFile file = AppendFile::open(path_);
    file.append(dump_result_line(make("a", 1, false, Status::crashed)));
    file.append(dump_result_line(make("a", 2, true, Status::ok)));
    file.append(dump_result_line(make("b", 1, true, Status::cancelled)));
    EXPECT_TRUE(file.dirty());
    file.sync();
    EXPECT_FALSE(file.dirty());
  }
  ResumeState state = read_results(path_);
  EXPECT_TRUE(state.warnings.empty());
  ASSERT_EQ(state.tasks.count("a"), 1u);
  EXPECT_TRUE(state.tasks["a"].final);
  EXPECT_EQ(state.tasks["a"].attempts, 2);
  EXPECT_EQ(state.tasks["a"].command, command_json({"task", "a"}));
  EXPECT_FALSE(state.tasks["b"].final);  // cancelled tasks run again on resume
}

// A resumed batch escalates from the attempts the results file records.
TEST_F(ResultsFileTest, ResumeCountsTheVerdictsThatEscalate) {
  {
    AppendFile file = AppendFile::open(path_);
    file.append(dump_result_line(make("a", 1, false, Status::oom)));
    file.append(dump_result_line(make("a", 2, false, Status::timeout)));
    file.append(dump_result_line(make("a", 3, false, Status::thrashing)));
    file.append(dump_result_line(make("b", 1, false, Status::crashed)));
    file.sync();
  }
  ResumeState state = read_results(path_);
  EXPECT_EQ(state.tasks["a"].escalation, (EscalationSteps{2, 1}));
  EXPECT_EQ(state.tasks["b"].escalation, (EscalationSteps{0, 0}));
}

TEST_F(ResultsFileTest, TornLastLineIsSkippedWithAWarningAndNotExtended) {
  std::string full = dump_result_line(make("a", 1, true, Status::ok));
  std::ofstream(path_) << full << "\n" << full.substr(0, 20);
  ResumeState state = read_results(path_);
  ASSERT_EQ(state.warnings.size(), 1u);
  EXPECT_NE(state.warnings[0].find(":2: "), std::string::npos) << state.warnings[0];
  EXPECT_TRUE(state.tasks["a"].final);
  {
    AppendFile file = AppendFile::open(path_);  // puts the next record on a line of its own
    file.append(dump_result_line(make("b", 1, true, Status::ok)));
  }
  state = read_results(path_);
  EXPECT_EQ(state.warnings.size(), 1u);
  EXPECT_TRUE(state.tasks["b"].final);
}

// A complete record with a field of the wrong type or range is not a torn line: it is refused
// with FILE:LINE and the field, never a raw JSON library exception or an overflow later.
TEST_F(ResultsFileTest, BadFieldsAreRefusedWithFileAndLine) {
  const std::string good = dump_result_line(make("a", 1, false, Status::crashed));
  const struct {
    std::string line;
    std::string message;
  } cases[] = {
      {R"({"id": "b", "attempt": "x"})", ":2: attempt: expected an integer from 1 to 1000"},
      {R"({"id": "b", "attempt": 2147483647})", ":2: attempt: expected an integer from 1 to 1000"},
      {R"({"id": "b", "attempt": 0})", ":2: attempt: expected an integer"},
      {R"({"id": "b", "attempt": 18446744073709551615})", ":2: attempt: expected an integer"},
      {R"({"id": "b", "attempt": 1.5})", ":2: attempt: expected an integer"},
      {R"({"id": "b", "final": "yes"})", ":2: final: expected true or false, got \"yes\""},
      {R"({"id": "b", "status": 3})", ":2: status: expected a string"},
      {R"({"id": "b", "command": [1]})", ":2: command: expected an array of strings"},
      {R"({"id": "b", "command": "ls"})", ":2: command: expected an array of strings"},
  };
  for (const auto& c : cases) {
    std::ofstream(path_, std::ios::trunc) << good << "\n" << c.line << "\n";
    try {
      read_results(path_);
      ADD_FAILURE() << "accepted: " << c.line;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path_ + c.message), std::string::npos)
          << c.line << " -> " << e.what();
    }
  }
  std::ofstream(path_, std::ios::trunc) << good << "\n"
                                        << R"({"id": "a", "attempt": 1000, "final": false})"
                                        << "\n";
  EXPECT_EQ(read_results(path_).tasks["a"].attempts, 1000);
}

TEST(Summary, CountsFinalsRetriesAndKeepsBoundedLists) {
  Summary summary;
  SummaryRecord r;
  r.id = "x";
  r.status = Status::crashed;
  r.final = false;
  summary.add(r);
  r.attempt = 2;
  r.final = true;
  r.status = Status::ok;
  summary.add(r);
  for (int i = 0; i < 100; ++i) {
    SummaryRecord f;
    f.id = std::to_string(i);
    f.status = Status::failed;
    f.wall_s = i;
    summary.add(f);
  }
  EXPECT_EQ(summary.finals(), 101u);
  EXPECT_EQ(summary.count(Status::ok), 1u);
  EXPECT_EQ(summary.not_ok(), 100u);
  EXPECT_EQ(summary.exit_code(), 1);
  auto j = summary.to_json();
  EXPECT_EQ(j["retries"], 1);
  EXPECT_EQ(j["slowest"].size(), Summary::kSlowest);
  EXPECT_EQ(j["slowest"][0]["id"], "99");
  EXPECT_EQ(j["failed"].size(), Summary::kListed);
  EXPECT_NE(summary.format_text().find("and 80 more"), std::string::npos);
}

TEST(Summary, ByIdALaterFinalRecordReplacesAnEarlierOne) {
  Summary summary(true);
  SummaryRecord r;
  r.id = "t";
  r.status = Status::cancelled;
  summary.add(r);
  r.status = Status::ok;
  r.attempt = 2;
  summary.add(r);
  EXPECT_EQ(summary.finals(), 1u);
  EXPECT_EQ(summary.exit_code(), 0);
}

TEST(Gc, RunCgroupNames) {
  EXPECT_EQ(run_cgroup_owner("pollkill-123-0a1b2c3d"), 123);
  EXPECT_FALSE(run_cgroup_owner("pollkill-123-0a1b2c3"));
  EXPECT_FALSE(run_cgroup_owner("pollkill-123-0A1B2C3D"));
  EXPECT_FALSE(run_cgroup_owner("pollkill-runner.123"));
  EXPECT_FALSE(run_cgroup_owner("pollkill--0a1b2c3d"));
  EXPECT_FALSE(run_cgroup_owner("task-1-1"));
  EXPECT_FALSE(run_cgroup_owner("pollkill-x1-0a1b2c3d"));
}

}  // namespace
}  // namespace pollkill

namespace pollkill {
namespace {

TEST(NofilePlan, LeavesASufficientOrUnlimitedSoftLimitAlone) {
  EXPECT_FALSE(plan_nofile(2048, 4096, 1000).raise_soft_to);
  EXPECT_TRUE(plan_nofile(2048, 4096, 1000).enough);
  EXPECT_FALSE(plan_nofile(RLIM_INFINITY, RLIM_INFINITY, 1u << 20).raise_soft_to);
}

TEST(NofilePlan, RaisesTheSoftLimitToWhatIsNeededWithinTheHardLimit) {
  EXPECT_EQ(plan_nofile(1024, 524288, nofile_needed(1000)).raise_soft_to, rlim_t{64 + 15 * 1000});
  EXPECT_EQ(plan_nofile(1024, RLIM_INFINITY, 5000).raise_soft_to, rlim_t{5000});
  EXPECT_EQ(plan_nofile(1024, 5000, 5000).raise_soft_to, rlim_t{5000});
}

TEST(NofilePlan, AHardLimitBelowTheNeedSaysHowManyJobsFit) {
  NofilePlan plan = plan_nofile(1024, 4096, nofile_needed(1000));
  EXPECT_FALSE(plan.enough);
  EXPECT_EQ(plan.max_jobs, (4096u - 64) / 15);
  EXPECT_EQ(plan.raise_hard_to, rlim_t{nofile_needed(1000)});
  EXPECT_EQ(plan.raise_soft_to, rlim_t{4096});
  plan = plan_nofile(16, 32, nofile_needed(1));
  EXPECT_FALSE(plan.enough);
  EXPECT_EQ(plan.max_jobs, 0u);
}

// What a running task may hold depends on what the batch may use (include/pollkill/fdlimit.h):
// 4 for a task with none of the features, 15 with all of them.
TEST(NofilePlan, TheBudgetPerTaskCountsOnlyWhatTheBatchMayUse) {
  TaskFdNeeds none;
  none.output_relay = none.evidence = none.lingering_init = none.dynamic_uid = false;
  none.v1_dirs = 0;
  EXPECT_EQ(fds_per_task(none), 4u);
  EXPECT_EQ(kFdsPerTask, 15u);
  TaskFdNeeds relay = none;
  relay.output_relay = true;
  EXPECT_EQ(fds_per_task(relay), 8u);
  TaskFdNeeds defaults = none;  // a default policy: evidence on, the mode chosen at run time
  defaults.evidence = defaults.lingering_init = true;
  EXPECT_EQ(fds_per_task(defaults), 7u);
  // This machine's hard limit of 20,000: 2,848 tasks of a default batch, 4,984 without
  // evidence in cgroup mode; the most the budget allows is what it tells to use.
  NofilePlan plan = plan_nofile(1024, 20000, nofile_needed(5000, 7), 7);
  EXPECT_FALSE(plan.enough);
  EXPECT_EQ(plan.max_jobs, 2848u);
  EXPECT_TRUE(plan_nofile(1024, 20000, nofile_needed(4984, 4), 4).enough);
  EXPECT_FALSE(plan_nofile(1024, 20000, nofile_needed(4985, 4), 4).enough);
}

}  // namespace
}  // namespace pollkill
