// TaskWatch, one attempt's state machine, driven by a fake container and a fake clock: the
// verdicts, the grace then the kill, orphans killed or waited for, a second cancellation,
// survivors given up on after kKillWait, the output limit, and what a sample reads. The main
// process is a real child of this test (so reaping is the real thing); the fake container's
// kill ends it, as cgroup.kill would.
#include "pollkill/task.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <vector>

namespace pollkill {
namespace {

class FakeClock final : public WatchClock {
 public:
  Clock::time_point now() const override { return now_; }
  void arm_deadline(Duration after) override { deadlines.push_back(after); }
  void watch_capture(int fd) override { captures.push_back(fd); }
  void advance(Duration d) { now_ += d; }

  std::vector<Duration> deadlines;  ///< every arm_deadline, in order
  std::vector<int> captures;        ///< every watch_capture, in order

 private:
  Clock::time_point now_ = Clock::time_point() + std::chrono::hours(1);
};

// What the fake container was asked and what it answers. Shared with the test: the watch
// owns the container.
struct FakeState {
  pid_t main = -1;             ///< the real main process, killed by kill_all
  std::vector<int> pids;       ///< what pids(), signal_all and kill_all report
  bool populated = true;       ///< what populated() answers
  bool kill_empties = true;    ///< kill_all leaves nothing (else: survivors)
  bool scans = false;          ///< membership by scanning (subreaper mode)
  std::uint64_t cpu_usec = 0;  ///< cumulative CPU
  int cpu_reads = 0;           ///< how often the CPU was read
  std::vector<int> signals;    ///< signal_all's signals, in order
  int kills = 0;               ///< kill_all calls
  std::vector<UnkillableProcess> survivors;
  std::uint64_t cpu_some_usec = 0;     ///< cpu.pressure some total
  std::uint64_t memory_full_usec = 0;  ///< memory.pressure full total
  int thread_reads = 0, cpu_pressure_reads = 0, memory_pressure_reads = 0;
};

class FakeContainer final : public TaskContainer {
 public:
  explicit FakeContainer(std::shared_ptr<FakeState> state) : s_(std::move(state)) {}
  std::uint64_t cpu_usage_usec() override {
    ++s_->cpu_reads;
    return s_->cpu_usec;
  }
  std::vector<int> pids() override { return s_->pids; }
  bool populated() override { return s_->populated; }
  std::vector<int> signal_all(int sig) override {
    s_->signals.push_back(sig);  // a task that ignores SIGTERM: nothing happens
    return s_->pids;
  }
  std::vector<int> kill_all() override {
    ++s_->kills;
    if (s_->main > 0) ::kill(s_->main, SIGKILL);
    if (s_->kill_empties) s_->populated = false;
    return s_->pids;
  }
  void sample() override {}
  void fill_usage(Result& result) override {
    result.cpu_user_s = static_cast<double>(s_->cpu_usec) / 1e6;
  }
  std::vector<UnkillableProcess> survivors() override { return s_->survivors; }
  bool scans() const override { return s_->scans; }
  std::vector<pid_t> threads() override {
    ++s_->thread_reads;
    return {};
  }
  std::optional<std::uint64_t> cpu_pressure_some_usec() override {
    ++s_->cpu_pressure_reads;
    return s_->cpu_some_usec;
  }
  std::optional<std::uint64_t> memory_full_usec() override {
    ++s_->memory_pressure_reads;
    return s_->memory_full_usec;
  }
  EvidenceTarget evidence_target(pid_t main_pid) override {
    EvidenceTarget target;
    target.main_pid = main_pid;
    return target;
  }

 private:
  std::shared_ptr<FakeState> s_;
};

// A real main process: `exit_code` >= 0 exits at once with it, else it waits to be killed.
Child start_main(int exit_code) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (exit_code >= 0) ::_exit(exit_code);
    for (;;) ::pause();
  }
  EXPECT_GT(pid, 0);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  EXPECT_TRUE(pidfd);
  return Child(pid, std::move(pidfd));
}

