// Evidence taken by the engine before a stuck task is killed ([evidence] on), end to end: a
// hung and a spinning tests/tools/stuck through `pollkill run --evidence-dir` and through
// `pollkill batch` (its logs), in cgroup mode and in subreaper mode; no evidence where none was
// asked for; a capture that runs past its budget; and thrash detection, which needs the task
// cgroup's memory.pressure (refused in subreaper mode; the verdict itself in the VM).
#include <sys/statfs.h>
#include <sys/vfs.h>

#include <signal.h>

#include <filesystem>

#include "cgroup_fixtures.h"
#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

class RunEvidence : public ::testing::TestWithParam<Via> {
 protected:
  // `run` gets --evidence-dir; a batch writes the evidence beside its logs.
  RunOutput run(std::vector<std::string> flags, const std::vector<std::string>& command) const {
    if (GetParam() == Via::run) flags.insert(flags.end(), {"--evidence-dir", dir_.path().string()});
    return run_task_via(GetParam(), flags, command, Seconds(30));
  }
  // Checks the record's evidence: both files there, the .json naming the verdict and the
  // signature the record has, and (`complete`) every thread frozen. Returns the .json.
  static ordered_json evidence_of(const ordered_json& record, bool complete = true) {
    EXPECT_TRUE(record["evidence"].is_string()) << record.dump();
    if (!record["evidence"].is_string()) return {};
    const fs::path path = record["evidence"].get<std::string>();
    EXPECT_TRUE(path.string().ends_with(".1.evidence.json")) << path;
    fs::path text = path;
    text.replace_extension(".txt");
    EXPECT_TRUE(fs::exists(text)) << text;
    ordered_json evidence = ordered_json::parse(slurp(path), nullptr, false);
    EXPECT_FALSE(evidence.is_discarded()) << slurp(path);
    EXPECT_EQ(evidence["status"], record["status"]);
    EXPECT_EQ(evidence["stack_signature"], record["stack_signature"]);
    if (complete) {
      EXPECT_EQ(evidence["frozen"], true);
    }
    return evidence;
  }

  TempDir dir_;
};

TEST_P(RunEvidence, AHungTaskLeavesEvidenceNamingTheFunctionItHangsIn) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run({"--hang-after", "1s", "--kill-grace", "0"}, {POLLKILL_STUCK, "hang"});
  ASSERT_TRUE(r.json) << r.describe();
  const ordered_json& j = *r.json;
  EXPECT_EQ(j["status"], "hung") << r.describe();
  EXPECT_EQ(j["stack_signature"], "pk_stuck: stuck_in_read < main < __libc_start_call_main")
      << r.describe();
  EXPECT_EQ(j["reason"].get<std::string>().find("evidence"), std::string::npos)
      << "complete evidence adds no note: " << j["reason"];
  ordered_json evidence = evidence_of(j);
  EXPECT_EQ(evidence["mode"], "cgroup");
  if (GetParam() == Via::run) {
    EXPECT_NE(r.err.find("evidence: " + j["evidence"].get<std::string>()), std::string::npos)
        << r.err;
  }
  expect_nothing_left(r, "");
}

