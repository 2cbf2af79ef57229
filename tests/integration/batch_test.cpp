// `pollkill batch` against the real kernel: outcomes, retries, resume, cancellation, joblog,
// adaptive limits, output limits, gc and a 10,000-task leak check.
#include <linux/capability.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "harness.h"
#include "pollkill/fdlimit.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::map<std::string, json> finals_by_id(const std::vector<json>& records) {
  std::map<std::string, json> finals;
  for (const auto& r : records) {
    if (r["final"] == true) finals[r["id"].get<std::string>()] = r;
  }
  return finals;
}

// The batch cases that need no limit, in both modes (subreaper needs no cgroup).
class BatchMode : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchMode, MixedOutcomesGetTheirStatusesAndExitOne) {
  if (GetParam() != "subreaper") PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  write_file(
      dir / "tasks",
      "# one of each\n"
      "true\n"
      "sh -c 'exit 3'\n"
      "sh -c 'kill -SEGV $$'\n"
      "sleep " +
          long_sleep_arg(marker) +
          "\n"
          "sh -c 'sleep " +
          long_sleep_arg(marker) +
          " & exit 0'\n"
          "/nonexistent/pollkill-test-program\n"
          "{\"id\": \"json\", \"sh\": \"echo out; echo err >&2\", \"env\": {\"PKX\": \"1\"}}\n");
  RunOutput r =
      run_pollkill({"batch", "-j", "3", "--mode", GetParam(), "--hang-after", "1s", "--kill-grace",
                    "0", "--results", (dir / "r.jsonl").string(), dir / "tasks"},
                   Seconds(30));
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  auto records = read_records(dir / "r.jsonl");
  auto finals = finals_by_id(records);
  ASSERT_EQ(records.size(), 7u) << r.describe();
  EXPECT_EQ(finals["2"]["status"], "ok");
  EXPECT_EQ(finals["3"]["status"], "failed");
  EXPECT_EQ(finals["3"]["exit_code"], 3);
  EXPECT_EQ(finals["4"]["status"], "crashed");
  EXPECT_EQ(finals["5"]["status"], "hung");
  EXPECT_EQ(finals["6"]["status"], "ok");
  EXPECT_EQ(finals["6"]["processes_reaped"], 1);
  EXPECT_EQ(finals["7"]["status"], "exec_error");
  EXPECT_EQ(finals["json"]["status"], "ok");
  EXPECT_EQ(finals["json"]["stdout"], (dir / "r.logs" / "json.1.out").string());
  EXPECT_EQ(slurp(finals["json"]["stdout"].get<std::string>()), "out\n");
  EXPECT_EQ(slurp(finals["json"]["stderr"].get<std::string>()), "err\n");
  for (const auto& [id, rec] : finals) {
    EXPECT_EQ(rec["attempt"], 1) << id;
    EXPECT_EQ(rec["mode"], GetParam()) << id;
    std::vector<std::string> keys;
    for (const auto& [k, v] : rec.items()) keys.push_back(k);
    EXPECT_EQ(keys.size(), result_contract_keys().size()) << id;
  }
  EXPECT_NE(r.err.find("7 tasks: 3 ok, 1 failed, 1 crashed, 1 hung, 1 exec_error"),
            std::string::npos)
      << r.err;
  expect_nothing_left(r, marker);
}

// Many tasks at once, each leaving a setsid'd, double-forked, SIGTERM-ignoring daemon: in
// subreaper mode each daemon is reparented to its own task's init, so each task counts
// exactly its own, and none is left.
TEST_P(BatchMode, EachTaskReapsExactlyItsOwnOrphans) {
  if (GetParam() != "subreaper") PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  std::string tasks;
  for (int i = 0; i < 8; ++i) {
    // The subshell forks the daemon and exits, and sh waits for the subshell: by the time the
    // main process exits the daemon exists, whether or not it has exec'd sleep yet.
    tasks += "sh -c '(setsid sleep " + long_sleep_arg(marker) + " &); sleep 0.3; exit 0'\n";
  }
  write_file(dir / "tasks", tasks);
  RunOutput r = run_pollkill({"batch", "-j", "4", "--mode", GetParam(), "--results",
                              (dir / "r.jsonl").string(), dir / "tasks"},
                             Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto records = read_records(dir / "r.jsonl");
  ASSERT_EQ(records.size(), 8u) << r.describe();
  for (const auto& rec : records) {
    EXPECT_EQ(rec["status"], "ok") << rec.dump();
    EXPECT_EQ(rec["processes_reaped"], 1) << "its own daemon, no other's: " << rec.dump();
  }
  expect_nothing_left(r, marker);
}

// SIGKILL to pollkill alone, with tasks that leave setsid'd orphans and ignore SIGTERM: the
// guard kills every task's whole tree (the run cgroup, or each task's tree under its init).
TEST_P(BatchMode, SigkillOfPollkillLeavesNoProcess) {
  if (GetParam() != "subreaper") PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  const std::string arg = long_sleep_arg(marker);
  std::string tasks;
  for (int i = 0; i < 3; ++i) {
    tasks += "sh -c 'trap \"\" TERM; setsid sleep " + arg + " & sleep " + arg + "'\n";
  }
  write_file(dir / "tasks", tasks);
  Pollkill p({"batch", "-j", "3", "--mode", GetParam(), "--results", (dir / "r.jsonl").string(),
              (dir / "tasks").string()});
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 6; }, Seconds(20)))
      << processes_matching(marker, "sleep").size() << " of 6 sleeps started";
  p.signal(SIGKILL);
  RunOutput r = p.wait(Seconds(20));
  EXPECT_EQ(r.term_signal, SIGKILL) << r.describe();
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker).empty(); }, Seconds(3)))
      << processes_matching(marker).size() << " processes left 3 s after pollkill was killed";
  EXPECT_TRUE(wait_until([&] { return find_leftover_cgroups(r.pid).empty(); }, Seconds(3)));
  cleanup(marker, {r.pid});
}

