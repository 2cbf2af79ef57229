// The /proc tree tracker on a fake /proc directory and the pure helpers. The mode decision is
// in mode_test.cpp.
#include "pollkill/proctree.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace pollkill {
namespace {

namespace fs = std::filesystem;

// "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
//  stime cutime cstime priority nice threads itrealvalue starttime vsize ..."
std::string stat_line(int pid, const std::string& comm, char state, int ppid, int utime, int stime,
                      int cutime, int cstime, unsigned long long start) {
  return std::to_string(pid) + " (" + comm + ") " + state + " " + std::to_string(ppid) +
         " 1 1 0 -1 4194304 100 0 0 0 " + std::to_string(utime) + " " + std::to_string(stime) +
         " " + std::to_string(cutime) + " " + std::to_string(cstime) + " 20 0 1 0 " +
         std::to_string(start) + " 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
}

class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("pk-fakeproc-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "self");  // not a pid: skipped
  }
  void TearDown() override { fs::remove_all(root_); }
  void add(int pid, const std::string& comm, char state, int ppid, int utime = 0, int stime = 0,
           int cutime = 0, int cstime = 0, unsigned long long start = 1000) {
    fs::create_directories(root_ / std::to_string(pid));
    std::ofstream(root_ / std::to_string(pid) / "stat")
        << stat_line(pid, comm, state, ppid, utime, stime, cutime, cstime, start);
  }
  fs::path root_;
};

TEST(ProcStat, ParsesTheFieldsAfterTheLastParenthesis) {
  auto st = parse_proc_stat(stat_line(42, "we (ird) name", 'S', 7, 10, 20, 30, 40, 123456));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, 42);
  EXPECT_EQ(st->ppid, 7);
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->utime, 10u);
  EXPECT_EQ(st->stime, 20u);
  EXPECT_EQ(st->cutime, 30u);
  EXPECT_EQ(st->cstime, 40u);
  EXPECT_EQ(st->starttime, 123456u);
}

TEST(ProcStat, MalformedTextIsRejected) {
  for (const char* text : {"", "42", "42 (x", "42 (x) S", "x (y) S 1 1 1 0 -1 0 0 0 0 0 1 2 3 4",
                           "42 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 3"}) {
    EXPECT_FALSE(parse_proc_stat(text)) << text;
  }
}

TEST(ProcStat, RealOwnStatParses) {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto st = parse_proc_stat(text);
  ASSERT_TRUE(st) << text;
  EXPECT_EQ(st->pid, ::getpid());
  EXPECT_EQ(st->ppid, ::getppid());
}

TEST(Descendants, FollowsParentChainsIncludingReparentedOrphans) {
  std::vector<ProcStat> snapshot = {
      {1, 0, 'S'},     {100, 1, 'S'},   {200, 100, 'S'}, {201, 100, 'S'},
      {300, 200, 'S'}, {301, 100, 'S'},  // an orphan reparented to the subreaper 100
      {400, 1, 'S'},                     // someone else's
      {401, 400, 'S'},
  };
  EXPECT_EQ(descendants_of(snapshot, 100), (std::vector<pid_t>{100, 200, 201, 300, 301}));
  EXPECT_EQ(descendants_of(snapshot, 400), (std::vector<pid_t>{400, 401}));
  EXPECT_TRUE(descendants_of(snapshot, 999).empty());
}

TEST(TreeCpu, SumsOwnAndWaitedForChildrenTicks) {
  std::vector<ProcStat> members = {{1, 0, 'S', 10, 5, 100, 50}, {2, 1, 'Z', 20, 10, 0, 0}};
  // (10+5+100+50) + (20+10) = 195 ticks at 100 Hz = 1.95 s
  EXPECT_EQ(tree_cpu_usec(members, 100), 1950000u);
  EXPECT_EQ(tree_cpu_usec(members, 0), 0u);
}

TEST_F(FakeProc, ScanFindsTheTreeAndItsCpu) {
  add(1, "init", 'S', 0);
  add(10, "pk-init", 'S', 1, 1, 1, 8, 0);
  add(11, "task", 'R', 10, 100, 20);
  add(12, "child", 'Z', 11, 30, 0);
  add(13, "orphan", 'S', 10, 5, 5);
  add(50, "other", 'R', 1, 900, 900);
  ProcTree tree(10, ProcDir(root_));
  auto members = tree.scan();
  EXPECT_EQ(members.size(), 4u);
  const long hz = ::sysconf(_SC_CLK_TCK);
  EXPECT_EQ(tree.cpu_usage_usec(), static_cast<std::uint64_t>(1 + 1 + 8 + 120 + 30 + 10) * 1000000 /
                                       static_cast<std::uint64_t>(hz));
  EXPECT_EQ(tree.cpu_user_usec() + tree.cpu_system_usec(), tree.cpu_usage_usec());
  // The init and the zombie are not live members.
  EXPECT_EQ(tree.live_members(), (std::vector<pid_t>{11, 13}));
}

