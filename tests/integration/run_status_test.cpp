// `pollkill run` end to end: how a task's own ending maps to status, exit code and JSON, and
// that the task is born inside its cgroup.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include "harness.h"

namespace pollkill::testing {
namespace {

// Fields every result must have right, whatever the status.
void expect_common_fields(const nlohmann::ordered_json& j, const std::vector<std::string>& command,
                          pid_t pollkill_pid) {
  EXPECT_EQ(j["id"], "run");
  EXPECT_EQ(j["attempt"], 1);
  EXPECT_EQ(j["final"], true);
  EXPECT_EQ(j["command"], nlohmann::ordered_json(command));
  ASSERT_TRUE(j["reason"].is_string());
  EXPECT_FALSE(j["reason"].get<std::string>().empty());
  ASSERT_TRUE(j["started_at"].is_string());
  EXPECT_TRUE(std::regex_match(j["started_at"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << j["started_at"];
  for (const char* key : {"wall_s", "cpu_user_s", "cpu_system_s"}) {
    ASSERT_TRUE(j[key].is_number()) << key;
    EXPECT_GE(j[key].get<double>(), 0.0) << key;
  }
  for (const char* key : {"memory_peak_bytes", "oom_kills", "pids_peak"}) {
    EXPECT_TRUE(j[key].is_null() || j[key].is_number_unsigned()) << key << " = " << j[key];
  }
  EXPECT_TRUE(j["processes_reaped"].is_number_unsigned());
  EXPECT_TRUE(j["unkillable"].is_array());
  EXPECT_TRUE(j["limits_not_enforced"].is_array());
  ASSERT_TRUE(j["cgroup"].is_string());
  const std::string cgroup = j["cgroup"];
  EXPECT_TRUE(std::regex_search(
      cgroup, std::regex("/pollkill-" + std::to_string(pollkill_pid) + "-[0-9a-f]{8}/task-run$")))
      << cgroup;
  // `run` captures nothing: the task writes straight to pollkill's stdout and stderr.
  EXPECT_TRUE(j["stdout"].is_null());
  EXPECT_TRUE(j["stderr"].is_null());
}

TEST(RunStatus, OkHasExactlyTheContractKeys) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_pollkill({"run", "--result", "-", "--", "/bin/true"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, result_contract_keys()) << j.dump();
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_TRUE(j["signal"].is_null());
  EXPECT_EQ(j["processes_reaped"], 0);
  EXPECT_EQ(j["unkillable"], nlohmann::ordered_json::array());
  EXPECT_EQ(j["limits_not_enforced"], nlohmann::ordered_json::array());
  expect_common_fields(j, {"/bin/true"}, r.pid);
  // The result is exactly one line on stdout; ok prints nothing on stderr.
  EXPECT_EQ(r.out, j.dump() + "\n");
  EXPECT_EQ(r.err, "");
  expect_nothing_left(r, "");
}

TEST(RunStatus, NonZeroExitIsFailedWithTheSameCode) {
  PK_REQUIRE_CGROUP2();
  const std::vector<std::string> command = {"sh", "-c", "exit 3"};
  RunOutput r = run_task_cli({}, command);
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "failed");
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_TRUE(j["signal"].is_null());
  EXPECT_EQ(j["processes_reaped"], 0);
  expect_common_fields(j, command, r.pid);
  expect_nothing_left(r, "");
}

TEST(RunStatus, DeathBySignalIsCrashedWith128PlusN) {
  PK_REQUIRE_CGROUP2();
  const std::vector<std::string> command = {"sh", "-c", "kill -SEGV $$"};
  RunOutput r = run_task_cli({}, command);
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 139) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "crashed");
  EXPECT_EQ(j["signal"], 11);
  EXPECT_TRUE(j["exit_code"].is_null());
  EXPECT_NE(r.err.find("crashed"), std::string::npos) << r.err;
  expect_common_fields(j, command, r.pid);
  expect_nothing_left(r, "");
}

TEST(RunStatus, MissingProgramIsExecError127) {
  PK_REQUIRE_CGROUP2();
  const std::string marker = unique_marker();
  for (const std::string& program :
       {"/nonexistent-dir-" + marker + "/prog", "pollkill-no-such-program-" + marker}) {
    SCOPED_TRACE(program);
    RunOutput r = run_task_cli({}, {program, "arg"});
    ASSERT_FALSE(r.timed_out) << r.describe();
    EXPECT_EQ(r.exit_code, 127) << r.describe();
    ASSERT_TRUE(r.json) << r.describe();
    const auto& j = *r.json;
    EXPECT_EQ(j["status"], "exec_error");
    EXPECT_EQ(j["exit_code"], 127);
    EXPECT_TRUE(j["signal"].is_null());
    EXPECT_NE(j["reason"].get<std::string>().find("ENOENT"), std::string::npos) << j["reason"];
    expect_common_fields(j, {program, "arg"}, r.pid);
    expect_nothing_left(r, marker);
  }
}

TEST(RunStatus, NonExecutableFileIsExecError126) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const auto script = dir / "not-executable.sh";
  std::ofstream(script) << "#!/bin/sh\nexit 0\n";
  ASSERT_EQ(::chmod(script.c_str(), 0644), 0);
  RunOutput r = run_task_cli({}, {script.string()});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 126) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "exec_error");
  EXPECT_EQ(j["exit_code"], 126);
  EXPECT_NE(j["reason"].get<std::string>().find("EACCES"), std::string::npos) << j["reason"];
  expect_common_fields(j, {script.string()}, r.pid);
  expect_nothing_left(r, "");
}

TEST(RunStatus, InvalidUtf8InTheCommandStillGivesValidJson) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_pollkill({"run", "--result", "-", "--", "sh", "-c", "exit 0", "\xff\xfe-x"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok");
  EXPECT_EQ((*r.json)["command"][3], "\xEF\xBF\xBD\xEF\xBF\xBD-x");  // U+FFFD twice
  expect_nothing_left(r, "");
}

TEST(RunStatus, TaskIsBornInsideItsCgroup) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_task_cli({}, {"cat", "/proc/self/cgroup"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const std::string cgroup = (*r.json)["cgroup"];
  EXPECT_EQ(cgroup_v2_path(r.out), cgroup) << r.out;
  EXPECT_NE(r.out.find("0::" + cgroup + "\n"), std::string::npos) << r.out;
  expect_nothing_left(r, "");
}

}  // namespace
}  // namespace pollkill::testing
