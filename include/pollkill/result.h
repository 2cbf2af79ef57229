// The result of one task attempt: the JSON contract later tools rely on, and the exit code.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pollkill/status.h"

namespace pollkill {

/// A process that would not die after cgroup.kill (e.g. stuck in uninterruptible sleep).
struct UnkillableProcess {
  int pid = 0;
  std::string state;  ///< /proc/PID/stat state letter and name, e.g. "D (disk sleep)"
  std::string comm;
};

/// One task attempt. Field names are the JSON keys (see to_json); nullopt is JSON null.
struct Result {
  std::string id = "run";
  int attempt = 1;
  bool final = true;
  std::vector<std::string> command;
  Status status = Status::error;
  std::string reason;
  std::optional<int> exit_code;  ///< the main process's exit code, if it exited
  std::optional<int> signal;     ///< the signal that ended the main process, if any
  std::chrono::system_clock::time_point started_at{};
  double wall_s = 0;
  double cpu_user_s = 0;
  double cpu_system_s = 0;
  std::optional<std::uint64_t> memory_peak_bytes;
  std::optional<std::uint64_t> oom_kills;
  std::optional<std::uint64_t> pids_peak;
  std::uint64_t processes_reaped = 0;
  std::vector<UnkillableProcess> unkillable;
  std::vector<std::string> limits_not_enforced;  ///< policy key names, e.g. "memory"
  std::vector<std::string> limits_cgroup_v1;     ///< policy keys enforced through cgroup v1
  std::string mode = "cgroup";                   ///< "cgroup" or "subreaper"
  std::string cgroup;  ///< path relative to the cgroup2 mount; empty (JSON null) in subreaper mode
  std::optional<std::string> stdout_path;  ///< JSON "stdout"; null in `run`
  std::optional<std::string> stderr_path;  ///< JSON "stderr"; null in `run`
  /// Where the evidence of a stuck task was written (`<dir>/<id>.<attempt>.evidence.json`,
  /// see evidence.h); null when none was captured.
  std::optional<std::string> evidence;
  /// A short, stable name for where the task was stuck, e.g. "gmsh: gmsh_yyparse < ParseFile <
  /// GModel::readGEO" (evidence.h, stack_signature); null without evidence or user stacks.
  std::optional<std::string> stack_signature;
  /// The memory and wall-time limits the attempt ran with (after adaptive wall time and
  /// `retry.escalate`); null when it had none (or never started).
  std::optional<std::uint64_t> memory_limit_bytes;
  std::optional<double> wall_time_limit_s;
  /// The signal that cancelled pollkill (status cancelled); not serialized, only feeds
  /// exit_code_for (128+N, 130 when unset).
  std::optional<int> cancel_signal;
};

/// The JSON object with exactly the contract's keys, in the contract's order.
nlohmann::ordered_json to_json(const Result& result);

/// The result as one line of JSON, without a trailing newline (the JSON Lines record).
/// Never throws on bad UTF-8 in strings (commands, paths): invalid bytes become U+FFFD.
std::string dump_result_line(const Result& result);

/// RFC 3339 UTC with milliseconds: "2026-11-26T01:43:05.123Z".
std::string format_rfc3339_ms(std::chrono::system_clock::time_point t);

/// What the supervisor observed about how the task ended; input to `classify`.
struct Outcome {
  std::optional<Status> verdict;  ///< a watchdog/limit verdict pollkill acted on
  std::string verdict_reason;
  std::optional<int> cancel_signal;      ///< the signal that cancelled pollkill
  std::optional<int> exec_errno;         ///< exec (or a step before it) failed with this errno
  std::string exec_step;                 ///< which step failed, e.g. "execve"
  std::optional<int> exit_code;          ///< main process exited with this code
  std::optional<int> signal;             ///< main process died of this signal
  std::uint64_t oom_kills_delta = 0;     ///< rise of memory.events oom_kill during the task
  bool signal_sent_by_pollkill = false;  ///< pollkill signalled the task (verdict/orphans)
};

/// Decides status and reason from an outcome. Precedence: cancelled, a verdict, oom, exec
/// error, crashed (signal pollkill did not send; SIGSYS is `blocked`, the seccomp filter's
/// kill), ok / failed. A main process killed by a signal pollkill sent, with no verdict (e.g.
/// orphan cleanup raced its exit), is `failed` with a reason naming the signal and pollkill as
/// its sender; an outcome with no exit information at all is `error`.
struct Classification {
  Status status;
  std::string reason;
};
Classification classify(const Outcome& outcome, const std::vector<std::string>& command);

/// The process exit code for a result (timeout(1) conventions): the task's own exit code for
/// ok/failed; 128+N for crashed (and blocked, N=31); 137 for oom; 124 for timeout, cpu_limit,
/// hung, spinning, thrashing, output_limit; 126/127 for exec_error (127 when not found); 128+N for
/// cancelled by signal N; 125 for error. Fallbacks for missing fields: failed without a code
/// (or with 0) -> 1; crashed without a signal -> 1; blocked without a signal -> 128+SIGSYS;
/// exec_error without a code -> 126; cancelled without cancel_signal -> 130.
int exit_code_for(const Result& result);

/// Whether `run` tells about the end on stderr: every status but ok and failed (all of them
/// with `verbose`), except a task killed by SIGPIPE, which is how a pipeline ends its writers
/// when the reader went away (`yes | head -1`): shells stay quiet about it, and so does
/// pollkill. The result and the exit status (141) still say crashed.
bool announce_end(const Result& result, bool verbose);

}  // namespace pollkill
