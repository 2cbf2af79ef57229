// The Slurm modes' pieces that need no cluster: `batch --slurm` against a stand-in sbatch on
// the PATH (what it is asked to submit), the element run by hand with the variables Slurm
// sets (exit codes, requeue, attempts, records, logs) and `collect`. The real cluster runs
// them in tests/slurm (scripts/test slurm).
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A directory holding an `sbatch` that records its arguments and answers as --parsable does.
fs::path fake_sbatch(const TempDir& dir) {
  fs::path bin = dir / "bin";
  fs::create_directories(bin);
  write_file(bin / "sbatch",
             "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n"
             "echo '4242;testcluster'\n");
  ::chmod((bin / "sbatch").c_str(), 0755);
  return bin;
}

LaunchOptions with_path(const fs::path& bin, std::map<std::string, std::string> env = {}) {
  LaunchOptions options;
  options.env = std::move(env);
  options.env["PATH"] = bin.string() + ":" + ::getenv("PATH");
  return options;
}

// A Slurm results directory in a temporary directory, and the stand-in sbatch to submit to.
struct Submission {
  TempDir dir;
  fs::path bin = fake_sbatch(dir);
  fs::path tasks = dir / "tasks";
  fs::path results = dir / "results";

  // `pollkill batch --slurm --results-dir RESULTS EXTRA... TASKS`.
  RunOutput submit(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> argv{"batch", "--slurm", "--results-dir", results.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(tasks.string());
    return run_pollkill(argv, Seconds(30), with_path(bin));
  }
  // Writes `lines` as the task file, submits it and returns the results directory.
  fs::path submitted(const std::string& lines) const {
    write_file(tasks, lines);
    RunOutput r = submit();
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return results;
  }
};

// What Slurm gives an array element: its job, its index and, once requeued, the count.
LaunchOptions element_env(int seq, std::optional<int> restarts) {
  LaunchOptions options;
  options.env = {{"SLURM_ARRAY_JOB_ID", "4242"}, {"SLURM_ARRAY_TASK_ID", std::to_string(seq)}};
  if (restarts) options.env["SLURM_RESTART_COUNT"] = std::to_string(*restarts);
  return options;
}

RunOutput element(const fs::path& results_dir, int seq, std::optional<int> restarts) {
  return run_pollkill({"slurm-element", results_dir.string()}, Seconds(30),
                      element_env(seq, restarts));
}

std::vector<std::string> dir_names(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Starts element run `argv` of task 1 as its first run (no SLURM_RESTART_COUNT) and returns
// once its task has started (its stdout log exists).
std::unique_ptr<Pollkill> start_first_run(const fs::path& d, const std::vector<std::string>& argv) {
  auto run = std::make_unique<Pollkill>(argv, element_env(1, std::nullopt));
  EXPECT_TRUE(wait_until([&] { return fs::exists(d / "logs" / "1.1.out"); }, Seconds(10)));
  return run;
}

// A task that, on the element's first run (no SLURM_RESTART_COUNT), waits for `flag` and
// then exits with `first_exit`; on a rerun it exits 0 at once. The first run plays the
// straggler on a node Slurm declared dead, the rerun the element Slurm started elsewhere.
std::string straggling_task(const fs::path& flag, int first_exit, const std::string& marker) {
  return "{\"id\": \"t\", \"sh\": \"[ -n \\\"$SLURM_RESTART_COUNT\\\" ] && exit 0; while [ ! -e " +
         flag.string() + " ]; do sleep 0.02; done; exit " + std::to_string(first_exit) +
         "; : " + marker + "\"}\n";
}

TEST(SlurmElement, SubmitRunElementsRequeueAndCollect) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  fs::path bin = fake_sbatch(dir);
  fs::path tasks = dir / "tasks";
  write_file(tasks,
             "# three tasks\n"
             "true\n"
             "{\"id\": \"fails\", \"sh\": \"echo out; echo err >&2; exit 3\"}\n"
             "{\"id\": \"crash\", \"sh\": \"kill -SEGV $$; : " +
                 marker + "\"}\n");
  fs::path d = dir / "results";
  RunOutput submit = run_pollkill(
      {"batch", "--slurm", "--results-dir", d.string(), "-j", "2", "--retries", "1", "--cpus",
       "1.5", "--missing-controllers", "warn", "--sbatch-arg=--partition=short", tasks.string()},
      Seconds(30), with_path(bin));
  ASSERT_EQ(submit.exit_code, 0) << submit.describe();
  EXPECT_EQ(submit.out, "4242\n");
  std::string args = slurp(bin / "args");
  EXPECT_NE(args.find("--array=1-3%2\n"), std::string::npos) << args;
  EXPECT_NE(args.find("--cpus-per-task=2\n"), std::string::npos) << args;
  // --requeue (an element lost with its node runs again), then the user's arguments.
  EXPECT_NE(
      args.find("--requeue\n--partition=short\n" + (d / "slurm" / "element.sh").string() + "\n"),
      std::string::npos)
      << args;
  EXPECT_EQ(slurp(d / "tasks"), slurp(tasks));
  EXPECT_NE(slurp(d / "policy.toml").find("attempts = 2"), std::string::npos);

  // Element by element, as Slurm would run them: ok 0, failed 1, a retryable crash 75.
  EXPECT_EQ(element(d, 1, 0).exit_code, 0);
  RunOutput failed = element(d, 2, 0);
  EXPECT_EQ(failed.exit_code, 1) << failed.describe();
  EXPECT_EQ(slurp(d / "logs" / "2.1.out"), "out\n");
  // pollkill's warnings about the task (here: no cpu controller on the host) go first.
  EXPECT_TRUE(slurp(d / "logs" / "2.1.err").ends_with("err\n")) << slurp(d / "logs" / "2.1.err");
  EXPECT_EQ(element(d, 3, 0).exit_code, 75);
  // Requeued: SLURM_RESTART_COUNT=1 makes it attempt 2, the last one.
  EXPECT_EQ(element(d, 3, 1).exit_code, 1);
  for (const char* name : {"1.1.json", "2.1.json", "3.1.json", "3.2.json"})
    EXPECT_TRUE(fs::exists(d / "records" / name)) << name;

  fs::path results = dir / "all.jsonl";
  RunOutput collect = run_pollkill({"collect", d.string(), "--results", results.string()});
  EXPECT_EQ(collect.exit_code, 0) << collect.describe();
  auto records = read_records(results);
  ASSERT_EQ(records.size(), 4u);
  std::vector<std::string> order;
  for (const auto& r : records)
    order.push_back(r["id"].get<std::string>() + "/" + std::to_string(r["attempt"].get<int>()));
  EXPECT_EQ(order, (std::vector<std::string>{"2/1", "fails/1", "crash/1", "crash/2"}));
  EXPECT_EQ(records[0]["status"], "ok") << records[0].dump();
  EXPECT_EQ(records[1]["exit_code"], 3);
  EXPECT_EQ(records[2]["status"], "crashed");
  EXPECT_EQ(records[2]["final"], false);
  EXPECT_EQ(records[3]["final"], true);
  EXPECT_EQ(records[3]["slurm_job_id"], "4242_3");
  EXPECT_FALSE(records[3]["host"].get<std::string>().empty());
  EXPECT_EQ(records[1]["stderr"], (d / "logs" / "2.1.err").string());
  // The contract's keys first, in order, then the two Slurm keys.
  std::vector<std::string> keys;
  for (auto it = records[0].begin(); it != records[0].end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys.size(), result_contract_keys().size() + 2);

  // Collecting again adds nothing.
  EXPECT_EQ(run_pollkill({"collect", d.string(), "--results", results.string()}).exit_code, 0);
  EXPECT_EQ(read_records(results).size(), 4u);
  EXPECT_TRUE(processes_matching(marker).empty());
}

// retry.escalate in an element: the requeued run reads the first attempt's record and gets
// the escalated wall time; the submission asks Slurm for the largest escalated memory.
TEST(SlurmElement, EscalationFromTheEarlierRecordsAndTheMemoryAskedFor) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  write_file(s.dir / "policy.toml",
             "version = 1\n[limits]\nmemory = \"64MiB\"\nwall_time = \"300ms\"\n"
             "[runner]\nmissing_controllers = \"warn\"\n[retry]\nattempts = 3\n"
             "escalate = { memory = \"x2\", wall_time = \"x10\" }\n");
  const std::string marker = unique_marker();
  write_file(s.tasks, "sh -c 'sleep 0.8' " + marker + "\n");
  // --mem below what the third attempt may need (256 MiB and pollkill's 64) is refused.
  const std::string policy = "--policy=" + (s.dir / "policy.toml").string();
  RunOutput refused = s.submit({policy, "--sbatch-arg=--mem=300M"});
  EXPECT_EQ(refused.exit_code, 2) << refused.describe();
  EXPECT_NE(refused.err.find("--sbatch-arg=--mem=320M"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(s.bin / "args")) << "nothing was submitted";
  fs::remove_all(s.results);
  RunOutput submitted = s.submit({policy});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.describe();
  std::string args = slurp(s.bin / "args");
  EXPECT_NE(args.find("--requeue\n--mem=320M\n"), std::string::npos) << args;
  fs::remove_all(s.results);
  ASSERT_EQ(s.submit({policy, "--sbatch-arg=--mem=1G"}).exit_code, 0);
  args = slurp(s.bin / "args");
  EXPECT_EQ(args.find("--mem=320M"), std::string::npos) << args;

  EXPECT_EQ(element(s.results, 1, 0).exit_code, 75);
  RunOutput second = element(s.results, 1, 1);
  EXPECT_EQ(second.exit_code, 0) << second.describe();
  auto first_record = json::parse(slurp(s.results / "records" / "1.1.json"));
  auto second_record = json::parse(slurp(s.results / "records" / "1.2.json"));
  EXPECT_EQ(first_record["status"], "timeout") << first_record.dump();
  EXPECT_EQ(first_record["wall_time_limit_s"], 0.3);
  EXPECT_EQ(first_record["memory_limit_bytes"], 64u << 20);
  EXPECT_EQ(second_record["status"], "ok") << second_record.dump();
  EXPECT_EQ(second_record["wall_time_limit_s"], 3.0);
  EXPECT_EQ(second_record["memory_limit_bytes"], 64u << 20) << "a timeout escalates no memory";
  EXPECT_TRUE(processes_matching(marker).empty());
}

// --chunk: the submission writes a chunk file and submits one element per chunk; element K
// runs its chunk's tasks as a local batch, each with its own record, retries included, and
// a rerun of the element (its node died) runs only what is not decided.
TEST(SlurmElement, ChunksRunAsLocalBatchesWithTheirOwnRecords) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  const fs::path flag = s.dir / "flag";
  // Task 4 crashes once, then succeeds: retried within the element.
  std::string crash = "{\"id\": \"flaky\", \"sh\": \"[ -e " + flag.string() +
                      " ] && exit 0; touch " + flag.string() + "; kill -SEGV $$\"}\n";
  std::string tasks = "true\ntrue\nfalse\n" + crash + "true\n";
  write_file(s.tasks, tasks);
  RunOutput submitted = s.submit({"--chunk", "2", "--retries", "1", "-j", "4"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.describe();
  std::string args = slurp(s.bin / "args");
  EXPECT_NE(args.find("--array=1-3%4\n"), std::string::npos) << args;
  EXPECT_NE(submitted.err.find("3 elements of up to 2 tasks"), std::string::npos) << submitted.err;
  fs::path chunks;
  for (const auto& entry : fs::directory_iterator(s.results / "slurm")) {
    std::string name = entry.path().filename().string();
    if (name.starts_with("chunks.") && !name.ends_with(".sh")) chunks = entry.path();
  }
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(slurp(chunks), "1-2\n3-4\n5\n");
  EXPECT_NE(args.find(chunks.string() + ".sh\n"), std::string::npos) << args;

  auto chunk_env = [](int index) {
    LaunchOptions options = element_env(index, std::nullopt);
    options.env["SLURM_CPUS_ON_NODE"] = "2";
    return options;
  };
  RunOutput second =
      run_pollkill({"slurm-element", s.results.string(), "--chunks", chunks.string()}, Seconds(60),
                   chunk_env(2));
  EXPECT_EQ(second.exit_code, 1) << "task 3 failed: " << second.describe();
  EXPECT_EQ(dir_names(s.results / "records"),
            (std::vector<std::string>{"3.1.json", "3.final", "4.1.json", "4.2.json", "4.final"}));
  auto flaky = json::parse(slurp(s.results / "records" / "4.2.json"));
  EXPECT_EQ(flaky["status"], "ok") << flaky.dump();
  EXPECT_EQ(flaky["slurm_job_id"], "4242_2");
  // Run again (Slurm reran it after its node died): nothing left to run, nothing added.
  RunOutput again = run_pollkill({"slurm-element", s.results.string(), "--chunks", chunks.string()},
                                 Seconds(60), chunk_env(2));
  EXPECT_EQ(again.exit_code, 1) << again.describe();  // the chunk's tasks: one failed
  EXPECT_EQ(dir_names(s.results / "records").size(), 5u);
  for (int index : {1, 3})
    EXPECT_EQ(run_pollkill({"slurm-element", s.results.string(), "--chunks", chunks.string()},
                           Seconds(60), chunk_env(index))
                  .exit_code,
              0);
  RunOutput collect =
      run_pollkill({"collect", s.results.string(), "--results", (s.dir / "all.jsonl").string()});
  EXPECT_EQ(collect.exit_code, 0) << collect.describe();
  EXPECT_EQ(read_records(s.dir / "all.jsonl").size(), 6u);
  // An element number past the chunk file is an error of its own.
  EXPECT_EQ(run_pollkill({"slurm-element", s.results.string(), "--chunks", chunks.string()},
                         Seconds(60), chunk_env(4))
                .exit_code,
            2);
}

// Regression: the element named its task cgroup after the task's id, and an id may hold any
// character: "a/b" made an error record ("create task cgroup '.../task-a/b'") instead of
// running. It is named by number now, as a batch's are.
TEST(SlurmElement, AnIdThatIsNoDirectoryNameStillRuns) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  write_file(s.tasks, "{\"id\": \"a/b\", \"sh\": \"cat /proc/self/cgroup\"}\n");
  ASSERT_EQ(s.submit().exit_code, 0);
  RunOutput r = element(s.results, 1, std::nullopt);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  json record = json::parse(slurp(s.results / "records" / "1.1.json"));
  EXPECT_EQ(record["id"], "a/b");
  EXPECT_EQ(record["status"], "ok") << record.dump();
  const std::string cgroup = record["cgroup"];
  EXPECT_TRUE(cgroup.ends_with("/task-1-1")) << cgroup;
  EXPECT_EQ(cgroup_v2_path(slurp(s.results / "logs" / "1.1.out")), cgroup);
}

TEST(SlurmElement, ResumeSubmitsOnlyTasksWithoutAFinalRecord) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  write_file(s.tasks, "true\ntrue\ntrue\ntrue\n");
  ASSERT_EQ(s.submit().exit_code, 0);
  for (int seq : {1, 3}) ASSERT_EQ(element(s.results, seq, std::nullopt).exit_code, 0);

