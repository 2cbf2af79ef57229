// Relaying a task's stdout and stderr through pollkill, counting bytes for the output limit.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/fd.h"

namespace pollkill {

/// Two pipes that become the task's stdout and stderr; pollkill copies what arrives to two
/// destinations and counts it. Used when an `output` limit is set: by `run` towards its own
/// stdout and stderr, by `batch` towards the task's log files (otherwise the task writes
/// there itself and nothing is copied).
///
/// The relay never blocks the supervisor:
/// - a destination that can make a writer wait (a pipe, a terminal, a socket) is written
///   without blocking, through a non-blocking open file description of its own (opened again
///   through /proc/self/fd), or, where it cannot be opened again (a socket, another user's
///   terminal), by making the shared one non-blocking until the relay is destroyed;
/// - when a destination takes no more, what is left of the chunk waits in the relay and the
///   stream is not read until the destination is writable again (dest_fd): the task's own
///   writes then wait in its pipe, as they would in a pipeline;
/// - a destination whose reader went away (EPIPE) or that fails closes that stream's pipe:
///   the task's next write to it fails with EPIPE (SIGPIPE), as in a pipeline.
///
/// With a limit, at most `limit` bytes of both streams together reach the destinations; what
/// arrives beyond it is counted (the task's output_limit verdict) and dropped.
class OutputRelay {
 public:
  /// What a stream needs next.
  enum class State {
    open,     ///< wait until read_end() is readable, then pump()
    blocked,  ///< wait until dest_fd() is writable, then flush()
    closed,   ///< done: EOF, or its destination is gone; its read end is closed
  };

  /// Creates the pipes (all ends close-on-exec, the read ends non-blocking) and prepares the
  /// destinations (descriptors that stay the caller's; -1 discards). Throws SystemError.
  OutputRelay(int stdout_dest, int stderr_dest, std::optional<std::uint64_t> limit);
  OutputRelay(const OutputRelay&) = delete;
  OutputRelay& operator=(const OutputRelay&) = delete;
  /// Gives a shared destination its blocking mode back.
  ~OutputRelay();

  /// The write ends the child dup2()s onto 1 and 2.
  int child_end(int stream) const noexcept { return write_[stream].get(); }
  /// Closes the parent's copies of the write ends (after the spawn), so EOF can arrive.
  void close_child_ends() noexcept;
  /// The read end of stream 0 (stdout) or 1 (stderr); -1 once closed.
  int read_end(int stream) const noexcept { return streams_[stream].read.get(); }
  /// The descriptor to wait on for writability while `stream` is blocked.
  int dest_fd(int stream) const noexcept { return streams_[stream].dest; }

  /// Reads what is available on `stream` and copies it, until the pipe is empty (open), the
  /// destination takes no more (blocked) or the stream ended (closed).
  State pump(int stream);
  /// Writes what waits for a blocked stream's destination: open once all of it went.
  State flush(int stream);
  State state(int stream) const noexcept;
  /// The last pump found `stream`'s pipe empty.
  bool drained(int stream) const noexcept { return streams_[stream].drained; }

  /// Stops relaying: what waits is dropped and both pipes are closed (the task's next write
  /// fails with EPIPE). Returns the bytes dropped.
  std::uint64_t abandon() noexcept;
  /// Bytes received so far on both streams.
  std::uint64_t total() const noexcept { return total_; }

 private:
  struct Stream {
    UniqueFd read;
    int dest = -1;               ///< where it goes: the caller's, or own_dest
    UniqueFd own_dest;           ///< a non-blocking description of the caller's own
    std::string name;            ///< "stdout" or "stderr", for messages
    std::vector<char> pending;   ///< read, not yet written
    std::size_t pending_at = 0;  ///< how much of `pending` went already
    bool drained = false;        ///< the last read found the pipe empty
  };
  void prepare_dest(int stream, int fd);
  State write_pending(int stream);
  void close_stream(int stream) noexcept;

  Stream streams_[2];
  UniqueFd write_[2];
  std::optional<std::uint64_t> remaining_;  ///< bytes the limit still lets through
  std::uint64_t total_ = 0;
  /// Shared descriptions made non-blocking: (fd, original flags), restored at destruction.
  std::vector<std::pair<int, int>> restore_flags_;
};

}  // namespace pollkill
