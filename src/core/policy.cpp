#include "pollkill/policy.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <utility>

#include "policy_detail.h"
#include "pollkill/policy_schema.h"

namespace pollkill {
namespace {

constexpr std::int64_t kVersion = 1;

bool is_bare_key_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

/// Refuses, before toml++ sees it, a document deep enough to make its parser recurse off the
/// stack: a dotted key or table name of more than kMaxKeyParts parts, or arrays and inline
/// tables nested more than kMaxNesting deep. A light scan that knows strings and comments; it
/// may count a float ("1.5") as a key of two parts, which no bound here comes near.
void check_depth(std::string_view text, const std::string& source) {
  int line = 1, column = 1;
  int parts = 0, depth = 0;
  bool after_dot = false;
  std::size_t i = 0;
  const auto advance = [&](std::size_t count) {
    for (; count > 0 && i < text.size(); --count, ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) {
        ++column;  // columns count characters, as toml++'s do
      }
    }
  };
  // A string: skip to its end (an unterminated one is left to the parser to report).
  const auto skip_string = [&](char quote) {
    const std::string triple(3, quote);
    const bool multi_line = text.substr(i, 3) == triple;
    advance(multi_line ? 3 : 1);
    while (i < text.size()) {
      if (quote == '"' && text[i] == '\\') {
        advance(2);
      } else if (multi_line ? text.substr(i, 3) == triple : text[i] == quote) {
        advance(multi_line ? 3 : 1);
        return;
      } else if (!multi_line && text[i] == '\n') {
        return;
      } else {
        advance(1);
      }
    }
  };
  while (i < text.size()) {
    const char c = text[i];
    const int at_line = line, at_column = column;
    const bool part = c == '"' || c == '\'' || is_bare_key_char(c);
    if (part) {
      parts = after_dot ? parts + 1 : 1;
      after_dot = false;
      if (parts > kMaxKeyParts) {
        throw PolicyError(
            source, at_line, at_column,
            "a dotted key or table name of more than " + std::to_string(kMaxKeyParts) + " parts");
      }
      if (c == '"' || c == '\'') {
        skip_string(c);
      } else {
        while (i < text.size() && is_bare_key_char(text[i])) advance(1);
      }
      continue;
    }
    if (c == '.' && parts > 0) {
      after_dot = true;
    } else if (c != ' ' && c != '\t') {
      parts = 0;
      after_dot = false;
    }
    if (c == '#') {
      while (i < text.size() && text[i] != '\n') advance(1);
      continue;
    }
    if (c == '[' || c == '{') {
      if (++depth > kMaxNesting) {
        throw PolicyError(
            source, at_line, at_column,
            "arrays and inline tables nested more than " + std::to_string(kMaxNesting) + " deep");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
    advance(1);
  }
}

}  // namespace

PolicyError::PolicyError(std::string source, int line, int column, std::string message)
    : Error(source + (line > 0 ? ":" + std::to_string(line) + ":" + std::to_string(column) : "") +
            ": " + message),
      source_(std::move(source)),
      line_(line),
      column_(column),
      message_(std::move(message)) {}

Policy default_policy() {
  return Policy{};
}

Policy parse_policy(std::string_view text, const std::string& source, const Policy& base) {
  if (text.size() > kMaxPolicyBytes) {
    throw PolicyError(source, 0, 0,
                      "too large: a policy is at most " + format_size(kMaxPolicyBytes));
  }
  check_depth(text, source);
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw PolicyError(source, static_cast<int>(e.source().begin.line),
                      static_cast<int>(e.source().begin.column), std::string(e.description()));
  }
  detail::Reader reader(source);
  const toml::node* version = root.get("version");
  if (!version) {
    throw PolicyError(source, 1, 1, "missing 'version = 1' (put it at the top of the policy)");
  }
  if (!version->is_integer()) {
    reader.fail_at(version->source(),
                   "version: expected the integer 1, got " + reader.describe(*version));
  }
  if (version->as_integer()->get() != kVersion) {
    reader.fail_at(version->source(), "unsupported policy version " + reader.quoted(*version) +
                                          " (this pollkill reads version 1)");
  }
  Policy policy = base;
  detail::read_sections(reader, root, policy);
  return policy;
}

Policy load_policy_file(const std::filesystem::path& path) {
  const auto fail = [&path](int err) {
    throw PolicyError(
        path.string(), 0, 0,
        std::string("cannot read policy: ") + std::strerror(err) + " (" + errno_name(err) + ")");
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) fail(errno);
  // At most one byte more than a policy may have: /dev/zero or a huge file ends here.
  std::string text;
  char buffer[4096];
  std::size_t count;
  while (text.size() <= kMaxPolicyBytes &&
         (count = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) {
    text.append(buffer, count);
  }
  // fopen succeeds on a directory; the read is what fails (EISDIR).
  if (std::ferror(file.get())) fail(errno);
  return parse_policy(text, path.string());
}

std::string to_toml(const Policy& policy) {
  std::ostringstream out;
  out << "# pollkill policy; keys shown as comments are not set.\nversion = " << kVersion << "\n";
  std::string_view section;
  for (const KeySpec& key : policy_keys()) {
    if (key.section != section) {
      section = key.section;
      out << "\n[" << section << "]\n";
    }
    if (std::optional<std::string> value = toml_value(key, policy)) {
      out << key.name << " = " << *value << '\n';
    } else {
      out << "# " << key.name << " = (" << key.unset << ")\n";
    }
  }
  return out.str();
}

bool operator==(const Limits& a, const Limits& b) {
  return a.memory == b.memory && a.memory_high == b.memory_high && a.swap == b.swap &&
         a.cpus == b.cpus && a.pids == b.pids && a.wall_time == b.wall_time &&
         a.cpu_time == b.cpu_time && a.output == b.output &&
         a.wall_time_percent == b.wall_time_percent && a.wall_time_max == b.wall_time_max;
}

bool operator==(const WatchdogPolicy& a, const WatchdogPolicy& b) {
  return a.poll_interval == b.poll_interval && a.hang_after == b.hang_after &&
         a.hang_cpu_below == b.hang_cpu_below && a.spin_after == b.spin_after &&
         a.spin_cpu_above == b.spin_cpu_above && a.heartbeat == b.heartbeat &&
         a.kill_grace == b.kill_grace && a.orphans == b.orphans &&
         a.thrash_after == b.thrash_after && a.thrash_full_above == b.thrash_full_above;
}

bool operator==(const EvidencePolicy& a, const EvidencePolicy& b) {
  return a.on == b.on && a.budget == b.budget;
}

bool operator==(const RunnerPolicy& a, const RunnerPolicy& b) {
  return a.cgroup_root == b.cgroup_root && a.missing_controllers == b.missing_controllers &&
         a.cgroup_v1 == b.cgroup_v1 && a.cgroup_v1_root == b.cgroup_v1_root &&
         a.systemd_scope == b.systemd_scope && a.mode == b.mode;
}

bool operator==(const SeccompAction& a, const SeccompAction& b) {
  return a.kind == b.kind && (a.kind != SeccompAction::error || a.error_number == b.error_number);
}

bool operator==(const SeccompPolicy& a, const SeccompPolicy& b) {
  return a.default_action == b.default_action && a.allow == b.allow && a.deny == b.deny &&
         a.deny_action == b.deny_action && a.deny_new_namespaces == b.deny_new_namespaces;
}

bool operator==(const Rlimits& a, const Rlimits& b) {
  return a.core == b.core && a.nofile == b.nofile && a.fsize == b.fsize && a.stack == b.stack &&
         a.as == b.as && a.nproc == b.nproc;
}

bool operator==(const Namespaces& a, const Namespaces& b) {
  return a.net == b.net && a.pid == b.pid && a.ipc == b.ipc && a.uts == b.uts &&
         a.cgroup == b.cgroup && a.mount == b.mount;
}

bool operator==(const SandboxPolicy& a, const SandboxPolicy& b) {
  return a.user == b.user && a.group == b.group && a.no_new_privs == b.no_new_privs &&
         a.env == b.env && a.clear_env == b.clear_env && a.pass_env == b.pass_env &&
         a.cwd == b.cwd && a.umask == b.umask && a.rlimits == b.rlimits &&
         a.namespaces == b.namespaces && a.hostname == b.hostname &&
         a.private_tmp == b.private_tmp && a.read_only == b.read_only && a.hide == b.hide &&
         a.dynamic_uids == b.dynamic_uids;
}

bool operator==(const RetryPolicy& a, const RetryPolicy& b) {
  return a.attempts == b.attempts && a.on == b.on && a.backoff == b.backoff &&
         a.escalate == b.escalate;
}

bool operator==(const Policy& a, const Policy& b) {
  return a.limits == b.limits && a.watchdog == b.watchdog && a.evidence == b.evidence &&
         a.runner == b.runner && a.seccomp == b.seccomp && a.sandbox == b.sandbox &&
         a.retry == b.retry;
}

template <>
std::span<const EnumName<OrphanPolicy>> enum_names() {
  static constexpr EnumName<OrphanPolicy> kNames[] = {{OrphanPolicy::kill, "kill"},
                                                      {OrphanPolicy::wait, "wait"}};
  return kNames;
}

template <>
std::span<const EnumName<MissingControllers>> enum_names() {
  static constexpr EnumName<MissingControllers> kNames[] = {{MissingControllers::error, "error"},
                                                            {MissingControllers::warn, "warn"}};
  return kNames;
}

template <>
std::span<const EnumName<CgroupV1>> enum_names() {
  static constexpr EnumName<CgroupV1> kNames[] = {{CgroupV1::off, "off"},
                                                  {CgroupV1::automatic, "auto"}};
  return kNames;
}

template <>
std::span<const EnumName<SystemdScopeMode>> enum_names() {
  static constexpr EnumName<SystemdScopeMode> kNames[] = {{SystemdScopeMode::automatic, "auto"},
                                                          {SystemdScopeMode::never, "never"},
                                                          {SystemdScopeMode::always, "always"}};
  return kNames;
}

template <>
std::span<const EnumName<RunMode>> enum_names() {
  static constexpr EnumName<RunMode> kNames[] = {
      {RunMode::automatic, "auto"}, {RunMode::cgroup, "cgroup"}, {RunMode::subreaper, "subreaper"}};
  return kNames;
}

template <>
std::span<const EnumName<SeccompAction::Kind>> enum_names() {
  static constexpr EnumName<SeccompAction::Kind> kNames[] = {{SeccompAction::allow, "allow"},
                                                             {SeccompAction::error, "errno"},
                                                             {SeccompAction::kill, "kill"},
                                                             {SeccompAction::log, "log"}};
  return kNames;
}

std::string to_string(RunMode mode) {
  return std::string(enum_name(mode));
}

RunMode parse_run_mode(std::string_view word) {
  if (auto mode = enum_value<RunMode>(word)) return *mode;
  throw Error("unknown mode '" + std::string(word) + "'", "use auto, cgroup or subreaper");
}

std::string to_string(const SeccompAction& action) {
  if (action.kind == SeccompAction::error && action.error_number != EPERM) {
    return "errno:" + errno_name(action.error_number);
  }
  return std::string(enum_name(action.kind));
}

const char* to_string(SystemdScopeMode mode) {
  return enum_name(mode).data();  // the table's words are string literals
}

SystemdScopeMode parse_systemd_scope(const std::string& word) {
  if (auto mode = enum_value<SystemdScopeMode>(word)) return *mode;
  throw Error("invalid systemd_scope '" + word + "': expected auto, never or always");
}

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates) {
  const std::size_t allowed = word.size() <= 4 ? 1 : 2;
  std::string best;
  std::size_t best_distance = allowed + 1;
  std::vector<std::size_t> before, previous, current;
  for (std::string_view candidate : candidates) {
    // Levenshtein distance with a swap of two neighbours counting as one edit (optimal string
    // alignment: "rnu" is one edit from "run"), one row at a time.
    before.assign(candidate.size() + 1, 0);
    previous.resize(candidate.size() + 1);
    current.resize(candidate.size() + 1);
    for (std::size_t j = 0; j <= candidate.size(); ++j) previous[j] = j;
    for (std::size_t i = 1; i <= word.size(); ++i) {
      current[0] = i;
      for (std::size_t j = 1; j <= candidate.size(); ++j) {
        const std::size_t substitution =
            previous[j - 1] + (word[i - 1] == candidate[j - 1] ? 0 : 1);
        current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
        if (i > 1 && j > 1 && word[i - 1] == candidate[j - 2] && word[i - 2] == candidate[j - 1])
          current[j] = std::min(current[j], before[j - 2] + 1);
      }
      std::swap(before, previous);
      std::swap(previous, current);
    }
    if (previous[candidate.size()] < best_distance) {
      best_distance = previous[candidate.size()];
      best = std::string(candidate);
    }
  }
  return best;
}

}  // namespace pollkill
