// Reaping whole process trees, hang detection and cgroup placement, under each kill and spawn
// path: the fast ones (cgroup.kill, a vfork-like clone3 into the cgroup) and the fallbacks forced
// through POLLKILL_KILL_METHOD=freeze and POLLKILL_SPAWN_METHOD=clone3 or fork; each through
// `pollkill run` (RunVia/...) and through `pollkill batch` with one task (BatchVia/...), which
// share one engine and must give the same guarantees.
#include <signal.h>

#include <fstream>
#include <iterator>
#include <tuple>

#include "harness.h"

namespace pollkill::testing {
namespace {

struct Method {
  std::string name;
  std::map<std::string, std::string> env;
  std::vector<std::string> flags{};  ///< e.g. --mode subreaper
  bool subreaper = false;
};
void PrintTo(const Method& m, std::ostream* os) {
  *os << m.name;
}

// After a SIGKILL to pollkill (`run`): it ends by that signal, and within 2 s no process with
// `marker` in its command line and no cgroup of the run is left.
void expect_killed_runner_left_nothing(Pollkill& run, const std::string& marker) {
  RunOutput r = run.wait(Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.term_signal, SIGKILL) << r.describe();
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker).empty(); }, Seconds(2)))
      << processes_matching(marker).size() << " processes left 2 s after pollkill was killed";
  EXPECT_TRUE(wait_until([&] { return find_leftover_cgroups(r.pid).empty(); }, Seconds(2)))
      << "cgroups of pollkill " << r.pid << " left 2 s after it was killed";
  cleanup(marker, {r.pid});
}

class RunReaping : public ::testing::TestWithParam<std::tuple<Method, Via>> {
 protected:
  const Method& method() const { return std::get<0>(GetParam()); }
  Via via() const { return std::get<1>(GetParam()); }
  LaunchOptions options() const { return LaunchOptions{method().env, std::nullopt}; }
  std::vector<std::string> with_mode(std::vector<std::string> flags) const {
    flags.insert(flags.end(), method().flags.begin(), method().flags.end());
    return flags;
  }
  RunOutput run(const std::vector<std::string>& flags, const std::vector<std::string>& command,
                Seconds timeout) const {
    return run_task_via(via(), with_mode(flags), command, timeout);
  }
  int exit_for(int run_exit) const { return exit_via(via(), run_exit); }
  // Subreaper mode forks an init before the task and reads /proc at every sample and for
  // every kill: under the VM's software emulation that added up to 1.3 s to a run (measured
  // 3.04 s for the orphan case, 1.8 s for the hang). Timing bounds widen by this much there.
  double subreaper_slack() const {
    if (!method().subreaper) return 0.0;
    return ::getenv("POLLKILL_IN_VM") ? 1.5 : 0.5;
  }
  // Starts `script` (sh -c, its sleeps given the marker as $1), waits until `sleeps` of them
  // run, SIGKILLs pollkill (`whole_group`: its process group), and checks that no process and
  // no cgroup of the run is left.
  void kill_runner_and_expect_nothing_left(const std::string& script, std::size_t sleeps,
                                           bool whole_group) const {
    const std::string marker = unique_marker();
    auto run = start_task(via(), with_mode({}),
                          {"sh", "-c", script, "main", long_sleep_arg(marker)}, options());
    ASSERT_TRUE(wait_until([&] { return processes_matching(marker, "sleep").size() == sleeps; },
                           Seconds(10)))
        << processes_matching(marker, "sleep").size() << " of " << sleeps << " sleeps started";
    if (whole_group) {
      run->signal_group(SIGKILL);
    } else {
      run->signal(SIGKILL);
    }
    expect_killed_runner_left_nothing(*run, marker);
  }
  TempDir dir_;
};

// Subreaper mode needs no cgroup, so it runs everywhere; the cgroup paths need one.
#define PK_REQUIRE_MODE()                          \
  do {                                             \
    if (!method().subreaper) PK_REQUIRE_CGROUP2(); \
  } while (0)