// Waits (up to 10 s) until the main process has exited, as the loop's pidfd would tell.
bool exited(const TaskWatch& watch) {
  pollfd p{watch.pidfd(), POLLIN, 0};
  return ::poll(&p, 1, 10000) == 1;
}

class TaskWatchTest : public ::testing::Test {
 protected:
  void SetUp() override { policy_.watchdog.poll_interval = Duration(250); }

  // Starts the watch on a main process (see start_main) whose pid the fake reports.
  void start(int exit_code) {
    Child child = start_main(exit_code);
    state_->main = child.pid();
    state_->pids = {child.pid()};
    start_ = clock_.now();
    watch_ = std::make_unique<TaskWatch>(
        policy_, std::move(child),
        [this](Child&) { return std::make_unique<FakeContainer>(state_); }, clock_, start_);
  }
  // Samples every poll interval for `how_long` of fake time; before each sample `each`
  // (if any) moves the fake's counters on by one interval's worth.
  void run_for(Duration how_long, const std::function<void()>& each = {}) {
    for (Duration t{0}; t < how_long; t += policy_.watchdog.poll_interval) {
      clock_.advance(policy_.watchdog.poll_interval);
      if (each) each();
      watch_->on_sample(clock_.now());
    }
  }
  // The loop's view of a kill that emptied the container: the pidfd readable, then
  // cgroup.events reporting "populated 0".
  void main_exited_and_emptied() {
    ASSERT_TRUE(exited(*watch_));
    watch_->on_main_exit();
    watch_->on_events();
  }
  Result result() {
    Result r;
    watch_->fill(r, Outcome{}, start_);
    return r;
  }

  Policy policy_;
  FakeClock clock_;
  std::shared_ptr<FakeState> state_ = std::make_shared<FakeState>();
  Clock::time_point start_;
  std::unique_ptr<TaskWatch> watch_;
};

TEST_F(TaskWatchTest, HungThenSigtermThenKillAfterTheGrace) {
  policy_.watchdog.hang_after = Duration(1000);
  policy_.watchdog.kill_grace = Duration(3000);
  start(-1);
  run_for(Duration(750));
  EXPECT_TRUE(state_->signals.empty()) << "no verdict before hang_after";
  run_for(Duration(250));
  EXPECT_EQ(state_->signals, (std::vector<int>{SIGTERM}));
  EXPECT_EQ(state_->kills, 0) << "the grace comes first";
  EXPECT_EQ(clock_.deadlines, (std::vector<Duration>{Duration(3000)}));
  run_for(Duration(1000));  // samples during the grace decide nothing new
  EXPECT_EQ(state_->signals.size(), 1u);
  clock_.advance(Duration(2000));
  watch_->on_deadline();  // the grace is over
  EXPECT_EQ(state_->kills, 1);
  EXPECT_EQ(clock_.deadlines.back(), kKillWait);
  main_exited_and_emptied();
  EXPECT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::hung);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.processes_reaped, 1u);
  EXPECT_DOUBLE_EQ(r.wall_s, 4.0) << "the wall time is the clock's";
}

TEST_F(TaskWatchTest, CpuTimeWithoutGraceKillsAtOnce) {
  policy_.limits.cpu_time = Duration(1000);
  policy_.watchdog.kill_grace = Duration(0);
  start(-1);
  for (int i = 0; i < 3 && state_->kills == 0; ++i) {
    state_->cpu_usec += 400000;
    run_for(Duration(250));
  }
  EXPECT_EQ(state_->kills, 1);
  EXPECT_TRUE(state_->signals.empty()) << "kill_grace 0: no SIGTERM";
  main_exited_and_emptied();
  ASSERT_TRUE(watch_->finished());
  EXPECT_EQ(result().status, Status::cpu_limit);
}

TEST_F(TaskWatchTest, WallTimeIsTimeout) {
  policy_.limits.wall_time = Duration(1000);
  policy_.watchdog.kill_grace = Duration(0);
  start(-1);
  run_for(Duration(1000));
  main_exited_and_emptied();
  ASSERT_TRUE(watch_->finished());
  EXPECT_EQ(result().status, Status::timeout);
}

