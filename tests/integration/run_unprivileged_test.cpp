// pollkill started by an ordinary user in the cgroup hierarchy's root (the root user's, not
// writable for anyone else): `--mode auto` must fall back to subreaper mode as the README
// promises, and doctor must say so.
#include <unistd.h>

#include <filesystem>

#include "harness.h"

namespace pollkill::testing {
namespace {

class RunUnprivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
      GTEST_SKIP() << "needs root and setpriv to run pollkill as another user";
    }
    if (cgroup_v2_path(slurp("/proc/self/cgroup")) != "/") {
      GTEST_SKIP() << "this test process is not in the cgroup hierarchy's root";
    }
  }
  // `pollkill ARGS...` as nobody, in this process's cgroup (the hierarchy root).
  RunOutput as_nobody(std::vector<std::string> args) {
    LaunchOptions nobody;
    nobody.program = "/usr/bin/setpriv";
    std::vector<std::string> argv{"--reuid=65534", "--regid=65534", "--clear-groups",
                                  world_readable_copy(POLLKILL_BINARY)};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_pollkill(argv, Seconds(30), nobody);
  }
};

// Regression: the hierarchy root was taken as usable without a look at its permissions: run
// exited 125 ("create run cgroup ...: Permission denied"), batch 2.
TEST_F(RunUnprivileged, AutoFallsBackToSubreaperAtTheHierarchyRoot) {
  RunOutput r = as_nobody({"run", "--wall-time", "5s", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  EXPECT_NE(r.err.find("running in subreaper mode"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hierarchy root"), std::string::npos) << r.err;
}

TEST_F(RunUnprivileged, BatchFallsBackToSubreaperAtTheHierarchyRoot) {
  // A directory of nobody's own, for the task file, the results and the logs.
  const std::string dir =
      std::filesystem::path(world_readable_copy(POLLKILL_BINARY)).parent_path().string() +
      "/batch-" + unique_marker();
  std::filesystem::create_directory(dir);
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);
  write_file(dir + "/tasks.txt", "true\nsh -c 'exit 0'\n");
  RunOutput r =
      as_nobody({"batch", "-j", "2", "--results", dir + "/out.jsonl", dir + "/tasks.txt"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto records = read_records(dir + "/out.jsonl");
  ASSERT_EQ(records.size(), 2u) << r.describe();
  for (const auto& rec : records) {
    EXPECT_EQ(rec["status"], "ok") << rec.dump();
    EXPECT_EQ(rec["mode"], "subreaper") << rec.dump();
  }
  std::filesystem::remove_all(dir);
}

// Regression: doctor said "[ok] mode: cgroup" and "[!!] run root not writable" together.
TEST_F(RunUnprivileged, DoctorAgreesWithTheRun) {
  RunOutput r = as_nobody({"doctor"});
  EXPECT_NE(r.out.find("[ok] mode: subreaper, what --mode auto picks here"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("mode: cgroup"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace pollkill::testing
