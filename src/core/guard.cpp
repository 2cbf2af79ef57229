#include "pollkill/guard.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/proctree.h"
#include "pollkill/spawn.h"

namespace pollkill {

namespace {

// One message on the guard pipe: far below PIPE_BUF, so each write is atomic.
struct TreeMessage {
  std::int32_t init;  // > 0: watch this tree; < 0: forget -init
  std::uint64_t starttime;
};

void kill_trees(const std::map<pid_t, std::uint64_t>& trees) {
  ProcDir proc;
  for (const auto& [init, starttime] : trees) {
    auto now = proc.stat(init);
    if (!now || now->starttime != starttime) continue;  // gone, or another process now
    ProcTree tree(init, proc);
    tree.kill_members();
    signal_process(proc, init, starttime, SIGKILL);
  }
}

// The liveness process: a child of the guard that only sleeps in the run's liveness cgroup
// (RunCgroup::realize puts it there), so that `populated 1` there says, to every PID
// namespace, that the run's guard lives. It dies with the guard (parent-death signal) or when
// the guard kills it, last, before removing that cgroup.
//
// It may share the guard's memory while the guard runs on (see
// clone_sharing_memory_into_cgroup), and so the guard's TLS: glibc's wrappers would write a
// failure's code into the guard's errno behind its back (close_range fails with ENOSYS before
// Linux 5.9), and a sanitizer's interceptors (ASan's prctl keeps thread names) would touch the
// runtime's state from a second process. So on x86-64, the one architecture where it shares
// memory, it makes the system calls itself; it ignores their failures, and it is not
// instrumented.
#if defined(__x86_64__)
__attribute__((no_sanitize("address", "undefined"), always_inline)) inline long liveness_syscall(
    long number, long a = 0, long b = 0, long c = 0) {
  long result;
  asm volatile("syscall"
               : "=a"(result)
               : "a"(number), "D"(a), "S"(b), "d"(c)
               : "rcx", "r11", "memory");
  return result;
}
[[noreturn]] __attribute__((no_sanitize("address", "undefined"))) void liveness_exit() {
  for (;;) liveness_syscall(SYS_exit, 0);  // its own process: exit ends it
}
__attribute__((no_sanitize("address", "undefined"))) void liveness_pause() {
  liveness_syscall(SYS_pause);
}
#else
// A copy of the guard here, never sharing its memory: glibc is safe to use.
long liveness_syscall(long number, long a = 0, long b = 0, long c = 0) {
  return ::syscall(number, a, b, c);
}
[[noreturn]] void liveness_exit() {
  ::_exit(0);
}
void liveness_pause() {
  ::pause();
}
#endif

[[noreturn]] __attribute__((no_sanitize("address", "undefined"))) void liveness_main(pid_t guard) {
  liveness_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
  if (liveness_syscall(SYS_getppid) != guard) liveness_exit();
  static constexpr char kName[] = "pollkill-alive";
  liveness_syscall(SYS_prctl, PR_SET_NAME, reinterpret_cast<long>(kName));
  liveness_syscall(SYS_close_range, 3, static_cast<long>(~0U), 0);
  // Every catchable signal is ignored (inherited from the guard); SIGKILL ends it.
  for (;;) liveness_pause();
}

// Its stack when it shares the guard's memory: the guard's own copy of this array (the guard is
// a fork), which lives as long as the guard's memory, which the liveness process keeps alive.
alignas(64) std::byte liveness_stack[16 * 1024];
pid_t liveness_guard_pid = -1;

__attribute__((no_sanitize("address", "undefined"))) void liveness_entry(void*) {
  liveness_main(liveness_guard_pid);
}

// What the guard sends back in cgroup mode: its liveness process, and whether that process was
// born in the liveness cgroup (else RunCgroup::realize moves it there).
struct Hello {
  pid_t liveness;
  std::int32_t placed;
};

// Forks the liveness process straight into the run's liveness cgroup with
// clone3(CLONE_INTO_CGROUP): moving a process between cgroups later (a write to cgroup.procs)
// waits for an RCU grace period on most kernels, 5-15 ms, which was the largest single cost of
// a short `run`. A gc elsewhere may remove the empty directory between the mkdir and the
// clone3 (ENOENT/ENODEV): then make it again. Any other failure (a kernel without
// CLONE_INTO_CGROUP, a cgroup not writable) returns -1 with `placed` false, and the caller
// forks the process the old way so that realize's move reports the error with its remedy.
pid_t fork_liveness(const std::filesystem::path& alive, pid_t guard, bool& placed) {
  placed = false;
  // POLLKILL_SPAWN_METHOD=fork (the tests' fork variants) and kernels without clone3 take the
  // old path, so that it stays proven.
  if (default_spawn_method() == SpawnMethod::fork) return -1;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    if (::mkdir(alive.c_str(), 0755) != 0 && errno != EEXIST) return -1;
    UniqueFd dir(::open(alive.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      if (errno == ENOENT) continue;
      return -1;
    }
    // Sharing the guard's memory where the architecture allows (no page tables copied when
    // it starts or freed when it ends: both are on the path of every run), else a copy.
    liveness_guard_pid = guard;
    long pid = clone_sharing_memory_into_cgroup(dir.get(), liveness_stack, sizeof liveness_stack,
                                                liveness_entry, nullptr);
    if (pid < 0 && errno == ENOSYS) {
      clone_args args;
      std::memset(&args, 0, sizeof args);
      args.flags = CLONE_INTO_CGROUP;
      args.exit_signal = SIGCHLD;
      args.cgroup = static_cast<std::uint64_t>(dir.get());
      pid = ::syscall(SYS_clone3, &args, sizeof args);
      if (pid == 0) liveness_main(guard);
    }
    if (pid > 0) {
      placed = true;
      return static_cast<pid_t>(pid);
    }
    if (errno != ENOENT && errno != ENODEV) return -1;
  }
  return -1;
}

}  // namespace

Guard Guard::start(RunCgroup* run) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("create the guard pipe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  UniqueFd hello_read, hello_write;  // cgroup mode: the guard sends its liveness pid back
  if (run) {
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("create the guard pipe");
    hello_read.reset(fds[0]);
    hello_write.reset(fds[1]);
  }
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork the guard process");
  if (pid == 0) {
    // The guard: a fork of pollkill that only waits for the pipe to close. Its own session
    // (and so its own process group): a SIGKILL to pollkill's group or session (`timeout -s
    // KILL`, job control, a scheduler) must not take it along. The pipe, not the group, is
    // how it learns that pollkill is gone. A fork is never a group leader, so this succeeds.
    ::setsid();
    write_end.reset();
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::sigaction(sig, &ign, nullptr);
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      // Keep stderr for warnings, but do not hold pollkill's stdin or stdout open.
      ::dup2(devnull, STDIN_FILENO);
      ::dup2(devnull, STDOUT_FILENO);
      ::close(devnull);
    }
    hello_read.reset();
    pid_t liveness = -1;
    if (run) {
      const pid_t guard = ::getpid();
      bool placed = false;
      liveness = fork_liveness(run->liveness_path(), guard, placed);
      if (liveness < 0) liveness = ::fork();
      if (liveness == 0) liveness_main(guard);
      Hello hello{liveness, placed ? 1 : 0};
      ssize_t ignored = ::write(hello_write.get(), &hello, sizeof hello);
      (void)ignored;
      hello_write.reset();
    }
    std::map<pid_t, std::uint64_t> trees;
    for (;;) {
      TreeMessage message;
      ssize_t n = ::read(read_end.get(), &message, sizeof message);
      if (n < 0 && errno == EINTR) continue;
      if (n != static_cast<ssize_t>(sizeof message)) break;  // closed: pollkill is gone or done
      if (message.init > 0) {
        trees[message.init] = message.starttime;
      } else {
        trees.erase(-message.init);
      }
    }
    kill_trees(trees);
    if (run) {
      const std::filesystem::path alive = run->liveness_path();
      run->destroy();
      // The run cgroup is gone: only now may the run stop counting as alive.
      if (liveness > 0) {
        ::kill(liveness, SIGKILL);
        while (::waitpid(liveness, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
      try {
        remove_cgroup(alive);
      } catch (const std::exception& e) {
        diag::warning("cleaning up '" + alive.string() + "': " + e.what());
      }
      run->leave_leaf();
    }
    ::_exit(0);
  }
  Guard guard;
  guard.pid_ = pid;
  guard.pipe_ = std::move(write_end);
  if (run) {
    hello_write.reset();
    Hello hello{-1, 0};
    ssize_t n;
    do {
      n = ::read(hello_read.get(), &hello, sizeof hello);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof hello) || hello.liveness <= 0) {
      throw Error("the guard could not start its liveness process");  // ~Guard waits for it
    }
    guard.liveness_pid_ = hello.liveness;
    guard.liveness_placed_ = hello.placed != 0;
  }
  return guard;
}

void Guard::watch_tree(pid_t init, std::uint64_t starttime) {
  TreeMessage message{static_cast<std::int32_t>(init), starttime};
  if (pipe_ && ::write(pipe_.get(), &message, sizeof message) != sizeof message)
    throw_errno("tell the guard about process " + std::to_string(init));
}

void Guard::forget_tree(pid_t init) {
  TreeMessage message{-static_cast<std::int32_t>(init), 0};
  if (pipe_) {
    ssize_t ignored = ::write(pipe_.get(), &message, sizeof message);
    (void)ignored;
  }
}

Guard::Guard(Guard&& other) noexcept {
  *this = std::move(other);
}

Guard& Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
    liveness_pid_ = std::exchange(other.liveness_pid_, -1);
    liveness_placed_ = std::exchange(other.liveness_placed_, false);
    pipe_ = std::move(other.pipe_);
  }
  return *this;
}

void Guard::stop() noexcept {
  pipe_.reset();
  if (pid_ > 0) {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  liveness_pid_ = -1;
  liveness_placed_ = false;
}

}  // namespace pollkill
