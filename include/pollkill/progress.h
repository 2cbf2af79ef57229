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

/// The counters of /proc/PID/io that only grow over a process's life.
struct IoCounters {
  std::uint64_t rchar = 0, wchar = 0, syscr = 0, syscw = 0;
  /// Whether these can be the same process's counters later than `earlier` (none went down);
  /// false: the pid now belongs to another process.
  bool could_follow(const IoCounters& earlier) const;
};

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

  std::optional<std::string> heartbeat_;
  HeartbeatState heartbeat_state_;
  /// The processes seen at the previous call, with their counters then. /proc/PID/io is
  /// opened for each reading and closed: a running task holds no descriptor for it.
  std::unordered_map<int, IoCounters> procs_;
};

/// The `wchar` field of /proc/PID/io text; nullopt when absent.
std::optional<std::uint64_t> parse_wchar(const std::string& proc_io);
/// rchar, wchar, syscr and syscw of /proc/PID/io text; nullopt when one is absent.
std::optional<IoCounters> parse_io_counters(const std::string& proc_io);

}  // namespace pollkill
