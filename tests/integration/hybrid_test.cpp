// The cgroup v1 limits backend on a hybrid host (runner.cgroup_v1 = "auto"): limits through
// the v1 memory, cpu and pids hierarchies while tracking and killing stay on cgroup2.
//
// These tests write to the v1 hierarchies, so they run only in the hybrid VM
// (tests/vm/run --hybrid, which sets POLLKILL_IN_HYBRID_VM=1): the development and CI machine
// is hybrid too, but its v1 hierarchies belong to its supervisor and tests never write there.
// In the hybrid VM a missing layout is a failure, so the stage cannot pass by skipping.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;

// The v1 hierarchies from /proc/self/mountinfo, by controller (own parser: the core's must not
// be able to hide its own bugs).
std::map<std::string, fs::path> v1_mounts() {
  std::map<std::string, fs::path> out;
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    auto sep = line.find(" - cgroup ");
    if (sep == std::string::npos) continue;
    std::istringstream left(line.substr(0, sep));
    std::string id, parent, dev, root, mount_point;
    left >> id >> parent >> dev >> root >> mount_point;
    std::istringstream right(line.substr(sep + 3));
    std::string fstype, source, options;
    right >> fstype >> source >> options;
    std::istringstream opts(options);
    for (std::string opt; std::getline(opts, opt, ',');) {
      if (opt == "memory" || opt == "cpu" || opt == "pids") out.emplace(opt, mount_point);
    }
  }
  return out;
}

#define PK_REQUIRE_HYBRID_VM()                                                                    \
  do {                                                                                            \
    if (!std::getenv("POLLKILL_IN_HYBRID_VM")) {                                                  \
      GTEST_SKIP() << "writes to cgroup v1 hierarchies: runs only in the hybrid VM "              \
                   << "(tests/vm/run --hybrid, scripts/test vm-hybrid), never on a machine "      \
                   << "whose v1 hierarchies may belong to its supervisor";                        \
    }                                                                                             \
    auto mounts_ = v1_mounts();                                                                   \
    for (const char* c_ : {"memory", "cpu", "pids"}) {                                            \
      if (!mounts_.count(c_)) FAIL() << "the hybrid VM must mount the v1 " << c_ << " hierarchy"; \
    }                                                                                             \
    if (!cgroup2_mount()) FAIL() << "the hybrid VM must mount cgroup2";                           \
  } while (0)

// Directories named pollkill-<pid>-* in any v1 hierarchy, at any depth.
std::vector<fs::path> v1_leftovers(pid_t pollkill_pid) {
  std::vector<fs::path> out;
  const std::string prefix = "pollkill-" + std::to_string(pollkill_pid) + "-";
  for (const auto& [controller, mount] : v1_mounts()) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(mount, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_directory(ec) && it->path().filename().string().rfind(prefix, 0) == 0) {
        out.push_back(it->path());
      }
    }
  }
  return out;
}

void expect_no_v1_leftovers(pid_t pollkill_pid) {
  std::vector<fs::path> left;
  wait_until([&] { return (left = v1_leftovers(pollkill_pid)).empty(); }, Seconds(5));
  for (const auto& p : left) {
    ADD_FAILURE() << "v1 cgroup left behind: " << p;
    ::rmdir(p.c_str());
  }
}

const std::string kMemhog = POLLKILL_MEMHOG;
const std::string kForkbomb = POLLKILL_FORKBOMB;

