// The CPU a task wanted but did not get: the time its threads were runnable and waiting for a
// CPU, which the watchdog adds to the CPU received (Sample::cpu_wait_usec). Two kernel figures
// measure it, each a lower bound of the true sum over threads; docs/ARCHITECTURE.md ("CPU
// wanted") says which is used where and why:
//  - the task cgroup's cpu.pressure `some` total (pressure.h): one pread, counts threads that
//    came and went between samples, but understates when threads migrate between CPUs and when
//    several wait at once (it is wall time with at least one waiting);
//  - each thread's /proc/TID/schedstat run delay: exact per thread, summed, but only for the
//    threads alive at both samples, at the cost of a read per thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pollkill/cgroupfs.h"

namespace pollkill {

/// /proc/TID/schedstat: time on a CPU, time runnable but waiting on a run queue (both ns), and
/// the number of timeslices run. Kept by the kernel with CONFIG_SCHED_INFO (every distribution
/// kernel; it comes with CONFIG_SCHEDSTATS or CONFIG_TASK_DELAY_ACCT).
struct SchedStat {
  std::uint64_t run_ns = 0;
  std::uint64_t wait_ns = 0;
  std::uint64_t slices = 0;
};

/// Parses "RUN_NS WAIT_NS SLICES\n"; nullopt when malformed.
std::optional<SchedStat> parse_schedstat(std::string_view text);

struct ThreadSchedStat {
  pid_t tid = 0;
  SchedStat stat;
};

/// Reads `<proc>/TID/schedstat` for each thread (the per-thread file is reachable by its tid
/// alone). Threads that are gone, or whose file does not parse, are left out.
std::vector<ThreadSchedStat> read_schedstats(const std::vector<pid_t>& tids,
                                             const std::filesystem::path& proc = "/proc");

/// The threads of processes from `<proc>/PID/task/` (subreaper mode: the tree's members).
/// Processes that are gone are left out.
std::vector<pid_t> threads_of(const std::vector<pid_t>& pids,
                              const std::filesystem::path& proc = "/proc");

/// The threads of a cgroup (cgroup mode) from its cgroup.threads, open for reads (the watch
/// opens it for one read and closes it); empty when the cgroup is gone.
class CgroupThreads {
 public:
  CgroupThreads() = default;
  explicit CgroupThreads(const CgroupDir& dir) : reader_(AttrReader::open(dir, "cgroup.threads")) {}
  std::vector<pid_t> read() const;

 private:
  AttrReader reader_;
};

/// Turns the readings of each sample into the cumulative Sample::cpu_wait_usec (pure).
///
/// Per interval between two calls the wait is the larger of the two lower bounds: the growth
/// of the cgroup's cpu.pressure `some` total, and the summed growth of the threads' run delay.
/// A thread seen for the first time counts with its whole run delay (it was born in the
/// interval; a tid reused for a new thread, whose counter went down, likewise), but never with
/// more than the interval's length, so a thread missed by an earlier listing cannot make up a
/// wait the interval could not hold. A PSI total that goes down counts as no growth.
///
/// The first call sets the baseline and adds nothing: call it when the task starts (the
/// watchdog's start sample), then at every sample. A call with no threads keeps the threads'
/// baseline (they were not read, or none is left); a call no later than the previous one adds
/// nothing and keeps the baseline.
class CpuWaitMeter {
 public:
  /// `psi_some_usec`: the cgroup's cpu.pressure some total now (nullopt: none, e.g. subreaper
  /// mode); `threads`: the schedstat of the task's threads now (empty: not read). Returns the
  /// cumulative wait in microseconds, never decreasing.
  std::uint64_t observe(std::chrono::steady_clock::time_point at,
                        std::optional<std::uint64_t> psi_some_usec,
                        const std::vector<ThreadSchedStat>& threads);
  std::uint64_t total_usec() const noexcept { return total_usec_; }

 private:
  std::optional<std::chrono::steady_clock::time_point> prev_at_;
  std::optional<std::uint64_t> prev_psi_;
  std::unordered_map<pid_t, std::uint64_t> prev_wait_ns_;
  std::uint64_t total_usec_ = 0;
};

}  // namespace pollkill