// pollkill stopped (SIGSTOP, a starved machine) across the wall time: when it runs again the
// loop reports the wall timer and the main process's end in one wait, the timer first. The
// task ended before the verdict: it keeps its own status.
TEST_F(TaskWatchTest, ATaskThatEndedBeforeALateVerdictKeepsItsStatus) {
  policy_.limits.wall_time = Duration(1000);
  policy_.watchdog.kill_grace = Duration(0);
  start(0);
  ASSERT_TRUE(exited(*watch_));  // ended, but the loop has not said so yet
  state_->populated = false;     // and nothing of it is left
  run_for(Duration(2000));
  EXPECT_EQ(state_->kills, 0);
  EXPECT_TRUE(state_->signals.empty());
  watch_->on_main_exit();  // the pidfd's event of the same wait, now without news
  watch_->on_events();
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(TaskWatchTest, ATaskThatEndedBeforeTheOutputCountKeepsItsStatus) {
  policy_.limits.output = 100;
  policy_.watchdog.kill_grace = Duration(0);
  start(3);
  ASSERT_TRUE(exited(*watch_));
  state_->populated = false;
  watch_->on_output(1000);  // what the relay read after the end
  EXPECT_EQ(state_->kills, 0);
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::failed);
  EXPECT_EQ(r.exit_code, 3);
}

TEST_F(TaskWatchTest, OrphansLeftByTheMainProcessAreKilled) {
  start(0);
  state_->pids = {4242};  // what the main process left behind
  ASSERT_TRUE(exited(*watch_));
  watch_->on_main_exit();
  EXPECT_EQ(state_->kills, 1);
  EXPECT_FALSE(watch_->finished()) << "until the container reports empty";
  EXPECT_EQ(clock_.deadlines, (std::vector<Duration>{kKillWait}));
  watch_->on_events();  // cgroup.events: populated 0
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.processes_reaped, 1u);
}

TEST_F(TaskWatchTest, OrphansWaitIsWatchedUntilTheContainerEmpties) {
  policy_.watchdog.orphans = OrphanPolicy::wait;
  start(0);
  state_->pids = {4242};
  ASSERT_TRUE(exited(*watch_));
  watch_->on_main_exit();
  EXPECT_EQ(state_->kills, 0);
  run_for(Duration(1000));
  EXPECT_FALSE(watch_->finished());
  state_->populated = false;
  watch_->on_events();
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::ok);
  EXPECT_EQ(r.processes_reaped, 0u);
}

TEST_F(TaskWatchTest, ASecondCancelSkipsTheGrace) {
  policy_.watchdog.kill_grace = Duration(20000);
  start(-1);
  watch_->cancel(SIGINT);
  EXPECT_EQ(state_->signals, (std::vector<int>{SIGTERM}));
  EXPECT_EQ(state_->kills, 0);
  watch_->cancel(SIGINT);
  EXPECT_EQ(state_->kills, 1);
  main_exited_and_emptied();
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::cancelled);
  EXPECT_EQ(r.cancel_signal, SIGINT);
  EXPECT_EQ(r.signal, SIGKILL);
}

TEST_F(TaskWatchTest, SurvivorsAreGivenUpOnAfterTheKillWait) {
  start(0);
  state_->kill_empties = false;  // a process in uninterruptible sleep
  state_->pids = {4242};
  state_->survivors = {{4242, "D (disk sleep)", "stuck"}};
  ASSERT_TRUE(exited(*watch_));
  watch_->on_main_exit();
  watch_->on_events();
  EXPECT_FALSE(watch_->finished());
  clock_.advance(kKillWait);
  watch_->on_deadline();
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  ASSERT_EQ(r.unkillable.size(), 1u);
  EXPECT_EQ(r.unkillable[0].pid, 4242);
  EXPECT_EQ(r.unkillable[0].state, "D (disk sleep)");
  EXPECT_EQ(r.unkillable[0].comm, "stuck");
}