  RunOutput collect =
      run_pollkill({"collect", s.results.string(), "--results", (s.dir / "r").string()});
  EXPECT_EQ(collect.exit_code, 1) << collect.describe();
  EXPECT_NE(collect.err.find("2 of 4 tasks have no final record yet: 2, 4"), std::string::npos)
      << collect.err;

  RunOutput again = s.submit();
  EXPECT_EQ(again.exit_code, 2) << again.describe();
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;

  fs::remove(s.bin / "args");
  RunOutput resumed = s.submit({"--resume"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_NE(slurp(s.bin / "args").find("--array=2,4\n"), std::string::npos)
      << slurp(s.bin / "args");
  // A resumed element counts attempts on from the records, not from SLURM_RESTART_COUNT.
  ASSERT_EQ(element(s.results, 2, std::nullopt).exit_code, 0);
  EXPECT_TRUE(fs::exists(s.results / "records" / "2.1.json"));
  fs::remove(s.results / "records" / "2.1.json");  // rerun 2 to see the attempt move on
  write_file(s.results / "records" / "2.1.json",
             R"({"id":"2","attempt":1,"final":false,"status":"hung"})");
  ASSERT_EQ(element(s.results, 2, 0).exit_code, 0);
  EXPECT_EQ(json::parse(slurp(s.results / "records" / "2.2.json"))["attempt"], 2);

  write_file(s.tasks, "true\ntrue\ntrue\nfalse\n");
  RunOutput changed = s.submit({"--resume"});
  EXPECT_EQ(changed.exit_code, 2) << changed.describe();
  EXPECT_NE(changed.err.find("is not the task file"), std::string::npos) << changed.err;
}

// The element takes evidence like `run` and `batch` ([evidence] on), beside the task's logs and
// named like them.
TEST(SlurmElement, AHungTaskLeavesEvidenceBesideItsLogs) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  write_file(s.tasks,
             std::string("{\"id\": \"stuck\", \"cmd\": [\"") + POLLKILL_STUCK + "\", \"hang\"]}\n");
  ASSERT_EQ(s.submit({"--hang-after", "1s", "--kill-grace", "0"}).exit_code, 0);
  RunOutput r = element(s.results, 1, std::nullopt);
  json record = json::parse(slurp(s.results / "records" / "1.1.json"));
  EXPECT_EQ(record["status"], "hung") << record.dump();
  ASSERT_TRUE(record["evidence"].is_string()) << record.dump() << r.describe();
  EXPECT_TRUE(fs::equivalent(record["evidence"].get<std::string>(),
                             s.results / "logs" / "1.1.evidence.json"))
      << record["evidence"];
  EXPECT_TRUE(fs::exists(s.results / "logs" / "1.1.evidence.txt"));
  EXPECT_EQ(record["stack_signature"], "pk_stuck: stuck_in_read < main < __libc_start_call_main");
}

TEST(SlurmElement, TaskCwdAndEnvApplyInTheElement) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  fs::create_directories(s.dir / "work");
  write_file(s.tasks, "{\"id\": \"where\", \"sh\": \"pwd; echo $FOO\", \"cwd\": \"" +
                          (s.dir / "work").string() + "\", \"env\": {\"FOO\": \"bar\"}}\n");
  ASSERT_EQ(s.submit().exit_code, 0);
  RunOutput ran = element(s.results, 1, std::nullopt);
  EXPECT_EQ(ran.exit_code, 0) << ran.describe();
  EXPECT_EQ(slurp(s.results / "logs" / "1.1.out"), (s.dir / "work").string() + "\nbar\n");
}

