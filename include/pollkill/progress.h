// Progress evidence for the watchdog: is the task doing observable work?
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pollkill/fd.h"

namespace pollkill {

/// Collects the evidence that counts as progress between two samples (docs/ARCHITECTURE.md):
///  - any process of the task wrote bytes: its `wchar` in /proc/PID/io grew (or, for a process
///    first seen now, is above zero). wchar counts every write(2)-family call: to files, pipes,
///    terminals and sockets;
///  - the heartbeat file (if configured) changed: its mtime, size or inode differ.
/// Reading /proc/PID/io needs the same user or root; unreadable processes simply give no
/// evidence.
class ProgressProbe {
 public:
  explicit ProgressProbe(std::optional<std::string> heartbeat = std::nullopt);

  /// Looks at the given processes (from cgroup.procs) and the heartbeat; true when any
  /// evidence of progress appeared since the previous call.
  bool observe(const std::vector<int>& pids);

 private:
  struct HeartbeatState {
    bool exists = false;
    std::int64_t mtime_ns = 0;
    std::int64_t size = 0;
    std::uint64_t inode = 0;
    bool operator==(const HeartbeatState&) const = default;
  };
  HeartbeatState read_heartbeat() const;

  /// A process seen at the previous call: its wchar then and, for the first kMaxOpenIo
  /// processes, /proc/PID/io kept open (a pread per sample instead of a path walk, an open and
  /// a close; the descriptor stays bound to that process, so a reused pid is noticed).
  struct Proc {
    std::uint64_t wchar = 0;
    UniqueFd io;
  };
  static constexpr std::size_t kMaxOpenIo = 8;

  std::optional<std::string> heartbeat_;
  HeartbeatState heartbeat_state_;
  std::unordered_map<int, Proc> procs_;
};

/// The `wchar` field of /proc/PID/io text; nullopt when absent.
std::optional<std::uint64_t> parse_wchar(const std::string& proc_io);

}  // namespace pollkill
