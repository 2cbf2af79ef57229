// Policies: what a task may use and how it is watched, read from strict TOML files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pollkill/error.h"
#include "pollkill/units.h"

namespace pollkill {

/// Resource limits. An empty optional means "not set": no limit is applied and no controller
/// is needed. A size of kSizeMax ("max") is set but unlimited.
struct Limits {
  std::optional<std::uint64_t> memory;       ///< memory.max (bytes)
  std::optional<std::uint64_t> memory_high;  ///< memory.high (bytes)
  std::optional<std::uint64_t> swap;         ///< memory.swap.max; defaults to 0 when memory is set
  std::optional<double> cpus;                ///< cpu.max quota / period, > 0
  std::optional<std::uint64_t> pids;         ///< pids.max (kSizeMax = "max")
  std::optional<Duration> wall_time;         ///< wall-clock limit from the start; a 0 read is unset
  std::optional<Duration> cpu_time;     ///< CPU time of the tree (usage_usec); a 0 read is unset
  std::optional<std::uint64_t> output;  ///< bytes of captured stdout+stderr
  /// Adaptive wall time (`wall_time = "300%"`, batch only): this percentage of the median
  /// wall time of the tasks that ended ok so far, once at least five have; wall_time_max caps
  /// it, and is the only limit before then. Excludes `wall_time`.
  std::optional<double> wall_time_percent{};
  std::optional<Duration> wall_time_max{};  ///< cap for the adaptive wall time
};

enum class OrphanPolicy { kill, wait };
enum class MissingControllers { error, warn };
/// runner.cgroup_v1: on a hybrid host, enforce the limits the unified hierarchy cannot through
/// the cgroup v1 controllers (`automatic`, policy value "auto"), or never (`off`, the default:
/// a machine's v1 hierarchies often belong to its own supervisor).
enum class CgroupV1 { off, automatic };
/// `runner.systemd_scope`: when pollkill asks systemd for a delegated scope of its own.
enum class SystemdScopeMode { automatic, never, always };
/// Where a task's processes are held and killed: a cgroup, or (no usable cgroup) the process
/// tree under a child subreaper. `automatic` picks cgroup when a run root resolves.
enum class RunMode { automatic, cgroup, subreaper };

struct WatchdogPolicy {
  Duration poll_interval{250};
  std::optional<Duration> hang_after;    ///< unset (or 0 read): hang detection off
  double hang_cpu_below = 0.01;          ///< CPUs (1.0 = one core busy)
  std::optional<Duration> spin_after;    ///< unset (or 0 read): spin detection off
  double spin_cpu_above = 0.9;           ///< CPUs
  std::optional<std::string> heartbeat;  ///< a file whose change counts as progress
  Duration kill_grace{3000};             ///< SIGTERM to cgroup.kill; 0 = kill at once
  OrphanPolicy orphans = OrphanPolicy::kill;
  /// unset (or 0 read): thrash detection off; else the window of memory.pressure `full`
  /// judged against thrash_full_above (watchdog.h)
  std::optional<Duration> thrash_after;
  double thrash_full_above = 0.1;  ///< share of wall time, 0 < x <= 1
};

/// `[evidence]`: before a task stopped with a status in `on` is killed, it is frozen and its
/// processes, threads and stacks are written next to its logs (evidence_capture.h), within
/// `budget`. An empty `on` takes no evidence.
struct EvidencePolicy {
  std::vector<std::string> on{"hung", "spinning", "thrashing"};
  Duration budget{2000};
};

struct RunnerPolicy {
  std::optional<std::string> cgroup_root;
  MissingControllers missing_controllers = MissingControllers::error;
  CgroupV1 cgroup_v1 = CgroupV1::off;
  /// Where v1 run cgroups go in each v1 hierarchy, relative to that hierarchy's root; unset:
  /// pollkill's own v1 cgroup there (from /proc/self/cgroup).
  std::optional<std::string> cgroup_v1_root;
  SystemdScopeMode systemd_scope = SystemdScopeMode::automatic;
  RunMode mode = RunMode::automatic;
};

/// What the seccomp filter does with a system call: let it through, fail it with an errno,
/// kill the whole task (SIGSYS, status `blocked`) or let it through and log it to the kernel
/// audit log.
struct SeccompAction {
  enum Kind { allow, error, kill, log };
  Kind kind = allow;
  int error_number = 1;  ///< for `error`: EPERM unless "errno:NAME" says otherwise
};

/// `[seccomp]`. No filter is installed when `default_action` is allow and `deny` is empty.
struct SeccompPolicy {
  SeccompAction default_action;                     ///< `default`
  std::vector<std::string> allow;                   ///< syscalls allowed whatever the default
  std::vector<std::string> deny;                    ///< syscalls that get `deny_action`
  SeccompAction deny_action{SeccompAction::error};  ///< EPERM by default
  /// clone and unshare with a CLONE_NEW* flag get `deny_action`; clone3, whose flags seccomp
  /// cannot read, fails with ENOSYS so that libc falls back to clone.
  bool deny_new_namespaces = false;
  bool active() const {
    return default_action.kind != SeccompAction::allow || !deny.empty() || deny_new_namespaces;
  }
};

/// Resource limits set with setrlimit in the task (soft = hard). kRlimitUnlimited = "unlimited".
inline constexpr std::uint64_t kRlimitUnlimited = ~std::uint64_t{0};
struct Rlimits {
  std::optional<std::uint64_t> core, nofile, fsize, stack, as, nproc;
  bool any() const { return core || nofile || fsize || stack || as || nproc; }
};

/// Namespaces the task gets of its own (`sandbox.namespaces`).
struct Namespaces {
  bool net = false, pid = false, ipc = false, uts = false, cgroup = false, mount = false;
  bool any() const { return net || pid || ipc || uts || cgroup || mount; }
};

/// `sandbox.dynamic_uids` ("FIRST-LAST"): the uids `user = "dynamic"` hands out, one to each
/// running task. The default lies above 16-bit uids, below the first /etc/subuid range
/// useradd gives out (100000) and outside systemd's ranges (docs/POLICY.md).
struct UidRange {
  std::uint32_t first = 65536;
  std::uint32_t last = 99999;
  friend bool operator==(const UidRange&, const UidRange&) = default;
};

/// `[sandbox]`: who the task runs as and what it can see. Enforced between clone and exec.
struct SandboxPolicy {
  /// name or number, or "dynamic": a uid of `dynamic_uids` of the task's own; needs root
  std::optional<std::string> user;
  std::optional<std::string> group;  ///< name or number; default: the user's primary group
  bool no_new_privs = true;
  std::vector<std::pair<std::string, std::string>> env;  ///< set on top (in name order)
  bool clear_env = false;                                ///< start from an empty environment ...
  std::vector<std::string> pass_env;  ///< ... except these variables of pollkill's own
  std::optional<std::string> cwd;
  std::optional<unsigned> umask;
  Rlimits rlimits;
  Namespaces namespaces;
  std::optional<std::string> hostname;  ///< needs the uts namespace
  bool private_tmp = false;             ///< needs the mount namespace
  std::vector<std::string> read_only;   ///< needs the mount namespace
  std::vector<std::string> hide;        ///< needs the mount namespace
  UidRange dynamic_uids;                ///< for user = "dynamic"
};

/// `retry.escalate`: what a retry gets more of. After an attempt that ended `oom` or
/// `thrashing`, the next one's `memory` limit is multiplied by `memory` (at most
/// `memory_max`); after `timeout`, its `wall_time` by `wall_time` (at most `wall_time_max`).
/// A factor that is not set, or a limit the task does not have, escalates nothing.
struct RetryEscalation {
  std::optional<double> memory;  ///< "x2": factor > 1
  std::optional<std::uint64_t> memory_max;
  std::optional<double> wall_time;  ///< "x2": factor > 1
  std::optional<Duration> wall_time_max;
  bool any() const { return memory || wall_time; }
  friend bool operator==(const RetryEscalation&, const RetryEscalation&) = default;
};

/// Retries in `batch`: an attempt ending with a status in `on` is run again, up to
/// The most attempts one task can have: retry.attempts' upper bound, and the highest
/// "attempt" a results file may record for --resume.
constexpr int kMaxAttempts = 1000;

/// `attempts` attempts in all, waiting `backoff` before the second attempt and twice as long
/// before each later one, with the limits `escalate` raises.
struct RetryPolicy {
  int attempts = 1;
  std::vector<std::string> on{"crashed", "hung", "spinning", "thrashing", "timeout", "oom"};
  Duration backoff{0};
  RetryEscalation escalate;
};

struct Policy {
  Limits limits;
  WatchdogPolicy watchdog;
  EvidencePolicy evidence;
  RunnerPolicy runner;
  SeccompPolicy seccomp;
  SandboxPolicy sandbox;
  RetryPolicy retry;
};

/// A policy or flag value that is wrong, with where it came from. `what()` is the full
/// "FILE:LINE:COLUMN: message" (line/column omitted when 0, e.g. for command-line flags).
class PolicyError : public Error {
 public:
  PolicyError(std::string source, int line, int column, std::string message);
  const std::string& source() const noexcept { return source_; }
  int line() const noexcept { return line_; }
  int column() const noexcept { return column_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string source_;
  int line_;
  int column_;
  std::string message_;
};

/// The built-in default policy (what runs without --policy); equal to policies/default.toml.
Policy default_policy();

/// Parses policy text strictly, on top of `base` (keys absent from the text keep base's
/// values), each key through the schema (policy_schema.h). `source` names the text in errors.
/// Requires top-level `version = 1`. Text over kMaxPolicyBytes, or keys and nesting deeper
/// than kMaxKeyParts and kMaxNesting, are refused before toml++ parses it. Unknown
/// sections/keys (with "did you mean" for near-misses), wrong types and bad or out-of-range
/// values throw PolicyError with line and column.
Policy parse_policy(std::string_view text, const std::string& source,
                    const Policy& base = default_policy());

/// Reads and parses a policy file (on top of the default), reading at most one byte more than
/// kMaxPolicyBytes (so /dev/zero ends). Unreadable file: PolicyError with the errno text.
Policy load_policy_file(const std::filesystem::path& path);

/// The policy as a complete TOML document (every key, unset ones as comments) that
/// parse_policy accepts and that round-trips to an equal policy.
std::string to_toml(const Policy& policy);

bool operator==(const Limits&, const Limits&);
bool operator==(const WatchdogPolicy&, const WatchdogPolicy&);
bool operator==(const EvidencePolicy&, const EvidencePolicy&);
bool operator==(const RunnerPolicy&, const RunnerPolicy&);
bool operator==(const SeccompAction&, const SeccompAction&);
bool operator==(const SeccompPolicy&, const SeccompPolicy&);
bool operator==(const Rlimits&, const Rlimits&);
bool operator==(const Namespaces&, const Namespaces&);
bool operator==(const SandboxPolicy&, const SandboxPolicy&);
bool operator==(const RetryPolicy&, const RetryPolicy&);
bool operator==(const Policy&, const Policy&);

/// A value of an enum and the word that policies, flags and results write for it.
template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

/// Each enum's one name table, read in both directions (the model is status.cpp): the policy
/// reader, the printer, the flags and the results all use it, so a value cannot get a name
/// without a parse. Defined for OrphanPolicy, MissingControllers, CgroupV1, SystemdScopeMode,
/// RunMode and SeccompAction::Kind.
template <typename E>
std::span<const EnumName<E>> enum_names();
template <>
std::span<const EnumName<OrphanPolicy>> enum_names();
template <>
std::span<const EnumName<MissingControllers>> enum_names();
template <>
std::span<const EnumName<CgroupV1>> enum_names();
template <>
std::span<const EnumName<SystemdScopeMode>> enum_names();
template <>
std::span<const EnumName<RunMode>> enum_names();
template <>
std::span<const EnumName<SeccompAction::Kind>> enum_names();

/// The word for `value` ("kill"); the table's first word for a value outside the enum.
template <typename E>
std::string_view enum_name(E value) {
  const auto names = enum_names<E>();
  for (const auto& entry : names) {
    if (entry.value == value) return entry.name;
  }
  return names.front().name;
}

/// The value a word names; nullopt for any other word.
template <typename E>
std::optional<E> enum_value(std::string_view word) {
  for (const auto& entry : enum_names<E>()) {
    if (entry.name == word) return entry.value;
  }
  return std::nullopt;
}

/// "allow", "errno", "errno:ENOSYS", "kill", "log": how an action is written in a policy.
std::string to_string(const SeccompAction& action);

/// "auto", "never", "always": how `runner.systemd_scope` and `--systemd-scope` spell it.
const char* to_string(SystemdScopeMode mode);
/// The inverse of to_string(SystemdScopeMode); throws Error for any other word.
SystemdScopeMode parse_systemd_scope(const std::string& word);
/// "auto", "cgroup", "subreaper": how a mode is written in a policy, on the command line and
/// (cgroup, subreaper) in results.
std::string to_string(RunMode mode);
/// The inverse; throws Error naming the choices for any other word.
RunMode parse_run_mode(std::string_view word);

/// Closest candidate to `word` by edit distance, when close enough to suggest
/// (distance <= 2, or <= 1 for words up to 4 letters); empty otherwise.
std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace pollkill