TEST_F(TaskWatchTest, OutputBeyondTheLimitStopsTheTask) {
  policy_.limits.output = 100;
  policy_.watchdog.kill_grace = Duration(0);
  start(-1);
  watch_->on_output(100);
  EXPECT_EQ(state_->kills, 0) << "at the limit is still within it";
  watch_->on_output(101);
  EXPECT_EQ(state_->kills, 1);
  main_exited_and_emptied();
  ASSERT_TRUE(watch_->finished());
  Result r = result();
  EXPECT_EQ(r.status, Status::output_limit);
  EXPECT_NE(r.reason.find("100B"), std::string::npos) << r.reason;
}

TEST_F(TaskWatchTest, ASampleReadsTheCpuOnlyWhenARuleOrTheContainerNeedsIt) {
  start(-1);
  run_for(Duration(1000));
  EXPECT_EQ(state_->cpu_reads, 0) << "no CPU rule: a sample of a cgroup costs nothing";
  watch_.reset();
  state_ = std::make_shared<FakeState>();
  state_->scans = true;  // subreaper mode's tree: scanned at every sample
  start(-1);
  run_for(Duration(1000));
  EXPECT_EQ(state_->cpu_reads, 4);
}

TEST(SampleReadsTest, EachRuleReadsWhatItNeedsAndNoMore) {
  struct Case {
    const char* name;
    void (*set)(Policy&);
    bool scans;
    SampleReads want;  // cpu, progress, cpu_wait, memory_full
  };
  const Case cases[] = {
      {"nothing", [](Policy&) {}, false, {false, false, false, false}},
      {"nothing, scanned tree", [](Policy&) {}, true, {true, false, false, false}},
      {"wall_time",
       [](Policy& p) { p.limits.wall_time = Duration(1000); },
       false,
       {false, false, false, false}},
      {"cpu_time",
       [](Policy& p) { p.limits.cpu_time = Duration(1000); },
       false,
       {true, false, false, false}},
      {"hang_after",
       [](Policy& p) { p.watchdog.hang_after = Duration(1000); },
       false,
       {true, true, true, false}},
      {"spin_after",
       [](Policy& p) { p.watchdog.spin_after = Duration(1000); },
       false,
       {true, true, true, false}},
      {"thrash_after",
       [](Policy& p) { p.watchdog.thrash_after = Duration(1000); },
       false,
       {false, false, false, true}},
  };
  for (const Case& c : cases) {
    Policy policy;
    c.set(policy);
    const SampleReads got = SampleReads::for_policy(policy, c.scans);
    EXPECT_EQ(got.cpu, c.want.cpu) << c.name;
    EXPECT_EQ(got.progress, c.want.progress) << c.name;
    EXPECT_EQ(got.cpu_wait, c.want.cpu_wait) << c.name;
    EXPECT_EQ(got.memory_full, c.want.memory_full) << c.name;
  }
}

TEST_F(TaskWatchTest, PressureAndThreadsAreReadOnlyForTheRulesThatUseThem) {
  policy_.limits.cpu_time = Duration(60000);
  start(-1);
  run_for(Duration(1000));
  EXPECT_EQ(state_->thread_reads + state_->cpu_pressure_reads + state_->memory_pressure_reads, 0)
      << "cpu_time needs neither the CPU waited for nor memory.pressure";
  watch_.reset();

  state_ = std::make_shared<FakeState>();
  policy_.limits.cpu_time.reset();
  policy_.watchdog.hang_after = Duration(7000);  // short enough that no sample is skipped
  start(-1);
  run_for(Duration(1000));
  EXPECT_EQ(state_->thread_reads, 5) << "the start's baseline and 4 samples";
  EXPECT_EQ(state_->cpu_pressure_reads, 5);
  EXPECT_EQ(state_->memory_pressure_reads, 0);
  watch_.reset();

  state_ = std::make_shared<FakeState>();
  policy_.watchdog.hang_after.reset();
  policy_.watchdog.thrash_after = Duration(60000);
  start(-1);
  run_for(Duration(1000));
  EXPECT_EQ(state_->thread_reads + state_->cpu_pressure_reads, 0);
  EXPECT_EQ(state_->memory_pressure_reads, 5);
}

