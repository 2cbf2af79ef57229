// Internal to the policy modules: reading typed values out of toml++ nodes, with the
// position (a file) or the origin (a flag, a task line's key) of the value at fault, and the
// key table that the schema's public view, the reader and the printer share.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "pollkill/policy.h"
#include "pollkill/policy_schema.h"

namespace pollkill::detail {

/// Where a key's value came from, for errors that involve more than one key.
struct Where {
  toml::source_region region;  ///< in a policy file
  std::string origin;          ///< a setting's origin ("--memory"); empty for a file
};

/// Reads values for one document (a policy file) or one list of settings. Every failure is a
/// PolicyError: in a file at the value's line and column, prefixed with the dotted key
/// ("limits.memory: invalid size ..."), so that an editor can jump straight to it; for a
/// setting with the setting's origin as the source and no position ("--memory: invalid
/// size ...").
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  /// While `setting` is read, errors name its origin, and command-line text is parsed.
  void begin_setting(const Setting* setting) { setting_ = setting; }

  /// A value of `key` (dotted: "limits.memory") is wrong: `what` says how.
  [[noreturn]] void fail(const toml::node& node, const std::string& key,
                         const std::string& what) const;
  /// An error that is not about one value (an unknown key): `message` is complete.
  [[noreturn]] void fail_at(const toml::source_region& region, const std::string& message) const;
  /// An error about the keys of `where` (nullptr: no key of this text is involved).
  [[noreturn]] void fail_where(const Where* where, const std::string& message) const;

  /// Remembers where a key was set, for the checks that involve more than one key.
  void note(const std::string& key, const toml::source_region& region);
  const Where* where(const std::string& key) const;

  std::uint64_t size(const toml::node& node, const std::string& key) const;
  Duration duration(const toml::node& node, const std::string& key) const;
  /// A duration where 0 means "no limit" (nullopt), as `timeout 0` does.
  std::optional<Duration> limit_duration(const toml::node& node, const std::string& key) const;
  /// A finite number in [min, max]; `min_exclusive`: above min.
  double number(const toml::node& node, const std::string& key, double min, bool min_exclusive,
                double max) const;
  /// An integer in [min, max], or "max" (kSizeMax) when `max_word`.
  std::uint64_t count(const toml::node& node, const std::string& key, std::uint64_t min,
                      std::uint64_t max, bool max_word) const;
  bool boolean(const toml::node& node, const std::string& key) const;
  std::string string(const toml::node& node, const std::string& key) const;
  /// One of `options` (with "did you mean" for a near miss).
  std::string choice(const toml::node& node, const std::string& key,
                     const std::vector<std::string_view>& options) const;
  template <typename E>
  E choice(const toml::node& node, const std::string& key) const {
    std::vector<std::string_view> options;
    for (const auto& entry : enum_names<E>()) options.push_back(entry.name);
    return *enum_value<E>(choice(node, key, options));
  }
  std::vector<std::string> strings(const toml::node& node, const std::string& key) const;
  std::vector<std::string> syscalls(const toml::node& node, const std::string& key) const;
  std::vector<std::string> paths(const toml::node& node, const std::string& key) const;
  SeccompAction action(const toml::node& node, const std::string& key, bool allow_ok) const;
  /// A user or group: a name, or a number (an integer or a string of digits).
  std::string id(const toml::node& node, const std::string& key) const;
  /// Refuses 0 where it would stop every task at once.
  void require_positive(const toml::node& node, const std::string& key, bool positive) const;

  /// The value in single quotes as the user wrote it (as near as the parsed value allows):
  /// '12XB', '-0.1'; a setting's command-line text exactly.
  std::string quoted(const toml::node& node) const;
  /// "integer 3", "string '4'", "a table": how a value of the wrong type reads in a message.
  std::string describe(const toml::node& node) const;

 private:
  /// The command-line text of the setting being read, when the node is that text.
  const std::string* command_line_text(const toml::node& node) const;

  std::string source_;
  const Setting* setting_ = nullptr;
  std::map<std::string, Where> seen_;
};

/// A key's declaration with how it is read and printed.
struct Key {
  KeySpec spec;
  /// Reads the key's value into `policy`; `key` is the dotted name for messages.
  void (*read)(Reader& reader, const toml::node& node, const std::string& key, Policy& policy);
  /// The value as TOML, or nullopt when unset.
  std::optional<std::string> (*print)(const Policy& policy);
};

/// Every key, in the order of policy_keys() (policy_keys.cpp).
const std::vector<Key>& keys();

/// Reads the sections of a parsed policy document (every top-level key but `version`) on top
/// of `policy`, then checks what involves several keys.
void read_sections(Reader& reader, const toml::table& root, Policy& policy);

/// The checks that involve several keys, on the effective policy: the hang and spin bands, the
/// sandbox's prerequisites, seccomp lists that contradict each other.
void check_policy(const Reader& reader, const Policy& policy);

/// Shortest text that reads back as the same double; "2.0" rather than "2" so it stays a float.
std::string toml_number(double value);
/// A TOML basic string ("...").
std::string toml_string(std::string_view text);
/// "2GiB" when that is exact, else the number of bytes.
std::string toml_size(std::uint64_t bytes);

}  // namespace pollkill::detail