TEST_P(RunEvidence, ASpinningTaskLeavesEvidenceNamingItsLoop) {
  PK_REQUIRE_CGROUP2();
  RunOutput r = run({"--spin-after", "1s", "--kill-grace", "0"}, {POLLKILL_STUCK, "spin"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "spinning") << r.describe();
  EXPECT_EQ((*r.json)["stack_signature"], "pk_stuck: spin_here < main < __libc_start_call_main")
      << r.describe();
  evidence_of(*r.json);
  expect_nothing_left(r, "");
}

TEST_P(RunEvidence, InSubreaperModeTheTreeIsStoppedAndUnwound) {
  RunOutput r = run({"--mode", "subreaper", "--hang-after", "1s", "--kill-grace", "0"},
                    {POLLKILL_STUCK, "hang"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "hung") << r.describe();
  EXPECT_EQ((*r.json)["stack_signature"], "pk_stuck: stuck_in_read < main < __libc_start_call_main")
      << r.describe();
  EXPECT_EQ(evidence_of(*r.json)["mode"], "subreaper");
  expect_nothing_left(r, "");
}

// A verdict outside [evidence] on (timeout by default) and a task that ends by itself take
// none; neither does a policy with `on = []`.
TEST_P(RunEvidence, OnlyTheVerdictsListedGetEvidence) {
  PK_REQUIRE_CGROUP2();
  RunOutput timeout = run({"--wall-time", "500ms", "--kill-grace", "0"}, {POLLKILL_STUCK, "hang"});
  ASSERT_TRUE(timeout.json) << timeout.describe();
  EXPECT_EQ((*timeout.json)["status"], "timeout");
  EXPECT_TRUE((*timeout.json)["evidence"].is_null());
  EXPECT_TRUE((*timeout.json)["stack_signature"].is_null());

  RunOutput ok = run({"--hang-after", "1s"}, {"true"});
  ASSERT_TRUE(ok.json) << ok.describe();
  EXPECT_EQ((*ok.json)["status"], "ok");
  EXPECT_TRUE((*ok.json)["evidence"].is_null());

  write_file(dir_ / "off.toml", "version = 1\n[evidence]\non = []\n");
  RunOutput off =
      run({"--policy", (dir_ / "off.toml").string(), "--hang-after", "1s", "--kill-grace", "0"},
          {POLLKILL_STUCK, "hang"});
  ASSERT_TRUE(off.json) << off.describe();
  EXPECT_EQ((*off.json)["status"], "hung");
  EXPECT_TRUE((*off.json)["evidence"].is_null());
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().string().find("evidence"), std::string::npos) << entry.path();
  }
}

// A budget too short to unwind anything: the capture writes what it has at nine tenths of it
// (the kernel view: a signature from the wait channel) or, past it, is abandoned; either way
// the task is thawed and killed, and what is missing is said (in the file, or in the reason).
TEST_P(RunEvidence, ABudgetTooShortToUnwindStillEndsInAKilledTaskAndSaysWhatIsMissing) {
  PK_REQUIRE_CGROUP2();
  write_file(dir_ / "short.toml", "version = 1\n[evidence]\nbudget = \"1ms\"\n");
  RunOutput r =
      run({"--policy", (dir_ / "short.toml").string(), "--hang-after", "1s", "--kill-grace", "0"},
          {POLLKILL_STUCK, "hang"});
  ASSERT_TRUE(r.json) << r.describe();
  const ordered_json& j = *r.json;
  EXPECT_EQ(j["status"], "hung") << r.describe();
  if (j["evidence"].is_null()) {
    EXPECT_NE(j["reason"].get<std::string>().find("(evidence: capture ran past its 1ms budget)"),
              std::string::npos)
        << j["reason"];
  } else {
    // Out of time while unwinding ("the capture budget ran out") or, on a loaded machine,
    // before a thread even stopped for the unwinder ("did not stop within the capture budget").
    const ordered_json evidence = evidence_of(j, false);
    EXPECT_NE(evidence["missing"].dump().find("capture budget"), std::string::npos)
        << evidence["missing"];
  }
  expect_nothing_left(r, "");
}

INSTANTIATE_TEST_SUITE_P(Both, RunEvidence, both_vias(), via_name);

// pollkill SIGKILLed while its task is frozen for a capture: the capture process dies with it
// (its tracees detached by the kernel), and the guard kills the frozen task (cgroup.kill kills
// frozen tasks) and removes every cgroup.
TEST(RunEvidenceLeak, SigkillDuringACaptureLeavesNothing) {
  PK_REQUIRE_CGROUP2();
  TempDir dir;
  const std::string marker = unique_marker();
  // Many threads to unwind: the capture holds the task frozen long enough to be seen (its
  // cgroup.freeze is 1 from the freeze to the thaw; cgroup.events says frozen 0 while threads
  // are in their ptrace stops).
  write_file(dir / "long.toml", "version = 1\n[evidence]\nbudget = \"60s\"\n");
  auto run = start_run({"--policy", (dir / "long.toml").string(), "--hang-after", "500ms",
                        "--evidence-dir", dir.path().string()},
                       {POLLKILL_STUCK, "threads", "300", marker});
  bool frozen = false;
  wait_until(
      [&] {
        for (const fs::path& run_cgroup : find_leftover_cgroups(run->pid())) {
          std::error_code ec;
          for (const auto& task : fs::directory_iterator(run_cgroup, ec)) {
            if (task.path().filename().string().rfind("task-", 0) == 0 &&
                slurp(task.path() / "cgroup.freeze") == "1\n") {
              frozen = true;
            }
          }
        }
        return frozen;
      },
      Seconds(20), Seconds(0.002));
  ASSERT_TRUE(frozen) << "the task was never seen frozen for its capture";
  run->signal(SIGKILL);
  RunOutput r = run->wait(Seconds(30));
  EXPECT_EQ(r.term_signal, SIGKILL) << r.describe();
  // The guard does its work after pollkill is gone: give it a moment.
  EXPECT_TRUE(wait_until(
      [&] { return processes_matching(marker).empty() && find_leftover_cgroups(r.pid).empty(); },
      Seconds(10)))
      << processes_matching(marker).size() << " processes, " << find_leftover_cgroups(r.pid).size()
      << " cgroups left";
  cleanup(marker, {r.pid});
}