// A double-forked, setsid'd daemon that ignores SIGTERM, started by a main process that
// exits at once, but only after the daemon is known to run (it touches a file first).
TEST_P(RunReaping, SetsidTermIgnoringGrandchildIsReapedPromptly) {
  PK_REQUIRE_MODE();
  const std::string marker = unique_marker();
  const auto ready = dir_ / "daemon-ready";
  const std::string script =
      "(setsid sh -c 'trap \"\" TERM; touch \"$1\"; while :; do sleep \"$2\"; done' "
      "\"daemon-$3\" \"$1\" \"$2\" &); "
      "while [ ! -e \"$1\" ]; do sleep 0.01; done";
  const std::vector<std::string> command = {
      "sh", "-c", script, "main", ready.string(), long_sleep_arg(marker), marker};
  RunOutput r = run({}, command, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "ok") << j.dump();
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_GE(j["processes_reaped"].get<int>(), 1) << j.dump();
  EXPECT_EQ(j["unkillable"], nlohmann::ordered_json::array());
  // Promptly: no kill grace is spent on orphans, and nothing waits for the daemon.
  EXPECT_LT(r.elapsed.count(), 3.0 + subreaper_slack()) << r.describe();
  EXPECT_LT(j["wall_s"].get<double>(), 2.0 + subreaper_slack()) << j.dump();
  expect_nothing_left(r, marker);
}

TEST_P(RunReaping, PlainBackgroundOrphanIsReapedAndCounted) {
  PK_REQUIRE_MODE();
  const std::string marker = unique_marker();
  const std::vector<std::string> command = {"sh", "-c", "sleep \"$1\" & exit 0", "main",
                                            long_sleep_arg(marker)};
  RunOutput r = run({}, command, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "ok") << j.dump();
  EXPECT_EQ(j["processes_reaped"], 1) << j.dump();
  EXPECT_LT(r.elapsed.count(), 3.0 + subreaper_slack()) << r.describe();
  expect_nothing_left(r, marker);
}

// A hung task gets evidence before its kill ([evidence] on, batch): the capture's time (the
// evidence file's capture_s) comes on top of the detection a bound measures; 0 without one.
// A capture abandoned at the default 2s budget (seen under the VM's emulation) took all of it.
double capture_s_of(const nlohmann::ordered_json& record) {
  if (!record["evidence"].is_string()) {
    const std::string reason = record["reason"];
    return reason.find("(evidence: capture ran past its 2s budget)") != std::string::npos ? 2.0
                                                                                          : 0.0;
  }
  return nlohmann::json::parse(slurp(record["evidence"].get<std::string>()))["capture_s"];
}

TEST_P(RunReaping, SleepingTaskIsHungAfterHangAfter) {
  PK_REQUIRE_MODE();
  const std::string marker = unique_marker();
  RunOutput r = run({"--hang-after", "1s", "--poll-interval", "100ms"},
                    {"sleep", long_sleep_arg(marker)}, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, exit_for(124)) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "hung") << j.dump();
  EXPECT_EQ(j["signal"], 15) << "sleep dies of the polite SIGTERM: " << j.dump();
  EXPECT_TRUE(j["exit_code"].is_null()) << j.dump();
  EXPECT_GE(j["processes_reaped"].get<int>(), 1) << j.dump();
  // Due at the first sample at or after 1 s; one more interval if the exec itself showed
  // as CPU use; then SIGTERM ends sleep at once. 0.5 s slack for a loaded machine.
  const double wall = j["wall_s"];
  EXPECT_GE(wall, 1.0) << j.dump();
  EXPECT_LE(wall - capture_s_of(j), 1.0 + 2 * 0.1 + 0.5 + subreaper_slack()) << j.dump();
  EXPECT_NE(r.err.find("hung"), std::string::npos) << r.err;
  expect_nothing_left(r, marker);
}