INSTANTIATE_TEST_SUITE_P(Modes, BatchMode, ::testing::Values("cgroup", "subreaper"),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           return param_info.param;
                         });

TEST(Batch, BadTaskFileLineStopsBeforeAnythingRuns) {
  TempDir dir;
  write_file(dir / "tasks", "true\n{\"cmd\": \"not an array\"}\ntrue\n");
  RunOutput r =
      run_pollkill({"batch", "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find((dir / "tasks").string() + ":2: cmd: expected a non-empty array"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "r.jsonl"));
}

TEST(Batch, RetriesWithDoublingBackoff) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "policy.toml", "version = 1\n[retry]\nattempts = 4\nbackoff = \"300ms\"\n");
  // Crashes on the first two attempts, succeeds on the third.
  const std::string counter = (dir / "count").string();
  write_file(dir / "tasks", "sh -c 'n=$(cat " + counter +
                                " 2>/dev/null || echo 0); n=$((n+1)); echo $n > " + counter +
                                "; [ $n -ge 3 ] || kill -SEGV $$'\nfalse\n");
  RunOutput r = run_pollkill({"batch", "-j", "2", "--policy", (dir / "policy.toml").string(),
                              "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()},
                             Seconds(30));
  EXPECT_EQ(r.exit_code, 1) << r.describe();  // `false` is failed, not retried
  auto records = read_records(dir / "r.jsonl");
  std::vector<json> first;
  for (const auto& rec : records)
    if (rec["id"] == "1") first.push_back(rec);
  ASSERT_EQ(first.size(), 3u) << r.describe();
  EXPECT_EQ(first[0]["status"], "crashed");
  EXPECT_EQ(first[0]["final"], false);
  EXPECT_EQ(first[1]["attempt"], 2);
  EXPECT_EQ(first[1]["final"], false);
  EXPECT_EQ(first[2]["attempt"], 3);
  EXPECT_EQ(first[2]["status"], "ok");
  EXPECT_EQ(first[2]["final"], true);
  EXPECT_NE(first[0]["stdout"], first[1]["stdout"]);  // a log file per attempt
  EXPECT_GE(r.elapsed.count(), 0.3 + 0.6 - 0.05) << "backoff 300ms then 600ms";
  auto finals = finals_by_id(records);
  EXPECT_EQ(finals["2"]["status"], "failed");
  EXPECT_EQ(finals["2"]["attempt"], 1);
  EXPECT_NE(r.err.find("retries: 2"), std::string::npos) << r.err;
}

// retry.escalate: a task that outlives its first wall time gets ten times as long on its
// retry, and each record names the wall time its attempt ran with.
TEST(Batch, EscalatedWallTimeRetryEndsOk) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "policy.toml",
             "version = 1\n[limits]\nwall_time = \"300ms\"\n[retry]\nattempts = 3\n"
             "escalate = { wall_time = \"x10\", wall_time_max = \"1h\" }\n");
  const std::string marker = unique_marker();
  write_file(dir / "tasks", "sh -c 'sleep 0.8' " + marker + "\n");
  RunOutput r = run_pollkill({"batch", "--policy", (dir / "policy.toml").string(), "--results",
                              (dir / "r.jsonl").string(), (dir / "tasks").string()},
                             Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto records = read_records(dir / "r.jsonl");
  ASSERT_EQ(records.size(), 2u) << r.describe();
  EXPECT_EQ(records[0]["status"], "timeout") << records[0].dump();
  EXPECT_EQ(records[0]["wall_time_limit_s"], 0.3) << records[0].dump();
  EXPECT_TRUE(records[0]["memory_limit_bytes"].is_null());
  EXPECT_EQ(records[1]["status"], "ok") << records[1].dump();
  EXPECT_EQ(records[1]["attempt"], 2);
  EXPECT_EQ(records[1]["wall_time_limit_s"], 3.0) << records[1].dump();
  cleanup(marker, {r.pid});
}

TEST(Batch, ResumeAfterSigkillRecordsEveryTaskOkExactlyOnce) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  std::string tasks;
  for (int i = 0; i < 12; ++i) tasks += "sleep 0.3" + marker.substr(0, 0) + "\n";
  // The marker makes the sleeps findable: sleep 0.3 and a marker-named no-op argument.
  tasks.clear();
  for (int i = 0; i < 12; ++i) tasks += "sh -c 'sleep 0.4' " + marker + "\n";
  write_file(dir / "tasks", tasks);
  const std::vector<std::string> args{
      "batch", "-j", "2", "-q", "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()};
  auto first = std::make_unique<Pollkill>(args);
  ASSERT_TRUE(wait_until([&] { return read_records(dir / "r.jsonl").size() >= 4; }, Seconds(20)));
  first->signal(SIGKILL);
  RunOutput killed = first->wait(Seconds(10));
  EXPECT_EQ(killed.term_signal, SIGKILL);
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker).empty(); }, Seconds(1.5)))
      << "tasks outlived pollkill";
  const std::size_t before = read_records(dir / "r.jsonl").size();
  EXPECT_LT(before, 12u);

  std::vector<std::string> resume = args;
  resume.insert(resume.begin() + 1, "--resume");
  RunOutput r = run_pollkill(resume, Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto records = read_records(dir / "r.jsonl");
  std::map<std::string, int> finals;
  for (const auto& rec : records) {
    EXPECT_EQ(rec["status"], "ok") << rec.dump();
    if (rec["final"] == true) ++finals[rec["id"].get<std::string>()];
  }
  EXPECT_EQ(finals.size(), 12u);
  for (const auto& [id, n] : finals) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(records.size(), 12u) << "the resumed run reran a task that was already recorded";
  cleanup(marker, {killed.pid, r.pid});
}

