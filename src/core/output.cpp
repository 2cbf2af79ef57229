#include "pollkill/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "pollkill/error.h"

namespace pollkill {

OutputRelay OutputRelay::create(int stdout_dest, int stderr_dest) {
  OutputRelay relay;
  relay.dest_[0] = stdout_dest;
  relay.dest_[1] = stderr_dest;
  for (int i = 0; i < 2; ++i) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("create the output pipe");
    relay.read_[i].reset(fds[0]);
    relay.write_[i].reset(fds[1]);
    if (::fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) throw_errno("make the output pipe non-blocking");
  }
  return relay;
}

void OutputRelay::close_child_ends() noexcept {
  write_[0].reset();
  write_[1].reset();
}

bool OutputRelay::pump(int stream) {
  if (!read_[stream]) return false;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(read_[stream].get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      read_[stream].reset();
      return false;
    }
    if (n == 0) {
      read_[stream].reset();
      return false;
    }
    total_ += static_cast<std::uint64_t>(n);
    // A reader that went away (EPIPE) must not stop the counting or the task.
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(dest_[stream], buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      done += w;
    }
  }
}

void OutputRelay::drain() {
  // pump reads until the pipe is empty (EAGAIN) or closed (EOF).
  for (int i = 0; i < 2; ++i) pump(i);
}

}  // namespace pollkill