TEST(SlurmElement, AStragglerCannotAddASecondFinalRecord) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  const std::string marker = unique_marker();
  fs::path flag = s.dir / "flag";
  fs::path d = s.submitted(straggling_task(flag, 0, marker));
  // Attempt 1 starts on a node that is then declared dead; Slurm requeues the element and
  // runs it elsewhere as attempt 2, which ends first.
  auto straggler = start_first_run(d, {"slurm-element", d.string()});
  RunOutput rerun = element(d, 1, 1);
  EXPECT_EQ(rerun.exit_code, 0) << rerun.describe();
  // The node comes back and its element ends too: its record must not become a second
  // final one.
  write_file(flag, "");
  RunOutput late = straggler->wait(Seconds(30));
  EXPECT_EQ(late.exit_code, 3) << late.describe();
  EXPECT_NE(late.err.find("not recorded: another run of the task decided it"), std::string::npos)
      << late.err;
  EXPECT_EQ(dir_names(d / "records"), (std::vector<std::string>{"1.2.json", "1.final"}));
  auto aside = dir_names(d / "superseded");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(aside[0].rfind("1.1.", 0), 0u) << aside[0];
  json kept = json::parse(slurp(d / "superseded" / aside[0]));
  EXPECT_EQ(kept["attempt"], 1);
  EXPECT_EQ(kept["status"], "ok");

  fs::path results = s.dir / "all.jsonl";
  RunOutput collect = run_pollkill({"collect", d.string(), "--results", results.string()});
  EXPECT_EQ(collect.exit_code, 0) << collect.describe();
  auto records = read_records(results);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["attempt"], 2);
  EXPECT_TRUE(processes_matching(marker).empty());
}