TEST_P(RunReaping, TaskRunsInsideTheTaskCgroup) {
  PK_REQUIRE_MODE();
  RunOutput r = run({}, {"cat", "/proc/self/cgroup"}, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  if (method().subreaper) {
    // No task cgroup: the task stays in pollkill's own, and the result says so.
    EXPECT_EQ((*r.json)["mode"], "subreaper") << r.json->dump();
    EXPECT_TRUE((*r.json)["cgroup"].is_null()) << r.json->dump();
    expect_nothing_left(r, "");
    return;
  }
  EXPECT_EQ((*r.json)["mode"], "cgroup") << r.json->dump();
  const std::string cgroup = (*r.json)["cgroup"];
  EXPECT_FALSE(cgroup.empty());
  EXPECT_EQ(cgroup_v2_path(r.out), cgroup) << r.out;
  expect_nothing_left(r, "");
}

// pollkill's own descriptors (guard pipe, epoll, signalfd, cgroup directories) are
// close-on-exec: the task sees exactly stdin, stdout and stderr. A task holding the guard's
// pipe would keep the guard from noticing pollkill's death.
TEST_P(RunReaping, TaskInheritsOnlyStdio) {
  PK_REQUIRE_MODE();
  RunOutput r = run({}, {"sh", "-c", "ls /proc/$$/fd"}, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "0\n1\n2\n");
  expect_nothing_left(r, "");
}

TEST_P(RunReaping, MissingProgramIsStillExecError127) {
  PK_REQUIRE_MODE();
  const std::string program = "pollkill-no-such-program-" + unique_marker();
  RunOutput r = run({}, {program}, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, exit_for(127)) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "exec_error");
  EXPECT_EQ((*r.json)["exit_code"], 127);
  expect_nothing_left(r, "");
}

// A main process that forks without pause and ignores SIGTERM, as do its children: only a
// kill that stops the forking (cgroup.kill, or freezing first) can empty the cgroup.
TEST_P(RunReaping, ContinuouslyForkingTaskIsReaped) {
  PK_REQUIRE_MODE();
  const std::string marker = unique_marker();
  RunOutput r = run({"--wall-time", "1s", "--kill-grace", "300ms", "--poll-interval", "100ms"},
                    {"sh", "-c",
                     "trap '' TERM; while :; do sleep \"$1\" & sleep \"$1\" & /bin/true & done &"
                     " while :; do /bin/true; done",
                     "forker-" + marker, long_sleep_arg(marker)},
                    Seconds(30));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, exit_for(124)) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "timeout") << j.dump();
  EXPECT_EQ(j["signal"], 9) << j.dump();
  EXPECT_GE(j["processes_reaped"].get<int>(), 3) << j.dump();
  EXPECT_EQ(j["unkillable"], nlohmann::ordered_json::array());
  // Subreaper mode stops the tree process by process, rescanning /proc until nobody new
  // appears, racing the fork loop: with hundreds of processes on a 2-core host that took 1.7 to
  // 2.8 s (a clean-clone CI run), and 7 to 11 s under the VM's software emulation (cgroup.kill
  // is one write). The bound there only says that it ends, well inside the 30 s safety
  // timeout; that nothing is left is checked below. In cgroup mode the kill is one write, but
  // on a 2-core host at load 3 and more the run ended 1.2 to 1.4 s past the grace period (the
  // fork loop competes with pollkill for the CPU), so the bound leaves 2 s.
  const double kill_slack = !method().subreaper ? 2.0 : (::getenv("POLLKILL_IN_VM") ? 25.0 : 15.0);
  EXPECT_LT(j["wall_s"].get<double>(), 1.0 + 0.3 + 0.1 + kill_slack) << j.dump();
  expect_nothing_left(r, marker);
}

// A stopped process takes no CPU and makes no progress: hung. SIGTERM stays pending while it
// is stopped, so only the kill after the grace period ends it.
TEST_P(RunReaping, StoppedTaskIsHungAndKilled) {
  PK_REQUIRE_MODE();
  const std::string marker = unique_marker();
  RunOutput r = run({"--hang-after", "1s", "--poll-interval", "100ms", "--kill-grace", "300ms",
                     "--wall-time", "20s"},
                    {"sh", "-c", "kill -STOP $$", "stopped-" + marker}, Seconds(30));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, exit_for(124)) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "hung") << j.dump();
  EXPECT_EQ(j["signal"], 9) << j.dump();
  EXPECT_GE(j["wall_s"].get<double>(), 1.3) << j.dump();
  EXPECT_LT(j["wall_s"].get<double>() - capture_s_of(j), 1.3 + 0.2 + 0.5 + subreaper_slack())
      << j.dump();
  expect_nothing_left(r, marker);
}