TEST(Batch, SigintCancelsRecordsAndExits130) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  std::string tasks;
  for (int i = 0; i < 4; ++i) tasks += "sleep " + long_sleep_arg(marker) + "\n";
  write_file(dir / "tasks", tasks);
  Pollkill p(
      {"batch", "-j", "2", "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()});
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 2; }, Seconds(10)));
  p.signal(SIGINT);
  RunOutput r = p.wait(Seconds(20));
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  auto records = read_records(dir / "r.jsonl");
  ASSERT_EQ(records.size(), 2u) << r.describe();
  for (const auto& rec : records) {
    EXPECT_EQ(rec["status"], "cancelled");
    EXPECT_EQ(rec["final"], true);
  }
  expect_nothing_left(r, marker);
}

TEST(Batch, CtrlCToTheProcessGroupCancelsAndSigtermExits143) {
  PK_REQUIRE_CGROUP2();
  for (int sig : {SIGINT, SIGTERM}) {
    TempDir dir;
    const std::string marker = unique_marker();
    std::string tasks;
    for (int i = 0; i < 3; ++i) tasks += "sleep " + long_sleep_arg(marker) + "\n";
    write_file(dir / "tasks", tasks);
    Pollkill p({"batch", "-j", "2", "--progress", "--results", (dir / "r.jsonl").string(),
                (dir / "tasks").string()});
    ASSERT_TRUE(
        wait_until([&] { return processes_matching(marker, "sleep").size() == 2; }, Seconds(10)));
    ::usleep(300000);     // let the progress line be drawn at least once
    p.signal_group(sig);  // reaches the tasks as well, as a terminal's would
    RunOutput r = p.wait(Seconds(20));
    EXPECT_EQ(r.exit_code, 128 + sig) << r.describe();
    auto records = read_records(dir / "r.jsonl");
    ASSERT_EQ(records.size(), 2u) << r.describe();
    for (const auto& rec : records) EXPECT_EQ(rec["status"], "cancelled") << rec.dump();
    EXPECT_NE(r.err.find("0/3 done, 2 running"), std::string::npos) << r.err;
    expect_nothing_left(r, marker);
  }
}

TEST(Batch, SecondSigintSkipsTheGrace) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  write_file(dir / "tasks", "sh -c 'trap \"\" TERM; sleep " + long_sleep_arg(marker) + "; :'\n");
  Pollkill p({"batch", "-j", "1", "--kill-grace", "60s", "--results", (dir / "r.jsonl").string(),
              (dir / "tasks").string()});
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 1; }, Seconds(10)));
  p.signal(SIGINT);
  ::usleep(300000);
  p.signal(SIGINT);
  RunOutput r = p.wait(Seconds(20));
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  EXPECT_LT(r.elapsed.count(), 10.0);
  auto records = read_records(dir / "r.jsonl");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["status"], "cancelled");
  expect_nothing_left(r, marker);
}

TEST(Batch, ResumeIgnoresATornLastLineWithAWarning) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "true\ntrue\ntrue\n");
  const std::vector<std::string> args{"batch", "--resume", "--results", (dir / "r.jsonl").string(),
                                      (dir / "tasks").string()};
  ASSERT_EQ(run_pollkill(args).exit_code, 0);
  // Keep the first record, tear the second one in half, drop the third.
  std::string text = slurp(dir / "r.jsonl");
  auto first_end = text.find('\n');
  write_file(dir / "r.jsonl", text.substr(0, first_end + 1) + text.substr(first_end + 1, 40));
  RunOutput r = run_pollkill(args);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("r.jsonl:2: ignoring a line that is not a complete record"),
            std::string::npos)
      << r.err;
  auto finals = finals_by_id(read_records(dir / "r.jsonl"));
  EXPECT_EQ(finals.size(), 3u);
  std::map<std::string, int> count;
  for (const auto& rec : read_records(dir / "r.jsonl")) ++count[rec["id"].get<std::string>()];
  EXPECT_EQ(count["1"], 1);
  EXPECT_EQ(count["2"], 1);
  EXPECT_EQ(count["3"], 1);
}

TEST(Batch, TaskFileFromStandardInputResumes) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "true\necho two\n");
  const std::string results = (dir / "r.jsonl").string();
  const std::string cmd = std::string(POLLKILL_BINARY) + " batch -q --resume --results " + results +
                          " - < " + (dir / "tasks").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ASSERT_EQ(std::system(cmd.c_str()), 0);  // everything already done: nothing runs again
  auto records = read_records(results);
  ASSERT_EQ(records.size(), 2u);
  // The two tasks run side by side where there are two CPUs: the records come in the order
  // the tasks end, so look the second task up by its id.
  auto finals = finals_by_id(records);
  ASSERT_EQ(finals.count("2"), 1u) << results;
  EXPECT_EQ(slurp(finals.at("2")["stdout"].get<std::string>()), "two\n");
}