TEST(SlurmElement, TwoRunsOfOneAttemptDoNotOverwriteEachOther) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  const std::string marker = unique_marker();
  fs::path flag = s.dir / "flag";
  fs::path d = s.submitted(straggling_task(flag, 3, marker));
  // Two runs of attempt 1 (what srun steps are given, or a resumed element racing a
  // straggler): the first to end keeps the name, whatever the other one says later.
  const std::vector<std::string> argv{"slurm-element", d.string(), "--seq", "1", "--attempt", "1"};
  auto straggler = start_first_run(d, argv);
  RunOutput first = run_pollkill(argv, Seconds(30), element_env(1, 1));
  EXPECT_EQ(first.exit_code, 0) << first.describe();
  std::string placed = slurp(d / "records" / "1.1.json");
  write_file(flag, "");
  RunOutput late = straggler->wait(Seconds(30));
  EXPECT_EQ(late.exit_code, 3) << late.describe();
  EXPECT_EQ(slurp(d / "records" / "1.1.json"), placed);
  EXPECT_EQ(json::parse(placed)["status"], "ok");
  auto aside = dir_names(d / "superseded");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(json::parse(slurp(d / "superseded" / aside[0]))["status"], "failed");
  EXPECT_TRUE(processes_matching(marker).empty());
}