TEST_P(RunReaping, RunnerKilledGuardStillReaps) {
  PK_REQUIRE_MODE();
  kill_runner_and_expect_nothing_left(
      "trap '' TERM; sleep \"$1\" & setsid sleep \"$1\" & sleep \"$1\"", 3, false);
}

// What `timeout -s KILL`, job control and many schedulers do: SIGKILL to pollkill's whole
// process group (the harness starts pollkill as a group leader, so the task's main process and
// its plain children are in it too). The guard left that group and session, so it survives,
// sees pollkill gone and reaps the setsid'd child, which the group kill missed, and the cgroups.
TEST_P(RunReaping, GroupKilledGuardStillReaps) {
  PK_REQUIRE_MODE();
  if (method().subreaper) {
    // Each task's init is in pollkill's group and dies with it, and its orphans go to an
    // ancestor of pollkill, out of the guard's sight (documented in ARCHITECTURE.md).
    GTEST_SKIP() << "subreaper mode: a group kill kills each task's init (documented limit)";
  }
  kill_runner_and_expect_nothing_left("setsid sleep \"$1\" & sleep \"$1\"", 2, true);
}

// The guard's liveness process says "this run lives" by sitting in "<run cgroup>.alive"; with
// the default spawn it is born there (clone3 into the cgroup, no migration), with the fork
// variants the old move puts it there. Either way: exactly that process, nothing else.
TEST_P(RunReaping, LivenessProcessSitsInTheLivenessCgroup) {
  PK_REQUIRE_MODE();
  if (method().subreaper) GTEST_SKIP() << "subreaper mode has no run cgroup";
  const std::string marker = unique_marker();
  auto run = start_task(via(), with_mode({}),
                        {"sh", "-c", "sleep \"$1\"", "main", long_sleep_arg(marker)}, options());
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 1; }, Seconds(10)));
  std::vector<std::filesystem::path> alive;
  for (const auto& p : find_leftover_cgroups(run->pid())) {
    if (p.filename().string().ends_with(".alive")) alive.push_back(p);
  }
  ASSERT_EQ(alive.size(), 1U) << "no liveness cgroup beside the run cgroup";
  std::ifstream procs(alive[0] / "cgroup.procs");
  std::vector<pid_t> pids;
  for (pid_t pid; procs >> pid;) pids.push_back(pid);
  ASSERT_EQ(pids.size(), 1U) << alive[0];
  std::ifstream comm("/proc/" + std::to_string(pids[0]) + "/comm");
  std::string name;
  std::getline(comm, name);
  EXPECT_EQ(name, "pollkill-alive");
  run->signal(SIGTERM);
  RunOutput r = run->wait(Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  expect_nothing_left(r, marker);
}

class RunOrphansWait : public ::testing::TestWithParam<Via> {
 protected:
  int exit_for(int run_exit) const { return exit_via(GetParam(), run_exit); }
};

TEST_P(RunOrphansWait, WaitsForOrphansThenSucceeds) {
  PK_REQUIRE_CGROUP2();
  const std::string marker = unique_marker();
  RunOutput r = run_task_via(GetParam(), {"--orphans", "wait"},
                             {"sh", "-c", "sleep 0.7 & exit 0", "main-" + marker}, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "ok") << j.dump();
  EXPECT_EQ(j["processes_reaped"], 0) << j.dump();
  EXPECT_GE(j["wall_s"].get<double>(), 0.7) << j.dump();
  EXPECT_LT(j["wall_s"].get<double>(), 2.0) << j.dump();
  expect_nothing_left(r, marker);
}