TEST(Hybrid, MemoryLimitThroughV1EndsInOom) {
  PK_REQUIRE_HYBRID_VM();
  const std::string marker = unique_marker();
  RunOutput r = run_task_cli({"--cgroup-v1", "auto", "--memory", "64M"},
                             {kMemhog, "512", "0", marker}, Seconds(120));
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "oom") << j.dump();
  EXPECT_EQ(r.exit_code, 137) << r.describe();
  EXPECT_GE(j["oom_kills"].get<int>(), 1) << j.dump();
  ASSERT_TRUE(j["memory_peak_bytes"].is_number()) << j.dump();
  const auto peak = j["memory_peak_bytes"].get<std::uint64_t>();
  EXPECT_GE(peak, 48ull << 20) << "peak should come close to the 64 MiB limit";
  EXPECT_LE(peak, 64ull << 20) << "memory.max_usage_in_bytes cannot exceed the limit";
  EXPECT_EQ(j["limits_cgroup_v1"], nlohmann::ordered_json::array({"memory"})) << j.dump();
  EXPECT_EQ(j["limits_not_enforced"], nlohmann::ordered_json::array());
  expect_nothing_left(r, marker);
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, TaskJoinsV1CgroupsWithThePlannedLimits) {
  PK_REQUIRE_HYBRID_VM();
  // The task prints its own /proc/self/cgroup and the v1 attributes of its v1 cgroups.
  auto mounts = v1_mounts();
  std::string script = "cat /proc/self/cgroup; ";
  for (const auto& [controller, attr] :
       std::vector<std::pair<std::string, std::string>>{{"memory", "memory.limit_in_bytes"},
                                                        {"memory", "memory.memsw.limit_in_bytes"},
                                                        {"cpu", "cpu.cfs_quota_us"},
                                                        {"cpu", "cpu.cfs_period_us"},
                                                        {"pids", "pids.max"}}) {
    script += "echo " + attr + "=$(cat " + mounts[controller].string() +
              "$(grep -E '^[0-9]+:([^:]*,)?" + controller +
              "(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3)/" + attr + "); ";
  }
  RunOutput r = run_task_cli(
      {"--cgroup-v1", "auto", "--memory", "64M", "--swap", "16M", "--cpus", "0.5", "--pids", "20"},
      {"sh", "-c", script}, Seconds(60));
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "ok") << j.dump() << r.err;
  EXPECT_NE(r.out.find("memory.limit_in_bytes=67108864\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory.memsw.limit_in_bytes=83886080\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu.cfs_quota_us=50000\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu.cfs_period_us=100000\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pids.max=20\n"), std::string::npos) << r.out;
  // The same task cgroup name in the unified hierarchy and in each v1 one.
  const std::string task = j["cgroup"].get<std::string>();
  EXPECT_NE(r.out.find("0::" + task + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory:" + task + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pids:" + task + "\n"), std::string::npos) << r.out;
  EXPECT_EQ(j["limits_cgroup_v1"],
            nlohmann::ordered_json::array({"memory", "swap", "cpus", "pids"}))
      << j.dump();
  ASSERT_TRUE(j["pids_peak"].is_number()) << "pids.peak of the v1 pids cgroup: " << j.dump();
  EXPECT_GE(j["pids_peak"].get<int>(), 1);
  expect_nothing_left(r, "");
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, ForkFallbackJoinsTheV1CgroupsToo) {
  PK_REQUIRE_HYBRID_VM();
  LaunchOptions fork_spawn;
  fork_spawn.env["POLLKILL_SPAWN_METHOD"] = "fork";
  RunOutput r = run_task_cli({"--cgroup-v1", "auto", "--memory", "64M", "--pids", "20"},
                             {"cat", "/proc/self/cgroup"}, Seconds(60), fork_spawn);
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "ok") << j.dump() << r.err;
  const std::string task = j["cgroup"].get<std::string>();
  EXPECT_NE(r.out.find("0::" + task + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory:" + task + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pids:" + task + "\n"), std::string::npos) << r.out;
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, CpuQuotaThroughV1IsEnforced) {
  PK_REQUIRE_HYBRID_VM();
  // A spinner for 4 s of wall time gets about 1 s of CPU under 0.25 CPUs (wide margins for
  // emulation: the test checks that the quota applies, not how precisely).
  RunOutput r = run_task_cli({"--cgroup-v1", "auto", "--cpus", "0.25", "--wall-time", "4s"},
                             {"sh", "-c", "while :; do :; done"}, Seconds(60));
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "timeout") << j.dump();
  const double cpu = j["cpu_user_s"].get<double>() + j["cpu_system_s"].get<double>();
  EXPECT_GT(cpu, 0.5) << j.dump();
  EXPECT_LT(cpu, 1.8) << "an unthrottled spinner would use about 4 s: " << j.dump();
  EXPECT_EQ(j["limits_cgroup_v1"], nlohmann::ordered_json::array({"cpus"})) << j.dump();
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, PidsLimitThroughV1ContainsAForkBomb) {
  PK_REQUIRE_HYBRID_VM();
  const std::string marker = unique_marker();
  RunOutput r = run_task_cli(
      {"--cgroup-v1", "auto", "--pids", "32", "--wall-time", "3s", "--kill-grace", "500ms"},
      {kForkbomb, marker}, Seconds(60));
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "timeout") << j.dump();
  EXPECT_EQ(r.exit_code, 124);
  ASSERT_TRUE(j["pids_peak"].is_number()) << j.dump();
  EXPECT_LE(j["pids_peak"].get<int>(), 32) << j.dump();
  EXPECT_GE(j["pids_peak"].get<int>(), 16)
      << "the bomb should have reached the limit: " << j.dump();
  EXPECT_GE(j["processes_reaped"].get<int>(), 16) << j.dump();
  EXPECT_EQ(j["unkillable"], nlohmann::ordered_json::array());
  expect_nothing_left(r, marker);
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, HangIsStillDetectedAndKilledThroughTheUnifiedHierarchy) {
  PK_REQUIRE_HYBRID_VM();
  const std::string marker = unique_marker();
  RunOutput r =
      run_task_cli({"--cgroup-v1", "auto", "--memory", "64M", "--pids", "50", "--hang-after", "1s",
                    "--kill-grace", "0"},
                   {"sh", "-c", "sleep " + long_sleep_arg(marker) + " & wait"}, Seconds(60));
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "hung") << j.dump();
  EXPECT_EQ(r.exit_code, 124);
  EXPECT_GE(j["processes_reaped"].get<int>(), 2) << j.dump();
  EXPECT_EQ(j["limits_cgroup_v1"], nlohmann::ordered_json::array({"memory", "pids"})) << j.dump();
  expect_nothing_left(r, marker);
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, GuardRemovesV1CgroupsWhenPollkillIsKilled) {
  PK_REQUIRE_HYBRID_VM();
  const std::string marker = unique_marker();
  auto run = start_run({"--cgroup-v1", "auto", "--memory", "64M", "--cpus", "1", "--pids", "50"},
                       {"sleep", long_sleep_arg(marker)});
  ASSERT_TRUE(wait_until([&] { return !processes_matching(marker, "sleep").empty(); }, Seconds(30)))
      << "the task did not start";
  const auto v1 = v1_leftovers(run->pid());
  EXPECT_EQ(v1.size(), 3u) << "a run cgroup in each of the memory, cpu and pids hierarchies";
  for (const auto& p : v1) EXPECT_TRUE(fs::is_directory(p / "task-run")) << p;
  run->signal(SIGKILL);
  RunOutput r = run->wait(Seconds(30));
  EXPECT_EQ(r.term_signal, SIGKILL) << r.describe();
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker, "sleep").empty(); }, Seconds(10)))
      << "the guard did not kill the task";
  EXPECT_TRUE(wait_until([&] { return v1_leftovers(r.pid).empty(); }, Seconds(10)))
      << "the guard did not remove the v1 cgroups";
  expect_nothing_left(r, marker);
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, GcRemovesV1CgroupsOfDeadPollkills) {
  PK_REQUIRE_HYBRID_VM();
  // A pollkill that died with its guard (both SIGKILLed) leaves its v1 run cgroups behind.
  // pid 4190000 is above any pid this guest hands out.
  const fs::path memory = v1_mounts()["memory"] / "pollkill-4190000-0123abcd";
  const fs::path pids = v1_mounts()["pids"] / "pollkill-4190000-0123abcd";
  for (const auto& p : {memory, pids}) {
    fs::create_directories(p / "task-1");
  }
  RunOutput r = run_pollkill({"gc", "--cgroup-v1", "auto"}, Seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("removed " + memory.string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("removed " + pids.string()), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(memory));
  EXPECT_FALSE(fs::exists(pids));
  for (const auto& p : {memory, pids}) {  // if it failed
    ::rmdir((p / "task-1").c_str());
    ::rmdir(p.c_str());
  }
}

TEST(Hybrid, BatchTasksGetV1Limits) {
  PK_REQUIRE_HYBRID_VM();
  TempDir dir;
  std::ofstream(dir / "tasks") << kMemhog << " 512 0\n"
                               << "true\n";
  RunOutput r = run_pollkill({"batch", "-j", "2", "--cgroup-v1", "auto", "--memory", "64M",
                              "--results", (dir / "r.jsonl").string(), dir / "tasks"},
                             Seconds(120));
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::ifstream in(dir / "r.jsonl");
  std::map<std::string, nlohmann::json> by_id;
  for (std::string line; std::getline(in, line);) {
    auto rec = nlohmann::json::parse(line);
    by_id[rec["id"].get<std::string>()] = rec;
  }
  ASSERT_EQ(by_id.size(), 2u) << r.describe();
  EXPECT_EQ(by_id["1"]["status"], "oom") << by_id["1"].dump();
  EXPECT_EQ(by_id["2"]["status"], "ok") << by_id["2"].dump();
  for (const auto& id : {"1", "2"}) {
    EXPECT_EQ(by_id[id]["limits_cgroup_v1"], nlohmann::json::array({"memory"})) << by_id[id].dump();
  }
  expect_nothing_left(r, "");
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, OffByDefaultRefusesTheLimitAndNamesTheOption) {
  PK_REQUIRE_HYBRID_VM();
  RunOutput r = run_task_cli({"--memory", "64M"}, {"true"}, Seconds(30));
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("runner.cgroup_v1 = \"auto\""), std::string::npos) << r.err;
  expect_no_v1_leftovers(r.pid);
}

