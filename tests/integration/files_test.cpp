// The files pollkill writes, against the real binary: results on standard output, results
// that are not regular files, a results file two batches want, planted log links, a logs
// directory of another user, an unusable run --result, and a cancel during start-up.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(Files, ResultsToStandardOutputAreJsonLines) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "tasks", "echo one\n{\"id\": \"b\", \"sh\": \"exit 3\"}\n");
  RunOutput r = run_pollkill({"batch", "-q", "--results", "-", "--logs", (dir / "logs").string(),
                              (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::istringstream lines(r.out);
  std::map<std::string, json> records;
  for (std::string line; std::getline(lines, line);) {
    json record = json::parse(line);  // every line of stdout is a record
    records[record["id"].get<std::string>()] = record;
  }
  ASSERT_EQ(records.size(), 2u) << r.out;
  EXPECT_EQ(records["1"]["status"], "ok");
  EXPECT_EQ(records["b"]["status"], "failed");
  EXPECT_EQ(slurp(dir / "logs" / "1.1.out"), "one\n");
  EXPECT_FALSE(fs::exists("-"));
}

// Refused before anything runs (exit 2), not at the first sync after running tasks.
TEST(Files, ResultsThatAreNotARegularFileAreRefusedBeforeAnythingRuns) {
  TempDir dir;
  const fs::path ran = dir / "ran";
  write_file(dir / "tasks", "touch " + ran.string() + "\n");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  fs::create_symlink(dir / "target", dir / "link");
  const std::pair<std::string, std::string> cases[] = {
      {"/dev/null", "is a character device"},
      {(dir / "fifo").string(), "is a FIFO"},
      {(dir / "link").string(), "is a symbolic link"},
  };
  for (const auto& [results, kind] : cases) {
    RunOutput r = run_pollkill({"batch", "--results", results, "--logs", (dir / "logs").string(),
                                (dir / "tasks").string()});
    EXPECT_EQ(r.exit_code, 2) << results << ": " << r.describe();
    EXPECT_NE(r.err.find("'" + results + "' " + kind), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(ran)) << results;
  }
  EXPECT_FALSE(fs::exists(dir / "target"));
}

TEST(Files, ASecondBatchOnAResultsFileInUseIsRefusedNamingTheFirst) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  write_file(dir / "long", "sleep " + long_sleep_arg(marker) + "\n");
  write_file(dir / "short", "touch " + (dir / "ran").string() + "\n");
  const std::string results = (dir / "r.jsonl").string();
  Pollkill first({"batch", "--results", results, (dir / "long").string()});
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 1; }, Seconds(10)));
  RunOutput second = run_pollkill({"batch", "--results", results, (dir / "short").string()});
  EXPECT_EQ(second.exit_code, 2) << second.describe();
  EXPECT_NE(second.err.find("'" + results + "' is in use: process " + std::to_string(first.pid())),
            std::string::npos)
      << second.err;
  EXPECT_FALSE(fs::exists(dir / "ran"));
  first.signal(SIGTERM);
  RunOutput r = first.wait(Seconds(20));
  EXPECT_EQ(r.exit_code, 143) << r.describe();
  auto records = read_records(results);
  ASSERT_EQ(records.size(), 1u);  // only the first batch's
  EXPECT_EQ(records[0]["status"], "cancelled");
}

