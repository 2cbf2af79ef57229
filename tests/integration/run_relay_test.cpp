// The output relay (an `output` limit) against hostile readers and writers: a reader that goes
// away ends the task as a pipeline would, a stalled reader delays neither a timeout nor a
// SIGTERM, and no more than the limit reaches the reader (run) or the disk (batch), whatever
// the poll interval.
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "harness.h"

namespace pollkill::testing {
namespace {

// `sh -c SCRIPT sh POLLKILL RESULT EXTRA`: a shell pipeline around pollkill, with the
// binary as $1, the result file as $2 and a scratch file as $3.
std::unique_ptr<Pollkill> start_pipeline(const std::string& script, const TempDir& dir) {
  LaunchOptions options;
  options.program = "/bin/sh";
  return std::make_unique<Pollkill>(
      std::vector<std::string>{"-c", script, "sh", POLLKILL_BINARY, (dir / "result.json").string(),
                               (dir / "scratch").string()},
      options);
}

nlohmann::json read_result(const TempDir& dir) {
  auto text = slurp(dir / "result.json");
  return text.empty() ? nlohmann::json() : nlohmann::json::parse(text, nullptr, false);
}

// Regression: the relay ignored EPIPE, so `... | head -1` never ended.
TEST(RunRelay, AReaderThatGoesAwayEndsTheTaskAsAPipelineWould) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  auto run = start_pipeline(
      "\"$1\" run --output 1G --result \"$2\" -- sh -c 'while :; do echo x; sleep .1; done' "
      "| head -1",
      dir);
  RunOutput r = run->wait(Seconds(20));
  ASSERT_FALSE(r.timed_out) << "the task outlived its reader: " << r.describe();
  EXPECT_EQ(r.out, "x\n");
  nlohmann::json result = read_result(dir);
  ASSERT_TRUE(result.is_object()) << r.describe();
  EXPECT_EQ(result["status"], "crashed") << result.dump();
  EXPECT_EQ(result["signal"], SIGPIPE) << result.dump();
  EXPECT_EQ(r.err.find("crashed"), std::string::npos)
      << "a pipeline's SIGPIPE is not announced: " << r.err;
}

// Without --output the task writes to the pipe itself; its SIGPIPE is not announced either.
TEST(RunRelay, ASigpipeWithoutTheRelayIsNotAnnounced) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  auto run = start_pipeline("\"$1\" run --result \"$2\" -- yes | head -1", dir);
  RunOutput r = run->wait(Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.out, "y\n");
  nlohmann::json result = read_result(dir);
  ASSERT_TRUE(result.is_object()) << r.describe();
  EXPECT_EQ(result["signal"], SIGPIPE) << result.dump();
  EXPECT_EQ(r.err.find("crashed"), std::string::npos) << "not announced: " << r.err;
}

// Regression: with a reader that never reads, the relay blocked in write(): the wall time was
// taken only when the reader exited (about 10 s here).
TEST(RunRelay, AStalledReaderDoesNotDelayTheTimeout) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  auto run = start_pipeline(
      "\"$1\" run --output 1G --wall-time 1s --result \"$2\" -- yes | sleep 10", dir);
  ASSERT_TRUE(wait_until([&] { return read_result(dir).is_object(); }, Seconds(30)));
  nlohmann::json result = read_result(dir);
  EXPECT_EQ(result["status"], "timeout") << result.dump();
  EXPECT_LT(result["wall_s"].get<double>(), 6.0)
      << "the 1 s wall time was taken late: " << result.dump();
  RunOutput r = run->wait(Seconds(30));
  EXPECT_FALSE(r.timed_out) << r.describe();
}

// Regression: signals were not read while the relay blocked in write(): SIGTERM waited for
// the reader to exit.
TEST(RunRelay, AStalledReaderDoesNotDelayASigterm) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  auto run =
      start_pipeline("{ \"$1\" run --output 1G --result \"$2\" -- sh -c 'exec yes " + marker +
                         "' & echo $! > \"$3.pid\"; wait $!; echo $? > \"$3.rc\"; } | sleep 10",
                     dir);
  ASSERT_TRUE(wait_until([&] { return !processes_matching(marker, "yes").empty(); }, Seconds(10)));
  ::usleep(300 * 1000);  // the reader's pipe and the relay fill up
  const pid_t pollkill = std::stoi(slurp(dir / "scratch.pid"));
  ::kill(pollkill, SIGTERM);
  EXPECT_TRUE(wait_until([&] { return !slurp(dir / "scratch.rc").empty(); }, Seconds(5)))
      << "pollkill did not end within 5 s of SIGTERM while its reader stalled";
  EXPECT_EQ(slurp(dir / "scratch.rc"), "143\n");
  nlohmann::json result = read_result(dir);
  EXPECT_EQ(result["status"], "cancelled") << result.dump();
  RunOutput r = run->wait(Seconds(30));
  EXPECT_FALSE(r.timed_out) << r.describe();
  expect_nothing_left(r, marker);
}

// Regression: whole 64 KiB chunks were copied before the limit was checked (80 KiB more than
// 10M went through).
TEST(RunRelay, NoMoreThanTheLimitReachesTheReader) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_task_cli({"--output", "10M"}, {"head", "-c", "30000000", "/dev/zero"});
  ASSERT_TRUE(r.json) << r.err;
  EXPECT_EQ((*r.json)["status"], "output_limit") << r.json->dump();
  EXPECT_EQ(r.out.size(), 10u * 1024 * 1024) << r.json->dump();
}

// Regression: log sizes were checked only at samples: with a 2 s poll interval the task wrote
// hundreds of MB to disk before the verdict. The limit holds whatever the poll interval.
TEST(BatchRelay, NoMoreThanTheLimitReachesTheDisk) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_task_via(Via::batch, {"--output", "1MiB", "--poll-interval", "2s"},
                             {"sh", "-c", "head -c 200000000 /dev/zero; head -c 10 /dev/zero >&2"});
  ASSERT_TRUE(r.json) << r.err;
  EXPECT_EQ((*r.json)["status"], "output_limit") << r.json->dump();
  EXPECT_EQ(r.out.size(), 1024u * 1024) << "bytes in the stdout log";
}

// The relay into log files keeps everything below the limit, both streams.
TEST(BatchRelay, OutputWithinTheLimitIsKeptWhole) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_task_via(Via::batch, {"--output", "1MiB"},
                             {"sh", "-c", "head -c 500000 /dev/zero; echo to-stderr >&2"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.json->dump();
  EXPECT_EQ(r.out.size(), 500000u);
  EXPECT_NE(r.err.find("to-stderr"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pollkill::testing
