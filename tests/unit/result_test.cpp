#include "pollkill/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <string>
#include <vector>

namespace pollkill {
namespace {

using namespace std::chrono;

Outcome exited(int code) {
  Outcome outcome;
  outcome.exit_code = code;
  return outcome;
}

Outcome killed(int signal, bool by_pollkill = false) {
  Outcome outcome;
  outcome.signal = signal;
  outcome.signal_sent_by_pollkill = by_pollkill;
  return outcome;
}

TEST(ResultTest, Classify) {
  struct Case {
    const char* name;
    Outcome outcome;
    Status status;
    std::string reason;
  };
  Outcome cancelled = killed(SIGTERM, true);
  cancelled.cancel_signal = SIGINT;
  cancelled.verdict = Status::timeout;  // cancellation wins even over a verdict
  Outcome cancelled_term;
  cancelled_term.cancel_signal = SIGTERM;
  Outcome cancelled_hup;
  cancelled_hup.cancel_signal = SIGHUP;
  Outcome cancelled_other;
  cancelled_other.cancel_signal = 40;

  Outcome timeout = killed(SIGKILL, true);
  timeout.verdict = Status::timeout;
  timeout.verdict_reason = "wall time 30s exceeded";
  timeout.oom_kills_delta = 2;  // a verdict wins over oom
  Outcome hung = killed(SIGTERM, true);
  hung.verdict = Status::hung;
  hung.verdict_reason = "no CPU use (below 0.01 CPU) and no progress for 2m0s";
  Outcome thrashing = killed(SIGKILL, true);
  thrashing.verdict = Status::thrashing;
  thrashing.verdict_reason = "stalled on memory 73% of the time over 30s (at or above 60%)";
  thrashing.oom_kills_delta = 1;  // the verdict pollkill acted on wins, as for timeout
  Outcome output_limit = exited(1);
  output_limit.verdict = Status::output_limit;
  Outcome verdict_no_reason = killed(SIGKILL, true);
  verdict_no_reason.verdict = Status::spinning;
  Outcome cpu_limit = killed(SIGKILL, true);
  cpu_limit.verdict = Status::cpu_limit;
  cpu_limit.verdict_reason = "CPU time 10s exceeded (used 10.2s)";

  Outcome oom = exited(0);  // a child was OOM-killed, the main process still exited 0
  oom.oom_kills_delta = 1;
  Outcome oom_many = killed(SIGKILL);
  oom_many.oom_kills_delta = 3;

  Outcome not_found;
  not_found.exec_errno = ENOENT;
  not_found.exec_step = "execve";
  not_found.exit_code = 127;
  Outcome no_step;
  no_step.exec_errno = EACCES;

  const std::vector<Case> cases{
      {"cancelled by SIGINT", cancelled, Status::cancelled, "cancelled by SIGINT"},
      {"cancelled by SIGTERM", cancelled_term, Status::cancelled, "cancelled by SIGTERM"},
      {"cancelled by SIGHUP", cancelled_hup, Status::cancelled, "cancelled by SIGHUP"},
      {"cancelled by other", cancelled_other, Status::cancelled, "cancelled by signal 40"},
      {"timeout", timeout, Status::timeout, "wall time 30s exceeded"},
      {"cpu_limit", cpu_limit, Status::cpu_limit, "CPU time 10s exceeded (used 10.2s)"},
      {"hung", hung, Status::hung, "no CPU use (below 0.01 CPU) and no progress for 2m0s"},
      {"thrashing", thrashing, Status::thrashing,
       "stalled on memory 73% of the time over 30s (at or above 60%)"},
      {"output_limit", output_limit, Status::output_limit, "output_limit"},
      {"verdict without reason", verdict_no_reason, Status::spinning, "spinning"},
      {"oom", oom, Status::oom, "out of memory: the kernel OOM killer killed 1 process"},
      {"oom many", oom_many, Status::oom,
       "out of memory: the kernel OOM killer killed 3 processes"},
      {"exec_error", not_found, Status::exec_error,
       "cannot execute 'foo': No such file or directory (ENOENT) at execve"},
      {"exec_error no step", no_step, Status::exec_error,
       "cannot execute 'foo': Permission denied (EACCES)"},
      {"crashed", killed(SIGSEGV), Status::crashed, "killed by signal 11 (SIGSEGV)"},
      {"crashed unnamed", killed(40), Status::crashed, "killed by signal 40"},
      {"blocked", killed(SIGSYS), Status::blocked, "killed by signal 31 (SIGSYS): seccomp filter"},
      {"signal from pollkill, no verdict", killed(SIGKILL, true), Status::failed,
       "killed by signal 9 (SIGKILL) sent by pollkill"},
      {"ok", exited(0), Status::ok, "exited 0"},
      {"failed", exited(3), Status::failed, "exited with code 3"},
      {"nothing observed", Outcome{}, Status::error,
       "no exit status observed for the main process"},
  };
  for (const auto& c : cases) {
    const Classification got = classify(c.outcome, {"foo", "--bar"});
    EXPECT_EQ(got.status, c.status) << c.name;
    EXPECT_EQ(got.reason, c.reason) << c.name;
  }
}

TEST(ResultTest, ExitCodeFor) {
  struct Case {
    Status status;
    std::optional<int> exit_code;
    std::optional<int> signal;
    std::optional<int> cancel_signal;
    int expected;
  };
  const std::vector<Case> cases{
      {Status::ok, 0, {}, {}, 0},
      {Status::failed, 3, {}, {}, 3},
      {Status::failed, {}, SIGKILL, {}, 1},
      {Status::failed, 0, {}, {}, 1},
      {Status::crashed, {}, SIGSEGV, {}, 139},
      {Status::crashed, {}, {}, {}, 1},
      {Status::blocked, {}, SIGSYS, {}, 128 + SIGSYS},
      {Status::blocked, {}, {}, {}, 128 + SIGSYS},
      {Status::oom, 0, {}, {}, 137},
      {Status::oom, {}, SIGKILL, {}, 137},
      {Status::timeout, {}, SIGKILL, {}, 124},
      {Status::cpu_limit, {}, SIGKILL, {}, 124},
      {Status::hung, {}, SIGTERM, {}, 124},
      {Status::spinning, {}, SIGKILL, {}, 124},
      {Status::thrashing, {}, SIGKILL, {}, 124},
      {Status::output_limit, 0, {}, {}, 124},
      {Status::exec_error, 127, {}, {}, 127},
      {Status::exec_error, 126, {}, {}, 126},
      {Status::exec_error, {}, {}, {}, 126},
      {Status::cancelled, {}, SIGTERM, SIGTERM, 143},
      {Status::cancelled, {}, {}, SIGHUP, 129},
      {Status::cancelled, {}, {}, {}, 130},
      {Status::error, 0, {}, {}, 125},
  };
  for (const auto& c : cases) {
    Result result;
    result.status = c.status;
    result.exit_code = c.exit_code;
    result.signal = c.signal;
    result.cancel_signal = c.cancel_signal;
    EXPECT_EQ(exit_code_for(result), c.expected) << to_string(c.status);
  }
}

TEST(ResultTest, AnnounceEnd) {
  struct Case {
    Status status;
    std::optional<int> signal;
    bool verbose;
    bool expected;
  };
  const std::vector<Case> cases{
      {Status::ok, {}, false, false},
      {Status::failed, {}, false, false},
      {Status::ok, {}, true, true},
      {Status::timeout, SIGKILL, false, true},
      {Status::crashed, SIGSEGV, false, true},
      // A pipeline's reader went away (`yes | head -1`): quiet, as a shell is.
      {Status::crashed, SIGPIPE, false, false},
      {Status::crashed, SIGPIPE, true, true},
  };
  for (const auto& c : cases) {
    Result result;
    result.status = c.status;
    result.signal = c.signal;
    EXPECT_EQ(announce_end(result, c.verbose), c.expected)
        << to_string(c.status) << " signal " << c.signal.value_or(0) << " verbose " << c.verbose;
  }
}

TEST(ResultTest, StatusNamesRoundTrip) {
  const std::vector<std::pair<Status, std::string>> cases{
      {Status::ok, "ok"},
      {Status::failed, "failed"},
      {Status::crashed, "crashed"},
      {Status::oom, "oom"},
      {Status::timeout, "timeout"},
      {Status::cpu_limit, "cpu_limit"},
      {Status::hung, "hung"},
      {Status::spinning, "spinning"},
      {Status::thrashing, "thrashing"},
      {Status::output_limit, "output_limit"},
      {Status::blocked, "blocked"},
      {Status::exec_error, "exec_error"},
      {Status::cancelled, "cancelled"},
      {Status::error, "error"},
  };
  for (const auto& [status, name] : cases) {
    EXPECT_EQ(to_string(status), name);
    EXPECT_EQ(status_from_string(name), status);
  }
  EXPECT_FALSE(status_from_string("OK"));
  EXPECT_FALSE(status_from_string(""));
}

TEST(ResultTest, JsonKeysInContractOrder) {
  Result result;
  result.unkillable.push_back({42, "D (disk sleep)", "dd"});
  const auto json = to_json(result);
  const std::vector<std::string> expected{"id",
                                          "attempt",
                                          "final",
                                          "command",
                                          "status",
                                          "reason",
                                          "exit_code",
                                          "signal",
                                          "started_at",
                                          "wall_s",
                                          "cpu_user_s",
                                          "cpu_system_s",
                                          "memory_peak_bytes",
                                          "oom_kills",
                                          "pids_peak",
                                          "processes_reaped",
                                          "unkillable",
                                          "limits_not_enforced",
                                          "limits_cgroup_v1",
                                          "mode",
                                          "cgroup",
                                          "stdout",
                                          "stderr",
                                          "evidence",
                                          "stack_signature",
                                          "memory_limit_bytes",
                                          "wall_time_limit_s"};
  std::vector<std::string> keys;
  for (const auto& item : json.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, expected);

  std::vector<std::string> process_keys;
  for (const auto& item : json["unkillable"][0].items()) process_keys.push_back(item.key());
  EXPECT_EQ(process_keys, (std::vector<std::string>{"pid", "state", "comm"}));
}

TEST(ResultTest, JsonNullsAndValues) {
  Result empty;
  EXPECT_EQ(
      dump_result_line(empty),
      R"({"id":"run","attempt":1,"final":true,"command":[],"status":"error","reason":"",)"
      R"("exit_code":null,"signal":null,"started_at":"1970-01-01T00:00:00.000Z",)"
      R"("wall_s":0.0,"cpu_user_s":0.0,"cpu_system_s":0.0,"memory_peak_bytes":null,)"
      R"("oom_kills":null,"pids_peak":null,"processes_reaped":0,"unkillable":[],)"
      R"("limits_not_enforced":[],"limits_cgroup_v1":[],"mode":"cgroup","cgroup":null,"stdout":null,)"
      R"("stderr":null,"evidence":null,"stack_signature":null,"memory_limit_bytes":null,)"
      R"("wall_time_limit_s":null})");

  Result full;
  full.id = "build";
  full.attempt = 2;
  full.final = false;
  full.command = {"make", "-j8"};
  full.status = Status::failed;
  full.reason = "exited with code 2";
  full.exit_code = 2;
  full.started_at = system_clock::time_point{} + seconds(1795657385) + milliseconds(123);
  full.wall_s = 1.23456;
  full.cpu_user_s = 0.0004;
  full.cpu_system_s = 2.0005;
  full.memory_peak_bytes = 1048576;
  full.oom_kills = 0;
  full.pids_peak = 12;
  full.processes_reaped = 3;
  full.limits_not_enforced = {"memory"};
  full.cgroup = "pk/build.2";
  full.stdout_path = "out/build.stdout";
  full.stderr_path = "out/build.stderr";
  full.evidence = "out/build.2.evidence.json";
  full.stack_signature = "make: wait4 < main";
  full.memory_limit_bytes = 134217728;
  full.wall_time_limit_s = 20.5;
  const auto json = to_json(full);
  EXPECT_EQ(json["memory_limit_bytes"], 134217728u);
  EXPECT_EQ(json["wall_time_limit_s"], 20.5);
  EXPECT_EQ(json["evidence"], "out/build.2.evidence.json");
  EXPECT_EQ(json["stack_signature"], "make: wait4 < main");
  EXPECT_EQ(json["exit_code"], 2);
  EXPECT_TRUE(json["signal"].is_null());
  EXPECT_EQ(json["started_at"], "2026-11-26T01:43:05.123Z");
  EXPECT_EQ(json["memory_peak_bytes"], 1048576u);
  EXPECT_EQ(json["oom_kills"], 0u);
  EXPECT_EQ(json["stdout"], "out/build.stdout");
  EXPECT_EQ(json["mode"], "cgroup");
  EXPECT_EQ(json["cgroup"], "pk/build.2");
  full.mode = "subreaper";
  full.cgroup.clear();
  EXPECT_EQ(to_json(full)["mode"], "subreaper");
  EXPECT_TRUE(to_json(full)["cgroup"].is_null());
  const std::string line = dump_result_line(full);
  EXPECT_NE(line.find(R"("wall_s":1.235,"cpu_user_s":0.0,"cpu_system_s":2.001)"), std::string::npos)
      << line;
}

TEST(ResultTest, Rfc3339) {
  struct Case {
    system_clock::time_point t;
    std::string expected;
  };
  const std::vector<Case> cases{
      {system_clock::time_point{}, "1970-01-01T00:00:00.000Z"},
      {system_clock::time_point{} + seconds(1795657385) + microseconds(123999),
       "2026-11-26T01:43:05.123Z"},
      {system_clock::time_point{} - milliseconds(1), "1969-12-31T23:59:59.999Z"},
      {system_clock::time_point{} + seconds(951782400), "2000-02-29T00:00:00.000Z"},
  };
  for (const auto& c : cases) EXPECT_EQ(format_rfc3339_ms(c.t), c.expected);
}

TEST(ResultTest, OddCommandStringsStayOneLineOfValidJson) {
  struct Case {
    std::string arg;
    std::string encoded;  // how the argument appears inside the JSON line
  };
  const std::vector<Case> cases{
      {"say \"hi\"", R"("say \"hi\"")"},
      {"a\nb\tc", R"("a\nb\tc")"},
      {"back\\slash", R"("back\\slash")"},
      {std::string("nul\0byte", 8), R"("nul\u0000byte")"},
      {"caf\xc3\xa9", "\"caf\xc3\xa9\""},                  // valid UTF-8 passes through
      {"bad\xff\xfe", "\"bad\xef\xbf\xbd\xef\xbf\xbd\""},  // invalid bytes become U+FFFD
  };
  for (const auto& c : cases) {
    Result result;
    result.command = {"sh", c.arg};
    std::string line;
    ASSERT_NO_THROW(line = dump_result_line(result)) << c.encoded;
    EXPECT_EQ(line.find('\n'), std::string::npos);
    EXPECT_NE(line.find(R"("command":["sh",)" + c.encoded + "]"), std::string::npos) << line;
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
}

}  // namespace
}  // namespace pollkill
