// Evidence capture against the real kernel: programs stuck in named functions, in a cgroup of
// the test's own (frozen with cgroup.freeze) and as a bare process tree stopped with SIGSTOP
// (subreaper mode); a real Gmsh spinning in its parser; the capture process with its files,
// its budget and the state it leaves the task in.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "cgroup_fixtures.h"
#include "harness.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/evidence.h"
#include "pollkill/evidence_capture.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// The budget for a capture in these tests: generous, since the VM is emulated and a loaded
// host is slow; what is checked is the content, not the speed (bench/evidence measures that).
constexpr std::chrono::seconds kBudget{20};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// "S", "T", "t" ...: the state letter of a thread from /proc.
char thread_state(pid_t tid) {
  const std::string stat = read_text("/proc/" + std::to_string(tid) + "/stat");
  const auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

int tracer_of(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("TracerPid:", 0) == 0) return std::stoi(line.substr(10));
  }
  return -1;
}

bool cgroup_frozen(const fs::path& cg) {
  return read_text(cg / "cgroup.events").find("frozen 1") != std::string::npos;
}

const ThreadEvidence* find_thread(const Evidence& e, const std::string& comm) {
  for (const auto& p : e.processes) {
    for (const auto& t : p.threads) {
      if (t.comm == comm) return &t;
    }
  }
  return nullptr;
}

bool stack_has(const ThreadEvidence& t, const std::string& function) {
  for (const auto& f : t.user_stack) {
    if (short_function_name(f.function) == function) return true;
  }
  return false;
}

std::string stacks(const Evidence& e) {
  return format_text(e);
}

// A request for the task in `dir` (which must outlive the capture).
EvidenceRequest cgroup_request(const CgroupDir& dir, pid_t main_pid, Status status,
                               const fs::path& out = {}) {
  EvidenceRequest request;
  request.target.cgroup = &dir;
  request.target.main_pid = main_pid;
  request.status = status;
  request.reason = "test";
  request.dir = out;
  return request;
}

Evidence capture_in_cgroup(TestCgroup& cg, pid_t main_pid, Status status) {
  const CgroupDir dir = CgroupDir::open(cg.path());
  const EvidenceRequest request = cgroup_request(dir, main_pid, status);
  Evidence e = capture_evidence(request, SteadyClock::now() + kBudget);
  // Left frozen, and no longer traced: the threads went back to the freezer. cgroup.events
  // says "frozen 0" while a thread is in its ptrace stop, and again "frozen 1" once every
  // detached thread has re-entered the freezer, which takes a moment under emulation.
  EXPECT_TRUE(e.frozen) << stacks(e);
  EXPECT_TRUE(wait_until([&] { return cgroup_frozen(cg.path()); }, Seconds(10)));
  for (const auto& p : e.processes) {
    for (const auto& t : p.threads) EXPECT_EQ(tracer_of(t.tid), 0) << t.tid;
  }
  return e;
}

TEST(Evidence, HangInANamedFunction) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "hang"});
  const Evidence e = capture_in_cgroup(cg, pid, Status::hung);
  EXPECT_EQ(e.stack_signature, "pk_stuck: stuck_in_read < main < __libc_start_call_main")
      << stacks(e);
  EXPECT_EQ(e.signature_tid, pid);
  ASSERT_EQ(e.processes.size(), 1u);
  EXPECT_EQ(e.processes[0].cmdline, (std::vector<std::string>{POLLKILL_STUCK, "hang"}));
  const ThreadEvidence& main = e.processes[0].threads.at(0);
  EXPECT_EQ(main.tid, pid);
  EXPECT_EQ(main.state, 'S');
  EXPECT_EQ(main.syscall, SYS_read);
  // Read before the freeze: the pipe read, not the freezer.
  EXPECT_NE(main.wchan, "do_freezer_trap") << stacks(e);
  if (::geteuid() == 0) {
    ASSERT_FALSE(main.kernel_stack.empty()) << main.kernel_stack_missing;
    EXPECT_NE(main.kernel_stack.front().find("pipe_read"), std::string::npos) << stacks(e);
  }
  // Symbols and lines from the -g build.
  bool found = false;
  for (const auto& f : main.user_stack) {
    if (f.function == "stuck_in_read") {
      found = true;
      EXPECT_NE(f.file.find("stuck.c"), std::string::npos) << f.file;
      EXPECT_GT(f.line, 0);
      EXPECT_EQ(fs::path(f.module).filename(), "pk_stuck");
    }
  }
  EXPECT_TRUE(found) << stacks(e);
  // The task is still whole: thawed, it goes back to its read.
  cg.freeze(false);
  EXPECT_TRUE(wait_until([&] { return thread_state(pid) == 'S'; }, Seconds(10)));
}