TEST(Batch, ResumeWithADifferentCommandIsRefused) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "true\necho a\n");
  const std::string results = (dir / "r.jsonl").string();
  ASSERT_EQ(run_pollkill({"batch", "--results", results, (dir / "tasks").string()}).exit_code, 0);
  write_file(dir / "tasks", "true\necho b\n");
  RunOutput r = run_pollkill({"batch", "--resume", "--results", results, (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find((dir / "tasks").string() + ":2: task '2' runs [\"echo\",\"b\"]"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_records(results).size(), 2u);
}

TEST(Batch, JoblogIsReadByGnuParallelResume) {
  PK_REQUIRE_CGROUP2();
  if (::access("/usr/bin/parallel", X_OK) != 0) GTEST_SKIP() << "GNU parallel is not installed";
  TempDir dir;
  write_file(dir / "tasks", "echo a\nsh -c 'exit 2'\necho c\n");
  const std::string joblog = (dir / "jobs.log").string();
  RunOutput r = run_pollkill({"batch", "-j", "1", "--joblog", joblog, "--results",
                              (dir / "r.jsonl").string(), (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::string log = slurp(joblog);
  EXPECT_EQ(log.substr(0, log.find('\n')),
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
  EXPECT_NE(log.find("\t0\t0\t2\t0\tsh -c 'exit 2'\n"), std::string::npos) << log;
  // GNU parallel skips the jobs whose Seq the joblog lists: only the fourth one runs.
  const std::string out = (dir / "parallel.out").string();
  std::string cmd = "parallel --will-cite --joblog " + joblog +
                    " --resume -j1 echo ::: 1 2 3 4 > " + out + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << slurp(out);
  EXPECT_EQ(slurp(out), "4\n");
  // --resume-failed reruns Seq 2, whose Exitval is not 0.
  std::string again = "parallel --will-cite --joblog " + joblog +
                      " --resume-failed -j1 echo ::: 1 2 3 4 > " + out + " 2>&1";
  EXPECT_EQ(std::system(again.c_str()), 0) << slurp(out);
  EXPECT_EQ(slurp(out), "2\n");
}

TEST(Batch, AdaptiveWallTimeStopsTheOutlier) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "policy.toml",
             "version = 1\n[limits]\nwall_time = \"300%\"\nwall_time_max = \"20s\"\n");
  std::string tasks;
  for (int i = 0; i < 5; ++i) tasks += "sleep 0.2\n";
  tasks += "sleep 30\n";
  write_file(dir / "tasks", tasks);
  RunOutput r = run_pollkill(
      {"batch", "-j", "1", "--kill-grace", "0", "--policy", (dir / "policy.toml").string(),
       "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()},
      Seconds(40));
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  auto finals = finals_by_id(read_records(dir / "r.jsonl"));
  ASSERT_EQ(finals.size(), 6u);
  EXPECT_EQ(finals["6"]["status"], "timeout");
  EXPECT_LT(finals["6"]["wall_s"].get<double>(), 5.0);
  EXPECT_NE(finals["6"]["reason"].get<std::string>().find("300% of the median ok wall time"),
            std::string::npos)
      << finals["6"]["reason"];
}

TEST(Batch, OutputOverTheLimitIsReaped) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks",
             "sh -c 'while :; do head -c 20000 /dev/zero; sleep 0.01; done'\necho small\n");
  RunOutput r =
      run_pollkill({"batch", "--output", "200KiB", "--poll-interval", "50ms", "--kill-grace", "0",
                    "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()},
                   Seconds(30));
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  auto finals = finals_by_id(read_records(dir / "r.jsonl"));
  EXPECT_EQ(finals["1"]["status"], "output_limit");
  EXPECT_EQ(finals["2"]["status"], "ok");
  EXPECT_LT(fs::file_size(finals["1"]["stdout"].get<std::string>()), 4u * 1024 * 1024);
}

// A batch is shut in exactly as `run` is: the policy's [seccomp] applies to every task.
TEST(Batch, SeccompPolicyAppliesToEveryTask) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "policy.toml",
             "version = 1\n[seccomp]\ndeny = [\"socket\"]\ndeny_action = \"kill\"\n");
  write_file(dir / "tasks", std::string(POLLKILL_SANDBOX_PROBE) + " socket\ntrue\n");
  RunOutput r = run_pollkill({"batch", "--policy", (dir / "policy.toml").string(), "--results",
                              (dir / "r.jsonl").string(), (dir / "tasks").string()},
                             Seconds(30));
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  auto finals = finals_by_id(read_records(dir / "r.jsonl"));
  EXPECT_EQ(finals["1"]["status"], "blocked") << finals["1"].dump();
  EXPECT_EQ(finals["1"]["signal"], 31) << finals["1"].dump();
  EXPECT_EQ(finals["2"]["status"], "ok") << finals["2"].dump();
}

// Distributions give a process 1024 open files; each running task holds about a dozen.
// pollkill raises its own soft limit for the batch and gives the tasks the original one back.
TEST(Batch, ManyTasksUnderALowSoftOpenFileLimitAllRun) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  std::string tasks;
  for (int i = 0; i < 60; ++i) tasks += "sh -c 'sleep 0.5; ulimit -Sn'\n";
  write_file(dir / "tasks", tasks);
  LaunchOptions shell;
  shell.program = "/bin/sh";
  // 60 tasks at once need about 1,000 descriptors, four times this soft limit.
  RunOutput r =
      run_pollkill({"-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", POLLKILL_BINARY, "batch", "-j",
                    "60", "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()},
                   Seconds(60), shell);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto finals = finals_by_id(read_records(dir / "r.jsonl"));
  ASSERT_EQ(finals.size(), 60u);
  for (auto& [id, record] : finals) {
    ASSERT_EQ(record["status"], "ok") << record.dump();
    EXPECT_EQ(slurp(record["stdout"].get<std::string>()), "256\n") << "task " << id;
  }
}

// Whether this process may raise its hard limits (CAP_SYS_RESOURCE in its effective set).
bool has_cap_sys_resource() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    const unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
    return (caps >> CAP_SYS_RESOURCE) & 1;
  }
  return false;
}

