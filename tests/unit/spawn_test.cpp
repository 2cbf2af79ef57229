#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
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

}  // namespace
}  // namespace pollkill