TEST(Evidence, SpinInANamedFunction) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "spin"});
  const Evidence e = capture_in_cgroup(cg, pid, Status::spinning);
  EXPECT_EQ(e.stack_signature, "pk_stuck: spin_here < main < __libc_start_call_main") << stacks(e);
}

TEST(Evidence, HangInOneThreadOfSeveral) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "threads", "4"});
  const Evidence e = capture_in_cgroup(cg, pid, Status::hung);
  ASSERT_EQ(e.processes.size(), 1u);
  EXPECT_EQ(e.processes[0].threads.size(), 6u) << stacks(e);
  const ThreadEvidence* stuck = find_thread(e, "stuck-one");
  ASSERT_NE(stuck, nullptr) << stacks(e);
  EXPECT_TRUE(stack_has(*stuck, "stuck_in_read")) << stacks(e);
  EXPECT_TRUE(stack_has(*stuck, "run_worker")) << stacks(e);
  for (int i = 0; i < 4; ++i) {
    const ThreadEvidence* idle = find_thread(e, "idle-" + std::to_string(i));
    ASSERT_NE(idle, nullptr) << stacks(e);
    EXPECT_TRUE(stack_has(*idle, "idle_worker")) << stacks(e);
  }
  // A hang is signed by the main thread: here it waits for its threads.
  EXPECT_EQ(e.stack_signature.rfind("pk_stuck: wait_for_threads < run_threads < main", 0), 0u)
      << e.stack_signature;
}

TEST(Evidence, SpinInOneThreadOfSeveralSignsWithTheBusyThread) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "spinner", "3"});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // CPU time to tell it by
  const Evidence e = capture_in_cgroup(cg, pid, Status::spinning);
  const ThreadEvidence* spinner = find_thread(e, "spinner");
  ASSERT_NE(spinner, nullptr) << stacks(e);
  EXPECT_EQ(e.signature_tid, spinner->tid) << stacks(e);
  EXPECT_EQ(e.stack_signature.rfind("pk_stuck: spin_here < run_worker", 0), 0u)
      << e.stack_signature;
}

TEST(Evidence, HangInASetsidChild) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "setsid"});
  const Evidence e = capture_in_cgroup(cg, pid, Status::hung);
  ASSERT_EQ(e.processes.size(), 2u) << stacks(e);
  const ProcessEvidence& child = e.processes[0].pid == pid ? e.processes[1] : e.processes[0];
  EXPECT_EQ(child.ppid, pid);
  EXPECT_TRUE(stack_has(child.threads.at(0), "stuck_in_read")) << stacks(e);
  // The parent waits in wait4 for it: the signature follows to the child.
  EXPECT_EQ(e.signature_tid, child.pid) << stacks(e);
  EXPECT_EQ(e.stack_signature, "pk_stuck: stuck_in_read < main < __libc_start_call_main")
      << stacks(e);
}