TEST(Batch, JobsBeyondTheHardOpenFileLimitAreRefusedBeforeAnythingRuns) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "touch " + (dir / "ran").string() + "\n");
  // pollkill raises the hard limit where it may: without CAP_SYS_RESOURCE (dropped from the
  // bounding and inheritable sets, so that exec cannot give it back to root) it must refuse.
  LaunchOptions shell;
  shell.program = ::geteuid() == 0 ? "/usr/bin/setpriv" : "/bin/sh";
  std::vector<std::string> args = {"-c",
                                   "ulimit -n 256 && exec \"$0\" \"$@\"",
                                   POLLKILL_BINARY,
                                   "batch",
                                   "-j",
                                   "100",
                                   "--results",
                                   (dir / "r.jsonl").string(),
                                   (dir / "tasks").string()};
  if (::geteuid() == 0) {
    args.insert(args.begin(),
                {"--bounding-set=-sys_resource", "--inh-caps=-sys_resource", "/bin/sh"});
  }
  RunOutput r = run_pollkill(args, Seconds(30), shell);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("--jobs 100 needs up to 764 open files"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("use --jobs 27 or less"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pollkill could not raise it itself: Operation not permitted (EPERM, "
                       "needs CAP_SYS_RESOURCE)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "ran"));
}

// As root with CAP_SYS_RESOURCE (the VM), the hard limit is raised instead, and the tasks get
// the limits pollkill started with.
TEST(Batch, JobsBeyondTheHardOpenFileLimitRaiseItWherePermitted) {
  PK_REQUIRE_CGROUP2();
  if (!has_cap_sys_resource()) {
    GTEST_SKIP() << "no CAP_SYS_RESOURCE here (the VM has it: tests/vm/run)";
  }
  TempDir dir;
  write_file(dir / "tasks", "sh -c 'ulimit -Sn; ulimit -Hn'\n");
  LaunchOptions shell;
  shell.program = "/bin/sh";
  const std::string results = (dir / "r.jsonl").string();
  RunOutput r = run_pollkill({"-c", "ulimit -n 256 && exec \"$0\" \"$@\"", POLLKILL_BINARY, "batch",
                              "-v", "-j", "100", "--results", results, (dir / "tasks").string()},
                             Seconds(60), shell);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("raised the hard open-file limit (RLIMIT_NOFILE) from 256 to 764 for "
                       "--jobs 100"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(slurp(dir / "r.logs" / "1.1.out"), "256\n256\n");
}

// A task line with shell syntax runs as words, as always, but says so at validation with the
// rewrite that a shell would run.
TEST(Batch, ShellSyntaxInATaskLineIsWarnedAboutWithTheRewrite) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string tasks = (dir / "tasks").string();
  write_file(dir / "tasks", "echo plain\necho a > out\necho 'quoted > fine'\n");
  RunOutput r = run_pollkill({"batch", "--results", (dir / "r.jsonl").string(), tasks});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("pollkill: warning: " + tasks +
                       ":2: '>' is passed to the command as text, not acted on by a shell "
                       "(pollkill runs a task line as words); for a shell, write the line as: "
                       "sh -c 'echo a > out'\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find(":1: "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(":3: "), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dir / "r.logs" / "2.1.out"), "a > out\n");
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// GNU parallel's way of giving the tasks: the same tasks, ids and records as a task file, and
// --resume knows them again.
TEST(Batch, ParallelStyleArgumentsMakeTheTasks) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string results = (dir / "r.jsonl").string();
  const std::vector<std::string> args = {"batch", "--results", results, "--",      "echo",
                                         "{/.}",  "{#}",       ":::",   "a/x.txt", "b/y.txt"};
  RunOutput r = run_pollkill(args);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::set<std::string> ids;
  for (const auto& record : read_records(results)) ids.insert(record["id"].get<std::string>());
  EXPECT_EQ(ids, (std::set<std::string>{"1", "2"}));
  EXPECT_EQ(slurp(dir / "r.logs" / "1.1.out"), "x 1\n");
  EXPECT_EQ(slurp(dir / "r.logs" / "2.1.out"), "y 2\n");
  std::vector<std::string> resume = args;
  resume.insert(resume.begin() + 1, "--resume");
  RunOutput again = run_pollkill(resume);
  EXPECT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_NE(again.err.find("already done (resumed): 2"), std::string::npos) << again.err;
  EXPECT_EQ(read_records(results).size(), 2u);
}

// --dry-run runs nothing and says what would: commands, limits, what --resume skips.
TEST(Batch, DryRunPrintsTheTasksAndRunsNothing) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string results = (dir / "r.jsonl").string();
  const std::string tasks = (dir / "tasks").string();
  write_file(dir / "tasks", "true\nfalse\n");
  ASSERT_EQ(run_pollkill({"batch", "--results", results, tasks}).exit_code, 1);
  write_file(dir / "tasks", "true\nfalse\n{\"id\": \"big\", \"cmd\": [\"touch\", \"" +
                                (dir / "ran").string() + "\"], \"memory\": \"64MiB\"}\n");
  const std::string before = slurp(results);
  RunOutput r = run_pollkill(
      {"batch", "--dry-run", "--resume", "--wall-time", "30s", "--results", results, tasks});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out,
            "1\ttrue\twall_time=30s\tskipped by --resume (final record: ok)\n"
            "2\tfalse\twall_time=30s\tskipped by --resume (final record: failed)\n"
            "big\ttouch " +
                (dir / "ran").string() + "\tmemory=64MiB wall_time=30s\n")
      << r.describe();
  EXPECT_NE(r.err.find("dry run: 3 tasks, 1 would run, 2 skipped by --resume; nothing was run"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "ran"));
  EXPECT_EQ(slurp(results), before);
}

// One task, one number: with comments and blank lines before it, a task's id, its joblog Seq
// and its task cgroup's name all carry its line number.
TEST(Batch, IdJoblogSeqAndCgroupNameAgree) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "# a comment\n\ncat /proc/self/cgroup\n");
  const std::string results = (dir / "r.jsonl").string();
  const std::string joblog = (dir / "jobs.log").string();
  RunOutput r =
      run_pollkill({"batch", "--joblog", joblog, "--results", results, (dir / "tasks").string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto records = read_records(results);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["id"], "3");
  std::string log = slurp(joblog);
  const std::string second = log.substr(log.find('\n') + 1);
  EXPECT_EQ(second.substr(0, second.find('\t')), "3") << log;
  const std::string cgroup = slurp(dir / "r.logs" / "3.1.out");
  EXPECT_NE(cgroup.find("/task-3-1\n"), std::string::npos) << cgroup;
}