// One sample round reads /proc once for every tree: a change after the round's snapshot is
// seen at the next round; scan() (kills) always reads afresh.
TEST_F(FakeProc, TreesShareOneSnapshotPerSampleRound) {
  add(10, "pk-init", 'S', 1);
  add(11, "task", 'R', 10, 100, 0);
  add(20, "pk-init", 'S', 1);
  add(21, "task", 'R', 20, 100, 0);
  ProcTree first(10, ProcDir(root_)), second(20, ProcDir(root_));
  {
    SharedProcSnapshot round;
    first.scan_for_sample();
    add(21, "task", 'R', 20, 300, 0);  // after the round's snapshot
    second.scan_for_sample();
    EXPECT_EQ(second.cpu_usage_usec(), first.cpu_usage_usec()) << "the round's snapshot";
    EXPECT_EQ(second.scan().size(), 2u);
    EXPECT_GT(second.cpu_usage_usec(), first.cpu_usage_usec()) << "scan() reads afresh";
  }
  add(11, "task", 'R', 10, 500, 0);
  const auto before = first.cpu_usage_usec();
  first.scan_for_sample();  // no round open: a fresh read
  EXPECT_GT(first.cpu_usage_usec(), before);
}

TEST_F(FakeProc, CpuNeverDecreasesWhenAProcessVanishesUnwaited) {
  add(10, "pk-init", 'S', 1);
  add(11, "task", 'R', 10, 500, 0);
  ProcTree tree(10, ProcDir(root_));
  tree.scan();
  const auto before = tree.cpu_usage_usec();
  EXPECT_GT(before, 0u);
  fs::remove_all(root_ / "11");  // reaped by a parent that does not wait: its time is lost
  tree.scan();
  EXPECT_EQ(tree.cpu_usage_usec(), before);
}

TEST_F(FakeProc, OrphansOfADeadRootAreFoundByPidAndStartTime) {
  add(10, "pk-init", 'S', 1);
  add(11, "task", 'S', 10, 0, 0, 0, 0, 5000);
  add(12, "daemon", 'S', 11, 0, 0, 0, 0, 5001);
  ProcTree tree(10, ProcDir(root_));
  tree.scan();
  // The init died (killed from outside): its children went to pollkill (pid 77 here).
  fs::remove_all(root_ / "10");
  add(11, "task", 'S', 77, 0, 0, 0, 0, 5000);
  add(12, "reused", 'S', 77, 0, 0, 0, 0, 9999);  // pid 12 is now another process
  EXPECT_EQ(tree.known_orphans_of(77), (std::vector<pid_t>{11}));
}

TEST_F(FakeProc, UnreadableOrGarbageEntriesAreSkipped) {
  add(10, "pk-init", 'S', 1);
  fs::create_directories(root_ / "11");
  std::ofstream(root_ / "11" / "stat") << "garbage";
  fs::create_directories(root_ / "12");  // no stat file: exited while scanning
  EXPECT_EQ(ProcDir(root_).snapshot().size(), 1u);
}

TEST_F(FakeProc, DescribeProcessNamesTheStateAndTheCommand) {
  add(31, "stuck (in) D", 'D', 1);
  add(32, "sleeper", 'S', 1);
  add(33, "odd", 'W', 1);  // a letter without a name is shown as it is
  UnkillableProcess stuck = describe_process(31, ProcDir(root_));
  EXPECT_EQ(stuck.pid, 31);
  EXPECT_EQ(stuck.comm, "stuck (in) D");
  EXPECT_EQ(stuck.state, "D (disk sleep)");
  EXPECT_EQ(describe_process(32, ProcDir(root_)).state, "S (sleeping)");
  EXPECT_EQ(describe_process(33, ProcDir(root_)).state, "W");
  UnkillableProcess gone = describe_process(34, ProcDir(root_));
  EXPECT_EQ(gone.pid, 34);
  EXPECT_EQ(gone.state, "");
  EXPECT_EQ(gone.comm, "");
}

}  // namespace
}  // namespace pollkill