// A process tree without a cgroup, as in subreaper mode: `sh` stands for pollkill's per-task
// init (the root, left out of the evidence), the task below it.
class ProcessTree {
 public:
  explicit ProcessTree(const std::vector<std::string>& task) {
    std::string command = "exec >/dev/null; ";
    for (const auto& word : task) command += "'" + word + "' ";
    command += "& wait";
    root_ = ::fork();
    if (root_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~ProcessTree() {
    for (pid_t pid : members()) ::kill(pid, SIGKILL);
    ::kill(root_, SIGKILL);
    ::waitpid(root_, nullptr, 0);
  }
  pid_t root() const { return root_; }
  // The processes below the root, from /proc (children of the root and theirs).
  std::vector<pid_t> members() const {
    std::vector<pid_t> out{root_};
    for (size_t i = 0; i < out.size(); ++i) {
      const std::string children = read_text("/proc/" + std::to_string(out[i]) + "/task/" +
                                             std::to_string(out[i]) + "/children");
      std::istringstream in(children);
      for (pid_t pid; in >> pid;) out.push_back(pid);
    }
    out.erase(out.begin());
    return out;
  }

 private:
  pid_t root_ = -1;
};

TEST(Evidence, SubreaperModeStopsTheTreeWithSigstop) {
  ProcessTree tree({POLLKILL_STUCK, "setsid"});
  ASSERT_TRUE(wait_until([&] { return tree.members().size() == 2; }, Seconds(30)));
  const std::vector<pid_t> members = tree.members();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the child in its read
  EvidenceRequest request;
  request.target.tree_root = tree.root();
  request.target.main_pid = members.front();
  request.status = Status::hung;
  const Evidence e = capture_evidence(request, SteadyClock::now() + kBudget);
  EXPECT_EQ(e.mode, "subreaper");
  EXPECT_TRUE(e.frozen) << stacks(e);
  ASSERT_EQ(e.processes.size(), 2u) << stacks(e);  // the root (init) is not the task's
  EXPECT_EQ(e.stack_signature, "pk_stuck: stuck_in_read < main < __libc_start_call_main")
      << stacks(e);
  // Untraced and stopped (T): a detached thread passes through R on its way back into the
  // group stop, which takes a moment under emulation. The root was not touched; SIGCONT lets
  // them run again.
  for (pid_t pid : members) {
    EXPECT_TRUE(wait_until([&] { return thread_state(pid) == 'T'; }, Seconds(10))) << pid;
    EXPECT_EQ(tracer_of(pid), 0) << pid;
  }
  EXPECT_NE(thread_state(tree.root()), 'T');
  thaw_target(request.target);
  for (pid_t pid : members) {
    EXPECT_TRUE(wait_until([&] { return thread_state(pid) == 'S'; }, Seconds(10))) << pid;
  }
}

TEST(Evidence, GmshSpinningInItsParser) {
  PK_REQUIRE_CGROUP2();
  if (::access("/usr/bin/gmsh", X_OK) != 0) GTEST_SKIP() << "gmsh is not installed";
  TempDir dir;
  // The loop must span lines: written on one line Gmsh ends it at once.
  std::ofstream(dir / "loop.geo") << "x = 0;\nFor i In {1:1000000000000}\nx = x + 1;\nEndFor\n";
  TestCgroup cg;
  const pid_t pid = cg.start({"/usr/bin/gmsh", "-0", (dir / "loop.geo").string()}, false);
  // In the parser once it said it reads the file (loading its libraries takes a while under
  // emulation), and then some CPU later.
  auto utime = [&] {
    const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    const auto close = stat.rfind(')');
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    for (int i = 0; i < 11 && in >> field; ++i) {
    }
    long ticks = 0;
    in >> ticks;
    return ticks;
  };
  ASSERT_TRUE(
      wait_until([&] { return cg.output(0).find("Reading '") != std::string::npos; }, Seconds(120)))
      << cg.output(0);
  const long reading = utime();
  ASSERT_TRUE(
      wait_until([&] { return utime() > reading + ::sysconf(_SC_CLK_TCK) / 2; }, Seconds(120)));
  const Evidence e = capture_in_cgroup(cg, pid, Status::spinning);
  std::printf("gmsh: %s (%.2fs)\n", e.stack_signature.c_str(), e.capture_s);
  EXPECT_EQ(e.stack_signature.rfind("gmsh: ", 0), 0u) << stacks(e);
  // Debian's gmsh keeps its symbols in libgmsh: the parser's frames are named.
  const ThreadEvidence& main = e.processes.at(0).threads.at(0);
  EXPECT_TRUE(stack_has(main, "gmsh_yyparse")) << stacks(e);
  EXPECT_TRUE(stack_has(main, "ParseFile")) << stacks(e);
  // Where in the parser's loop it was caught varies (a lexer call, a list lookup); the
  // signature's three frames start at Gmsh's own code, within a call or two of the parser.
  EXPECT_NE(e.stack_signature.find("gmsh_yyparse"), std::string::npos) << e.stack_signature;
  EXPECT_EQ(e.stack_signature.find("std::"), std::string::npos) << e.stack_signature;
}

TEST(EvidenceCaptureProcess, WritesBothFilesAndReportsTheOutcome) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "hang"});
  TempDir out;
  const CgroupDir dir = CgroupDir::open(cg.path());
  EvidenceRequest request = cgroup_request(dir, pid, Status::hung, out.path());
  request.id = "task-7";
  request.attempt = 2;
  request.reason = "no CPU use (below 0.01 CPU) and no progress for 2s";
  request.budget = kBudget;
  const std::size_t fds_before = open_fd_count();
  EvidenceCapture capture = EvidenceCapture::start(request);
  ASSERT_GE(capture.fd(), 0);
  EXPECT_TRUE(capture.running());
  pollfd p{capture.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, static_cast<int>(kBudget.count() * 1000)), 1)
      << "no end within the budget";
  const EvidenceOutcome outcome = capture.finish();
  EXPECT_FALSE(capture.running());
  EXPECT_EQ(outcome.missing, "");
  ASSERT_TRUE(outcome.path);
  EXPECT_EQ(*outcome.path, (out / "task-7.2.evidence.json").string());
  EXPECT_EQ(outcome.stack_signature, "pk_stuck: stuck_in_read < main < __libc_start_call_main");
  const auto json = nlohmann::json::parse(read_text(*outcome.path));
  EXPECT_EQ(json["id"], "task-7");
  EXPECT_EQ(json["attempt"], 2);
  EXPECT_EQ(json["status"], "hung");
  EXPECT_EQ(json["stack_signature"], *outcome.stack_signature);
  EXPECT_EQ(json["processes"][0]["pid"], pid);
  const std::string text = read_text(out / "task-7.2.evidence.txt");
  EXPECT_NE(text.find("stuck at: pk_stuck: stuck_in_read < main"), std::string::npos) << text;
  // Nothing but the two files (no temporary left), no descriptor kept, the task frozen and
  // untraced; then thawed, it can be killed and reaped.
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(out.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 2u);
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_TRUE(cgroup_frozen(cg.path()));
  EXPECT_EQ(tracer_of(pid), 0);
  thaw_target(request.target);
  EXPECT_TRUE(wait_until([&] { return !cgroup_frozen(cg.path()); }, Seconds(10)));
}