// The end of a batch and `report` say what they count: this run, or the whole file.
TEST(Batch, SummaryAndReportSayWhatTheyCount) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "true\nfalse\n");
  const std::string results = (dir / "r.jsonl").string();
  const std::string tasks = (dir / "tasks").string();
  RunOutput first = run_pollkill({"batch", "--results", results, tasks});
  ASSERT_EQ(first.exit_code, 1) << first.describe();
  EXPECT_NE(first.err.find("this run of " + tasks +
                           ": each task's final status; retries and processes reaped in this "
                           "run\n2 tasks: 1 ok, 1 failed\n"),
            std::string::npos)
      << first.err;
  // A second run appended to the same file: report counts each id once.
  RunOutput second = run_pollkill({"batch", "--results", results, tasks});
  ASSERT_EQ(second.exit_code, 1) << second.describe();
  RunOutput text = run_pollkill({"report", results});
  EXPECT_NE(
      text.out.find(results + ": each task's last final record, from every run written to this "
                              "file; retries and processes reaped in all its records\n2 tasks: 1 "
                              "ok, 1 failed\n"),
      std::string::npos)
      << text.out;
}

TEST(Batch, ReportPrintsTheSummaryFromAResultsFile) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "true\nfalse\n");
  const std::string results = (dir / "r.jsonl").string();
  RunOutput b = run_pollkill({"batch", "--results", results, (dir / "tasks").string()});
  ASSERT_EQ(b.exit_code, 1) << b.describe();
  RunOutput text = run_pollkill({"report", results});
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_NE(text.out.find("2 tasks: 1 ok, 1 failed"), std::string::npos) << text.out;
  RunOutput j = run_pollkill({"report", "--json", results});
  auto summary = json::parse(j.out);
  EXPECT_NE(summary["scope"].get<std::string>().find("each task's last final record, from every "
                                                     "run written to this file"),
            std::string::npos)
      << j.out;
  EXPECT_EQ(summary["tasks"], 2);
  EXPECT_EQ(summary["counts"]["failed"], 1);
  EXPECT_EQ(summary["failed"][0]["id"], "2");
}

TEST(Batch, GcRemovesRunCgroupsOfDeadPollkills) {
  PK_REQUIRE_CGROUP2();
  auto mount = cgroup2_mount();
  const fs::path root = *mount / ("pk-gc-test-" + std::to_string(::getpid()));
  fs::create_directories(root);
  // A pid that is certainly gone: a child that has exited and been reaped.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const fs::path stale = root / ("pollkill-" + std::to_string(dead) + "-deadbeef");
  const fs::path live = root / ("pollkill-" + std::to_string(::getpid()) + "-0badf00d");
  fs::create_directories(stale / "task-1-1");
  fs::create_directories(live);
  const std::string marker = unique_marker();
  pid_t sleeper = ::fork();
  if (sleeper == 0) {
    std::ofstream(stale / "task-1-1" / "cgroup.procs") << "0";
    std::string arg = long_sleep_arg(marker);
    ::execlp("sleep", "sleep", arg.c_str(), nullptr);
    ::_exit(127);
  }
  ASSERT_TRUE(wait_until([&] { return !processes_matching(marker, "sleep").empty(); }, Seconds(5)));
  ASSERT_TRUE(wait_until([&] { return slurp(stale / "task-1-1" / "cgroup.procs").size() > 0; },
                         Seconds(5)));
  RunOutput r = run_pollkill({"gc", "--cgroup-root", root.string()});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("removed " + stale.string()), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live)) << "the run cgroup of a live process was removed";
  // batch does the same for its own run root at start.
  fs::create_directories(stale);
  TempDir dir;
  write_file(dir / "tasks", "true\n");
  RunOutput b = run_pollkill({"batch", "-q", "--cgroup-root", root.string(), "--results",
                              (dir / "r.jsonl").string(), (dir / "tasks").string()});
  EXPECT_EQ(b.exit_code, 0) << b.describe();
  EXPECT_FALSE(fs::exists(stale)) << "batch did not gc its run root";
  EXPECT_TRUE(fs::exists(live));
  int status = 0;
  EXPECT_EQ(::waitpid(sleeper, &status, 0), sleeper);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ::rmdir(live.c_str());
  ::rmdir(root.c_str());
}

