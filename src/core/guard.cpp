#include "pollkill/guard.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "pollkill/error.h"

namespace pollkill {

Guard Guard::start(RunCgroup& run) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("create the guard pipe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork the guard process");
  if (pid == 0) {
    // The guard: a fork of pollkill that only waits for the pipe to close.
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
    char byte;
    while (::read(read_end.get(), &byte, 1) != 0 && errno == EINTR) {
    }
    run.destroy();
    run.leave_leaf();
    ::_exit(0);
  }
  Guard guard;
  guard.pid_ = pid;
  guard.pipe_ = std::move(write_end);
  return guard;
}

Guard::Guard(Guard&& other) noexcept {
  *this = std::move(other);
}

Guard& Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
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
}

}  // namespace pollkill
