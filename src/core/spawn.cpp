#include "pollkill/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "pollkill/error.h"
#include "pollkill/sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#if defined(__x86_64__)
// clone3 for a child that shares the caller's memory: the child cannot return from the system
// call into C++ code (it would run on, and overwrite, the frames of the suspended parent), so
// it starts on the stack given in the arguments and calls `entry(argument)` there, which never
// returns. The parent gets clone3's result (the child's pid, or -errno). x86-64 System V:
// clone_args in rdi, size in rsi, entry in rdx, argument in rcx; the syscall keeps r8 and r9.
extern "C" long pollkill_clone3_on_stack(clone_args* args, size_t size, void (*entry)(void*),
                                         void* argument);
asm(R"(
  .pushsection .text
  .globl pollkill_clone3_on_stack
  .hidden pollkill_clone3_on_stack
  .p2align 4
  .type pollkill_clone3_on_stack, @function
pollkill_clone3_on_stack:
  .cfi_startproc
  endbr64
  movq %rdx, %r8
  movq %rcx, %r9
  movl $435, %eax
  syscall
  testq %rax, %rax
  jz 1f
  ret
1:
  .cfi_undefined rip
  xorl %ebp, %ebp
  movq %r9, %rdi
  call *%r8
  ud2
  .cfi_endproc
  .size pollkill_clone3_on_stack, .-pollkill_clone3_on_stack
  .popsection
)");
static_assert(SYS_clone3 == 435);
#endif

namespace pollkill {
namespace {

// Steps the child reports through the pipe; kept as numbers because the child may not
// allocate, and turned into words by the parent.
enum ChildStep : int {
  kStepPdeathsig = 1,
  kStepJoinCgroup,
  kStepExecve,
  kStepStdio,
  kStepCgroupNs,
  kStepMount,
  kStepHostname,
  kStepLoopback,
  kStepForkTask,
  kStepRlimit,
  kStepUmask,
  kStepGroups,
  kStepGid,
  kStepUid,
  kStepCwd,
  kStepNoNewPrivs,
  kStepSeccomp,
  kStepJoinCgroupV1,
  kStepSubreaper,
  kStepChown,
};

// A lingering init's parent-death signal: caught (not SIGKILL) so that init can outlive
// pollkill and the guard can still find the task's tree under it.
constexpr int kInitParentDeathSignal = SIGUSR2;

struct ChildReport {
  int step;
  int error;
  int index;  // which mount or rlimit, for kStepMount and kStepRlimit
};

struct ChildMount {
  const char* source;
  const char* target;
  const char* fstype;
  unsigned long flags;
  const char* data;
  bool read_only_tree;  // mount_setattr, recursive, instead of mount
  bool skip_missing;    // ENOENT: the target went away, nothing to do
};

// Everything the child touches, built by the parent before the clone.
struct ChildPlan {
  char* const* argv;
  char* const* envp;
  const char* const* candidates;
  size_t candidate_count;
  int report_fd;  // -1 with shared_report
  // SpawnRequest::before_start: the child reads one byte from go_fd before it goes on (EOF:
  // pollkill died first) after closing its copy of the write end, go_write_fd. -1: no wait.
  int go_fd = -1;
  int go_write_fd = -1;
  int join_fd;  // cgroup.procs of the task cgroup (fork fallback only), else -1
  pid_t parent;
  const int* stdio;  // three descriptors, -1 = inherit
  // The sandbox, in the order the child applies it (see docs/ARCHITECTURE.md).
  bool new_pid_ns = false;
  bool unshare_cgroup = false;
  const ChildMount* mounts = nullptr;
  size_t mount_count = 0;
  const char* const* owned = nullptr;  // given to the task's user after the mounts
  size_t owned_count = 0;
  MemoryArea arguments{}, environment{};  // pollkill's, which a pid namespace's init clears
  const char* hostname = nullptr;
  size_t hostname_length = 0;
  bool loopback_up = false;
  int init_status_fd = -1;  // with a pid namespace or linger: where init writes the task's status
  // Subreaper mode without a pid namespace: init is a child subreaper that outlives the task
  // until every process of the tree is gone (see init_main).
  bool linger = false;
  const std::pair<int, rlimit>* rlimits = nullptr;
  size_t rlimit_count = 0;
  int umask = -1;
  bool set_ids = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const char* cwd = nullptr;
  bool no_new_privs = false;
  const sock_fprog* seccomp = nullptr;
  const int* join_v1 = nullptr;  // cgroup.procs of the v1 task cgroups (hybrid hosts)
  size_t join_v1_count = 0;
  // The vfork spawn: the child runs in pollkill's memory, writes a failure here (the parent
  // reads it once the child has exited) and must not run any of pollkill's signal handlers.
  ChildReport* shared_report = nullptr;
};

[[noreturn]] void report_and_exit(const ChildPlan& plan, int step, int err, int index = 0) {
  ChildReport report{step, err, index};
  if (plan.shared_report) {
    *plan.shared_report = report;
  } else {
    ssize_t ignored = ::write(plan.report_fd, &report, sizeof report);
    (void)ignored;
  }
  ::_exit(127);
}

// A vfork child shares pollkill's memory: a handler of pollkill's running in it could corrupt
// the parent's state, so every caught signal goes back to its default action before the child
// unblocks signals (posix_spawn does the same). Ignored signals stay ignored, as exec keeps them.
void reset_caught_signals() {
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction current {};
    if (::sigaction(sig, nullptr, &current) != 0) continue;  // glibc's own (32, 33), SIGKILL
    if (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN) continue;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(sig, &dfl, nullptr);
  }
}

// Brings up "lo" in a fresh network namespace (it starts down), so that the task can still
// talk to itself over 127.0.0.1.
int loopback_up() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ifreq request;
  std::memset(&request, 0, sizeof request);
  std::memcpy(request.ifr_name, "lo", 3);
  int err = 0;
  if (::ioctl(fd, SIOCGIFFLAGS, &request) != 0) {
    err = errno;
  } else {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP | IFF_RUNNING);
    if (::ioctl(fd, SIOCSIFFLAGS, &request) != 0) err = errno;
  }
  ::close(fd);
  return err;
}

