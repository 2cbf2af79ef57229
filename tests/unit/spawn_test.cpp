#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "pollkill/container.h"
#include "pollkill/proctree.h"
#include "pollkill/progress.h"
#include "pollkill/spawn.h"

namespace pollkill {
namespace {

TEST(ExecCandidates, SearchesPathLikeExecvp) {
  EXPECT_EQ(exec_candidates("gmsh", "/usr/local/bin:/usr/bin"),
            (std::vector<std::string>{"/usr/local/bin/gmsh", "/usr/bin/gmsh"}));
  // An empty PATH entry means the current directory.
  EXPECT_EQ(exec_candidates("run", ":/bin"), (std::vector<std::string>{"./run", "/bin/run"}));
  EXPECT_EQ(exec_candidates("./x", "/bin"), (std::vector<std::string>{"./x"}));
  EXPECT_EQ(exec_candidates("/bin/true", "/usr/bin"), (std::vector<std::string>{"/bin/true"}));
  EXPECT_TRUE(exec_candidates("", "/bin").empty());
}

TEST(ProcIo, ParsesWchar) {
  EXPECT_EQ(parse_wchar("rchar: 10\nwchar: 4242\nsyscr: 1\n"), 4242u);
  EXPECT_FALSE(parse_wchar("rchar: 10\n").has_value());
}

// /proc/PID/io is opened per reading (no descriptor binds it to one process): a pid reused by
// another process is told by a counter that went down.
TEST(ProcIo, ACounterThatWentDownMarksAReusedPid) {
  const std::string text =
      "rchar: 10\nwchar: 4242\nsyscr: 3\nsyscw: 7\nread_bytes: 0\nwrite_bytes: 0\n"
      "cancelled_write_bytes: 0\n";
  auto counters = parse_io_counters(text);
  ASSERT_TRUE(counters.has_value());
  EXPECT_EQ(counters->rchar, 10u);
  EXPECT_EQ(counters->wchar, 4242u);
  EXPECT_EQ(counters->syscr, 3u);
  EXPECT_EQ(counters->syscw, 7u);
  EXPECT_FALSE(parse_io_counters("rchar: 10\nwchar: 4242\n").has_value());

  const IoCounters before{100, 50, 10, 5};
  EXPECT_TRUE((IoCounters{100, 50, 10, 5}).could_follow(before));
  EXPECT_TRUE((IoCounters{120, 60, 11, 6}).could_follow(before));
  EXPECT_FALSE((IoCounters{99, 60, 11, 6}).could_follow(before));   // rchar went down
  EXPECT_FALSE((IoCounters{120, 60, 9, 6}).could_follow(before));   // syscr went down
  EXPECT_FALSE((IoCounters{120, 60, 11, 4}).could_follow(before));  // syscw went down
  EXPECT_FALSE((IoCounters{120, 49, 11, 6}).could_follow(before));  // wchar went down
}

bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

// Subreaper mode's lingering init against the real kernel: the task's status comes through the
// status pipe while the init stays for the orphan the task left, which is in the init's tree;
// killing the tree lets the init exit, and wait4 gives its rusage.
TEST(LingeringInit, ReportsTheTaskThenHoldsItsOrphansUntilKilled) {
  SubreaperScope scope;
  SpawnRequest request{
      {"/bin/sh", "-c", "(setsid sleep 1000.4242 &); exit 7"}, {}, -1, default_spawn_method()};
  request.subreaper_init = true;
  Spawned spawned = spawn(request);
  ASSERT_FALSE(spawned.failure) << spawned.failure->step;
  Child& init = spawned.child;
  ASSERT_TRUE(init.lingering());
  ASSERT_TRUE(readable_within(init.exit_fd(), 10000));
  auto exit = init.try_reap();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->exit_code, 7);
  EXPECT_FALSE(init.running());
  EXPECT_TRUE(init.process_running()) << "the init stays while the orphan lives";

