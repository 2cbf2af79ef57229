#include "pollkill/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pollkill/diag.h"
#include "pollkill/error.h"

namespace pollkill {
namespace {

// One pump reads at most this much before it lets the loop look at its timers and signals:
// a task writing as fast as pollkill copies must not keep the supervisor in here.
constexpr std::size_t kChunk = 65536;
constexpr int kChunksPerPump = 16;

}  // namespace

OutputRelay::OutputRelay(int stdout_dest, int stderr_dest, std::optional<std::uint64_t> limit)
    : remaining_(limit) {
  streams_[0].name = "stdout";
  streams_[1].name = "stderr";
  for (int i = 0; i < 2; ++i) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("create the output pipe");
    streams_[i].read.reset(fds[0]);
    write_[i].reset(fds[1]);
    if (::fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) throw_errno("make the output pipe non-blocking");
  }
  prepare_dest(0, stdout_dest);
  prepare_dest(1, stderr_dest);
}

OutputRelay::~OutputRelay() {
  // In reverse: when both streams share one description, the first saved its real flags.
  for (auto it = restore_flags_.rbegin(); it != restore_flags_.rend(); ++it) {
    ::fcntl(it->first, F_SETFL, it->second);
  }
}

void OutputRelay::prepare_dest(int stream, int fd) {
  Stream& s = streams_[stream];
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return;  // closed: the output is counted and dropped
  s.dest = fd;
  // A regular file (a batch log, `run > file`) or a block device never waits for a reader.
  if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISSOCK(st.st_mode)) return;
  if (!S_ISSOCK(st.st_mode)) {
    // A description of its own, so that the caller's (shared with the shell, the other
    // commands of the pipeline) keeps its blocking mode.
    const std::string again = "/proc/self/fd/" + std::to_string(fd);
    s.own_dest.reset(::open(again.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (s.own_dest) {
      s.dest = s.own_dest.get();
      return;
    }
  }
  // A socket cannot be opened again, nor another user's terminal after su: the shared
  // description is non-blocking while the relay lives.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_errno("read the flags of the task's " + s.name + " destination");
  if (flags & O_NONBLOCK) return;
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    throw_errno("make the task's " + s.name + " destination non-blocking");
  }
  restore_flags_.emplace_back(fd, flags);
}

void OutputRelay::close_child_ends() noexcept {
  write_[0].reset();
  write_[1].reset();
}

OutputRelay::State OutputRelay::state(int stream) const noexcept {
  const Stream& s = streams_[stream];
  if (!s.read) return State::closed;
  return s.pending_at < s.pending.size() ? State::blocked : State::open;
}

void OutputRelay::close_stream(int stream) noexcept {
  Stream& s = streams_[stream];
  s.read.reset();
  s.pending.clear();
  s.pending_at = 0;
}

OutputRelay::State OutputRelay::write_pending(int stream) {
  Stream& s = streams_[stream];
  while (s.pending_at < s.pending.size()) {
    if (s.dest < 0) break;
    ssize_t w = ::write(s.dest, s.pending.data() + s.pending_at, s.pending.size() - s.pending_at);
    if (w > 0) {
      s.pending_at += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return State::blocked;
    // The reader went away (EPIPE) or the destination failed: the stream ends as in a
    // pipeline, the task's next write to it fails.
    if (w == 0 || errno != EPIPE) {
      const int err = w == 0 ? EIO : errno;
      diag::warning("the task's " + s.name + " is closed: write: " + std::strerror(err));
    }
    close_stream(stream);
    return State::closed;
  }
  s.pending.clear();
  s.pending_at = 0;
  return State::open;
}

OutputRelay::State OutputRelay::pump(int stream) {
  Stream& s = streams_[stream];
  if (State now = state(stream); now != State::open) return now;
  char buf[kChunk];
  for (int chunk = 0; chunk < kChunksPerPump; ++chunk) {
    ssize_t n = ::read(s.read.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    s.drained = n < 0 && errno == EAGAIN;
    if (s.drained) return State::open;
    if (n <= 0) {
      close_stream(stream);
      return State::closed;
    }
    total_ += static_cast<std::uint64_t>(n);
    std::size_t pass = static_cast<std::size_t>(n);
    if (remaining_) {
      pass = static_cast<std::size_t>(std::min<std::uint64_t>(pass, *remaining_));
      *remaining_ -= pass;  // beyond the limit: counted, not copied
    }
    s.pending.assign(buf, buf + pass);
    if (State next = write_pending(stream); next != State::open) return next;
  }
  return State::open;  // more may be there: the loop calls again (level-triggered)
}

OutputRelay::State OutputRelay::flush(int stream) {
  if (!streams_[stream].read) return State::closed;
  return write_pending(stream);
}

std::uint64_t OutputRelay::abandon() noexcept {
  std::uint64_t dropped = 0;
  for (int i = 0; i < 2; ++i) {
    dropped += streams_[i].pending.size() - streams_[i].pending_at;
    close_stream(i);
  }
  return dropped;
}

}  // namespace pollkill
