// The verdicts a task can end with, and the exit codes they map to.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pollkill {

/// How a task ended. The JSON spelling is the lower-case name (`to_string`).
enum class Status {
  ok,            ///< main process exited 0
  failed,        ///< main process exited non-zero
  crashed,       ///< main process killed by a signal pollkill did not send
  oom,           ///< memory.events oom_kill rose, whatever the exit looked like
  timeout,       ///< wall time passed
  cpu_limit,     ///< CPU time (whole tree) passed
  hung,          ///< no CPU use and no progress for hang_after
  spinning,      ///< CPU wanted (received + waiting) without progress for spin_after
  thrashing,     ///< stalled on memory (memory.pressure full) over thrash_after
  output_limit,  ///< output exceeded the `output` limit
  blocked,       ///< killed by the seccomp filter (SIGSYS)
  exec_error,    ///< the command could not be executed
  cancelled,     ///< pollkill was interrupted (SIGINT, SIGTERM, SIGHUP)
  error,         ///< pollkill's own failure
};

std::string_view to_string(Status status);
std::optional<Status> status_from_string(std::string_view text);

/// Exit codes, following timeout(1).
namespace exit_code {
/// timeout, cpu_limit, hung, spinning, thrashing, output_limit
inline constexpr int kVerdict = 124;
inline constexpr int kInternal = 125;  ///< pollkill's own errors: usage, policy, cgroup setup
inline constexpr int kNotExecutable = 126;
inline constexpr int kNotFound = 127;
inline constexpr int kSignalBase = 128;  ///< 128 + N for death by signal N
}  // namespace exit_code

}  // namespace pollkill