// pollkill's init: PID 1 of the task's pid namespace, or in subreaper mode a child subreaper
// ("linger"). The kernel ignores every default-action signal sent to PID 1 (and kills the
// whole namespace when it exits), so the task must not be PID 1 itself: init forwards every
// catchable signal to it, reaps whatever is reparented to it, and when the task ends writes
// the task's wait status to the status pipe. init cannot die of the task's signal, so the
// status pipe is how pollkill learns it. As PID 1 it then exits (the kernel kills the rest of
// the namespace); lingering, it closes the pipe and goes on reaping the orphans reparented to
// it until it has no child left, then exits: while it lives, every process of the task is
// in the tree under it, which is how subreaper mode tells tasks apart. Syscalls only.
[[noreturn]] void init_main(const ChildPlan& plan, pid_t task) {
  // init never execs, so close-on-exec never closes what it inherited from pollkill: keep
  // only the status pipe (the task has its own copies of what it needs, report pipe
  // included). Holding the guard's pipe would keep the guard from seeing pollkill die;
  // holding stdout, a reader from seeing the task's end; holding the dynamic uid locks of the
  // tasks running beside it, those uids from coming free when their tasks end.
  const unsigned keep = static_cast<unsigned>(plan.init_status_fd);
  for (auto [first, last] : {std::pair<unsigned, unsigned>{0, keep - 1}, {keep + 1, ~0U}}) {
    if (first > last) continue;
    if (::syscall(SYS_close_range, first, last, 0) != 0) {
      for (unsigned fd = first; fd <= last && fd < 4096; ++fd) ::close(static_cast<int>(fd));
    }
  }
  sigset_t all;
  sigfillset(&all);
  bool task_running = true;
  for (;;) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&all, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (plan.linger && sig == kInitParentDeathSignal && ::getppid() != plan.parent) {
        // pollkill died: end the task as PR_SET_PDEATHSIG would have; the guard kills the
        // rest of the tree, which stays under this process for it to find.
        if (task_running) ::kill(task, SIGKILL);
        continue;
      }
      if (task_running) ::kill(task, sig);
      continue;
    }
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno == ECHILD && !task_running) ::_exit(0);
      if (pid <= 0) break;
      if (pid != task) continue;
      ssize_t ignored = ::write(plan.init_status_fd, &status, sizeof status);
      (void)ignored;
      if (!plan.linger) {
        ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
      task_running = false;
      ::close(plan.init_status_fd);
    }
  }
}

