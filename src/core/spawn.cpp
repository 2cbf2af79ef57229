#include "pollkill/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "pollkill/error.h"

namespace pollkill {
namespace {

// Steps the child reports through the pipe; kept as numbers because the child may not
// allocate, and turned into words by the parent.
enum ChildStep : int {
  kStepPdeathsig = 1,
  kStepJoinCgroup = 2,
  kStepExecve = 3,
  kStepStdio = 4,
  kStepChdir = 5
};

const char* step_name(int step) {
  switch (step) {
    case kStepPdeathsig: return "set the parent-death signal";
    case kStepJoinCgroup: return "join the task cgroup";
    case kStepExecve: return "execve";
    case kStepStdio: return "set up stdin/stdout/stderr";
    case kStepChdir: return "chdir";
  }
  return "start";
}

struct ChildReport {
  int step;
  int error;
};

// Everything the child touches, built by the parent before the clone.
struct ChildPlan {
  char* const* argv;
  char* const* envp;
  const char* const* candidates;
  size_t candidate_count;
  int report_fd;
  int join_fd;  // cgroup.procs of the task cgroup (fork fallback only), else -1
  pid_t parent;
  const int* stdio;  // three descriptors, -1 = inherit
  const char* cwd;   // directory to change into, or nullptr
};

[[noreturn]] void report_and_exit(int fd, int step, int err) {
  ChildReport report{step, err};
  ssize_t ignored = ::write(fd, &report, sizeof report);
  (void)ignored;
  ::_exit(127);
}

// Runs in the child between clone and exec: syscalls only, no allocation, no locks.
[[noreturn]] void child_main(const ChildPlan& plan) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);  // pollkill blocks signals for its signalfd
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, nullptr);  // pollkill ignores SIGPIPE; the task must not
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    report_and_exit(plan.report_fd, kStepPdeathsig, errno);
  if (::getppid() != plan.parent) ::_exit(127);  // pollkill died before prctl took effect
  if (plan.join_fd >= 0 && ::write(plan.join_fd, "0", 1) != 1) {
    report_and_exit(plan.report_fd, kStepJoinCgroup, errno);
  }
  for (int target = 0; target < 3; ++target) {
    // dup2 clears close-on-exec on the copy, so the program keeps it.
    if (plan.stdio[target] >= 0 && ::dup2(plan.stdio[target], target) < 0) {
      report_and_exit(plan.report_fd, kStepStdio, errno);
    }
  }
  if (plan.cwd && ::chdir(plan.cwd) != 0) report_and_exit(plan.report_fd, kStepChdir, errno);
  // Like execvp: EACCES from any candidate wins over ENOENT; other errors stop the search.
  int result = ENOENT;
  for (size_t i = 0; i < plan.candidate_count; ++i) {
    ::execve(plan.candidates[i], plan.argv, plan.envp);
    int err = errno;
    if (err == EACCES) {
      result = EACCES;
    } else if (err != ENOENT && err != ENOTDIR) {
      report_and_exit(plan.report_fd, kStepExecve, err);
    }
  }
  report_and_exit(plan.report_fd, kStepExecve, result);
}

std::atomic<bool> clone3_unsupported{false};

pid_t clone3_into_cgroup(int cgroup_fd, int* pidfd) {
  struct clone_args args {};
  args.flags = CLONE_INTO_CGROUP | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<std::uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

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
  }
  return *this;
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);  // still unreaped, so the pid cannot have been reused
    reap();
  }
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
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  if (r < 0) throw_errno("wait for process " + std::to_string(pid_));
  pid_ = -1;
  pidfd_.reset();
  return decode(status);
}

Child::Exit Child::reap() {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  pid_ = -1;
  pidfd_.reset();
  if (r < 0) return {};
  return decode(status);
}

SpawnMethod default_spawn_method() {
  const char* forced = ::getenv("POLLKILL_SPAWN_METHOD");
  if (forced && std::strcmp(forced, "fork") == 0) return SpawnMethod::fork;
  return clone3_unsupported ? SpawnMethod::fork : SpawnMethod::clone3;
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

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw_errno("create the exec-status pipe");
  UniqueFd report_read(pipe_fds[0]);
  UniqueFd report_write(pipe_fds[1]);

  ChildPlan plan{
      argv.data(), envp.data(),        cand.data(),
      cand.size(), report_write.get(), -1,
      ::getpid(),  request.stdio,      request.cwd.empty() ? nullptr : request.cwd.c_str()};
  SpawnMethod method = request.method;
  pid_t pid = -1;
  int pidfd = -1;
  if (method == SpawnMethod::clone3) {
    pid = clone3_into_cgroup(request.cgroup_fd, &pidfd);
    if (pid == 0) child_main(plan);
    if (pid < 0 && (errno == ENOSYS || errno == E2BIG)) {
      // Kernel before 5.7: no clone3 or no cgroup field in clone_args.
      clone3_unsupported = true;
      method = SpawnMethod::fork;
    } else if (pid < 0) {
      throw_errno("clone3 into the task cgroup");
    }
  }
  UniqueFd join_fd;
  if (method == SpawnMethod::fork) {
    join_fd.reset(::openat(request.cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC));
    if (!join_fd) throw_errno("open cgroup.procs of the task cgroup");
    plan.join_fd = join_fd.get();
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
  Spawned spawned{Child(pid, UniqueFd(pidfd)), std::nullopt};
  report_write.reset();
  join_fd.reset();
  ChildReport report{};
  ssize_t n;
  do {
    n = ::read(report_read.get(), &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof report)) {
    spawned.failure = SpawnFailure{step_name(report.step), report.error};
  }
  return spawned;
}

}  // namespace pollkill