// Root must not follow a link a user planted where a log goes, nor truncate its target.
TEST(Files, APlantedLogLinkIsNotFollowed) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  write_file(dir / "target", "precious\n");
  write_file(dir / "tasks", "echo overwritten\necho two\n");
  fs::create_directory(dir / "r.logs");
  ::chmod((dir / "r.logs").c_str(), 0755);
  fs::create_symlink(dir / "target", dir / "r.logs" / "1.1.out");
  RunOutput r = run_pollkill(
      {"batch", "-j", "1", "--results", (dir / "r.jsonl").string(), (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(slurp(dir / "target"), "precious\n");
  std::map<std::string, json> records;
  for (const auto& record : read_records(dir / "r.jsonl"))
    records[record["id"].get<std::string>()] = record;
  EXPECT_EQ(records["1"]["status"], "error");
  EXPECT_NE(records["1"]["reason"].get<std::string>().find("is a symbolic link"), std::string::npos)
      << records["1"];
  EXPECT_EQ(records["2"]["status"], "ok");  // the others run
}

TEST(Files, ALogsDirectoryOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory to another user";
  TempDir dir;
  write_file(dir / "tasks", "touch " + (dir / "ran").string() + "\n");
  fs::create_directory(dir / "logs");
  ::chmod((dir / "logs").c_str(), 0755);
  ASSERT_EQ(::chown((dir / "logs").c_str(), 65534, 65534), 0);
  RunOutput r = run_pollkill({"batch", "--results", (dir / "r.jsonl").string(), "--logs",
                              (dir / "logs").string(), (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("belongs to uid 65534"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "ran"));
}

TEST(Files, AnUnusableRunResultPathIsRefusedBeforeTheTaskRuns) {
  TempDir dir;
  fs::create_directory(dir / "dir");
  const fs::path ran = dir / "ran";
  for (const std::string& result :
       {(dir / "dir").string(), std::string("/dev/full"), (dir / "missing" / "r.json").string()}) {
    RunOutput r = run_pollkill({"run", "--result", result, "--", "touch", ran.string()});
    EXPECT_EQ(r.exit_code, 125) << result << ": " << r.describe();
    EXPECT_NE(r.err.find(result), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(ran)) << result;
  }
}

// Whether SIGTERM is blocked in `pid` (/proc/PID/status, SigBlk).
bool sigterm_blocked(pid_t pid) {
  std::istringstream status(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("SigBlk:", 0) == 0)
      return (std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1)) & 1;
  }
  return false;
}

// A SIGTERM while pollkill is still starting up (here: reading its policy from a FIFO nobody
// has written yet) does not kill it: the task is recorded as cancelled and never runs.
TEST(Files, SigtermDuringStartUpStillWritesACancelledRecord) {
  TempDir dir;
  const fs::path fifo = dir / "policy.toml";
  const fs::path ran = dir / "ran";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto p = start_run({"--policy", fifo.string()}, {"touch", ran.string()});
  EXPECT_TRUE(wait_until([&] { return sigterm_blocked(p->pid()); }, Seconds(10)))
      << "pollkill does not hold SIGTERM while it starts";
  p->signal(SIGTERM);
  {
    std::ofstream policy(fifo);  // pollkill is blocked in open(2) for reading until now
    policy << "version = 1\n";
  }
  RunOutput r = finish_run(*p);
  EXPECT_EQ(r.exit_code, 143) << r.describe();
  ASSERT_TRUE(r.json) << r.json_error << " " << r.describe();
  EXPECT_EQ((*r.json)["status"], "cancelled");
  EXPECT_EQ((*r.json)["reason"], "cancelled by SIGTERM before the task started");
  EXPECT_FALSE(fs::exists(ran));
}

// A dry run starts no event loop: a Ctrl-C or SIGTERM while it reads its task file (here a FIFO
// nobody writes yet) ends it, as it ends any command that is not running tasks.
TEST(Files, ADryRunCanBeInterrupted) {
  TempDir dir;
  const fs::path fifo = dir / "tasks";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Pollkill p({"batch", "--dry-run", "--results", (dir / "r.jsonl").string(), fifo.string()});
  const std::string wchan = "/proc/" + std::to_string(p.pid()) + "/wchan";
  ASSERT_TRUE(wait_until([&] { return slurp(wchan) == "wait_for_partner"; }, Seconds(10)))
      << "pollkill never opened the FIFO";
  EXPECT_FALSE(sigterm_blocked(p.pid())) << "a dry run holds SIGTERM";
  p.signal(SIGTERM);
  RunOutput r = p.wait(Seconds(10));
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.term_signal, SIGTERM) << r.describe();
}

// --resume reads the results file, so "-" is refused, by a dry run as by the real one (the dry
// run used to read a file named "-" instead).
TEST(Files, ADryRunRefusesResumeFromStandardOutput) {
  TempDir dir;
  write_file(dir / "tasks", "true\n");
  RunOutput r =
      run_pollkill({"batch", "--dry-run", "--resume", "--results", "-", (dir / "tasks").string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("cannot be standard output"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pollkill::testing
