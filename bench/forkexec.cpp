// The physical floor for bench/throughput: runs PROGRAM COUNT times, one at a time, with the
// bare syscalls a supervisor cannot avoid. Without CGROUP_PARENT: fork, execve, waitpid.
// With it: mkdir a cgroup, clone3(CLONE_INTO_CGROUP) into it, execve, waitpid, rmdir.
//
//   forkexec COUNT PROGRAM [CGROUP_PARENT]
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: forkexec COUNT PROGRAM [CGROUP_PARENT]\n");
    return 2;
  }
  const long count = std::strtol(argv[1], nullptr, 10);
  char* child_argv[] = {argv[2], nullptr};
  char* child_envp[] = {nullptr};
  const char* parent = argc > 3 ? argv[3] : nullptr;
  for (long i = 0; i < count; ++i) {
    std::string dir;
    int cgroup_fd = -1;
    pid_t pid;
    if (parent != nullptr) {
      dir = std::string(parent) + "/t" + std::to_string(i);
      if (mkdir(dir.c_str(), 0755) != 0 ||
          (cgroup_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        std::perror(dir.c_str());
        return 1;
      }
      clone_args args{};
      args.flags = CLONE_INTO_CGROUP;
      args.exit_signal = SIGCHLD;
      args.cgroup = static_cast<unsigned>(cgroup_fd);
      pid = static_cast<pid_t>(syscall(SYS_clone3, &args, sizeof args));
    } else {
      pid = fork();
    }
    if (pid < 0) {
      std::perror("fork/clone3");
      return 1;
    }
    if (pid == 0) {
      execve(child_argv[0], child_argv, child_envp);
      _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "forkexec: child %d failed (status %d)\n", pid, status);
      return 1;
    }
    if (parent != nullptr) {
      close(cgroup_fd);
      // The reaped child leaves the cgroup asynchronously on some kernels: retry EBUSY.
      while (rmdir(dir.c_str()) != 0) {
        if (errno != EBUSY) {
          std::perror(dir.c_str());
          return 1;
        }
        sched_yield();
      }
    }
  }
  return 0;
}
