// Relaying a task's stdout and stderr through pollkill, counting bytes for the output limit.
#pragma once

#include <cstdint>

#include "pollkill/fd.h"

namespace pollkill {

/// Two pipes that become the task's stdout and stderr; pollkill copies what arrives to its
/// own stdout and stderr and counts it. Used by `run` only when an `output` limit is set
/// (otherwise the task inherits pollkill's descriptors and nothing is copied).
class OutputRelay {
 public:
  /// Creates the pipes; the read ends are non-blocking, all ends close-on-exec.
  static OutputRelay create(int stdout_dest, int stderr_dest);

  /// The write ends the child dup2()s onto 1 and 2.
  int child_end(int stream) const noexcept { return write_[stream].get(); }
  /// Closes the parent's copies of the write ends (after the spawn), so EOF can arrive.
  void close_child_ends() noexcept;
  /// The read end of stream 0 (stdout) or 1 (stderr), for epoll.
  int read_end(int stream) const noexcept { return read_[stream].get(); }

  /// Copies what is available on `stream` to its destination. Returns false once the
  /// stream reached EOF (then its read end is closed).
  bool pump(int stream);
  /// Copies everything still buffered in both pipes (at the end of the task).
  void drain();
  /// Bytes received so far on both streams.
  std::uint64_t total() const noexcept { return total_; }

 private:
  UniqueFd read_[2];
  UniqueFd write_[2];
  int dest_[2] = {1, 2};
  std::uint64_t total_ = 0;
};

}  // namespace pollkill