TEST(EvidenceCaptureProcess, AbandonedAtTheDeadlineTheTaskCanStillBeKilled) {
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "threads", "50"});
  TempDir out;
  const CgroupDir dir = CgroupDir::open(cg.path());
  EvidenceRequest request = cgroup_request(dir, pid, Status::hung, out.path());
  request.budget = std::chrono::milliseconds(1500);
  EvidenceCapture capture = EvidenceCapture::start(request);
  // The engine's deadline timer fires before the capture can have finished 51 threads.
  const EvidenceOutcome outcome = capture.abandon();
  EXPECT_FALSE(capture.running());
  if (!outcome.path) {
    EXPECT_EQ(outcome.missing, "capture ran past its 1.5s budget");
  }
  // Whatever the capture process had attached is released with it: thawed, the task dies of
  // cgroup.kill and its main process is reaped (a traced zombie could not be).
  thaw_target(request.target);
  std::ofstream(cg.path() / "cgroup.kill") << "1";
  int status = 0;
  EXPECT_TRUE(wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, Seconds(10)));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

TEST(EvidenceCaptureProcess, ATaskKilledWhileCapturedIsReapedOnceTheCaptureEnds) {
  // What the kernel does when a traced, frozen task is killed: it dies, but its parent can
  // reap it only once the tracer is gone. The engine therefore ends the capture first.
  PK_REQUIRE_CGROUP2();
  TestCgroup cg;
  const pid_t pid = cg.start({POLLKILL_STUCK, "hang"});
  cg.freeze(true);
  const pid_t tracer = ::fork();
  if (tracer == 0) {
    if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0 ||
        ::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) {
      ::_exit(1);
    }
    int status = 0;
    ::waitpid(pid, &status, __WALL);
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(wait_until([&] { return tracer_of(pid) == tracer && thread_state(pid) == 't'; },
                         Seconds(10)));
  std::ofstream(cg.path() / "cgroup.kill") << "1";
  EXPECT_TRUE(wait_until(
      [&] {
        return read_text(cg.path() / "cgroup.events").find("populated 0") != std::string::npos;
      },
      Seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "reaped while still traced";
  ::kill(tracer, SIGKILL);
  ::waitpid(tracer, nullptr, 0);
  EXPECT_TRUE(wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, Seconds(10)));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

}  // namespace
}  // namespace pollkill::testing