TEST(Hybrid, MemoryHighHasNoV1Equivalent) {
  PK_REQUIRE_HYBRID_VM();
  RunOutput r =
      run_task_cli({"--cgroup-v1", "auto", "--memory-high", "32M"}, {"true"}, Seconds(30));
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("no equivalent of memory.high"), std::string::npos) << r.err;
  RunOutput warn = run_task_cli({"--cgroup-v1", "auto", "--memory-high", "32M", "--memory", "64M",
                                 "--missing-controllers", "warn"},
                                {"true"}, Seconds(30));
  ASSERT_TRUE(warn.json) << warn.describe();
  EXPECT_EQ((*warn.json)["status"], "ok");
  EXPECT_EQ((*warn.json)["limits_not_enforced"], nlohmann::ordered_json::array({"memory_high"}));
  EXPECT_EQ((*warn.json)["limits_cgroup_v1"], nlohmann::ordered_json::array({"memory"}));
  expect_no_v1_leftovers(warn.pid);
}

TEST(Hybrid, DoctorSaysWhichLimitsGoThroughV1) {
  PK_REQUIRE_HYBRID_VM();
  TempDir dir;
  std::ofstream(dir / "p.toml") << "version = 1\n[limits]\nmemory = \"1G\"\npids = 100\n"
                                << "[runner]\ncgroup_v1 = \"auto\"\n";
  RunOutput r = run_pollkill({"doctor", "--policy", (dir / "p.toml").string()}, Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("[ok] controller memory: not available in"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("its limits go through cgroup v1 at"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(memory, pids through cgroup v1)"), std::string::npos) << r.out;
  RunOutput off = run_pollkill({"doctor"}, Seconds(60));
  EXPECT_NE(off.out.find("could enforce its limits"), std::string::npos) << off.out;
}

}  // namespace
}  // namespace pollkill::testing