// A spinner that gets 0.3 CPU on a saturated machine and waits the rest: its cpu.pressure
// says so, and the watch hands that to the watchdog as the CPU wanted.
TEST_F(TaskWatchTest, TheCpuWaitedForMakesAStarvedSpinnerSpinning) {
  policy_.watchdog.spin_after = Duration(1000);
  policy_.watchdog.kill_grace = Duration(0);
  start(-1);
  run_for(Duration(1500), [this] {
    state_->cpu_usec += 75'000;        // 0.3 of the 250ms interval
    state_->cpu_some_usec += 175'000;  // waiting for a CPU the rest of it
  });
  ASSERT_EQ(state_->kills, 1);
  main_exited_and_emptied();
  Result r = result();
  EXPECT_EQ(r.status, Status::spinning);
  EXPECT_NE(r.reason.find("0.30 CPU received, 1.00 wanted"), std::string::npos) << r.reason;
  EXPECT_FALSE(r.evidence) << "no evidence destination: none taken";
  EXPECT_TRUE(clock_.captures.empty());
}

TEST_F(TaskWatchTest, MemoryFullStallOverThrashAfterIsThrashing) {
  policy_.watchdog.thrash_after = Duration(1000);
  policy_.watchdog.kill_grace = Duration(0);
  start(-1);
  run_for(Duration(750), [this] { state_->memory_full_usec += 125'000; });
  EXPECT_EQ(state_->kills, 0) << "no verdict before thrash_after has passed";
  run_for(Duration(500), [this] { state_->memory_full_usec += 125'000; });
  ASSERT_EQ(state_->kills, 1);
  main_exited_and_emptied();
  EXPECT_EQ(result().status, Status::thrashing);
}

// hang_after 16 s at 250 ms: once a reading finds the task quiet, the next comes a sixteenth
// of hang_after later (1 s, every 4th sample), and the verdict is at most that late.
TEST_F(TaskWatchTest, AQuietTaskIsReadOnlyAsOftenAsItsThresholdNeeds) {
  policy_.watchdog.hang_after = Duration(16000);
  start(-1);
  run_for(Duration(15750));
  EXPECT_TRUE(state_->signals.empty()) << "no verdict before hang_after";
  EXPECT_EQ(state_->cpu_reads, 2 + 15) << "0.25 s, 0.5 s, then every second: 1.5 ... 15.5 s";
  run_for(Duration(1000));
  EXPECT_EQ(state_->signals, (std::vector<int>{SIGTERM})) << "due at 16 s, seen at 16.5 s";
}

// CPU used somewhere in a stretch that was not read interval by interval: which intervals is
// not known, so the streak starts again after it; the verdict comes later than reading every
// interval would give (at most a sixteenth of hang_after), never earlier.
TEST_F(TaskWatchTest, CpuUsedBetweenReadingsRestartsTheStreak) {
  policy_.watchdog.hang_after = Duration(16000);
  start(-1);
  run_for(Duration(3000));
  state_->cpu_usec += 5000;  // a burst at 3 s, found by the reading at 3.5 s
  run_for(Duration(16250));
  EXPECT_TRUE(state_->signals.empty())
      << "every interval read would hang at 19 s; the streak restarts at 3.5 s: not at 19.25 s";
  run_for(Duration(1000));
  EXPECT_EQ(state_->signals, (std::vector<int>{SIGTERM}));
}

// What would see a rule late or miss progress keeps every sample read: cpu_time's overrun,
// a heartbeat file written from outside the task, thresholds shorter than 32 intervals.
TEST_F(TaskWatchTest, EverySampleReadsWhereAStrideWouldMissSomething) {
  policy_.watchdog.hang_after = Duration(16000);
  policy_.limits.cpu_time = Duration(60000);
  start(-1);
  run_for(Duration(2000));
  EXPECT_EQ(state_->cpu_reads, 8);
  watch_.reset();
  policy_.limits.cpu_time.reset();
  policy_.watchdog.hang_after = Duration(7750);  // a sixteenth is under two intervals
  state_ = std::make_shared<FakeState>();
  start(-1);
  run_for(Duration(2000));
  EXPECT_EQ(state_->cpu_reads, 8);
}

}  // namespace
}  // namespace pollkill