// A pollkill in another PID namespace (`unshare --pid --fork --mount-proc`) with the same run
// root: kill(pid, 0) there says nothing about the host's pollkills. Its batch (which runs gc
// on the run root first) must leave the host batch's live run alone, and its gc must kill and
// count the processes of a dead run, which it sees only as "0" lines in cgroup.procs. Before
// liveness lived in the cgroup tree, the inner batch killed the host's 3 tasks and gc
// reported "0 processes killed".
TEST(Batch, AnotherPidNamespaceJudgesLivenessByTheCgroupTree) {
  PK_REQUIRE_CGROUP2();
  if (::geteuid() != 0 || ::access("/usr/bin/unshare", X_OK) != 0) {
    GTEST_SKIP() << "needs root and unshare(1) for a new PID namespace";
  }
  auto mount = cgroup2_mount();
  const fs::path root = *mount / ("pk-pidns-test-" + std::to_string(::getpid()));
  fs::create_directories(root);
  const std::string marker = unique_marker();
  const std::string arg = long_sleep_arg(marker);
  TempDir dir;
  write_file(dir / "host", "sleep " + arg + "\nsleep " + arg + "\nsleep " + arg + "\n");
  Pollkill host({"batch", "-q", "-j", "3", "--cgroup-root", root.string(), "--results",
                 (dir / "host.jsonl").string(), (dir / "host").string()});
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 3; }, Seconds(10)))
      << processes_matching(marker, "sleep").size() << " of 3 host tasks started";
  auto in_new_pid_namespace = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--pid", "--fork", "--mount-proc", POLLKILL_BINARY});
    return run_pollkill(args, Seconds(30), LaunchOptions{{}, "/usr/bin/unshare"});
  };
  write_file(dir / "inner", "true\n");
  RunOutput inner =
      in_new_pid_namespace({"batch", "-q", "--cgroup-root", root.string(), "--results",
                            (dir / "inner.jsonl").string(), (dir / "inner").string()});
  EXPECT_EQ(inner.exit_code, 0) << inner.describe();
  EXPECT_EQ(processes_matching(marker, "sleep").size(), 3u)
      << "a batch in another PID namespace killed the host batch's tasks";
  RunOutput gc = in_new_pid_namespace({"gc", "--cgroup-root", root.string()});
  EXPECT_EQ(gc.exit_code, 0) << gc.describe();
  EXPECT_NE(gc.out.find("nothing to remove"), std::string::npos) << gc.out;
  EXPECT_EQ(processes_matching(marker, "sleep").size(), 3u)
      << "gc in another PID namespace killed the host batch's tasks";

  // A dead run with 3 processes: its liveness cgroup is empty (its guard is gone).
  const std::string dead_name = "pollkill-" + std::to_string(::getpid()) + "-0dead0ff";
  fs::create_directories(root / (dead_name + ".alive"));
  fs::create_directories(root / dead_name / "task-1-1");
  const std::string dead_marker = unique_marker();
  std::vector<pid_t> sleepers;
  for (int i = 0; i < 3; ++i) {
    pid_t sleeper = ::fork();
    if (sleeper == 0) {
      std::ofstream(root / dead_name / "task-1-1" / "cgroup.procs") << "0";
      std::string dead_arg = long_sleep_arg(dead_marker);
      ::execlp("sleep", "sleep", dead_arg.c_str(), nullptr);
      ::_exit(127);
    }
    sleepers.push_back(sleeper);
  }
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string procs = slurp(root / dead_name / "task-1-1" / "cgroup.procs");
        return std::count(procs.begin(), procs.end(), '\n') == 3 &&
               processes_matching(dead_marker, "sleep").size() == 3;
      },
      Seconds(5)));
  RunOutput dead_gc = in_new_pid_namespace({"gc", "--cgroup-root", root.string()});
  EXPECT_EQ(dead_gc.exit_code, 0) << dead_gc.describe();
  EXPECT_NE(dead_gc.out.find("removed " + (root / dead_name).string() + " (pollkill " +
                             std::to_string(::getpid()) + " is gone; 3 processes killed)"),
            std::string::npos)
      << dead_gc.out;
  EXPECT_FALSE(fs::exists(root / dead_name));
  EXPECT_FALSE(fs::exists(root / (dead_name + ".alive")));
  for (pid_t sleeper : sleepers) {
    int status = 0;
    EXPECT_EQ(::waitpid(sleeper, &status, 0), sleeper);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  EXPECT_EQ(processes_matching(marker, "sleep").size(), 3u);

  host.signal(SIGTERM);
  RunOutput h = host.wait(Seconds(30));
  EXPECT_FALSE(h.timed_out) << h.describe();
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker).empty(); }, Seconds(5)));
  cleanup(marker, {h.pid});
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) ::rmdir(entry.path().c_str());
  EXPECT_EQ(::rmdir(root.c_str()), 0) << "left under " << root << ": " << std::strerror(errno);
}

// A task file of `n` copies of `line`.
void write_task_lines(const fs::path& path, const std::string& line, int n) {
  std::ofstream tasks(path);
  for (int i = 0; i < n; ++i) tasks << line << "\n";
}

// Reads the runner's open descriptors and resident memory from /proc.
std::size_t fd_count_of(pid_t pid) {
  std::error_code ec;
  std::size_t n = 0;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

long rss_kib_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

std::size_t task_cgroups_of(pid_t pid) {
  std::size_t n = 0;
  for (const auto& run : find_leftover_cgroups(pid)) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(run, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      if (it->is_directory()) ++n;
    }
  }
  return n;
}