TEST(SlurmElement, AnAttemptLostWithItsNodeKeepsItsNumber) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  fs::path d = s.submitted("true\n");
  // Attempt 1 created its logs, then its node died: no record. A resumed element (Slurm's
  // count starts at 0 again) runs attempt 2 and leaves attempt 1's logs alone.
  write_file(d / "logs" / "1.1.out", "from the lost attempt\n");
  RunOutput resumed = element(d, 1, std::nullopt);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_EQ(dir_names(d / "records"), (std::vector<std::string>{"1.2.json", "1.final"}));
  EXPECT_EQ(slurp(d / "logs" / "1.1.out"), "from the lost attempt\n");
}

TEST(SlurmElement, ADecidedTaskIsNotRunAgain) {
  PK_REQUIRE_CGROUP2();
  Submission s;
  fs::path runs = s.dir / "runs";
  fs::path d = s.submitted("{\"id\": \"once\", \"sh\": \"echo ran >> " + runs.string() + "\"}\n");
  ASSERT_EQ(element(d, 1, std::nullopt).exit_code, 0);
  // Slurm requeues the element after its node was declared dead, though the run had
  // finished and placed its record just before: the task must not run a second time.
  RunOutput requeued = element(d, 1, 1);
  EXPECT_EQ(requeued.exit_code, 3) << requeued.describe();
  EXPECT_NE(requeued.err.find("already has a final record"), std::string::npos) << requeued.err;
  EXPECT_EQ(slurp(runs), "ran\n");
  EXPECT_EQ(dir_names(d / "records"), (std::vector<std::string>{"1.1.json", "1.final"}));
}

}  // namespace
}  // namespace pollkill::testing
