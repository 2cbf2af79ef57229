// Test workload: a fork bomb that ignores SIGTERM and keeps trying when fork fails, so only
// a pids limit contains it and only SIGKILL (cgroup.kill) ends it.
#include <signal.h>
#include <unistd.h>

#include <cstdio>

int main() {
  ::signal(SIGTERM, SIG_IGN);
  long forked = 0;
  for (;;) {
    pid_t pid = ::fork();
    if (pid == 0) {
      for (;;) ::pause();  // children ignore SIGTERM too (inherited)
    }
    if (pid > 0) {
      ++forked;
      if (forked % 8 == 0) {
        std::printf("forked %ld\n", forked);
        std::fflush(stdout);
      }
    } else {
      ::usleep(10000);  // EAGAIN at the pids limit: try again, as a real bomb would
    }
  }
}
