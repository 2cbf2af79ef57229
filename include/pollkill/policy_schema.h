// The policy schema: every key of a policy declared once. The declaration drives the TOML
// reader, the printer (`to_toml`, `policy check --print`), the command-line flags of `run` and
// `batch`, a task line's per-task keys and the list of limits that need a cgroup.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "pollkill/policy.h"
#include "pollkill/units.h"

namespace pollkill {

/// Bounds on what a policy reader accepts, checked where a value is read so that nothing
/// out of range reaches a timer or a cgroup file.
/// A policy file larger than this is refused before it is parsed.
inline constexpr std::size_t kMaxPolicyBytes = 1 << 20;
/// Most parts of a dotted key or a table name (`a.b.c` has 3), and most levels of arrays and
/// inline tables inside each other: deeper documents are refused before they are parsed (the
/// TOML parser recurses on them).
inline constexpr int kMaxKeyParts = 32;
inline constexpr int kMaxNesting = 32;
/// The longest duration any key takes: 100 years. A deadline that far ahead still fits the
/// monotonic clock's nanoseconds.
inline constexpr Duration kMaxDuration{100LL * 365 * 24 * 3600 * 1000};
/// `cpus`: cpu.max's smallest quota is 1ms per 100ms period; the largest is far beyond any
/// machine.
inline constexpr double kMinCpus = 0.01;
inline constexpr double kMaxCpus = 1'000'000;
/// `pids`: the kernel refuses pids.max above PID_MAX_LIMIT (2^22 on 64-bit).
inline constexpr std::uint64_t kMaxPids = 4'194'304;
/// An adaptive `wall_time` ("300%") of at most this percentage of the median.
inline constexpr double kMaxWallTimePercent = 100'000;
/// `retry.escalate` factors ("x2") of at most this.
inline constexpr double kMaxEscalationFactor = 100;
/// `poll_interval` of at least this.
inline constexpr Duration kMinPollInterval{10};

/// One key of a policy, as every reader, printer and document names it.
struct KeySpec {
  std::string_view section;  ///< "limits"
  std::string_view name;     ///< "wall_time": the TOML key, the task line's key, the member
  /// "--wall-time" for `run` and `batch`; empty when the key has no flag.
  std::string_view flag;
  /// The flag's value in help texts: SIZE, DURATION, N, CPUS, FILE, or the choices.
  std::string placeholder;
  /// The type and range, as docs/POLICY.md and pollkill-policy(5) write them: "size > 0".
  std::string type;
  /// How the printed policy shows the key when it is not set ("no limit"); empty for keys
  /// that always have a value.
  std::string_view unset;
  /// One line for `--help`.
  std::string_view doc;
  /// Enforced through a cgroup controller (memory, cpu, pids): subreaper mode cannot.
  bool needs_cgroup = false;
  /// The words a choice key takes ("kill", "wait"), from the enum's name table.
  std::vector<std::string_view> choices{};

  std::string dotted() const { return std::string(section) + "." + std::string(name); }
};

/// Every key, section by section in the order `to_toml` prints them: limits, watchdog, retry,
/// runner, seccomp, sandbox. (`version` is the document's, not a key of a section.)
const std::vector<KeySpec>& policy_keys();
/// The sections in that order.
const std::vector<std::string_view>& policy_sections();
/// The key of that section and name, or nullptr.
const KeySpec* find_key(std::string_view section, std::string_view name);
/// The key whose flag is `flag` ("--memory"), or nullptr.
const KeySpec* find_flag(std::string_view flag);

/// Whether `key` has a value in `policy` (an unset optional has none; keys with a default
/// always have one): what `to_toml` prints rather than comments out.
bool is_set(const KeySpec& key, const Policy& policy);
/// The value of `key` in `policy` as TOML (`"2GiB"`, `0.5`, `["a"]`); nullopt when unset.
std::optional<std::string> toml_value(const KeySpec& key, const Policy& policy);

/// One key set to a value outside a policy file: a command-line flag or a task line's key.
struct Setting {
  const KeySpec* key = nullptr;
  /// A string, an integer or a float, read as the same TOML value would be. With
  /// `command_line`, a string is the flag's text and a number or count is parsed from it
  /// strictly ("0.5", "100", "max").
  std::variant<std::string, std::int64_t, double> value;
  /// Names the setting in errors: "--memory", "memory".
  std::string origin;
  bool command_line = false;
};

/// `base` with `settings` applied in order, each through its key's reader and range checks
/// (exactly those of a policy file), then the checks that involve several keys (hang and spin
/// bands, sandbox prerequisites) on the result. Throws PolicyError with the setting's origin as
/// the source and no position: "--memory: invalid size '12XB': ...".
Policy apply_settings(const Policy& base, const std::vector<Setting>& settings);

/// A whole number from command-line text, strictly (digits only) and in [min, max]; throws
/// PolicyError naming `flag`. For flags that are not policy keys (`--retries`).
std::int64_t parse_flag_integer(const std::string& flag, std::string_view text, std::int64_t min,
                                std::int64_t max);

}  // namespace pollkill
