// A task's process tree seen through /proc, for hosts without a usable cgroup (subreaper
// mode): who belongs to the task, how much CPU it used, and killing all of it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pollkill/result.h"

namespace pollkill {

/// The fields of /proc/PID/stat that tree tracking needs.
struct ProcStat {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';         ///< R S D Z T t X I
  std::uint64_t utime = 0;  ///< clock ticks, this process's threads
  std::uint64_t stime = 0;
  std::uint64_t cutime = 0;  ///< clock ticks of waited-for children (and theirs)
  std::uint64_t cstime = 0;
  std::uint64_t starttime = 0;  ///< clock ticks after boot: with the pid, names one process
};

/// Parses one /proc/PID/stat line (pure). The command name may hold spaces and ')' : the
/// fields after the last ')' are what is read. nullopt when the text is malformed.
std::optional<ProcStat> parse_proc_stat(std::string_view text);

/// `root` and every process whose chain of parents leads to it, from a snapshot (pure).
/// Sorted by pid; empty when `root` is not in the snapshot.
std::vector<pid_t> descendants_of(const std::vector<ProcStat>& snapshot, pid_t root);

/// CPU time of a tree in microseconds (pure): over the given members, their own
/// utime + stime plus cutime + cstime (what their waited-for children used). A process
/// reaped by a member moved its time into that member's cutime/cstime, so nothing counts
/// twice; children of a parent that does not wait (SIGCHLD ignored) are lost.
std::uint64_t tree_cpu_usec(const std::vector<ProcStat>& members, long ticks_per_second);

/// Reads a /proc directory: the real one, or a fake one in unit tests.
class ProcDir {
 public:
  explicit ProcDir(std::filesystem::path root = "/proc") : root_(std::move(root)) {}
  /// Every process's stat that could be read (processes vanish while scanning).
  std::vector<ProcStat> snapshot() const;
  /// The pids listed now (cheap: no file is read).
  std::vector<pid_t> pids() const;
  /// One process's stat; nullopt when it is gone.
  std::optional<ProcStat> stat(pid_t pid) const;
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

/// One sample round of every task (Engine::on_sample): while one is alive, the sampling scans
/// of every task's tree (ProcTree::scan_for_sample, subreaper mode) share one snapshot of a
/// /proc directory, taken at the first of them, instead of one full read of /proc per task
/// and tick. Kills and every other scan read /proc afresh. One round at a time, one thread.
class SharedProcSnapshot {
 public:
  SharedProcSnapshot();
  ~SharedProcSnapshot();
  SharedProcSnapshot(const SharedProcSnapshot&) = delete;
  SharedProcSnapshot& operator=(const SharedProcSnapshot&) = delete;

  /// This round's snapshot of `proc` (taken now if it is the round's first); null when no
  /// round is open.
  static const std::vector<ProcStat>* of(const ProcDir& proc);

 private:
  std::filesystem::path root_;
  bool taken_ = false;
  std::vector<ProcStat> snapshot_;
};

/// A process that would not die, as the result reports it: its state letter and name
/// ("D (disk sleep)") and its command name, from /proc/PID/stat; both empty when it is gone.
UnkillableProcess describe_process(pid_t pid, const ProcDir& proc = ProcDir());

/// The processes of one task: the tree under `root` (pollkill's per-task init, a child
/// subreaper, so orphans of the task are reparented to it and stay in the tree).
class ProcTree {
 public:
  ProcTree(pid_t root, ProcDir proc = ProcDir());

  /// Scans /proc: the members now (root included). The last scan is kept (pids with their
  /// start times) so that processes reparented away from a dead root can still be found.
  std::vector<ProcStat> scan();
  /// scan() for a sample: from the round's shared snapshot when a SharedProcSnapshot is
  /// open, else from a fresh one.
  void scan_for_sample();
  /// CPU of the tree at the last scan, in microseconds; never decreases.
  std::uint64_t cpu_usage_usec() const { return cpu_usec_; }
  /// The same split into user and system time (utime + cutime, stime + cstime).
  std::uint64_t cpu_user_usec() const { return user_usec_; }
  std::uint64_t cpu_system_usec() const { return system_usec_; }
  /// Live (non-zombie) members at the last scan, the root excluded.
  std::vector<pid_t> live_members() const;
  /// Members of the last scan whose (pid, starttime) still names a live process now whose
  /// parent is `parent` (pollkill, after the root died): orphans pollkill must take over.
  std::vector<pid_t> known_orphans_of(pid_t parent) const;

  /// Sends `sig` to every member but the root; returns the pids signalled.
  std::vector<pid_t> signal_members(int sig);
  /// Stops every member but the root with SIGSTOP, rescanning until a scan finds no member it
  /// has not signalled (a stopped process forks nothing; a child forked before its parent
  /// stopped is a member at the next scan). Returns the members signalled (pid and start
  /// time). The signal may not have been acted on yet when it returns (state T comes a moment
  /// later). Evidence capture stops a subreaper-mode task this way.
  std::vector<ProcStat> stop_members();
  /// Kills every member but the root: stop_members, then SIGKILL all, then SIGCONT; repeated
  /// (up to three passes) while a full scan finds a live member that was not stopped.
  /// Signals go through a pidfd opened after checking the start time, so a pid reused by
  /// another process is never signalled. Returns the pids killed. Does not wait.
  std::vector<pid_t> kill_members();

  pid_t root() const { return root_; }

 private:
  std::vector<ProcStat> scan_in(const std::vector<ProcStat>& all);
  /// One stop_members pass; `is_stopped` carries the pids already stopped across passes.
  std::vector<ProcStat> stop_round(std::unordered_map<pid_t, bool>& is_stopped);

  pid_t root_;
  ProcDir proc_;
  std::vector<ProcStat> last_;
  std::uint64_t cpu_usec_ = 0;
  std::uint64_t user_usec_ = 0;
  std::uint64_t system_usec_ = 0;
};

/// Sends `sig` to process `pid` only if it is still the process started at `starttime`
/// (pidfd_open, then the start time checked again, then pidfd_send_signal). False when it
/// is gone or another process now has the pid.
bool signal_process(const ProcDir& proc, pid_t pid, std::uint64_t starttime, int sig);

}  // namespace pollkill