  ProcTree tree(init.pid());
  std::vector<pid_t> members;
  for (int i = 0; i < 200 && members.empty(); ++i) {
    tree.scan();
    members = tree.live_members();
    if (members.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(members.size(), 1u) << "the setsid'd orphan, reparented to the init";
  rusage usage{};
  EXPECT_FALSE(init.reap_process(&usage));
  EXPECT_EQ(tree.kill_members(), members);
  ASSERT_TRUE(readable_within(init.pidfd(), 10000)) << "the init exits once its tree is empty";
  EXPECT_TRUE(init.reap_process(&usage));
  EXPECT_FALSE(init.process_running());
}

TEST(LingeringInit, ExecFailureIsReportedAndTheInitExits) {
  SubreaperScope scope;
  SpawnRequest request{{"/nonexistent/pollkill-x"}, {}, -1, default_spawn_method()};
  request.subreaper_init = true;
  Spawned spawned = spawn(request);
  ASSERT_TRUE(spawned.failure);
  EXPECT_EQ(spawned.failure->error, ENOENT);
  auto exit = spawned.child.reap();
  EXPECT_EQ(exit.exit_code, 127);
}

// A task whose working directory does not exist: the child names that step, with ENOENT, and
// exits 127.
void expect_missing_cwd_reported(Spawned spawned) {
  ASSERT_TRUE(spawned.failure);
  EXPECT_EQ(spawned.failure->step, "change to the working directory");
  EXPECT_EQ(spawned.failure->error, ENOENT);
  EXPECT_EQ(spawned.child.reap().exit_code, 127);
}

// The task init forks borrows init's memory until it execs (spawn.cpp, fork_task): a step that
// fails in it after the fork still reaches pollkill through the report pipe, named, with its
// errno, and init passes on the task's exit.
TEST(LingeringInit, AStepThatFailsInTheTaskAfterInitsForkIsNamed) {
  SubreaperScope scope;
  SpawnRequest request{{"/bin/true"}, {}, -1, default_spawn_method()};
  request.subreaper_init = true;
  request.cwd = "/nonexistent/pollkill-cwd";
  expect_missing_cwd_reported(spawn(request));
}

// Every spawn method against the real kernel (no cgroup: RunReaping covers the task cgroup).
class SpawnVia : public ::testing::TestWithParam<SpawnMethod> {
 protected:
  SpawnRequest request(std::vector<std::string> argv) const {
    return SpawnRequest{std::move(argv), {"PATH=/usr/bin:/bin"}, -1, GetParam()};
  }
  /// The method a plain task gets: what was asked for, except vfork where there is no
  /// trampoline for this architecture.
  SpawnMethod expected() const {
#if defined(__x86_64__)
    return GetParam();
#else
    return GetParam() == SpawnMethod::vfork ? SpawnMethod::clone3 : GetParam();
#endif
  }
};

TEST_P(SpawnVia, RunsTheProgramAndReturnsItsExit) {
  Spawned spawned = spawn(request({"sh", "-c", "exit 7"}));
  ASSERT_FALSE(spawned.failure) << spawned.failure->step;
  EXPECT_EQ(spawned.method, expected());
  EXPECT_EQ(spawned.child.reap().exit_code, 7);
}

TEST_P(SpawnVia, ExecFailureComesBackWithItsErrno) {
  Spawned missing = spawn(request({"/nonexistent/pollkill-x"}));
  ASSERT_TRUE(missing.failure);
  EXPECT_EQ(missing.failure->step, "execve");
  EXPECT_EQ(missing.failure->error, ENOENT);
  EXPECT_EQ(missing.child.reap().exit_code, 127);
  // Found in PATH but not executable: EACCES wins over the ENOENT of the other candidates.
  char dir_template[] = "/tmp/pollkill-spawn-XXXXXX";
  ASSERT_TRUE(::mkdtemp(dir_template));
  const std::string dir = dir_template;
  std::ofstream(dir + "/pk-not-exec") << "#!/bin/sh\n";
  SpawnRequest not_exec = request({"pk-not-exec"});
  not_exec.env = {"PATH=/nonexistent:" + dir};
  Spawned denied = spawn(not_exec);
  ::unlink((dir + "/pk-not-exec").c_str());
  ::rmdir(dir.c_str());
  ASSERT_TRUE(denied.failure);
  EXPECT_EQ(denied.failure->error, EACCES);
  EXPECT_EQ(denied.child.reap().exit_code, 127);
}

TEST_P(SpawnVia, AFailedStepBeforeExecIsNamed) {
  SpawnRequest r = request({"/bin/true"});
  r.cwd = "/nonexistent/pollkill-dir";
  expect_missing_cwd_reported(spawn(r));
}

// The task starts with no signal blocked and SIGPIPE at its default, whatever pollkill blocks
// or ignores (the vfork path blocks everything around the clone); pollkill's own mask is
// back as it was afterwards.
TEST_P(SpawnVia, TheTaskStartsWithAnEmptySignalMask) {
  sigset_t blocked, before, after;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR1);
  sigaddset(&blocked, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &blocked, &before), 0);
  struct sigaction ignore {
  }, old_pipe{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old_pipe);
  char path[] = "/tmp/pollkill-sigmask-XXXXXX";
  UniqueFd out(::mkstemp(path));
  ASSERT_TRUE(out);
  SpawnRequest r = request({"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"});
  r.stdio[1] = out.get();
  Spawned spawned = spawn(r);
  ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  ASSERT_FALSE(spawned.failure) << spawned.failure->step;
  EXPECT_EQ(spawned.child.reap().exit_code, 0);
  std::stringstream text;
  text << std::ifstream(path).rdbuf();
  ::unlink(path);
  EXPECT_NE(text.str().find("SigBlk:\t0000000000000000"), std::string::npos) << text.str();
  // Only SIGPIPE: what pollkill was started with ignored stays ignored (as exec keeps it).
  const size_t ign = text.str().find("SigIgn:\t");
  ASSERT_NE(ign, std::string::npos) << text.str();
  const unsigned long long ignored = std::stoull(text.str().substr(ign + 8, 16), nullptr, 16);
  EXPECT_EQ(ignored & (1ULL << (SIGPIPE - 1)), 0u) << text.str();
  EXPECT_TRUE(sigismember(&after, SIGUSR1) && sigismember(&after, SIGTERM));
  EXPECT_FALSE(sigismember(&after, SIGHUP)) << "pollkill's mask is restored after the spawn";
}

// An init outlives the exec of the task, so it never runs in pollkill's memory.
TEST(SpawnInit, GivesVforkWayToClone3) {
  SubreaperScope scope;
  SpawnRequest request{{"/bin/true"}, {}, -1, SpawnMethod::vfork};
  request.subreaper_init = true;
  Spawned spawned = spawn(request);
  ASSERT_FALSE(spawned.failure) << spawned.failure->step;
  EXPECT_EQ(spawned.method, SpawnMethod::clone3);
  EXPECT_EQ(spawned.child.reap().exit_code, 0);
}

TEST(SpawnMethodChoice, FollowsPollkillSpawnMethod) {
  const char* saved = ::getenv("POLLKILL_SPAWN_METHOD");
  const std::string saved_value = saved ? saved : "";
  ::setenv("POLLKILL_SPAWN_METHOD", "fork", 1);
  EXPECT_EQ(default_spawn_method(), SpawnMethod::fork);
  ::setenv("POLLKILL_SPAWN_METHOD", "clone3", 1);
  EXPECT_EQ(default_spawn_method(), SpawnMethod::clone3);
  ::unsetenv("POLLKILL_SPAWN_METHOD");
#if defined(__x86_64__)
  EXPECT_EQ(default_spawn_method(), SpawnMethod::vfork);
#else
  EXPECT_EQ(default_spawn_method(), SpawnMethod::clone3);
#endif
  if (saved) ::setenv("POLLKILL_SPAWN_METHOD", saved_value.c_str(), 1);
}

INSTANTIATE_TEST_SUITE_P(Methods, SpawnVia,
                         ::testing::Values(SpawnMethod::vfork, SpawnMethod::clone3,
                                           SpawnMethod::fork),
                         [](const ::testing::TestParamInfo<SpawnMethod>& method) {
                           return std::string(spawn_method_name(method.param));
                         });

}  // namespace
}  // namespace pollkill
