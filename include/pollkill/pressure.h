// Pressure stall information (PSI): how long a cgroup's tasks waited for a CPU or stalled on
// memory. The kernel keeps a cpu.pressure, memory.pressure and io.pressure file in every cgroup
// of the unified hierarchy when it was built with CONFIG_PSI (Linux 4.20+) and not booted with
// psi=0, whether or not the cpu or memory controller is enabled there.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "pollkill/cgroupfs.h"

namespace pollkill {

/// The cumulative totals of one PSI file, in microseconds of wall time.
///
/// `some`: time during which at least one of the group's tasks was stalled (for cpu: runnable
/// but not running; for memory: reclaiming, refaulting its working set, or throttled by
/// memory.high). `full`: time during which all of its non-idle tasks were stalled at once.
/// For a group whose tasks run on several CPUs the kernel averages each CPU's stall time
/// weighted by that CPU's non-idle time, so a task that migrates between CPUs shows less `some`
/// than it waited (docs/ARCHITECTURE.md, "CPU wanted").
struct PressureTotals {
  std::uint64_t some_usec = 0;
  /// Absent from cpu.pressure before Linux 5.13 (which added the cpu `full` line).
  std::optional<std::uint64_t> full_usec;
};

/// Parses a PSI file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=123" and a "full" line
/// alike. nullopt when there is no well-formed "some" line.
std::optional<PressureTotals> parse_pressure(std::string_view text);

/// One PSI file of a task's cgroup, open for reads (the watch opens it for one read and
/// closes it: include/pollkill/fdlimit.h).
class PressureFile {
 public:
  PressureFile() = default;
  /// Opens `attr` ("cpu.pressure", "memory.pressure") of `dir`. An empty file (false) when the
  /// kernel keeps no such file there (no PSI).
  static PressureFile open(const CgroupDir& dir, std::string_view attr);

  explicit operator bool() const noexcept { return static_cast<bool>(reader_); }
  /// The totals now; nullopt when there is no file, it cannot be read (the cgroup is gone;
  /// `cgroup.pressure` set to 0 turns PSI off for a cgroup: EOPNOTSUPP) or it does not parse.
  std::optional<PressureTotals> read() const;

 private:
  AttrReader reader_;
};

}  // namespace pollkill
