// The command line's own errors and the other subcommands: usage errors (exit 125), missing
// controllers (error or warn), `policy check` (0/1/2) and `doctor`.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <tuple>

#include "harness.h"

namespace pollkill::testing {
namespace {

using nlohmann::json;

bool cgroup2_root_offers(const std::string& controller) {
  auto mount = cgroup2_mount();
  if (!mount) return false;
  std::ifstream in(*mount / "cgroup.controllers");
  std::string word;
  while (in >> word) {
    if (word == controller) return true;
  }
  return false;
}

// cgroup v1 hierarchies mounted beside cgroup2.
bool host_is_hybrid() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto sep = line.find(" - ");
    if (sep != std::string::npos && line.compare(sep + 3, 7, "cgroup ") == 0) return true;
  }
  return false;
}

TEST(RunUsage, BadSizeIsExit125AndQuotesTheValue) {
  const std::string marker = unique_marker();
  RunOutput r = run_task_cli({"--memory", "12XB"}, {"sleep", long_sleep_arg(marker)});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("'12XB'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--memory"), std::string::npos) << r.err;
  EXPECT_FALSE(r.json) << "a usage error must not write a result";
  expect_nothing_left(r, marker);
}

// Flags go through the policy's own reader: the checks a policy file gets apply to them, and a
// duration of 0 is "no limit" as in the file (it used to kill the task at once, exit 124).
TEST(RunUsage, FlagsGetThePolicyFilesChecks) {
  const std::string marker = unique_marker();
  RunOutput bands = run_task_cli({"--hang-after", "1s", "--spin-after", "1s", "--hang-cpu-below",
                                  "0.95", "--spin-cpu-above", "0.5"},
                                 {"sleep", long_sleep_arg(marker)});
  EXPECT_EQ(bands.exit_code, 125) << bands.describe();
  EXPECT_NE(bands.err.find("--hang-cpu-below: watchdog.hang_cpu_below (0.95) must be less than "
                           "watchdog.spin_cpu_above (0.5)"),
            std::string::npos)
      << bands.err;
  EXPECT_FALSE(bands.json) << "a usage error must not write a result";
  for (const auto& [flag, value, message] :
       {std::tuple{"--cpus", "inf", "--cpus: invalid number 'inf': must be finite"},
        std::tuple{"--pids", "1T", "--pids: invalid value '1T'"},
        std::tuple{"--pids", "9223372036854775807", "--pids: invalid value"},
        std::tuple{"--wall-time", "1e20%", "--wall-time: invalid percentage '1e20%'"}}) {
    RunOutput r = run_task_cli({flag, value}, {"sleep", long_sleep_arg(marker)});
    EXPECT_EQ(r.exit_code, 125) << r.describe();
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  RunOutput zero = run_task_cli(
      {"--wall-time", "0", "--cpu-time", "0", "--hang-after", "0", "--spin-after", "0"},
      {"sh", "-c", "sleep 0.3"});
  EXPECT_EQ(zero.exit_code, 0) << zero.describe();
  ASSERT_TRUE(zero.json) << zero.describe();
  EXPECT_EQ((*zero.json)["status"], "ok");
  expect_nothing_left(zero, marker);
}

TEST(RunUsage, NoCommandIsExit125) {
  RunOutput r = run_pollkill({"run", "--wall-time", "1s"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("no command"), std::string::npos) << r.err;
}

TEST(RunUsage, MissingMemoryControllerIsExit125NamingIt) {
  PK_REQUIRE_CGROUP2();
  if (cgroup2_root_offers("memory")) {
    GTEST_SKIP() << "this host's cgroup2 root offers the memory controller (the VM suite tests it)";
  }
  const std::string marker = unique_marker();
  RunOutput r = run_task_cli({"--memory", "64M"}, {"sleep", long_sleep_arg(marker)});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("'memory'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("missing_controllers"), std::string::npos) << "no remedy given: " << r.err;
  if (host_is_hybrid()) {
    EXPECT_NE(r.err.find("hybrid"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(r.json) << "a setup error must not write a result";
  EXPECT_TRUE(processes_matching(marker, "sleep").empty()) << "the task ran anyway";
  expect_nothing_left(r, marker);
}

TEST(RunUsage, MissingMemoryControllerWithWarnRunsAndRecordsIt) {
  PK_REQUIRE_CGROUP2();
  if (cgroup2_root_offers("memory")) {
    GTEST_SKIP() << "this host's cgroup2 root offers the memory controller (the VM suite tests it)";
  }
  RunOutput r =
      run_task_cli({"--memory", "64M", "--missing-controllers", "warn"}, {"sh", "-c", "echo ran"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "ran\n");
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'memory'"), std::string::npos) << r.err;
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "ok");
  const auto& missing = j["limits_not_enforced"];
  ASSERT_TRUE(missing.is_array());
  EXPECT_NE(std::find(missing.begin(), missing.end(), "memory"), missing.end()) << missing.dump();
  expect_nothing_left(r, "");
}

// Subreaper mode has no cgroup: cgroup limits follow --missing-controllers, the cgroup
// namespace is refused, rlimits still apply. It needs no cgroup, so this runs everywhere.
TEST(RunSubreaper, CgroupLimitsAreAnErrorNamingThemByDefault) {
  RunOutput r = run_task_cli({"--mode", "subreaper", "--memory", "64M", "--pids", "10"},
                             {"sh", "-c", "echo ran"});
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("memory, pids limits need a cgroup, and subreaper mode has none"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("missing_controllers"), std::string::npos) << r.err;
}

TEST(RunSubreaper, WarnRunsAndRecordsTheLimitsAndTheMode) {
  RunOutput r =
      run_task_cli({"--mode", "subreaper", "--memory", "64M", "--missing-controllers", "warn"},
                   {"sh", "-c", "echo ran"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "ran\n");
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["mode"], "subreaper");
  EXPECT_TRUE(j["cgroup"].is_null());
  EXPECT_TRUE(j["memory_peak_bytes"].is_null());
  EXPECT_EQ(j["limits_not_enforced"], nlohmann::ordered_json::array({"memory"})) << j.dump();
  expect_nothing_left(r, "");
}

TEST(RunSubreaper, RlimitsApplyAndTheCgroupNamespaceIsRefused) {
  TempDir dir;
  {
    std::ofstream(dir / "rl.toml") << "version = 1\n[sandbox]\nrlimits = { nofile = 77 }\n";
    std::ofstream(dir / "ns.toml") << "version = 1\n[sandbox]\nnamespaces = [\"cgroup\"]\n";
  }
  RunOutput rl = run_task_cli({"--mode", "subreaper", "--policy", (dir / "rl.toml").string()},
                              {"sh", "-c", "ulimit -n"});
  EXPECT_EQ(rl.exit_code, 0) << rl.describe();
  EXPECT_EQ(rl.out, "77\n");
  RunOutput ns =
      run_task_cli({"--mode", "subreaper", "--policy", (dir / "ns.toml").string()}, {"true"});
  EXPECT_EQ(ns.exit_code, 125) << ns.describe();
  EXPECT_NE(ns.err.find("subreaper mode has none"), std::string::npos) << ns.err;
}

TEST(RunUsage, UnwritableResultFileIsExit125) {
  PK_REQUIRE_CGROUP2();
  const std::string where = "/nonexistent-dir-" + unique_marker() + "/result.json";
  RunOutput r = run_pollkill({"run", "--result", where, "--", "/bin/true"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
  expect_nothing_left(r, "");
}

class RunPolicyCheck : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  TempDir dir_;
};

TEST_F(RunPolicyCheck, ValidFilesExit0) {
  const std::string good = write("good.toml", "version = 1\n[limits]\nwall_time = \"10s\"\n");
  const std::string shipped = std::string(POLLKILL_SOURCE_DIR) + "/policies/default.toml";
  RunOutput r = run_pollkill({"policy", "check", good, shipped});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, good + ": ok\n" + shipped + ": ok\n");
}

TEST_F(RunPolicyCheck, InvalidFileExit1WithFileLineColumn) {
  const std::string good = write("good.toml", "version = 1\n");
  const std::string bad = write("bad.toml", "version = 1\n[limits]\nwal_time = \"10s\"\n");
  RunOutput r = run_pollkill({"policy", "check", good, bad});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find(bad + ":3:1:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("wall_time"), std::string::npos) << "no did-you-mean: " << r.err;
}

TEST_F(RunPolicyCheck, BadValueIsReportedAtItsLine) {
  const std::string bad = write("bad.toml", "version = 1\n\n[watchdog]\nkill_grace = \"soon\"\n");
  RunOutput r = run_pollkill({"policy", "check", bad});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find(bad + ":4:"), std::string::npos) << r.err;
}

TEST_F(RunPolicyCheck, ABareNameIsLookedUpInPollkillPolicyPath) {
  // The first directory shadows the second, as /etc/pollkill shadows the shipped policies.
  std::filesystem::create_directories(dir_ / "etc");
  std::ofstream(dir_ / "etc" / "strict.toml") << "version = 1\n[limits]\nwall_time = \"7s\"\n";
  LaunchOptions options;
  options.env["POLLKILL_POLICY_PATH"] =
      (dir_ / "etc").string() + ":" + std::string(POLLKILL_SOURCE_DIR) + "/policies";
  RunOutput r =
      run_pollkill({"policy", "check", "--print", "strict", "gmsh"}, Seconds(30), options);
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("wall_time = \"7s\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("OMP_NUM_THREADS"), std::string::npos) << "gmsh not found: " << r.out;

  r = run_pollkill({"run", "--policy", "strictt", "--", "/bin/true"}, Seconds(30), options);
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find((dir_ / "etc" / "strictt.toml").string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean 'strict'?"), std::string::npos) << r.err;
}

// A document deep enough to overflow toml++'s recursion (it crashed with SIGSEGV, exit 139)
// and a file without end (/dev/zero grew pollkill without bound) are refused as invalid.
TEST_F(RunPolicyCheck, DeepOrEndlessFilesAreInvalidNotACrash) {
  std::string key = "version = 1\n", header = "version = 1\n[";
  for (int i = 0; i < 50000; ++i) {
    key += "a.";
    header += "a.";
  }
  const std::string deep_key = write("key.toml", key + "a = 1\n");
  const std::string deep_header = write("header.toml", header + "a]\n");
  RunOutput r = run_pollkill({"policy", "check", deep_key, deep_header, "/dev/zero"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find(deep_key + ":2:65: a dotted key or table name of more than 32 parts"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(deep_header + ":2:66: a dotted key or table name of more than 32 parts"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("/dev/zero: too large: a policy is at most 1MiB"), std::string::npos)
      << r.err;
}

TEST_F(RunPolicyCheck, UnreadableFileExit1) {
  const std::string missing = (dir_ / "missing.toml").string();
  RunOutput r = run_pollkill({"policy", "check", missing});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
}

TEST_F(RunPolicyCheck, MissingArgumentsExit2) {
  RunOutput r = run_pollkill({"policy", "check"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_FALSE(r.err.empty());
}

TEST(RunDoctor, ReadyHereAndNamesTheLayout) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_pollkill({"doctor"});
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("ready"), std::string::npos) << r.out;
  if (host_is_hybrid()) {
    EXPECT_NE(r.out.find("hybrid"), std::string::npos) << r.out;
  }
  // doctor tries a real spawn in a cgroup of its own; it must not leave it behind.
  expect_nothing_left(r, "");
}

// --json carries the same checks as the text, for programs.
TEST(RunDoctor, JsonHasTheChecksOfTheText) {
  RunOutput text = run_pollkill({"doctor", "--systemd-scope", "never"});
  RunOutput j = run_pollkill({"doctor", "--json", "--systemd-scope", "never"});
  ASSERT_FALSE(j.timed_out) << j.describe();
  EXPECT_EQ(j.exit_code, text.exit_code) << j.describe();
  const auto report = json::parse(j.out);
  EXPECT_EQ(report["ready"], text.exit_code == 0);
  std::size_t lines = 0;
  std::istringstream in(text.out);
  for (std::string line; std::getline(in, line);) lines += line.rfind("[", 0) == 0;
  ASSERT_EQ(report["checks"].size(), lines) << j.out;
  for (const auto& check : report["checks"]) {
    const std::string status = check["status"];
    const std::string marker = status == "ok" ? "[ok] " : status == "fail" ? "[!!] " : "[--] ";
    // The detail may differ between two runs (the trial cgroup's name): the name and the mark.
    EXPECT_NE(text.out.find(marker + check["name"].get<std::string>() + ": "), std::string::npos)
        << check.dump();
    if (!check["fix"].is_null()) {
      EXPECT_NE(status, "ok") << check.dump();
      EXPECT_NE(text.out.find("     fix: " + check["fix"].get<std::string>() + "\n"),
                std::string::npos)
          << check.dump();
    }
  }
}

// A hybrid host whose cgroup v1 could enforce a policy's memory limit: the policy line's first
// fix is --cgroup-v1 auto.
TEST(RunDoctor, HybridHostNamesCgroupV1AutoAsTheFix) {
  TempDir dir;
  { std::ofstream(dir / "memory.toml") << "version = 1\n[limits]\nmemory = \"1GiB\"\n"; }
  RunOutput r = run_pollkill(
      {"doctor", "--json", "--systemd-scope", "never", "--policy", (dir / "memory.toml").string()});
  const auto report = json::parse(r.out);
  bool v1_could = false;
  for (const auto& check : report["checks"]) {
    if (check["name"] == "controller memory" &&
        check["detail"].get<std::string>().find("could enforce its limits") != std::string::npos)
      v1_could = true;
  }
  if (!v1_could) GTEST_SKIP() << "not a hybrid host whose cgroup v1 memory is usable";
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  bool found = false;
  for (const auto& check : report["checks"]) {
    if (check["name"] != "policy") continue;
    found = true;
    EXPECT_EQ(check["status"], "fail");
    EXPECT_EQ(check["fix"].get<std::string>().rfind(
                  "set runner.cgroup_v1 = \"auto\" (--cgroup-v1 auto) to enforce memory through "
                  "this hybrid host's cgroup v1; or ",
                  0),
              0u)
        << check.dump();
  }
  EXPECT_TRUE(found) << r.out;
  // With --cgroup-v1 auto the same policy can be enforced.
  RunOutput fixed = run_pollkill({"doctor", "--cgroup-v1", "auto", "--systemd-scope", "never",
                                  "--policy", (dir / "memory.toml").string()});
  EXPECT_NE(fixed.out.find("[ok] policy: every limit can be enforced here (memory through cgroup "
                           "v1)"),
            std::string::npos)
      << fixed.out;
}

TEST(RunDoctor, NamesTheModeAndWhy) {
  TempDir dir;
  { std::ofstream(dir / "subreaper.toml") << "version = 1\n[runner]\nmode = \"subreaper\"\n"; }
  RunOutput forced = run_pollkill({"doctor", "--policy", (dir / "subreaper.toml").string()});
  EXPECT_EQ(forced.exit_code, 0) << forced.describe();
  EXPECT_NE(forced.out.find("[ok] mode: subreaper: asked for"), std::string::npos) << forced.out;
  EXPECT_NE(forced.out.find("[ok] subreaper trial: ran /bin/true"), std::string::npos)
      << forced.out;
  if (cgroup2_unavailable_reason()) return;  // auto would pick subreaper too
  RunOutput automatic = run_pollkill({"doctor"});
  EXPECT_NE(automatic.out.find("[ok] mode: cgroup, what --mode auto picks here: a usable run root"),
            std::string::npos)
      << automatic.out;
}

TEST(RunDoctor, PolicyNeedingRootIsNotReadyForAnOrdinaryUser) {
  PK_REQUIRE_CGROUP2();
  if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root and setpriv to run pollkill as another user";
  }
  const std::string strict =
      world_readable_copy(std::string(POLLKILL_SOURCE_DIR) + "/policies/strict.toml");
  RunOutput as_root = run_pollkill({"doctor", "--policy", strict});
  EXPECT_NE(as_root.out.find("[ok] policy sandbox"), std::string::npos) << as_root.out;
  LaunchOptions nobody;
  nobody.program = "/usr/bin/setpriv";
  RunOutput r = run_pollkill({"--reuid=65534", "--regid=65534", "--clear-groups",
                              world_readable_copy(POLLKILL_BINARY), "doctor", "--policy", strict},
                             Seconds(30), nobody);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.out.find("[!!] policy sandbox"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("needs root"), std::string::npos) << r.out;
}

// A scope asked for with "always" must be had: without systemd that is an error, not a quiet
// fall back to subreaper mode (which "auto" may do when no run root is usable).
TEST(RunCli, SystemdScopeAlwaysWithoutSystemdIsAnError) {
  if (std::filesystem::exists("/run/systemd/system")) {
    GTEST_SKIP() << "PID 1 is systemd here: \"always\" asks for a real scope";
  }
  RunOutput r = run_pollkill({"run", "--systemd-scope", "always", "--", "true"});
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("\"always\" but PID 1 is not systemd"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("subreaper"), std::string::npos) << r.err;
  // With --mode subreaper no scope is asked for at all.
  RunOutput s =
      run_pollkill({"run", "--systemd-scope", "always", "--mode", "subreaper", "--", "true"});
  EXPECT_EQ(s.exit_code, 0) << s.describe();
}

}  // namespace
}  // namespace pollkill::testing