TEST_P(RunOrphansWait, OrphansStayUnderTheWallTime) {
  PK_REQUIRE_CGROUP2();
  const std::string marker = unique_marker();
  RunOutput r = run_task_via(
      GetParam(), {"--orphans", "wait", "--wall-time", "1s", "--poll-interval", "100ms"},
      {"sh", "-c", "sleep \"$1\" & exit 0", "main", long_sleep_arg(marker)}, Seconds(20));
  ASSERT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, exit_for(124)) << r.describe();
  ASSERT_TRUE(r.json) << r.describe();
  const auto& j = *r.json;
  EXPECT_EQ(j["status"], "timeout") << j.dump();
  EXPECT_EQ(j["exit_code"], 0) << "the main process's own exit: " << j.dump();
  EXPECT_EQ(j["processes_reaped"], 1) << j.dump();
  EXPECT_GE(j["wall_s"].get<double>(), 1.0) << j.dump();
  EXPECT_LT(j["wall_s"].get<double>(), 1.0 + 0.1 + 0.5) << j.dump();
  expect_nothing_left(r, marker);
}

// Subreaper mode: pollkill SIGKILLed right after it cloned a task's init, before it told the
// guard (POLLKILL_TEST_STOP_BEFORE_START stops it exactly there). The init must not start the
// task until the guard knows of it; it dies with pollkill instead, and nothing is left. Before
// the fix the init forked the task at once, and after pollkill's death it killed only the
// main process and kept the setsid'd child and the other sleep alive under itself.
class SubreaperStart : public ::testing::TestWithParam<Via> {};

bool stopped(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T';
}

TEST_P(SubreaperStart, KilledBeforeTheGuardKnowsTheInitLeavesNothing) {
  const std::string marker = unique_marker();
  const std::string arg = long_sleep_arg(marker);
  auto run = start_task(GetParam(), {"--mode", "subreaper"},
                        {"sh", "-c", "setsid sleep \"$1\" & sleep \"$1\"", "main", arg},
                        LaunchOptions{{{"POLLKILL_TEST_STOP_BEFORE_START", "1"}}, std::nullopt});
  ASSERT_TRUE(wait_until([&] { return stopped(run->pid()); }, Seconds(10)))
      << "pollkill never reached the test stop";
  EXPECT_FALSE(wait_until([&] { return !processes_matching(marker, "sleep").empty(); }, Seconds(1)))
      << "the task started before the guard knew of its init";
  run->signal(SIGKILL);
  // The init and the guard are forks of pollkill: their command lines carry the marker too.
  expect_killed_runner_left_nothing(*run, marker);
}
INSTANTIATE_TEST_SUITE_P(Both, SubreaperStart, both_vias(), via_name);

// fast_paths: the vfork spawn (clone3 with CLONE_VM | CLONE_VFORK into the cgroup) and
// cgroup.kill; clone3_spawn: clone3 with a copy of pollkill's memory, what an init needs.
const auto kMethods = ::testing::Values(
    Method{"fast_paths", {}}, Method{"freeze_kill", {{"POLLKILL_KILL_METHOD", "freeze"}}},
    Method{"clone3_spawn", {{"POLLKILL_SPAWN_METHOD", "clone3"}}},
    Method{"fork_spawn", {{"POLLKILL_SPAWN_METHOD", "fork"}}},
    Method{"both_fallbacks",
           {{"POLLKILL_KILL_METHOD", "freeze"}, {"POLLKILL_SPAWN_METHOD", "fork"}}},
    Method{"subreaper", {}, {"--mode", "subreaper"}, true},
    Method{"subreaper_fork_spawn",
           {{"POLLKILL_SPAWN_METHOD", "fork"}},
           {"--mode", "subreaper"},
           true});
std::string method_name(const ::testing::TestParamInfo<std::tuple<Method, Via>>& param_info) {
  return std::get<0>(param_info.param).name;
}
INSTANTIATE_TEST_SUITE_P(RunVia, RunReaping,
                         ::testing::Combine(kMethods, ::testing::Values(Via::run)), method_name);
INSTANTIATE_TEST_SUITE_P(BatchVia, RunReaping,
                         ::testing::Combine(kMethods, ::testing::Values(Via::batch)), method_name);
INSTANTIATE_TEST_SUITE_P(Both, RunOrphansWait, both_vias(), via_name);

}  // namespace
}  // namespace pollkill::testing