// Subreaper mode has no cgroup, so no memory.pressure: thrash_after is refused like a limit
// whose controller is missing, or run without under missing_controllers = "warn".
TEST(RunThrash, SubreaperModeRefusesThrashDetection) {
  RunOutput refused = run_task_cli({"--mode", "subreaper", "--thrash-after", "1s"}, {"true"});
  EXPECT_EQ(refused.exit_code, 125) << refused.describe();
  EXPECT_NE(refused.err.find("watchdog.thrash_after needs the task cgroup's memory.pressure"),
            std::string::npos)
      << refused.err;

  RunOutput warned = run_task_cli(
      {"--mode", "subreaper", "--thrash-after", "1s", "--missing-controllers", "warn"}, {"true"});
  ASSERT_TRUE(warned.json) << warned.describe();
  EXPECT_EQ((*warned.json)["status"], "ok");
  EXPECT_EQ((*warned.json)["limits_not_enforced"], ordered_json::array({"thrash_after"}));
  EXPECT_NE(warned.err.find("running without thrash detection"), std::string::npos) << warned.err;
}

// In the VM (the memory controller): a working set larger than the memory limit thrashes and
// is stopped as `thrashing`, with evidence; one that fits under the same limit runs to its end.
TEST(RunThrash, AWorkingSetLargerThanTheLimitIsThrashingOneThatFitsIsNot) {
  PK_REQUIRE_CONTROLLERS("memory");
  // Pages the kernel can drop and read back (tests/tools/thrash.c), of a large file nothing
  // else has read in this boot: page cache is charged to the cgroup that first reads it, so
  // this test binary (mapped and read by this process through a whole suite) never made the
  // task thrash in the full VM run. Chromium's binary (installed for the report's test, never
  // run in the VM) is such a file; the test binary is the fallback for a narrow run.
  const std::string data = fs::exists("/usr/lib/chromium/chromium")
                               ? std::string("/usr/lib/chromium/chromium")
                               : fs::canonical("/proc/self/exe").string();
  struct statfs sfs {};
  if (::statfs(data.c_str(), &sfs) == 0 && sfs.f_type == TMPFS_MAGIC) {
    GTEST_SKIP() << data << " is on tmpfs: its pages cannot be reclaimed without swap";
  }
  if (fs::file_size(data) < (48u << 20)) GTEST_SKIP() << data << " is shorter than 48 MiB";
  TempDir dir;
  RunOutput thrashing =
      run_task_cli({"--memory", "32M", "--thrash-after", "2s", "--wall-time", "60s", "--kill-grace",
                    "0", "--evidence-dir", dir.path().string()},
                   {POLLKILL_THRASH, data, "48"}, Seconds(90));
  ASSERT_TRUE(thrashing.json) << thrashing.describe();
  EXPECT_EQ((*thrashing.json)["status"], "thrashing") << thrashing.describe();
  EXPECT_EQ(thrashing.exit_code, 124);
  EXPECT_TRUE((*thrashing.json)["evidence"].is_string()) << thrashing.describe();

  RunOutput fitting = run_task_cli({"--memory", "32M", "--thrash-after", "2s", "--wall-time", "60s",
                                    "--evidence-dir", dir.path().string()},
                                   {POLLKILL_THRASH, data, "16", "4"}, Seconds(90));
  ASSERT_TRUE(fitting.json) << fitting.describe();
  EXPECT_EQ((*fitting.json)["status"], "ok") << fitting.describe();
  expect_nothing_left(thrashing, "");
  expect_nothing_left(fitting, "");
}

}  // namespace
}  // namespace pollkill::testing
