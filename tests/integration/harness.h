// Helpers for integration tests that run the real pollkill binary against the real kernel.
//
// Everything here is deliberately independent of pollkill's own code (mountinfo parsing,
// /proc scanning): a bug in the core must not be able to hide itself from its tests.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace pollkill::testing {

using Seconds = std::chrono::duration<double>;

/// The keys of the result JSON, in contract order.
const std::vector<std::string>& result_contract_keys();

/// The cgroup2 mount point from /proc/self/mountinfo (first cgroup2 entry), if any.
std::optional<std::filesystem::path> cgroup2_mount();

/// Why tests that create cgroups cannot run here (not root, no cgroup2, read-only mount);
/// nullopt when they can.
std::optional<std::string> cgroup2_unavailable_reason();

/// Skips the current test when cgroups cannot be created here.
#define PK_REQUIRE_CGROUP2()                                             \
  do {                                                                   \
    if (auto why_ = ::pollkill::testing::cgroup2_unavailable_reason()) { \
      GTEST_SKIP() << *why_;                                             \
    }                                                                    \
  } while (0)

/// A string unique to this test process and call, to find a test's processes in /proc.
/// Digits only, so it can be the fraction of a `sleep` argument: "sleep 1000.<marker>".
std::string unique_marker();

/// `sleep 1000.<marker>`'s argument: a sleep that is easy to find and never ends by itself.
std::string long_sleep_arg(const std::string& marker);

struct ProcessInfo {
  pid_t pid = 0;
  std::vector<std::string> argv;  ///< from /proc/PID/cmdline
  std::string cmdline;            ///< argv joined with spaces
};

/// Live (non-zombie) processes, other than this one, whose cmdline contains `marker`.
std::vector<ProcessInfo> processes_matching(const std::string& marker);
/// Those of them whose argv[0] is `program` (e.g. "sleep"), so that pollkill's own
/// command line (which contains the task's arguments) does not count.
std::vector<ProcessInfo> processes_matching(const std::string& marker, const std::string& program);

/// The path of `name` on PATH (executable), or nullopt: a tool a test needs (chromium, tmux).
std::optional<std::string> find_program(const std::string& name);

/// A file's whole content ("" when it cannot be read).
std::string slurp(const std::filesystem::path& path);
/// Creates or replaces a file with `text`.
void write_file(const std::filesystem::path& path, const std::string& text);
/// The records of a JSON Lines results file; lines that are not JSON (a torn last line) are
/// left out.
std::vector<nlohmann::json> read_records(const std::filesystem::path& path);

/// Polls until `pred` is true or `timeout` passes; returns the last value of `pred`.
template <typename Pred>
bool wait_until(Pred pred, Seconds timeout, Seconds step = Seconds(0.02));

/// Directories under the cgroup2 mount that belong to pollkill runs of `pollkill_pid`
/// ("pollkill-<pid>-*" run cgroups and "pollkill-runner.<pid>" leaves), at any depth.
std::vector<std::filesystem::path> find_leftover_cgroups(pid_t pollkill_pid);
/// The same for a set of pids, in one scan.
std::vector<std::filesystem::path> find_leftover_cgroups(const std::vector<pid_t>& pids);

/// The number of directories under the cgroup2 mount, not counting the run cgroups of
/// other processes' pollkill runs ("pollkill-<pid>-*" with pid != own_pid): those belong to
/// whoever else runs pollkill on this machine at the same time.
std::size_t count_cgroup_dirs_excluding_others(pid_t own_pid);

/// Entries in /proc/self/fd (the directory's own descriptor not counted).
std::size_t open_fd_count();

/// Kills (SIGKILL) every process with the marker and every leftover cgroup of the pids,
/// so that a failing test leaves nothing behind. Returns how many things it had to clean.
int cleanup(const std::string& marker, const std::vector<pid_t>& pollkill_pids);

/// A copy of `path` (a program or a file) that any user can read and run from inside any
/// sandbox pollkill builds: in a world-readable directory outside every temporary area (under
/// /var/lib, or /dev where the root is read-only) made once per test process and removed at
/// its exit. Tests that run something as nobody, or under a private /tmp, use it so that a
/// checkout under /tmp or under a private home still works.
std::string world_readable_copy(const std::string& path);

/// A temporary directory removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// How a test hands pollkill one task: `pollkill run`, or `pollkill batch` with a task file
/// holding that one task. The suites whose guarantees hold for both run through both.
enum class Via { run, batch };
std::string to_string(Via via);  ///< "run", "batch"

/// Both ways, for INSTANTIATE_TEST_SUITE_P, and their test-name suffixes ("run", "batch").
inline auto both_vias() {
  return ::testing::Values(Via::run, Via::batch);
}
std::string via_name(const ::testing::TestParamInfo<Via>& param_info);

/// pollkill's exit status via `via` for a task whose `run` exits with `run_exit`: the same
/// for run; for batch 0 when the task ended ok (`run_exit` 0), else 1. (A cancellation's
/// 128+N is the same for both: pass it as it is only via run, or compare it directly.)
int exit_via(Via via, int run_exit);

