// Test workload for the sandbox: tries one thing the sandbox may forbid and prints what
// happened. Usage: pk_sandbox_probe socket | connect PORT | unix PATH | escape FILE... |
//                   kill PID | clone-ns | clone3-ns | fork COUNT | alone | i386 | x32 | abort
// Exit status: 0 when the attempt succeeded, 1 when it failed (after printing the errno).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int report(const char* what, bool ok) {
  if (ok) {
    std::printf("%s: ok\n", what);
    return 0;
  }
  std::printf("%s: %s\n", what, strerrorname_np(errno));
  return 1;
}

// The child of a successful clone: leaves at once, its namespaces with it.
int reap(pid_t pid) {
  if (pid == 0) ::_exit(0);
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  return pid;
}

// Forks children that wait until killed, up to `count` or the first failure, and prints how
// many it got: a per-task process bound shows as a number below `count`.
int fork_many(int count) {
  std::vector<pid_t> children;
  int err = 0;
  for (int i = 0; i < count; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
    if (pid < 0) {
      err = errno;
      break;
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) ::kill(pid, SIGKILL);
  for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
  std::printf("forked %zu%s%s\n", children.size(), err ? ", then " : "",
              err ? strerrorname_np(err) : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  const std::string what = argc > 1 ? argv[1] : "";
  if (what == "socket") return report("socket", ::socket(AF_INET, SOCK_STREAM, 0) >= 0);
  if (what == "connect" && argc > 2) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return report("socket", false);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return report("connect",
                  ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }
  if (what == "unix" && argc > 2) {
    // A filesystem unix socket of the host: reachable unless the sandbox hides the path.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return report("socket", false);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, argv[2], sizeof address.sun_path - 1);
    return report("unix",
                  ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }
  if (what == "clone-ns") {
    // What `unshare` alone does not stop: new user, network and mount namespaces from clone.
    const long flags = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | SIGCHLD;
    return report("clone-ns",
                  reap(static_cast<pid_t>(::syscall(SYS_clone, flags, 0, 0, 0, 0))) >= 0);
  }
  if (what == "clone3-ns") {
    clone_args args{};
    args.flags = CLONE_NEWUSER | CLONE_NEWNET;
    args.exit_signal = SIGCHLD;
    return report("clone3-ns",
                  reap(static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args))) >= 0);
  }
  if (what == "fork" && argc > 2) return fork_many(std::atoi(argv[2]));
  if (what == "alone") {
    // Whether any other process runs as this user: with RLIMIT_NPROC at 2, a fork (which
    // counts the new child) succeeds only when this process is the user's only one.
    rlimit two{2, 2};
    if (::setrlimit(RLIMIT_NPROC, &two) != 0) return report("setrlimit", false);
    return report("alone", reap(::fork()) >= 0);
  }
  if (what == "escape") {
    // Writes its own pid into each cgroup.procs given: success would move it out of its cgroup.
    int failures = 0;
    const std::string pid = std::to_string(::getpid());
    for (int i = 2; i < argc; ++i) {
      int fd = ::open(argv[i], O_WRONLY);
      bool ok = fd >= 0 && ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
      failures += report(argv[i], ok);
    }
    return failures == argc - 2 ? 1 : 0;
  }
  if (what == "kill" && argc > 2) return report("kill", ::kill(std::atoi(argv[2]), 0) == 0);
  if (what == "i386") {
#if defined(__x86_64__)
    // getpid (20) through the i386 table: a filter for x86_64 alone must not let it through.
    long result;
    asm volatile("int $0x80" : "=a"(result) : "a"(20) : "memory");
    std::printf("i386: returned %ld\n", result);
    return 0;
#else
    std::printf("i386: not an x86_64 build\n");
    return 2;
#endif
  }
  if (what == "x32") {
#if defined(__x86_64__)
    // getpid (39) through the x32 table (0x40000000 | nr); ENOSYS where the kernel lacks x32.
    std::printf("x32: returned %ld\n", ::syscall(0x40000000L + 39));
    return 0;
#else
    std::printf("x32: not an x86_64 build\n");
    return 2;
#endif
  }
  if (what == "abort") std::abort();
  std::fprintf(stderr,
               "usage: pk_sandbox_probe socket|connect PORT|unix PATH|escape FILE...|kill PID|"
               "clone-ns|clone3-ns|fork COUNT|alone|i386|x32|abort\n");
  return 2;
}