// PID 1 of the task's pid namespace is a fork of pollkill, and /proc/1/cmdline reads its copy
// of pollkill's arguments, which may name files, ids, even secrets. The init clears that copy
// (and the environment's), writes its own name first and ends the area with a non-NUL byte:
// the kernel then reads the command line as a set process title, up to the first NUL, so it
// is "pollkill-init" alone. No allocation: the areas are the init's own memory.
void become_pollkill_init(const ChildPlan& plan) {
  static constexpr char kName[] = "pollkill-init";
  ::prctl(PR_SET_NAME, kName, 0, 0, 0);
  if (plan.environment.start) std::memset(plan.environment.start, 0, plan.environment.size);
  if (!plan.arguments.start) return;
  std::memset(plan.arguments.start, 0, plan.arguments.size);
  if (plan.arguments.size > sizeof kName) {
    std::memcpy(plan.arguments.start, kName, sizeof kName);
    plan.arguments.start[plan.arguments.size - 1] = ' ';
  }
}

[[noreturn]] void task_main(const ChildPlan& plan);

// The task, forked by init: it starts with every signal blocked (init's mask).
[[noreturn]] void task_child_main(const ChildPlan& plan) {
  reset_caught_signals();  // it shares init's memory until it execs (fork_task)
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::close(plan.init_status_fd);
  if (plan.linger && ::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)  // init's death ends the task
    report_and_exit(plan, kStepPdeathsig, errno);
  task_main(plan);
}

#if defined(__x86_64__)
void task_child_entry(void* plan) {
  task_child_main(*static_cast<const ChildPlan*>(plan));
}
#endif

// init forks the task. init is itself a copy of pollkill's memory; the task borrows it until
// it execs (CLONE_VM | CLONE_VFORK on a stack of its own, in this frame, as the vfork spawn
// does) instead of copying it a second time: the page tables of pollkill's address space
// and the copy-on-write faults after a fork are the largest cost of a process start. init is
// suspended meanwhile and takes its signals only afterwards (they stay pending). The task
// reports a failure through the report pipe, as before. Elsewhere: a copy, the raw system call
// (glibc's fork() would run atfork handlers, which take locks).
pid_t fork_task(const ChildPlan& plan) {
#if defined(__x86_64__)
  alignas(16) std::byte stack[32 * 1024];
  struct clone_args args {};
  args.flags = CLONE_VM | CLONE_VFORK;
  args.exit_signal = SIGCHLD;
  args.stack = reinterpret_cast<std::uint64_t>(stack);
  args.stack_size = sizeof stack;
  const long task =
      pollkill_clone3_on_stack(&args, sizeof args, task_child_entry, const_cast<ChildPlan*>(&plan));
  if (task < 0) report_and_exit(plan, kStepForkTask, static_cast<int>(-task));
#else
  const pid_t task = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (task < 0) report_and_exit(plan, kStepForkTask, errno);
  if (task == 0) task_child_main(plan);
#endif
  return static_cast<pid_t>(task);
}