/// How to start pollkill.
struct LaunchOptions {
  /// Environment variables set for pollkill (on top of this process's environment, from
  /// which every POLLKILL_* variable is removed so that the caller's shell cannot interfere).
  std::map<std::string, std::string> env;
  /// Run this program with the arguments instead of pollkill (e.g. a shell that moves itself
  /// into a cgroup and then execs pollkill).
  std::optional<std::string> program;
};

/// What a finished pollkill invocation produced.
struct RunOutput {
  pid_t pid = 0;
  bool timed_out = false;          ///< the safety timeout fired and the group was killed
  std::optional<int> exit_code;    ///< WEXITSTATUS, if it exited
  std::optional<int> term_signal;  ///< WTERMSIG, if a signal ended it
  std::string out;                 ///< everything written to stdout
  std::string err;                 ///< everything written to stderr
  Seconds elapsed{0};              ///< from start to exit, as seen by the test
  std::optional<nlohmann::ordered_json> json;  ///< the parsed result (when --result was used)
  std::string json_error;                      ///< why `json` is empty

  /// A one-line description for assertion messages.
  std::string describe() const;
};

/// A running pollkill process (fork + execve, in its own process group, stdin /dev/null,
/// stdout and stderr through pipes). If never waited for, the destructor kills the group.
class Pollkill {
 public:
  Pollkill(std::vector<std::string> args, LaunchOptions options = {});
  ~Pollkill();
  Pollkill(const Pollkill&) = delete;
  Pollkill& operator=(const Pollkill&) = delete;

  pid_t pid() const { return pid_; }
  /// Sends a signal to pollkill only (not its group).
  void signal(int sig) const;
  /// Sends a signal to its whole process group, as a terminal's Ctrl-C would.
  void signal_group(int sig) const;
  /// Reads its output until it exits and both pipes close, or until `timeout`, after which
  /// the whole process group is SIGKILLed and `timed_out` is set.
  RunOutput wait(Seconds timeout);
  /// Where the record goes: run's --result file, or batch's --results file (start_task).
  std::optional<std::filesystem::path> result_file;
  Via via = Via::run;

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::chrono::steady_clock::time_point started_;
  bool reaped_ = false;
};

/// Runs `pollkill ARGS...` to completion (safety `timeout`); JSON parsed from the last
/// non-empty stdout line when ARGS contains "--result -".
RunOutput run_pollkill(const std::vector<std::string>& args, Seconds timeout = Seconds(30),
                       LaunchOptions options = {});

/// `pollkill run --result <temp file> FLAGS... -- COMMAND...`: starts it, with the result
/// written to a file (so the task's own stdout stays separate). Call wait(), then
/// finish_run() to read the JSON.
std::unique_ptr<Pollkill> start_run(const std::vector<std::string>& flags,
                                    const std::vector<std::string>& command,
                                    LaunchOptions options = {});
/// Waits for a run started with start_run and parses its result file into `json`.
RunOutput finish_run(Pollkill& run, Seconds timeout = Seconds(30));

/// start_run + finish_run.
RunOutput run_task_cli(const std::vector<std::string>& flags,
                       const std::vector<std::string>& command, Seconds timeout = Seconds(30),
                       LaunchOptions options = {});

/// pollkill's arguments for one task via `via`: `run --result FILE FLAGS... -- COMMAND...`,
/// or `batch -j 1 --results FILE FLAGS... TASKFILE` with the task as one JSON line (`cmd`).
/// `record` gets FILE, where the record will be.
std::vector<std::string> task_args(Via via, const std::vector<std::string>& flags,
                                   const std::vector<std::string>& command,
                                   std::filesystem::path* record);
/// start_run, or the same task as a batch of one (see task_args).
std::unique_ptr<Pollkill> start_task(Via via, const std::vector<std::string>& flags,
                                     const std::vector<std::string>& command,
                                     LaunchOptions options = {});
/// Waits for a task started with start_task and parses its record into `json`. Via batch,
/// `out` is the task's stdout log and its stderr log is appended to `err`, so that a test
/// sees the task's output where `run` shows it.
RunOutput finish_task(Pollkill& run, Seconds timeout = Seconds(30));
/// start_task + finish_task.
RunOutput run_task_via(Via via, const std::vector<std::string>& flags,
                       const std::vector<std::string>& command, Seconds timeout = Seconds(30),
                       LaunchOptions options = {});

/// Asserts (as gtest failures) that a run left nothing behind: no process with the marker
/// (when non-empty) and no cgroup directory of that pollkill pid. Cleans up what it finds.
void expect_nothing_left(const RunOutput& run, const std::string& marker);

/// The "0::" line's path from /proc/PID/cgroup-style text; empty when absent.
std::string cgroup_v2_path(const std::string& proc_cgroup_text);

// --- template implementation

template <typename Pred>
bool wait_until(Pred pred, Seconds timeout, Seconds step) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(step);
    struct timespec ts {
      static_cast<time_t>(ns.count() / 1000000000), static_cast<long>(ns.count() % 1000000000)
    };
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace pollkill::testing
