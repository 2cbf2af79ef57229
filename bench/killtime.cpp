// Kill latency harness for bench/kill: puts PROCESSES `sleep 600` processes into a fresh cgroup
// under CGROUP_PARENT (clone3 CLONE_INTO_CGROUP), then times pollkill's own kill_cgroup() (the
// core library's code, cgroup.kill or freeze/SIGKILL/thaw) from the decision to `populated 0`,
// watched through inotify on cgroup.events as the supervisor does. One line per round:
//   KILL_CALL_MS UNPOPULATED_MS PIDS_SEEN
//
//   killtime CGROUP_PARENT PROCESSES kill|freeze ROUNDS
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "pollkill/cgroup.h"
#include "pollkill/cgroupfs.h"

namespace {

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: killtime CGROUP_PARENT PROCESSES kill|freeze ROUNDS\n");
    return 2;
  }
  const std::string parent = argv[1];
  const long processes = std::strtol(argv[2], nullptr, 10);
  const auto method = std::string(argv[3]) == "freeze" ? pollkill::KillMethod::freeze_and_kill
                                                       : pollkill::KillMethod::cgroup_kill;
  const long rounds = std::strtol(argv[4], nullptr, 10);
  signal(SIGCHLD, SIG_IGN);  // the killed children reap themselves
  char sleep_path[] = "/bin/sleep";
  char sleep_arg[] = "600";
  char* child_argv[] = {sleep_path, sleep_arg, nullptr};
  char* child_envp[] = {nullptr};

  for (long round = 0; round < rounds; ++round) {
    const std::string path = parent + "/k" + std::to_string(round);
    if (mkdir(path.c_str(), 0755) != 0) {
      std::perror(path.c_str());
      return 1;
    }
    auto dir = pollkill::CgroupDir::open(path);
    for (long i = 0; i < processes; ++i) {
      clone_args args{};
      args.flags = CLONE_INTO_CGROUP;
      args.exit_signal = SIGCHLD;
      args.cgroup = static_cast<unsigned>(dir.fd());
      const long pid = syscall(SYS_clone3, &args, sizeof args);
      if (pid < 0) {
        std::perror("clone3");
        return 1;
      }
      if (pid == 0) {
        execve(child_argv[0], child_argv, child_envp);
        _exit(127);
      }
    }
    // Let every child reach exec and sleep, so the kill meets ordinary sleeping processes.
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + processes / 2));

    const int inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    inotify_add_watch(inotify, (path + "/cgroup.events").c_str(), IN_MODIFY);
    const auto start = std::chrono::steady_clock::now();
    const auto seen = pollkill::kill_cgroup(dir, method);
    const double call_ms = ms_since(start);
    while (dir.populated()) {
      pollfd event{inotify, POLLIN, 0};
      poll(&event, 1, 1000);
      char buffer[4096];
      while (read(inotify, buffer, sizeof buffer) > 0) {
      }
    }
    const double unpopulated_ms = ms_since(start);
    close(inotify);
    std::printf("%.3f %.3f %zu\n", call_ms, unpopulated_ms, seen.size());
    std::fflush(stdout);
    pollkill::remove_cgroup(path);
  }
  return 0;
}
