// The open-file budget of a batch. What one running task may hold at once (the worst case,
// every feature on; kFdsPerTask):
//  - always: its main process's pidfd, its cgroup's directory, cgroup.events (the end's
//    notification, watched with EPOLLPRI) and cpu.stat (read at every sample with a cpu_time
//    limit): 4. A task that sleeps under `--hang-after --spin-after` holds just these;
//  - a lingering init's status pipe (subreaper mode, a pid namespace) and the lock of a
//    dynamic uid ([sandbox]): 2;
//  - on a hybrid host, its cgroup v1 directories (memory, cpu, pids): 3;
//  - with an output limit, the relay's two pipes and the two log files it writes into: 4;
//  - while its evidence is taken, the capture process's pidfd and report pipe: 2.
// Not held: /dev/null and the log files without a relay (open only while the task is
// spawned), cgroup.procs, cgroup.threads, cpu.pressure, memory.pressure and /proc/PID/io
// (opened for each read and closed: a quiet task is read every sixteenth of its shortest
// threshold), and timers (a slot's deadline and wall time share the event loop's one timerfd).
// What a task needs only while it starts (its v1 join descriptors, the exec-status and start
// pipes, /dev/null) or what a read or a kill opens and closes at once is one task's at a time:
// kFdsBase covers it with pollkill's own. A batch counts only the features its policy and task
// lines may use (TaskFdNeeds: 7 per task for a default policy, whose evidence is on and whose
// mode is decided later; 4 in cgroup mode without evidence, output limit, v1 limits or dynamic
// uids). So `batch -j 1000` needs far more than the 1024 that
// distributions give a process by default. The soft RLIMIT_NOFILE is raised toward the hard
// limit for pollkill itself and set back for the tasks, as systemd does for its services. When
// the hard limit is too low, pollkill raises it too where it may (root with CAP_SYS_RESOURCE,
// up to fs.nr_open) before it refuses --jobs.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>

namespace pollkill {

/// What every running task holds (pidfd, cgroup directory, cgroup.events, cpu.stat), and
/// pollkill's own descriptors beyond its tasks'.
inline constexpr std::uint64_t kFdsAlways = 4;
inline constexpr std::uint64_t kFdsBase = 64;

/// What the tasks of a batch may use that costs descriptors (the list above). Each feature is
/// counted unless the batch cannot use it; the defaults count everything.
struct TaskFdNeeds {
  bool output_relay = true;    ///< an output limit (any task's): 2 pipes and 2 log files
  bool evidence = true;        ///< [evidence] on (any task's): a capture's pidfd and pipe
  std::uint64_t v1_dirs = 3;   ///< v1 directories: the v1-capable controllers the plan uses
  bool lingering_init = true;  ///< subreaper mode (possible unless mode = "cgroup") or a pid
                               ///< namespace: the init's status pipe
  bool dynamic_uid = true;     ///< [sandbox] user = "dynamic": the uid's lock
};

/// Descriptors one running task with `needs` may hold at once.
constexpr std::uint64_t fds_per_task(const TaskFdNeeds& needs) {
  return kFdsAlways + (needs.output_relay ? 4 : 0) + (needs.evidence ? 2 : 0) + needs.v1_dirs +
         (needs.lingering_init ? 1 : 0) + (needs.dynamic_uid ? 1 : 0);
}

/// The most one running batch task may hold, every feature on.
inline constexpr std::uint64_t kFdsPerTask = fds_per_task(TaskFdNeeds{});

/// The descriptors a batch running `jobs` tasks at once, each holding up to `per_task`, may
/// need.
constexpr std::uint64_t nofile_needed(std::uint64_t jobs, std::uint64_t per_task = kFdsPerTask) {
  return kFdsBase + jobs * per_task;
}

/// What to do about RLIMIT_NOFILE (pure): the soft limit to set (nullopt: leave it), or that the
/// hard limit cannot cover `needed` (`enough` false; the largest `jobs` that fit is given, and
/// `raise_hard_to` is what to try for both limits before refusing).
struct NofilePlan {
  std::optional<rlim_t> raise_soft_to;
  bool enough = true;
  std::uint64_t max_jobs = 0;  ///< when !enough: the most tasks at once the hard limit allows
  std::optional<rlim_t> raise_hard_to;  ///< when !enough: `needed`
};
NofilePlan plan_nofile(rlim_t soft, rlim_t hard, std::uint64_t needed,
                       std::uint64_t per_task = kFdsPerTask);

/// Raises pollkill's soft RLIMIT_NOFILE for a batch of `jobs` tasks at once, and restores it on
/// destruction. When the hard limit is too low it tries to raise it (and restores it too);
/// throws Error (naming --jobs and the hard limit) when that is not permitted, before anything
/// is created. Move-only.
class NofileRaise {
 public:
  NofileRaise() = default;
  static NofileRaise for_jobs(std::uint64_t jobs, std::uint64_t per_task = kFdsPerTask);
  NofileRaise(NofileRaise&& other) noexcept;
  NofileRaise& operator=(NofileRaise&& other) noexcept;
  NofileRaise(const NofileRaise&) = delete;
  NofileRaise& operator=(const NofileRaise&) = delete;
  ~NofileRaise();

  /// The limit pollkill had before (what the tasks should get back); nullopt when unchanged.
  const std::optional<rlimit>& original() const { return original_; }

 private:
  std::optional<rlimit> original_;
};

}  // namespace pollkill