// Runs in the child between clone and exec: syscalls only, no allocation, no locks.
[[noreturn]] void child_main(const ChildPlan& plan) {
  if (plan.shared_report) reset_caught_signals();  // all blocked until here (spawn)
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);  // pollkill blocks signals for its signalfd
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, nullptr);  // pollkill ignores SIGPIPE; the task must not
  // A lingering init must survive pollkill long enough for the guard to find its tree.
  if (::prctl(PR_SET_PDEATHSIG, plan.linger ? kInitParentDeathSignal : SIGKILL) != 0)
    report_and_exit(plan, kStepPdeathsig, errno);
  // In a new pid namespace the parent is outside it, so getppid() reads 0.
  if (::getppid() != (plan.new_pid_ns ? 0 : plan.parent)) ::_exit(127);  // pollkill died
  if (plan.go_fd >= 0) {
    // Nothing starts before pollkill said so (the guard knows of this process by then). If
    // pollkill dies meanwhile, the parent-death signal or the pipe's EOF ends this process.
    ::close(plan.go_write_fd);
    char go = 0;
    ssize_t n;
    do {
      n = ::read(plan.go_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);
    ::close(plan.go_fd);
  }
  if (plan.join_fd >= 0 && ::write(plan.join_fd, "0", 1) != 1) {
    report_and_exit(plan, kStepJoinCgroup, errno);
  }
  // "0" is the writer itself, in v1 as in v2; children forked later inherit the cgroups.
  for (size_t i = 0; i < plan.join_v1_count; ++i) {
    if (::write(plan.join_v1[i], "0", 1) != 1) {
      report_and_exit(plan, kStepJoinCgroupV1, errno, static_cast<int>(i));
    }
  }
  for (int target = 0; target < 3; ++target) {
    // dup2 clears close-on-exec on the copy, so the program keeps it.
    if (plan.stdio[target] >= 0 && ::dup2(plan.stdio[target], target) < 0) {
      report_and_exit(plan, kStepStdio, errno);
    }
  }
  // Now inside the task cgroup: that cgroup becomes the root of the new cgroup namespace.
  if (plan.unshare_cgroup && ::unshare(CLONE_NEWCGROUP) != 0) {
    report_and_exit(plan, kStepCgroupNs, errno);
  }
  for (size_t i = 0; i < plan.mount_count; ++i) {
    const ChildMount& m = plan.mounts[i];
    mount_attr read_only{};
    read_only.attr_set = MOUNT_ATTR_RDONLY;
    const long rc = m.read_only_tree ? ::syscall(SYS_mount_setattr, AT_FDCWD, m.target,
                                                 AT_RECURSIVE, &read_only, sizeof read_only)
                                     : ::mount(m.source, m.target, m.fstype, m.flags, m.data);
    if (rc != 0 && !(m.skip_missing && errno == ENOENT)) {
      report_and_exit(plan, kStepMount, errno, static_cast<int>(i));
    }
  }
  for (size_t i = 0; plan.set_ids && i < plan.owned_count; ++i) {
    if (::chown(plan.owned[i], plan.uid, plan.gid) != 0) {
      report_and_exit(plan, kStepChown, errno, static_cast<int>(i));
    }
  }
  if (plan.hostname && ::sethostname(plan.hostname, plan.hostname_length) != 0) {
    report_and_exit(plan, kStepHostname, errno);
  }
  if (plan.loopback_up) {
    if (int err = loopback_up(); err != 0) report_and_exit(plan, kStepLoopback, err);
  }
  if (plan.linger && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    report_and_exit(plan, kStepSubreaper, errno);
  }
  if (plan.new_pid_ns || plan.linger) {
    sigset_t all;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);  // init takes signals with sigwaitinfo
    // Before the task exists, so that it never sees pollkill's command line.
    if (plan.new_pid_ns) become_pollkill_init(plan);
    init_main(plan, fork_task(plan));
  }
  task_main(plan);
}

// The task's own process, after the sandbox's namespaces and mounts: rlimits, ids, seccomp,
// then exec. Syscalls only, no allocation, no locks.
[[noreturn]] void task_main(const ChildPlan& plan) {
  for (size_t i = 0; i < plan.rlimit_count; ++i) {
    if (::setrlimit(plan.rlimits[i].first, &plan.rlimits[i].second) != 0) {
      report_and_exit(plan, kStepRlimit, errno, static_cast<int>(i));
    }
  }
  if (plan.umask >= 0) ::umask(static_cast<mode_t>(plan.umask));
  if (plan.set_ids) {
    // Raw system calls: glibc's wrappers may try to synchronise ids across threads.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) report_and_exit(plan, kStepGroups, errno);
    if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0)
      report_and_exit(plan, kStepGid, errno);
    if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0)
      report_and_exit(plan, kStepUid, errno);
  }
  // After the user change, so that the task's own user must be able to enter the directory.
  if (plan.cwd && ::chdir(plan.cwd) != 0) report_and_exit(plan, kStepCwd, errno);
  if (plan.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    report_and_exit(plan, kStepNoNewPrivs, errno);
  }
  // Last: from here on every call the child makes passes the filter, execve included.
  if (plan.seccomp && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, plan.seccomp) != 0) {
    report_and_exit(plan, kStepSeccomp, errno);
  }
  // Like execvp: EACCES from any candidate wins over ENOENT; other errors stop the search.
  int result = ENOENT;
  for (size_t i = 0; i < plan.candidate_count; ++i) {
    ::execve(plan.candidates[i], plan.argv, plan.envp);
    int err = errno;
    if (err == EACCES) {
      result = EACCES;
    } else if (err != ENOENT && err != ENOTDIR) {
      report_and_exit(plan, kStepExecve, err);
    }
  }
  report_and_exit(plan, kStepExecve, result);
}

