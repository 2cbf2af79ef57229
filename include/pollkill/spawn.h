// Starting the task's main process inside its cgroup, and owning it until it is reaped.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/fd.h"

namespace pollkill {

/// How the task's main process is created.
/// - vfork: clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP) on a stack of the child's own
///   (what posix_spawn does, plus the cgroup): nothing of pollkill's address space is copied;
///   pollkill's thread waits until the child has exec'd or exited, and the child reports a
///   failure through the memory they share. Linux 5.7, x86-64 (the trampoline that starts the
///   child on its stack is a few lines of assembly); elsewhere clone3 is the default.
/// - clone3: clone3(CLONE_INTO_CGROUP) with a copy of the address space. Used wherever the
///   child becomes pollkill's init (a pid namespace, subreaper mode), which outlives the exec
///   of the task and so cannot borrow pollkill's memory.
/// - fork: kernels before 5.7: fork, the child joins the cgroup, then execs.
/// POLLKILL_SPAWN_METHOD=fork|clone3|vfork forces one (the tests use it); vfork still gives
/// way to clone3 where an init is needed.
enum class SpawnMethod { vfork, clone3, fork };

/// "vfork", "clone3", "fork".
const char* spawn_method_name(SpawnMethod method);

/// The main process of a task: pid plus pidfd. If still owned at destruction (not reaped),
/// it is killed with SIGKILL and reaped, so no process outlives its handle.
class Child {
 public:
  Child() = default;
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  /// With a pid namespace the process is pollkill's init, PID 1 there, which cannot die of
  /// the task's signal (PID 1 ignores default-action signals); it writes the task's wait
  /// status to `init_status` before it exits, and that status is what reaping returns.
  ///
  /// With `linger` (subreaper mode) the process is pollkill's lingering init, a child
  /// subreaper that outlives the task until the task's whole tree is gone. Then "the main
  /// process" is the task under it: exit_fd() is the status pipe, readable when the task
  /// ended; try_reap() returns the task's status from it; running() is false from then on,
  /// while the init itself is still owned (process_running()) until reap_process().
  Child(pid_t pid, UniqueFd pidfd, UniqueFd init_status, bool linger = false)
      : pid_(pid),
        pidfd_(std::move(pidfd)),
        init_status_(std::move(init_status)),
        linger_(linger) {}
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const noexcept { return pid_; }
  /// Readable (EPOLLIN) once the process has exited.
  int pidfd() const noexcept { return pidfd_.get(); }
  /// Readable once the task's main process ended: the pidfd, or a lingering init's status
  /// pipe.
  int exit_fd() const noexcept { return linger_ ? init_status_.get() : pidfd_.get(); }
  /// The task's main process has not been seen to end.
  bool running() const noexcept { return linger_ ? !task_ended_ : pid_ > 0; }
  /// The process itself (a lingering init included) is not reaped yet.
  bool process_running() const noexcept { return pid_ > 0; }
  bool lingering() const noexcept { return linger_; }

  /// How the process ended.
  struct Exit {
    std::optional<int> exit_code;
    std::optional<int> signal;
  };
  /// Reaps the process if it has exited (WNOHANG); nullopt while it still runs.
  std::optional<Exit> try_reap();
  /// Blocks until the process exits and reaps it.
  Exit reap();
  /// A lingering init: reaps it if it has exited (WNOHANG), filling `usage` with its
  /// rusage (which includes every process of the tree it or they waited for). False while
  /// it still runs.
  bool reap_process(struct rusage* usage);

  /// Keeps `fd` open until the process is reaped (or killed and reaped at destruction):
  /// the lock of the task's dynamic uid.
  void hold_until_reaped(UniqueFd fd);

 private:
  Exit finish(int status);
  void forget_process();  ///< reaped: no pid, no pidfd, nothing held

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd init_status_;
  bool linger_ = false;
  bool task_ended_ = false;
  UniqueFd held_;
};

struct SandboxPlan;

/// Everything the child needs, prepared by the parent: the child itself only makes syscalls.
struct SpawnRequest {
  std::vector<std::string> argv;  ///< argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   ///< "NAME=value"; the environment of the new program
  int cgroup_fd = -1;             ///< the task's cgroup directory; -1: none (subreaper mode)
  SpawnMethod method = SpawnMethod::vfork;
  /// Descriptors to become the child's stdin, stdout and stderr (-1: inherit pollkill's).
  int stdio[3] = {-1, -1, -1};
  /// Subreaper mode: the child becomes a lingering init (see Child) that forks the task.
  /// Ignored with a pid namespace, whose init already holds every process of the task.
  bool subreaper_init = false;
  /// Called in pollkill with the child's pid right after the clone, before the child may go
  /// on: the child waits on a pipe until this returns, and exits without starting anything
  /// if pollkill dies (or this throws) first. Subreaper mode tells the guard of the task's
  /// init here, so that no task runs that the guard does not know of. Null: no wait.
  std::function<void(pid_t)> before_start{};
  /// Namespaces, mounts, ids, rlimits and the seccomp filter (null: none of them).
  const SandboxPlan* sandbox = nullptr;
  /// The working directory of the new program; empty: pollkill's own.
  std::string cwd{};
  /// cgroup.procs of the task's cgroup v1 cgroups (hybrid hosts), open for writing: the child
  /// writes "0" to each right after it is in its unified cgroup, before anything else runs.
  std::vector<int> join_v1_fds{};
};

/// Why the child could not become the program.
struct SpawnFailure {
  std::string step;  ///< "execve", "join cgroup", ...
  int error = 0;     ///< errno
};

struct Spawned {
  Child child;
  std::optional<SpawnFailure> failure;  ///< set when exec failed (the child exits 127)
  /// The method used: the one asked for, or the one it gave way to (vfork -> clone3 for an
  /// init, clone3 -> fork on a kernel without CLONE_INTO_CGROUP).
  SpawnMethod method = SpawnMethod::vfork;
};

/// The spawn method to use: vfork where the architecture has the trampoline, else clone3,
/// unless POLLKILL_SPAWN_METHOD names another, or the kernel lacks clone3/CLONE_INTO_CGROUP
/// (detected on first use, then remembered: fork).
SpawnMethod default_spawn_method();

/// Starts the program in its cgroup. Returns once the program is running (exec succeeded)
/// or the child reported its failure through a close-on-exec pipe. Throws SystemError when
/// the process cannot be created at all.
Spawned spawn(const SpawnRequest& request);

/// A process that shares the caller's memory (clone3 with CLONE_VM | CLONE_INTO_CGROUP, exit
/// signal SIGCHLD, no CLONE_VFORK: both run on) and is born in the cgroup `cgroup_fd`. It runs
/// `entry(argument)` on `stack` (which must outlive it), and entry must never return and may
/// make only system calls whose failure it ignores (it shares the caller's TLS, so errno too),
/// with no sanitizer instrumentation. Creating it copies no page tables, and its exit frees
/// none: the cheapest process there is. x86-64 only; elsewhere -1 with errno ENOSYS. Returns
/// the pid, or -1 with errno.
pid_t clone_sharing_memory_into_cgroup(int cgroup_fd, std::byte* stack, std::size_t stack_size,
                                       void (*entry)(void*), void* argument);

/// The candidate paths execve will try for `program` under the PATH value `path_env`
/// (empty candidates list when there is none). A program containing '/' is its only candidate.
std::vector<std::string> exec_candidates(const std::string& program, const std::string& path_env);

}  // namespace pollkill
