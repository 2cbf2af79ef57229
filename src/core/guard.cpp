#include "pollkill/guard.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <string>
#include <utility>

#include "pollkill/error.h"
#include "pollkill/proctree.h"

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

}  // namespace

Guard Guard::start(RunCgroup* run) {
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
      run->destroy();
      run->leave_leaf();
    }
    ::_exit(0);
  }
  Guard guard;
  guard.pid_ = pid;
  guard.pipe_ = std::move(write_end);
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