std::string step_name(const ChildReport& report, const SandboxPlan* sandbox) {
  switch (report.step) {
    case kStepPdeathsig: return "set the parent-death signal";
    case kStepJoinCgroup: return "join the task cgroup";
    case kStepExecve: return "execve";
    case kStepStdio: return "set up stdin/stdout/stderr";
    case kStepCgroupNs: return "unshare the cgroup namespace";
    case kStepMount:
      if (sandbox && report.index >= 0 &&
          static_cast<size_t>(report.index) < sandbox->mounts.size()) {
        return sandbox->mounts[static_cast<size_t>(report.index)].describe();
      }
      return "mount";
    case kStepHostname: return "set the hostname";
    case kStepLoopback: return "bring up the loopback interface";
    case kStepForkTask: return "fork the task from the pid namespace's init";
    case kStepRlimit: return "set an rlimit";
    case kStepUmask: return "set the umask";
    case kStepGroups: return "drop supplementary groups";
    case kStepGid: return "set the group id";
    case kStepUid: return "set the user id";
    case kStepCwd: return "change to the working directory";
    case kStepNoNewPrivs: return "set no_new_privs";
    case kStepSeccomp: return "load the seccomp filter";
    case kStepJoinCgroupV1: return "join the task's cgroup v1 cgroups";
    case kStepSubreaper: return "become a child subreaper";
    case kStepChown:
      if (sandbox && report.index >= 0 &&
          static_cast<size_t>(report.index) < sandbox->owned_by_task.size()) {
        return "give '" + sandbox->owned_by_task[static_cast<size_t>(report.index)] +
               "' to the task's user";
      }
      return "give a temporary area to the task's user";
  }
  return "start";
}

std::atomic<bool> clone3_unsupported{false};

pid_t clone3_into_cgroup(int cgroup_fd, int* pidfd, std::uint64_t namespaces) {
  struct clone_args args {};
  // Without a cgroup (subreaper mode) the child starts in pollkill's own cgroup.
  args.flags = (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0) | CLONE_PIDFD | namespaces;
  args.pidfd = reinterpret_cast<std::uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

#if defined(__x86_64__)
constexpr bool kHaveVforkSpawn = true;

void vfork_child_entry(void* plan) {
  child_main(*static_cast<const ChildPlan*>(plan));
}

// The child's stack, in the parent's frame: the parent is suspended until the child has
// exec'd or exited (musl's posix_spawn does the same). The child makes only syscalls through
// glibc's thin wrappers and needs a few hundred bytes; the rest is margin (sanitizers).
constexpr size_t kVforkStackSize = 32 * 1024;

pid_t clone3_vfork_into_cgroup(int cgroup_fd, int* pidfd, std::uint64_t namespaces,
                               const ChildPlan& plan, std::byte* stack) {
  struct clone_args args {};
  args.flags =
      (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0) | CLONE_PIDFD | CLONE_VM | CLONE_VFORK | namespaces;
  args.pidfd = reinterpret_cast<std::uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
  args.stack = reinterpret_cast<std::uint64_t>(stack);
  args.stack_size = kVforkStackSize;  // the kernel starts the child at stack + stack_size
  // Nothing may run a handler of pollkill's in the child before it has reset them: every
  // signal stays blocked from before the clone until child_main has done so.
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  const long rc = pollkill_clone3_on_stack(&args, sizeof args, vfork_child_entry,
                                           const_cast<ChildPlan*>(&plan));
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (rc < 0) {
    errno = static_cast<int>(-rc);
    return -1;
  }
  return static_cast<pid_t>(rc);
}
#else
constexpr bool kHaveVforkSpawn = false;
#endif

std::vector<char*> to_c_array(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

Child::Child(Child&& other) noexcept {
  *this = std::move(other);
}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      reap();
    }
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    init_status_ = std::move(other.init_status_);
    linger_ = std::exchange(other.linger_, false);
    held_ = std::move(other.held_);
    task_ended_ = std::exchange(other.task_ended_, false);
  }
  return *this;
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);  // still unreaped, so the pid cannot have been reused
    reap();
  }
}

