// The guard: a small process outside the task cgroups that reaps everything if pollkill
// itself dies (even by SIGKILL, which no handler can catch).
#pragma once

#include <sys/types.h>

#include "pollkill/cgroup.h"
#include "pollkill/fd.h"

namespace pollkill {

/// Forked right after the run cgroup is created, the guard blocks reading a pipe whose only
/// write end pollkill holds (close-on-exec, so no task inherits it). When the pipe closes,
/// whether pollkill finished or was killed, the guard destroys the run cgroup: kills every
/// process in it, waits for it to empty, removes it, then exits. It ignores SIGINT, SIGTERM
/// and SIGHUP so that a terminal's signal to the process group reaches pollkill's own
/// handling instead.
class Guard {
 public:
  static Guard start(RunCgroup& run);

  Guard() = default;
  Guard(Guard&& other) noexcept;
  Guard& operator=(Guard&& other) noexcept;
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  ~Guard() { stop(); }

  /// Closes the pipe and waits for the guard to finish. Idempotent.
  void stop() noexcept;
  pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  UniqueFd pipe_;
};

}  // namespace pollkill
