// pollkill in the cgroup layouts real hosts give it, built for real:
// - a partly delegated subtree: its own cgroup is not the root, offers only `memory`, and may
//   hold other processes (the accelerator host looks exactly like this);
// - a container with its own cgroup namespace and a cgroup2 mount whose root is the
//   namespace root, writable or read-only;
// - `pollkill doctor` naming each case and the limits available there.
// They need a pure cgroup v2 hierarchy with every controller: they skip on the hybrid host and
// run in the VM (tests/vm/run), where POLLKILL_IN_VM=1 makes a skip a failure.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>

#include "cgroup_fixtures.h"
#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const std::string kMemhog = POLLKILL_MEMHOG;

// The result printed by `--result -`: the last non-empty line of stdout.
ordered_json last_json(const std::string& out) {
  std::string text = out;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  auto nl = text.rfind('\n');
  return ordered_json::parse(nl == std::string::npos ? text : text.substr(nl + 1), nullptr, false);
}

// Path of a cgroup relative to the cgroup2 mount ("/pk-outer-1/pk-job-2").
std::string mount_relative(const fs::path& cgroup) {
  return "/" + cgroup.lexically_relative(*cgroup2_mount()).string();
}

bool alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

// pollkill's own cgroup offers only memory (its parent enables nothing else for it).
class PartlyDelegated : public JobCgroup {
 protected:
  void SetUp() override {
    PK_REQUIRE_CONTROLLERS("memory", "cpu", "pids");
    make_job({"memory"});
    std::ifstream in(job_ / "cgroup.controllers");
    std::string offered((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(offered, "memory\n") << "the layout under test";
  }
};

TEST_F(PartlyDelegated, AloneItMovesIntoALeafAndEnforcesMemory) {
  std::vector<std::string> args = {"run", "--memory", "64M", "--result", "-", "--"};
  auto print = print_own_attr("memory.max");
  print[2] = "cat /proc/self/cgroup; " + print[2];
  args.insert(args.end(), print.begin(), print.end());
  RunOutput r = start_in_job("", args)->wait(Seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("0::" + mount_relative(job_) + "/pollkill-"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n67108864\n"), std::string::npos) << "memory.max in the task: " << r.out;
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "ok") << r.out;
  EXPECT_EQ(j["limits_not_enforced"], ordered_json::array()) << r.out;

  // And the limit holds: a task that wants 512 MiB is OOM-killed.
  const std::string marker = unique_marker();
  RunOutput oom = start_in_job("", {"run", "--memory", "64M", "--result", "-", "--", kMemhog, "512",
                                    "0", marker})
                      ->wait(Seconds(120));
  EXPECT_EQ(oom.exit_code, 137) << oom.describe();
  auto o = last_json(oom.out);
  EXPECT_EQ(o["status"], "oom") << oom.out;
  EXPECT_GE(o.value("oom_kills", 0), 1) << oom.out;
  expect_nothing_left(oom, marker);
}

TEST_F(PartlyDelegated, OtherProcessesMakeALimitAnErrorNamingThemAndTheFix) {
  const std::string marker = unique_marker();
  auto sibling = start_sibling(marker);
  RunOutput r = start_in_job("", {"run", "--memory", "64M", "--", "true"})->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find(job_.string()), std::string::npos) << "names the cgroup: " << r.err;
  EXPECT_NE(r.err.find("EBUSY"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pid " + std::to_string(sibling->pid()) + " (sleep)"), std::string::npos)
      << "names the other process: " << r.err;
  EXPECT_NE(r.err.find("a cgroup of its own"), std::string::npos) << "names the fix: " << r.err;
  EXPECT_NE(r.err.find("missing_controllers"), std::string::npos) << r.err;
  EXPECT_TRUE(alive(sibling->pid())) << "pollkill must not touch processes it did not start";
  expect_nothing_left(r, "");
}

TEST_F(PartlyDelegated, OtherProcessesWithWarnRunWithoutTheLimit) {
  const std::string marker = unique_marker();
  auto sibling = start_sibling(marker);
  RunOutput r = start_in_job("", {"run", "--memory", "64M", "--missing-controllers", "warn",
                                  "--result", "-", "--", "cat", "/proc/self/cgroup"})
                    ->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "ok") << r.out;
  EXPECT_EQ(j["limits_not_enforced"], ordered_json::array({"memory"})) << r.out;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  // No leaf was needed: the task cgroup is made right under the shared cgroup.
  EXPECT_NE(r.out.find("0::" + mount_relative(job_) + "/pollkill-" + std::to_string(r.pid) + "-"),
            std::string::npos)
      << r.out;
  EXPECT_TRUE(alive(sibling->pid()));
  expect_nothing_left(r, "");
}

TEST_F(PartlyDelegated, WithoutLimitsItRunsBesideOtherProcesses) {
  const std::string marker = unique_marker();
  auto sibling = start_sibling(marker);
  const std::string task_marker = unique_marker();
  RunOutput r =
      start_in_job("", {"run", "--wall-time", "1s", "--kill-grace", "0", "--result", "-", "--",
                        "sh", "-c", "setsid sleep " + long_sleep_arg(task_marker) + " & wait"})
          ->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 124) << r.describe();
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "timeout") << r.out;
  EXPECT_GE(j.value("processes_reaped", 0), 2) << r.out;
  expect_nothing_left(r, task_marker);
  EXPECT_TRUE(alive(sibling->pid())) << "only the task's processes are killed";
}

TEST_F(PartlyDelegated, UndelegatedControllerIsAnErrorNamingItTheCgroupAndTheFix) {
  struct Case {
    std::vector<std::string> flags;
    std::string controller;
  };
  for (const Case& c : {Case{{"--cpus", "0.5"}, "cpu"}, Case{{"--pids", "10"}, "pids"}}) {
    std::vector<std::string> args = {"run"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.insert(args.end(), {"--", "true"});
    RunOutput r = start_in_job("", args)->wait(Seconds(60));
    EXPECT_EQ(r.exit_code, 125) << r.describe();
    EXPECT_NE(r.err.find("'" + c.controller + "' controller"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(job_.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("cgroup.controllers: memory"), std::string::npos) << r.err;
    // The fix: enable it one level up, where it was not delegated, or run without it.
    EXPECT_NE(r.err.find("+" + c.controller), std::string::npos) << r.err;
    EXPECT_NE(r.err.find((outer_ / "cgroup.subtree_control").string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("missing_controllers"), std::string::npos) << r.err;
    expect_nothing_left(r, "");
  }
}

TEST_F(PartlyDelegated, UndelegatedControllerWithWarnStillEnforcesMemory) {
  std::vector<std::string> args = {"run",  "--cpus",   "0.5", "--memory",
                                   "64M",  "--pids",   "10",  "--missing-controllers",
                                   "warn", "--result", "-",   "--"};
  auto print = print_own_attr("memory.max");
  args.insert(args.end(), print.begin(), print.end());
  RunOutput r = start_in_job("", args)->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out.substr(0, 9), "67108864\n") << r.out;
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "ok") << r.out;
  EXPECT_EQ(j["limits_not_enforced"], ordered_json::array({"cpus", "pids"})) << r.out;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'cpu', 'pids' controllers"), std::string::npos) << r.err;
  expect_nothing_left(r, "");
}

TEST_F(PartlyDelegated, BatchEnforcesMemoryThroughTheLeafToo) {
  TempDir dir;
  const std::string marker = unique_marker();
  std::ofstream(dir / "tasks") << kMemhog << " 512 0 " << marker << "\ntrue\n";
  RunOutput r = start_in_job("", {"batch", "-j", "2", "-q", "--memory", "64M", "--results",
                                  (dir / "r.jsonl").string(), (dir / "tasks").string()})
                    ->wait(Seconds(120));
  EXPECT_EQ(r.exit_code, 1) << "one task ended oom: " << r.describe();
  std::ifstream in(dir / "r.jsonl");
  std::vector<std::string> statuses;
  for (std::string line; std::getline(in, line);) {
    auto j = ordered_json::parse(line, nullptr, false);
    if (!j.is_discarded())
      statuses.push_back(j["id"].get<std::string>() + "=" + j["status"].get<std::string>());
  }
  std::sort(statuses.begin(), statuses.end());
  EXPECT_EQ(statuses, (std::vector<std::string>{"1=oom", "2=ok"})) << r.describe();
  expect_nothing_left(r, marker);
}

TEST_F(PartlyDelegated, DoctorNamesTheCaseTheControllersAndEachFix) {
  RunOutput r = start_in_job("", {"doctor"})->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("[ok] host: partly delegated subtree"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("offers memory; not delegated: cpu, pids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[ok] limit memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[--] limit cpu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[--] limit pids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("echo +cpu > " + (outer_ / "cgroup.subtree_control").string()),
            std::string::npos)
      << r.out;
  // The trial moves doctor into a leaf to enable memory, as `run` would (TearDown checks that
  // it moved back and turned memory off again).
  EXPECT_NE(r.out.find("[ok] memory.peak: present"), std::string::npos) << r.out;
  expect_nothing_left(r, "");

  // Beside another process even the delegated controller cannot be enabled for task cgroups.
  const std::string marker = unique_marker();
  auto sibling = start_sibling(marker);
  RunOutput shared = start_in_job("", {"doctor"})->wait(Seconds(60));
  EXPECT_EQ(shared.exit_code, 0) << shared.describe();
  EXPECT_NE(shared.out.find("[--] limit memory"), std::string::npos) << shared.out;
  EXPECT_NE(shared.out.find("pid " + std::to_string(sibling->pid()) + " (sleep)"),
            std::string::npos)
      << shared.out;
  expect_nothing_left(shared, "");
}

// pollkill inside `unshare --cgroup --mount`, started after moving into the job cgroup, with
// a fresh cgroup2 mount inside: the job cgroup is the namespace's root, /proc/self/cgroup
// says "0::/", as in a container with a private cgroup namespace.
class CgroupNamespace : public JobCgroup {
 protected:
  void SetUp() override {
    PK_REQUIRE_CONTROLLERS("memory", "pids");
    if (::access("/usr/bin/unshare", X_OK) != 0) {
      GTEST_SKIP() << "needs unshare(1) from util-linux";
    }
    make_job();
  }
  // `mount_options`: "rw", or "ro" for a read-only mount as unprivileged containers get.
  // pollkill's stdout starts with the namespace's view of its own cgroup.
  std::unique_ptr<Pollkill> start_in_namespace(const std::string& mount_options,
                                               const std::vector<std::string>& args) {
    const std::string enter =
        "echo $$ > \"$0\" || exit 1; exec unshare --cgroup --mount sh -c \"$@\"";
    const std::string inside =
        "umount -l \"$0\" && mount -t cgroup2 -o \"$1\" cgroup2 \"$0\" || exit 97; "
        "cat /proc/self/cgroup; shift; exec \"$@\"";
    std::vector<std::string> cmd = {"-c",
                                    enter,
                                    (job_ / "cgroup.procs").string(),
                                    inside,
                                    cgroup2_mount()->string(),
                                    mount_options,
                                    POLLKILL_BINARY};
    cmd.insert(cmd.end(), args.begin(), args.end());
    LaunchOptions options;
    options.program = "/bin/sh";
    return std::make_unique<Pollkill>(cmd, options);
  }
};

TEST_F(CgroupNamespace, RunsWithLimitsFromTheNamespaceRoot) {
  std::vector<std::string> args = {"run",      "--memory", "64M", "--pids", "20",
                                   "--result", "-",        "--",  "sh",     "-c"};
  const std::string own =
      "\"" + cgroup2_mount()->string() + "$(sed -n 's/^0:://p' /proc/self/cgroup)\"";
  args.push_back("cat /proc/self/cgroup " + own + "/memory.max " + own + "/pids.max");
  RunOutput r = start_in_namespace("rw", args)->wait(Seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out.substr(0, 5), "0::/\n") << "pollkill's own view: " << r.out;
  EXPECT_NE(r.out.find("\n0::/pollkill-" + std::to_string(r.pid) + "-"), std::string::npos)
      << "the task's cgroup, seen from the namespace: " << r.out;
  EXPECT_NE(r.out.find("\n67108864\n20\n"), std::string::npos) << r.out;
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "ok") << r.out;
  EXPECT_EQ(j["limits_not_enforced"], ordered_json::array()) << r.out;
  EXPECT_EQ(j["cgroup"].get<std::string>().rfind("/pollkill-" + std::to_string(r.pid) + "-", 0), 0u)
      << r.out;
  expect_nothing_left(r, "");  // seen from the host: nothing under the job cgroup either
}

TEST_F(CgroupNamespace, KillsTheWholeTreeAndCleansUp) {
  const std::string marker = unique_marker();
  const std::string sleep = "sleep " + long_sleep_arg(marker);
  RunOutput r = start_in_namespace("rw", {"run", "--memory", "64M", "--wall-time", "2s",
                                          "--kill-grace", "0", "--result", "-", "--", "sh", "-c",
                                          "setsid " + sleep + " & " + sleep + " & wait"})
                    ->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 124) << r.describe();
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "timeout") << r.out;
  EXPECT_GE(j.value("processes_reaped", 0), 3) << r.out;
  expect_nothing_left(r, marker);
}

TEST_F(CgroupNamespace, MemoryLimitEndsInOom) {
  const std::string marker = unique_marker();
  RunOutput r = start_in_namespace("rw", {"run", "--memory", "64M", "--result", "-", "--", kMemhog,
                                          "512", "0", marker})
                    ->wait(Seconds(120));
  EXPECT_EQ(r.exit_code, 137) << r.describe();
  auto j = last_json(r.out);
  EXPECT_EQ(j["status"], "oom") << r.out;
  EXPECT_GE(j.value("oom_kills", 0), 1) << r.out;
  expect_nothing_left(r, marker);
}

TEST_F(CgroupNamespace, SigkillOfPollkillLeavesNothing) {
  const std::string marker = unique_marker();
  auto p = start_in_namespace(
      "rw", {"run", "--memory", "64M", "--", "sh", "-c",
             "setsid sleep " + long_sleep_arg(marker) + " & sleep " + long_sleep_arg(marker)});
  ASSERT_TRUE(
      wait_until([&] { return processes_matching(marker, "sleep").size() == 2; }, Seconds(30)));
  p->signal(SIGKILL);
  RunOutput r = p->wait(Seconds(30));
  // The guard kills the tasks and removes the run cgroup and the leaf (TearDown checks the
  // job cgroup, seen from the host, is empty again).
  EXPECT_TRUE(wait_until([&] { return processes_matching(marker).empty(); }, Seconds(5)));
  EXPECT_TRUE(wait_until(
      [&] {
        for (const auto& e : fs::directory_iterator(job_)) {
          if (e.is_directory()) return false;
        }
        return true;
      },
      Seconds(5)));
  cleanup(marker, {r.pid});
}

TEST_F(CgroupNamespace, DoctorNamesTheNamespace) {
  RunOutput r = start_in_namespace("rw", {"doctor"})->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("[ok] host: cgroup namespace"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[ok] own cgroup: /\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[ok] limit memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[ok] limit pids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[ok] memory.peak: present"), std::string::npos) << r.out;
  expect_nothing_left(r, "");
}

TEST_F(CgroupNamespace, ReadOnlyMountIsAClearError) {
  // --mode cgroup: the clear error, naming the mount and the fix.
  RunOutput r =
      start_in_namespace("ro", {"run", "--mode", "cgroup", "--", "true"})->wait(Seconds(60));
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(cgroup2_mount()->string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("remount"), std::string::npos) << "names the fix: " << r.err;

  // --mode auto (the default): no usable cgroup, so subreaper mode, saying why.
  RunOutput a = start_in_namespace("ro", {"run", "--", "true"})->wait(Seconds(60));
  EXPECT_EQ(a.exit_code, 0) << a.describe();
  EXPECT_NE(a.err.find("running in subreaper mode"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("read-only"), std::string::npos) << a.err;

  // doctor: the host case is "no usable cgroup" (informational here: subreaper mode needs no
  // cgroup), the mode line says why, and the time limits still work.
  RunOutput doctor = start_in_namespace("ro", {"doctor"})->wait(Seconds(60));
  EXPECT_EQ(doctor.exit_code, 0) << doctor.describe();
  EXPECT_NE(doctor.out.find("[--] host: no usable cgroup"), std::string::npos) << doctor.out;
  EXPECT_NE(doctor.out.find("[ok] mode: subreaper"), std::string::npos) << doctor.out;
  EXPECT_NE(doctor.out.find("read-only"), std::string::npos) << doctor.out;
  EXPECT_NE(doctor.out.find("[ok] limit wall_time"), std::string::npos) << doctor.out;
  EXPECT_NE(doctor.out.find("[--] limit memory"), std::string::npos) << doctor.out;
  expect_nothing_left(doctor, "");
}

// On whatever host the suite runs: the hybrid development machine or the VM's hierarchy root.
TEST(HostCaseDoctor, NamesThisHostAndItsLimits) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run_pollkill({"doctor"}, Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string text((std::istreambuf_iterator<char>(mountinfo)), std::istreambuf_iterator<char>());
  const bool hybrid = text.find(" - cgroup cgroup ") != std::string::npos;
  if (hybrid) {
    EXPECT_NE(r.out.find("host: hybrid"), std::string::npos) << r.out;
  } else if (own_cgroup_is_root()) {
    EXPECT_NE(r.out.find("[ok] host: pure cgroup v2, hierarchy root"), std::string::npos) << r.out;
    for (const char* limit : {"memory", "cpu", "pids"}) {
      EXPECT_NE(r.out.find(std::string("[ok] limit ") + limit), std::string::npos) << r.out;
    }
  }
  EXPECT_NE(r.out.find("limit wall_time"), std::string::npos) << r.out;
  expect_nothing_left(r, "");
}

}  // namespace
}  // namespace pollkill::testing