void Child::hold_until_reaped(UniqueFd fd) {
  held_ = std::move(fd);
}

void Child::forget_process() {
  pid_ = -1;
  pidfd_.reset();
  held_.reset();
}

namespace {
Child::Exit decode(int status) {
  Child::Exit exit;
  if (WIFEXITED(status)) exit.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) exit.signal = WTERMSIG(status);
  return exit;
}
}  // namespace

std::optional<Child::Exit> Child::try_reap() {
  if (linger_) {
    // The status pipe, not the init, says whether the task ended: the init may already have
    // been reaped (reap_process) with the status still unread.
    if (task_ended_ || !init_status_) return std::nullopt;
    int task_status = 0;
    ssize_t n;
    do {
      n = ::read(init_status_.get(), &task_status, sizeof task_status);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return std::nullopt;
    task_ended_ = true;
    init_status_.reset();
    if (n == static_cast<ssize_t>(sizeof task_status)) return decode(task_status);
    // The pipe closed without a status: init itself died (killed) before the task ended;
    // its own end is the answer.
    int status = 0;
    while (pid_ > 0 && ::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    if (pid_ <= 0) return Exit{};
    forget_process();
    return decode(status);
  }
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  if (r < 0) throw_errno("wait for process " + std::to_string(pid_));
  return finish(status);
}

bool Child::reap_process(struct rusage* usage) {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::wait4(pid_, &status, WNOHANG, usage);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  forget_process();
  return true;
}

Child::Exit Child::finish(int status) {
  forget_process();
  if (init_status_) {
    // init wrote the task's status before it exited, so it is in the pipe now (or init was
    // killed first, and its own status is the answer).
    int task_status = 0;
    ssize_t n;
    do {
      n = ::read(init_status_.get(), &task_status, sizeof task_status);
    } while (n < 0 && errno == EINTR);
    init_status_.reset();
    if (n == static_cast<ssize_t>(sizeof task_status)) status = task_status;
  }
  return decode(status);
}

Child::Exit Child::reap() {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    forget_process();
    init_status_.reset();
    return {};
  }
  return finish(status);
}

const char* spawn_method_name(SpawnMethod method) {
  switch (method) {
    case SpawnMethod::vfork: return "vfork";
    case SpawnMethod::clone3: return "clone3";
    case SpawnMethod::fork: return "fork";
  }
  return "clone3";
}

SpawnMethod default_spawn_method() {
  if (clone3_unsupported) return SpawnMethod::fork;
  const char* forced = ::getenv("POLLKILL_SPAWN_METHOD");
  const std::string_view name = forced ? forced : "";
  if (name == spawn_method_name(SpawnMethod::fork)) return SpawnMethod::fork;
  if (name == spawn_method_name(SpawnMethod::clone3) || !kHaveVforkSpawn)
    return SpawnMethod::clone3;
  return SpawnMethod::vfork;
}

std::vector<std::string> exec_candidates(const std::string& program, const std::string& path_env) {
  if (program.empty()) return {};
  if (program.find('/') != std::string::npos) return {program};
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t colon = path_env.find(':', start);
    std::string dir =
        path_env.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    out.push_back((dir.empty() ? std::string(".") : dir) + "/" + program);  // empty = cwd
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

pid_t clone_sharing_memory_into_cgroup(int cgroup_fd, std::byte* stack, std::size_t stack_size,
                                       void (*entry)(void*), void* argument) {
#if defined(__x86_64__)
  struct clone_args args {};
  args.flags = CLONE_VM | CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
  args.stack = reinterpret_cast<std::uint64_t>(stack);
  args.stack_size = stack_size;  // the kernel starts the child at stack + stack_size
  const long rc = pollkill_clone3_on_stack(&args, sizeof args, entry, argument);
  if (rc < 0) {
    errno = static_cast<int>(-rc);
    return -1;
  }
  return static_cast<pid_t>(rc);
#else
  (void)cgroup_fd, (void)stack, (void)stack_size, (void)entry, (void)argument;
  errno = ENOSYS;
  return -1;
#endif
}

Spawned spawn(const SpawnRequest& request) {
  if (request.argv.empty()) throw Error("no command given");
  std::string path_env = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : request.env) {
    if (e.compare(0, 5, "PATH=") == 0) path_env = e.substr(5);
  }
  const std::vector<std::string> candidates = exec_candidates(request.argv[0], path_env);
  std::vector<char*> argv = to_c_array(request.argv);
  std::vector<char*> envp = to_c_array(request.env);
  std::vector<const char*> cand;
  for (const auto& c : candidates) cand.push_back(c.c_str());

  ChildPlan plan{argv.data(), envp.data(), cand.data(), cand.size(), -1,
                 -1,          -1,          -1,          ::getpid(),  request.stdio};
  const SandboxPlan* sandbox = request.sandbox;
  std::vector<ChildMount> mounts;
  std::vector<const char*> owned;
  DynamicUid dynamic_uid;
  sock_fprog filter{};
  UniqueFd status_read, status_write;
  const auto c_str_or_null = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
  if (sandbox) {
    plan.new_pid_ns = sandbox->pid_init;
    plan.unshare_cgroup = sandbox->new_cgroup_ns;
    for (const MountStep& m : sandbox->mounts) {
      mounts.push_back({c_str_or_null(m.source), m.target.c_str(), c_str_or_null(m.fstype), m.flags,
                        c_str_or_null(m.data), m.read_only_tree, m.skip_missing});
    }
    plan.mounts = mounts.data();
    plan.mount_count = mounts.size();
    for (const std::string& path : sandbox->owned_by_task) owned.push_back(path.c_str());
    plan.owned = owned.data();
    plan.owned_count = owned.size();
    plan.arguments = sandbox->init_arguments;
    plan.environment = sandbox->init_environment;
    plan.hostname = c_str_or_null(sandbox->hostname);
    plan.hostname_length = sandbox->hostname.size();
    plan.loopback_up = sandbox->loopback_up;
    plan.rlimits = sandbox->rlimits.data();
    plan.rlimit_count = sandbox->rlimits.size();
    plan.umask = sandbox->umask;
    plan.set_ids = sandbox->uid.has_value();
    plan.uid = sandbox->uid.value_or(0);
    plan.gid = sandbox->gid.value_or(0);
    if (sandbox->dynamic_uids) {
      // A uid of the task's own, held until its process is reaped (Child::hold_until_reaped).
      dynamic_uid = take_dynamic_uid(*sandbox->dynamic_uids);
      plan.set_ids = true;
      plan.uid = dynamic_uid.uid;
      plan.gid = sandbox->gid.value_or(dynamic_uid.uid);
    }
    plan.cwd = c_str_or_null(sandbox->cwd);
    plan.no_new_privs = sandbox->no_new_privs;
    if (!sandbox->seccomp.empty()) {
      filter.len = static_cast<unsigned short>(sandbox->seccomp.size());
      filter.filter = const_cast<sock_filter*>(sandbox->seccomp.data());
      plan.seccomp = &filter;
    }
  }
  plan.linger = request.subreaper_init && !(sandbox && sandbox->pid_init);
  if ((sandbox && sandbox->pid_init) || plan.linger) {
    int status_fds[2];
    if (::pipe2(status_fds, O_CLOEXEC) != 0) throw_errno("create the init-status pipe");
    status_read.reset(status_fds[0]);
    status_write.reset(status_fds[1]);
    // Never block the supervisor on it, even if a copy of the write end survived somewhere.
    ::fcntl(status_read.get(), F_SETFL, O_NONBLOCK);
    plan.init_status_fd = status_write.get();
  }
  plan.join_v1 = request.join_v1_fds.data();
  plan.join_v1_count = request.join_v1_fds.size();
  // A task's own directory (batch's per-task cwd) wins over the policy's.
  if (!request.cwd.empty()) plan.cwd = request.cwd.c_str();
  const std::uint64_t namespaces = sandbox ? sandbox->clone_flags : 0;
  SpawnMethod method = request.method;
  if (namespaces != 0 && method == SpawnMethod::fork) {
    throw Error(
        "sandbox.namespaces needs clone3 with CLONE_INTO_CGROUP (Linux 5.7), and this "
        "run uses the fork fallback",
        "unset POLLKILL_SPAWN_METHOD, or remove sandbox.namespaces from the policy");
  }
  // An init (pid namespace, subreaper mode) lives on after the task's exec, so it cannot
  // borrow pollkill's memory and suspend pollkill until then.
  // Nor can a child that waits for a start signal (the parent would wait for the child).
  if (method == SpawnMethod::vfork &&
      (!kHaveVforkSpawn || plan.init_status_fd >= 0 || request.before_start)) {
    method = SpawnMethod::clone3;
  }
  UniqueFd go_read, go_write;
  if (request.before_start) {
    int go_fds[2];
    if (::pipe2(go_fds, O_CLOEXEC) != 0) throw_errno("create the start pipe");
    go_read.reset(go_fds[0]);
    go_write.reset(go_fds[1]);
    plan.go_fd = go_read.get();
    plan.go_write_fd = go_write.get();
  }
  // The child's failure comes back through shared memory (vfork) or a close-on-exec pipe.
  ChildReport shared_report{};
  UniqueFd report_read, report_write;
  const auto use_report_pipe = [&] {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw_errno("create the exec-status pipe");
    report_read.reset(pipe_fds[0]);
    report_write.reset(pipe_fds[1]);
    plan.report_fd = report_write.get();
    plan.shared_report = nullptr;
  };
  const auto clone3_failed = [&](int err) {
    if (namespaces != 0) throw_errno("clone3 into the task cgroup with new namespaces");
    if (err != ENOSYS && err != E2BIG) throw_errno("clone3 into the task cgroup");
    // Kernel before 5.7: no clone3 or no cgroup field in clone_args.
    clone3_unsupported = true;
    return SpawnMethod::fork;
  };
  pid_t pid = -1;
  int pidfd = -1;
#if defined(__x86_64__)
  if (method == SpawnMethod::vfork) {
    alignas(16) std::byte stack[kVforkStackSize];
    plan.shared_report = &shared_report;
    pid = clone3_vfork_into_cgroup(request.cgroup_fd, &pidfd, namespaces, plan, stack);
#if defined(__SANITIZE_ADDRESS__)
    // The child's instrumented frames poisoned parts of it and never returned to clear them.
    ASAN_UNPOISON_MEMORY_REGION(stack, sizeof stack);
#endif
    if (pid < 0) method = clone3_failed(errno);
  }
#endif
  if (method == SpawnMethod::clone3) {
    use_report_pipe();
    pid = clone3_into_cgroup(request.cgroup_fd, &pidfd, namespaces);
    if (pid == 0) child_main(plan);
    if (pid < 0) method = clone3_failed(errno);
  }
  UniqueFd join_fd;
  if (method == SpawnMethod::fork) {
    use_report_pipe();
    if (request.cgroup_fd >= 0) {
      join_fd.reset(::openat(request.cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC));
      if (!join_fd) throw_errno("open cgroup.procs of the task cgroup");
      plan.join_fd = join_fd.get();
    }
    pid = ::fork();
    if (pid == 0) child_main(plan);
    if (pid < 0) throw_errno("fork");
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
      int err = errno;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      throw SystemError(err, "pidfd_open for the task's main process (needs Linux 5.3)");
    }
  }
  Spawned spawned{Child(pid, UniqueFd(pidfd), std::move(status_read), plan.linger), std::nullopt,
                  method};
  spawned.child.hold_until_reaped(std::move(dynamic_uid.lock));
  report_write.reset();
  status_write.reset();
  join_fd.reset();
  if (request.before_start) {
    go_read.reset();
    // Test-only (docs/TESTING.md): stops pollkill in the window the start pipe closes, so a
    // test can SIGKILL it there. Without the pipe a lingering init would already run its task.
    if (::getenv("POLLKILL_TEST_STOP_BEFORE_START")) ::raise(SIGSTOP);
    request.before_start(pid);  // throws: the Child kills and reaps what it holds
    // EPIPE: the child is gone already; how it ended is read below, as for any child.
    ssize_t ignored = ::write(go_write.get(), "g", 1);
    (void)ignored;
    go_write.reset();
  }
  if (method == SpawnMethod::vfork) {
    // The child has exec'd (the report untouched) or exited (and may have filled it in).
    if (shared_report.step != 0) {
      spawned.failure = SpawnFailure{step_name(shared_report, sandbox), shared_report.error};
    }
    return spawned;
  }
  ChildReport report{};
  ssize_t n;
  do {
    n = ::read(report_read.get(), &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof report)) {
    spawned.failure = SpawnFailure{step_name(report, sandbox), report.error};
  }
  return spawned;
}

}  // namespace pollkill