// A running task that sleeps under the hang and spin rules holds 4 descriptors in pollkill
// (its pidfd, its cgroup's directory, cgroup.events and cpu.stat; include/pollkill/fdlimit.h):
// no /dev/null, log files, timers, cgroup.procs, cgroup.threads, cpu.pressure or /proc/PID/io
// (13 before, which made 10,000 tasks need 130,000 open files). Counted while they all run,
// and while their samples read what the rules need.
TEST(Batch, RunningTasksWithTheRulesHoldFourDescriptorsEach) {
  PK_REQUIRE_CGROUP2();
  constexpr int kTasks = 40;
  TempDir dir;
  write_task_lines(dir / "tasks", "sh -c 'echo up; exec sleep 600'", kTasks);
  const std::string results = (dir / "r.jsonl").string();
  Pollkill p({"batch", "-q", "-j", std::to_string(kTasks), "--hang-after", "1h", "--spin-after",
              "1h", "--poll-interval", "100ms", "--kill-grace", "0", "--results", results,
              (dir / "tasks").string()});
  // Every task has written its line: all of them were spawned and are watched.
  const auto all_up = [&] {
    for (int i = 1; i <= kTasks; ++i) {
      std::ifstream in(dir / "r.logs" / (std::to_string(i) + ".1.out"));
      std::string line;
      if (!std::getline(in, line) || line != "up") return false;
    }
    return true;
  };
  ASSERT_TRUE(wait_until(all_up, Seconds(60))) << "the tasks did not all start";
  // A few samples (every 100 ms; a task is read at each one until it is quiet), counted at
  // the busiest moment.
  std::size_t most = 0;
  for (int i = 0; i < 20; ++i) {
    most = std::max(most, fd_count_of(p.pid()));
    ::usleep(50000);
  }
  p.signal(SIGTERM);
  RunOutput r = p.wait(Seconds(60));
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_TRUE(find_leftover_cgroups(r.pid).empty());
  const auto finals = finals_by_id(read_records(dir / "r.jsonl"));
  EXPECT_EQ(finals.size(), static_cast<std::size_t>(kTasks));
  for (const auto& [id, record] : finals) EXPECT_EQ(record["status"], "cancelled") << id;
  // pollkill's own (well under kFdsBase) and 4 per task, with one to spare per task; 13 per
  // task, as before, would be over.
  EXPECT_LE(most, kFdsBase + kTasks * 5)
      << "pollkill held " << most << " descriptors with " << kTasks << " tasks running";
  std::fprintf(stderr, "[ info     ] %d running tasks: pollkill held %zu descriptors\n", kTasks,
               most);
}

TEST(BatchScale, TenThousandShortTasksKeepFdsCgroupsAndMemoryFlat) {
  PK_REQUIRE_CGROUP2();
  constexpr int kTasks = 10000;
  TempDir dir;
  write_task_lines(dir / "tasks", "/bin/true", kTasks);
  const std::string results = (dir / "r.jsonl").string();
  Pollkill p({"batch", "-j", "2", "-q", "--results", results, (dir / "tasks").string()});
  // Sample the runner while it works: after a warm-up, then until it is done.
  // Two tasks at once are each somewhere between starting (a dozen descriptors) and done (none):
  // one sample's count swings by more than a leak would add early on. Compare the busiest moment
  // of the first third of the samples with that of the last third instead.
  std::vector<std::size_t> fd_samples;
  std::size_t max_cgroups = 0;
  long first_rss = 0, max_rss = 0;
  int samples = 0;
  while (true) {
    std::size_t done = 0;
    {
      std::ifstream in(results);
      std::string line;
      while (std::getline(in, line)) ++done;
    }
    if (done >= kTasks || ::kill(p.pid(), 0) != 0) break;
    if (done >= 500) {
      std::size_t fds = fd_count_of(p.pid());
      long rss = rss_kib_of(p.pid());
      std::size_t cgroups = task_cgroups_of(p.pid());
      if (fds == 0 || rss < 0) break;  // exited meanwhile
      if (samples++ == 0) first_rss = rss;
      fd_samples.push_back(fds);
      max_rss = std::max(max_rss, rss);
      max_cgroups = std::max(max_cgroups, cgroups);
    }
    ::usleep(200000);
  }
  RunOutput r = p.wait(Seconds(180));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_GE(samples, 3) << "the batch ended too fast to sample it";
  const std::size_t third = fd_samples.size() / 3;
  const std::size_t early_fds =
      *std::max_element(fd_samples.begin(), fd_samples.begin() + std::max<std::size_t>(third, 1));
  const std::size_t late_fds = *std::max_element(fd_samples.end() - third - 1, fd_samples.end());
  EXPECT_LE(late_fds, early_fds + 2) << "descriptors grew from " << early_fds << " to " << late_fds
                                     << " over " << fd_samples.size() << " samples";
  EXPECT_LE(max_cgroups, 2u) << "more task cgroups than running tasks";
  EXPECT_LE(max_rss, first_rss + 2048) << "RSS grew from " << first_rss << " KiB";
  auto records = read_records(results);
  ASSERT_EQ(records.size(), static_cast<std::size_t>(kTasks));
  std::set<std::string> ids;
  for (const auto& rec : records) {
    EXPECT_EQ(rec["final"], true);
    ids.insert(rec["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kTasks));
  EXPECT_TRUE(find_leftover_cgroups(r.pid).empty());
  std::fprintf(stderr,
               "[ info     ] %d tasks in %.1f s; runner fds %zu (first third) %zu (last third), "
               "RSS %ld..%ld KiB\n",
               kTasks, r.elapsed.count(), early_fds, late_fds, first_rss, max_rss);
}

}  // namespace
}  // namespace pollkill::testing
