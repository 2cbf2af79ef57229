// The declaration of every policy key (policy_schema.h): where it lives, how flags and docs
// name it, how its value is read and range-checked, and how it is printed.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>

#include "policy_detail.h"
#include "pollkill/status.h"

namespace pollkill::detail {
namespace {

using Text = std::optional<std::string>;

template <typename T, typename Format>
Text maybe(const std::optional<T>& value, Format format) {
  if (!value) return std::nullopt;
  return format(*value);
}

std::string duration_text(Duration d) {
  return toml_string(format_duration(d));
}

std::string string_list(const std::vector<std::string>& items) {
  std::string text = "[";
  for (const auto& item : items) text += (text.size() > 1 ? ", " : "") + toml_string(item);
  return text + "]";
}

std::string pids_text(std::uint64_t count) {
  return count == kSizeMax ? toml_string("max") : std::to_string(count);
}

/// A choice key: its words, type and placeholder come from the enum's name table.
template <typename E>
KeySpec with_choices(KeySpec spec) {
  for (const auto& entry : enum_names<E>()) spec.choices.push_back(entry.name);
  for (std::size_t i = 0; i < spec.choices.size(); ++i) {
    const char* separator = i == 0 ? "" : i + 1 == spec.choices.size() ? " or " : ", ";
    spec.type += separator + ("\"" + std::string(spec.choices[i]) + "\"");
    if (!spec.flag.empty()) spec.placeholder += (i ? "|" : "") + std::string(spec.choices[i]);
  }
  return spec;
}

/// setrlimit resources in `sandbox.rlimits`; `bytes`: also takes a size ("64MiB").
struct RlimitName {
  std::string_view name;
  std::optional<std::uint64_t> Rlimits::*member;
  bool bytes;
};
constexpr RlimitName kRlimits[] = {
    {"core", &Rlimits::core, true},   {"nofile", &Rlimits::nofile, false},
    {"fsize", &Rlimits::fsize, true}, {"stack", &Rlimits::stack, true},
    {"as", &Rlimits::as, true},       {"nproc", &Rlimits::nproc, false}};

/// Namespaces in `sandbox.namespaces`.
struct NamespaceName {
  std::string_view name;
  bool Namespaces::*member;
};
constexpr NamespaceName kNamespaces[] = {
    {"net", &Namespaces::net}, {"pid", &Namespaces::pid},       {"ipc", &Namespaces::ipc},
    {"uts", &Namespaces::uts}, {"cgroup", &Namespaces::cgroup}, {"mount", &Namespaces::mount}};

void read_rlimits(const Reader& r, const toml::node& n, const std::string& k, Rlimits& out) {
  const auto* table = n.as_table();
  if (!table) r.fail(n, k, "expected a table such as { nofile = 1024 }, got " + r.describe(n));
  std::vector<std::string_view> names;
  for (const RlimitName& e : kRlimits) names.push_back(e.name);
  for (const auto& [name, node] : *table) {
    const std::string_view wanted = name.str();  // clang 14 cannot capture a binding
    const auto entry = std::find_if(std::begin(kRlimits), std::end(kRlimits),
                                    [wanted](const RlimitName& e) { return e.name == wanted; });
    if (entry == std::end(kRlimits)) {
      std::string message = "unknown key '" + std::string(name.str()) + "' in " + k +
                            " (use core, nofile, fsize, stack, as or nproc)";
      if (std::string near = did_you_mean(name.str(), names); !near.empty()) {
        message += "; did you mean '" + near + "'?";
      }
      r.fail_at(name.source(), message);
    }
    const std::string key = k + "." + std::string(name.str());
    std::optional<std::uint64_t> value;
    if (const auto* text = node.as_string()) {
      if (text->get() == "unlimited") {
        value = kRlimitUnlimited;
      } else if (entry->bytes) {
        const std::uint64_t size = r.size(node, key);
        value = size == kSizeMax ? kRlimitUnlimited : size;
      }
    } else if (const auto* integer = node.as_integer(); integer && integer->get() >= 0) {
      value = static_cast<std::uint64_t>(integer->get());
    }
    if (!value) {
      r.fail(node, key,
             std::string("expected a non-negative integer") + (entry->bytes ? ", a size" : "") +
                 " or \"unlimited\", got " + r.describe(node));
    }
    out.*(entry->member) = value;
  }
}

std::string rlimits_text(const Rlimits& rlimits) {
  std::string text = "{";
  for (const RlimitName& e : kRlimits) {
    const std::optional<std::uint64_t>& value = rlimits.*(e.member);
    if (!value) continue;
    text += (text.size() > 1 ? ", " : " ") + std::string(e.name) + " = " +
            (*value == kRlimitUnlimited ? toml_string("unlimited") : std::to_string(*value));
  }
  return text + (text.size() > 1 ? " }" : "}");
}

void read_env(const Reader& r, const toml::node& n, const std::string& k,
              std::vector<std::pair<std::string, std::string>>& out) {
  const auto* table = n.as_table();
  if (!table) {
    r.fail(n, k, "expected a table such as { LANG = \"C.UTF-8\" }, got " + r.describe(n));
  }
  out.clear();
  for (const auto& [key, node] : *table) {
    const std::string name(key.str());
    if (name.empty() || name.find('=') != std::string::npos) {
      r.fail_at(key.source(), k + ": invalid variable name '" + name + "'");
    }
    const auto* text = node.as_string();
    if (!text) r.fail(node, k + "." + name, "expected a string, got " + r.describe(node));
    out.emplace_back(name, text->get());
  }
}

std::string env_text(const std::vector<std::pair<std::string, std::string>>& env) {
  std::string text = "{";
  for (std::size_t i = 0; i < env.size(); ++i) {
    text += (i ? ", " : " ") + toml_string(env[i].first) + " = " + toml_string(env[i].second) +
            (i + 1 == env.size() ? " " : "");
  }
  return text + "}";
}

void read_namespaces(const Reader& r, const toml::node& n, const std::string& k, Namespaces& out) {
  out = Namespaces{};
  const auto* array = n.as_array();
  if (!array) r.fail(n, k, "expected an array of strings, got " + r.describe(n));
  std::vector<std::string_view> names;
  for (const NamespaceName& e : kNamespaces) names.push_back(e.name);
  for (const toml::node& element : *array) {
    const std::string name = r.choice(element, k, names);
    for (const NamespaceName& e : kNamespaces) {
      if (e.name != name) continue;
      if (out.*(e.member)) r.fail(element, k, r.quoted(element) + " is listed twice");
      out.*(e.member) = true;
    }
  }
}

std::string namespaces_text(const Namespaces& namespaces) {
  std::vector<std::string> names;
  for (const NamespaceName& e : kNamespaces) {
    if (namespaces.*(e.member)) names.emplace_back(e.name);
  }
  return string_list(names);
}

unsigned read_umask(const Reader& r, const toml::node& n, const std::string& k) {
  std::int64_t value = -1;
  if (const auto* integer = n.as_integer()) value = integer->get();
  if (const auto* text = n.as_string()) {
    const std::string& t = text->get();
    if (!t.empty() && t.size() <= 4 && t.find_first_not_of("01234567") == std::string::npos) {
      value = std::stoll(t, nullptr, 8);
    }
  }
  if (value < 0 || value > 0777) {
    r.fail(n, k,
           "invalid value " + r.quoted(n) + " (use an octal string such as \"022\", or 0o022)");
  }
  return static_cast<unsigned>(value);
}

// "FIRST-LAST", two uids other than root and (uid_t)-1.
UidRange read_uid_range(const Reader& r, const toml::node& n, const std::string& k) {
  const std::string text = r.string(n, k);
  const auto dash = text.find('-');
  const auto number = [&text](std::size_t from, std::size_t to) -> std::optional<std::uint32_t> {
    std::uint32_t value = 0;
    const char* end = text.data() + to;
    const auto [at, ec] = std::from_chars(text.data() + from, end, value);
    if (ec != std::errc() || at != end || from == to) return std::nullopt;
    return value;
  };
  const auto first = dash == std::string::npos ? std::nullopt : number(0, dash);
  const auto last = dash == std::string::npos ? std::nullopt : number(dash + 1, text.size());
  if (!first || !last || *first == 0 || *last > 0xfffffffe || *first > *last) {
    r.fail(n, k,
           "invalid value " + r.quoted(n) +
               " (use \"FIRST-LAST\", two uids from 1 to 4294967294, FIRST <= LAST)");
  }
  return {*first, *last};
}

// "x2": a factor above 1 and at most kMaxEscalationFactor, as `retry.escalate` writes it.
double read_factor(const Reader& r, const toml::node& n, const std::string& k) {
  const auto* text = n.as_string();
  double factor = 0;
  bool ok = false;
  if (text && text->get().size() > 1 && text->get().front() == 'x') {
    const std::string& t = text->get();
    const char* end = t.data() + t.size();
    const auto parsed = std::from_chars(t.data() + 1, end, factor, std::chars_format::fixed);
    ok = t[1] >= '0' && t[1] <= '9' && parsed.ec == std::errc() && parsed.ptr == end;
  }
  if (!ok || factor <= 1 || factor > kMaxEscalationFactor) {
    r.fail(n, k,
           "invalid factor " + r.quoted(n) + " (use \"xF\" with F above 1 and at most " +
               std::to_string(static_cast<int>(kMaxEscalationFactor)) +
               ", such as \"x2\" or \"x1.5\")");
  }
  return factor;
}

void read_escalation(const Reader& r, const toml::node& n, const std::string& k,
                     RetryEscalation& out) {
  const auto* table = n.as_table();
  if (!table) {
    r.fail(n, k,
           "expected a table such as { memory = \"x2\", memory_max = \"8GiB\" }, got " +
               r.describe(n));
  }
  static const std::vector<std::string_view> names{"memory", "memory_max", "wall_time",
                                                   "wall_time_max"};
  out = RetryEscalation{};
  for (const auto& [name, node] : *table) {
    const std::string key = k + "." + std::string(name.str());
    if (name.str() == "memory") {
      out.memory = read_factor(r, node, key);
    } else if (name.str() == "memory_max") {
      out.memory_max = r.size(node, key);
      r.require_positive(node, key, *out.memory_max > 0);
    } else if (name.str() == "wall_time") {
      out.wall_time = read_factor(r, node, key);
    } else if (name.str() == "wall_time_max") {
      out.wall_time_max = r.duration(node, key);
      r.require_positive(node, key, out.wall_time_max->count() > 0);
    } else {
      std::string message = "unknown key '" + std::string(name.str()) + "' in " + k +
                            " (use memory, memory_max, wall_time or wall_time_max)";
      if (std::string near = did_you_mean(name.str(), names); !near.empty()) {
        message += "; did you mean '" + near + "'?";
      }
      r.fail_at(name.source(), message);
    }
  }
}

// "x2", "x1.5": a factor as the policy writes it.
std::string factor_text(double factor) {
  char text[32];
  std::snprintf(text, sizeof text, "x%.15g", factor);
  return toml_string(text);
}

std::string escalation_text(const RetryEscalation& e) {
  std::vector<std::string> parts;
  if (e.memory) parts.push_back("memory = " + factor_text(*e.memory));
  if (e.memory_max) parts.push_back("memory_max = " + toml_size(*e.memory_max));
  if (e.wall_time) parts.push_back("wall_time = " + factor_text(*e.wall_time));
  if (e.wall_time_max) parts.push_back("wall_time_max = " + duration_text(*e.wall_time_max));
  if (parts.empty()) return "{}";
  std::string text = "{ ";
  for (std::size_t i = 0; i < parts.size(); ++i) text += (i ? ", " : "") + parts[i];
  return text + " }";
}

std::vector<std::string_view> status_names() {
  std::vector<std::string_view> names;
  for (auto s = Status::ok; s <= Status::error; s = static_cast<Status>(static_cast<int>(s) + 1)) {
    names.push_back(to_string(s));
  }
  return names;
}

// An array of statuses out of `names`, each once.
std::vector<std::string> read_statuses(const Reader& r, const toml::node& n, const std::string& k,
                                       const std::vector<std::string_view>& names) {
  const auto* array = n.as_array();
  if (!array) r.fail(n, k, "expected an array of statuses, got " + r.describe(n));
  std::vector<std::string> out;
  for (const auto& item : *array) {
    std::string name = r.choice(item, k, names);
    if (std::find(out.begin(), out.end(), name) != out.end()) {
      r.fail(item, k, r.quoted(item) + " is listed twice");
    }
    out.push_back(std::move(name));
  }
  return out;
}

// The statuses pollkill decides itself (and could take evidence for): the task is still
// there when they are decided.
std::vector<std::string_view> verdict_names() {
  std::vector<std::string_view> names;
  for (Status s : {Status::timeout, Status::cpu_limit, Status::hung, Status::spinning,
                   Status::thrashing, Status::output_limit}) {
    names.push_back(to_string(s));
  }
  return names;
}

constexpr bool kCgroup = true;

}  // namespace

// The declaration of every key. Each row: where the key lives and how flags, docs and the
// printed policy name it; how its value is read and range-checked; how it is printed.
const std::vector<Key>& keys() {
  static const std::vector<Key> kKeys{
      // [limits]
      {{"limits", "memory", "--memory", "SIZE", "size > 0", "no limit",
        "hard memory limit (memory.max), e.g. 2GiB", kCgroup},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.memory = r.size(n, k);
         r.require_positive(n, k, *p.limits.memory > 0);
       },
       [](const Policy& p) { return maybe(p.limits.memory, toml_size); }},
      {{"limits", "memory_high", "--memory-high", "SIZE", "size > 0", "no limit",
        "throttling threshold (memory.high)", kCgroup},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.memory_high = r.size(n, k);
         r.require_positive(n, k, *p.limits.memory_high > 0);
       },
       [](const Policy& p) { return maybe(p.limits.memory_high, toml_size); }},
      {{"limits", "swap", "--swap", "SIZE", "size", "not set: 0 when memory is set",
        "swap limit (memory.swap.max); 0 when memory is limited and this is not", kCgroup},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.swap = r.size(n, k);
       },
       [](const Policy& p) { return maybe(p.limits.swap, toml_size); }},
      {{"limits", "cpus", "--cpus", "CPUS", "number 0.01 to 1000000", "no limit",
        "CPU quota in CPUs, fractional (cpu.max)", kCgroup},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.cpus = r.number(n, k, kMinCpus, false, kMaxCpus);
       },
       [](const Policy& p) { return maybe(p.limits.cpus, toml_number); }},
      {{"limits", "pids", "--pids", "N", "integer 1 to 4194304 or \"max\"", "no limit",
        "process and thread limit (pids.max)", kCgroup},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.pids = r.count(n, k, 1, kMaxPids, true);
       },
       [](const Policy& p) { return maybe(p.limits.pids, pids_text); }},
      {{"limits", "wall_time", "--wall-time", "DURATION",
        "duration (0 = no limit), or a percentage", "no limit",
        "wall-clock limit, e.g. 30s, 1h30m (0: none); in batch also 300% (of the median ok task)"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.wall_time.reset();
         p.limits.wall_time_percent.reset();
         const auto* text = n.as_string();
         if (!text || text->get().empty() || text->get().back() != '%') {
           p.limits.wall_time = r.limit_duration(n, k);
           return;
         }
         // A plain decimal before the '%': no sign, exponent, "inf" or blanks.
         const std::string& t = text->get();
         double percent = 0;
         const char* end = t.data() + t.size() - 1;
         const auto parsed = std::from_chars(t.data(), end, percent, std::chars_format::fixed);
         if (t.front() < '0' || t.front() > '9' || parsed.ec != std::errc() || parsed.ptr != end) {
           r.fail(n, k, "invalid percentage " + r.quoted(n) + " (use a number such as 300%)");
         }
         r.require_positive(n, k, percent > 0);
         if (percent > kMaxWallTimePercent) {
           r.fail(n, k,
                  "invalid percentage " + r.quoted(n) + ": must be at most " +
                      std::to_string(static_cast<long>(kMaxWallTimePercent)) + "%");
         }
         p.limits.wall_time_percent = percent;
       },
       [](const Policy& p) -> Text {
         if (p.limits.wall_time_percent) {
           return toml_string(toml_number(*p.limits.wall_time_percent) + "%");
         }
         return maybe(p.limits.wall_time, duration_text);
       }},
      {{"limits", "wall_time_max", "--wall-time-max", "DURATION", "duration > 0", "no cap",
        "cap of a percentage wall time"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.wall_time_max = r.duration(n, k);
         r.require_positive(n, k, p.limits.wall_time_max->count() > 0);
       },
       [](const Policy& p) { return maybe(p.limits.wall_time_max, duration_text); }},
      {{"limits", "cpu_time", "--cpu-time", "DURATION", "duration (0 = no limit)", "no limit",
        "CPU time limit of the whole tree (0: none)"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.cpu_time = r.limit_duration(n, k);
       },
       [](const Policy& p) { return maybe(p.limits.cpu_time, duration_text); }},
      {{"limits", "output", "--output", "SIZE", "size", "no limit",
        "limit on captured stdout and stderr together"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.limits.output = r.size(n, k);
       },
       [](const Policy& p) { return maybe(p.limits.output, toml_size); }},
      // [watchdog]
      {{"watchdog", "poll_interval", "--poll-interval", "DURATION", "duration >= 10ms", "",
        "sampling interval"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.poll_interval = r.duration(n, k);
         if (p.watchdog.poll_interval < kMinPollInterval) {
           r.fail(n, k,
                  "invalid value " + r.quoted(n) + ": must be at least " +
                      format_duration(kMinPollInterval));
         }
       },
       [](const Policy& p) -> Text { return duration_text(p.watchdog.poll_interval); }},
      {{"watchdog", "hang_after", "--hang-after", "DURATION", "duration (0 = off)", "off",
        "hung: CPU below the hang threshold and no progress for this long (0: off)"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.hang_after = r.limit_duration(n, k);
       },
       [](const Policy& p) { return maybe(p.watchdog.hang_after, duration_text); }},
      {{"watchdog", "hang_cpu_below", "--hang-cpu-below", "CPUS", "number >= 0", "",
        "CPUs below which an interval counts as idle"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.hang_cpu_below = r.number(n, k, 0, false, std::numeric_limits<double>::max());
       },
       [](const Policy& p) -> Text { return toml_number(p.watchdog.hang_cpu_below); }},
      {{"watchdog", "spin_after", "--spin-after", "DURATION", "duration (0 = off)", "off",
        "spinning: CPU at or above the spin threshold and no progress for this long (0: off)"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.spin_after = r.limit_duration(n, k);
       },
       [](const Policy& p) { return maybe(p.watchdog.spin_after, duration_text); }},
      {{"watchdog", "spin_cpu_above", "--spin-cpu-above", "CPUS", "number >= 0", "",
        "CPUs at or above which an interval counts as busy"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.spin_cpu_above = r.number(n, k, 0, false, std::numeric_limits<double>::max());
       },
       [](const Policy& p) -> Text { return toml_number(p.watchdog.spin_cpu_above); }},
      {{"watchdog", "heartbeat", "--heartbeat", "FILE", "string (path), not empty", "off",
        "a file whose change counts as progress"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.heartbeat = r.string(n, k);
       },
       [](const Policy& p) { return maybe(p.watchdog.heartbeat, toml_string); }},
      {{"watchdog", "kill_grace", "--kill-grace", "DURATION", "duration >= 0", "",
        "SIGTERM to SIGKILL delay; 0 kills at once"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.kill_grace = r.duration(n, k);
       },
       [](const Policy& p) -> Text { return duration_text(p.watchdog.kill_grace); }},
      {with_choices<OrphanPolicy>({"watchdog", "orphans", "--orphans", "", "", "",
                                   "processes left after the main one exits: kill or wait"}),
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.orphans = r.choice<OrphanPolicy>(n, k);
       },
       [](const Policy& p) -> Text { return toml_string(enum_name(p.watchdog.orphans)); }},
      {{"watchdog", "thrash_after", "--thrash-after", "DURATION", "duration (0 = off)", "off",
        "thrashing: every thread stalled on memory for thrash_full_above of the time over this "
        "long (0: off)"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.thrash_after = r.limit_duration(n, k);
       },
       [](const Policy& p) { return maybe(p.watchdog.thrash_after, duration_text); }},
      {{"watchdog", "thrash_full_above", "--thrash-full-above", "SHARE", "number > 0 and <= 1", "",
        "share of wall time stalled on memory (memory.pressure full) that counts as thrashing"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.watchdog.thrash_full_above = r.number(n, k, 0, true, 1);
       },
       [](const Policy& p) -> Text { return toml_number(p.watchdog.thrash_full_above); }},
      // [evidence]
      {{"evidence", "on", "", "",
        "array of \"timeout\", \"cpu_limit\", \"hung\", \"spinning\", \"thrashing\", "
        "\"output_limit\"",
        "", "the statuses whose task is frozen and its stacks written before the kill"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.evidence.on = read_statuses(r, n, k, verdict_names());
       },
       [](const Policy& p) -> Text { return string_list(p.evidence.on); }},
      {{"evidence", "budget", "", "", "duration > 0", "",
        "the most time one task's evidence capture may take"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.evidence.budget = r.duration(n, k);
         r.require_positive(n, k, p.evidence.budget.count() > 0);
       },
       [](const Policy& p) -> Text { return duration_text(p.evidence.budget); }},
      // [retry]
      {{"retry", "attempts", "", "", "integer 1 to 1000", "", "attempts in all for one task"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.retry.attempts = static_cast<int>(r.count(n, k, 1, kMaxAttempts, false));
       },
       [](const Policy& p) -> Text { return std::to_string(p.retry.attempts); }},
      {{"retry", "on", "", "", "array of statuses", "", "the statuses that are retried"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         const auto* array = n.as_array();
         if (!array) r.fail(n, k, "expected an array of statuses, got " + r.describe(n));
         const std::vector<std::string_view> names = status_names();
         p.retry.on.clear();
         for (const auto& item : *array) p.retry.on.push_back(r.choice(item, k, names));
       },
       [](const Policy& p) -> Text { return string_list(p.retry.on); }},
      {{"retry", "backoff", "", "", "duration >= 0", "", "wait before the second attempt"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.retry.backoff = r.duration(n, k);
       },
       [](const Policy& p) -> Text { return duration_text(p.retry.backoff); }},
      {{"retry", "escalate", "", "", "table { memory, memory_max, wall_time, wall_time_max }", "",
        "more memory after oom or thrashing, more wall time after timeout"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         read_escalation(r, n, k, p.retry.escalate);
       },
       [](const Policy& p) -> Text { return escalation_text(p.retry.escalate); }},
      // [runner]
      {{"runner", "cgroup_root", "", "", "string (path), not empty", "not set",
        "the cgroup under which task cgroups are created"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.runner.cgroup_root = r.string(n, k);
       },
       [](const Policy& p) { return maybe(p.runner.cgroup_root, toml_string); }},
      {with_choices<MissingControllers>(
           {"runner", "missing_controllers", "--missing-controllers", "", "", "",
            "a limit whose controller is missing: error, or warn and run without it"}),
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.runner.missing_controllers = r.choice<MissingControllers>(n, k);
       },
       [](const Policy& p) -> Text {
         return toml_string(enum_name(p.runner.missing_controllers));
       }},
      {with_choices<CgroupV1>({"runner", "cgroup_v1", "--cgroup-v1", "", "", "",
                               "hybrid hosts: enforce the limits the unified hierarchy lacks "
                               "through the cgroup v1 controllers (auto), or never (off)"}),
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.runner.cgroup_v1 = r.choice<CgroupV1>(n, k);
       },
       [](const Policy& p) -> Text { return toml_string(enum_name(p.runner.cgroup_v1)); }},
      {{"runner", "cgroup_v1_root", "", "", "string (path), not empty", "not set",
        "where v1 run cgroups go in each v1 hierarchy"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.runner.cgroup_v1_root = r.string(n, k);
       },
       [](const Policy& p) { return maybe(p.runner.cgroup_v1_root, toml_string); }},
      {with_choices<SystemdScopeMode>(
           {"runner", "systemd_scope", "--systemd-scope", "", "", "",
            "on systemd, ask for a delegated scope: auto (when not delegated), never, always"}),
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.runner.systemd_scope = r.choice<SystemdScopeMode>(n, k);
       },
       [](const Policy& p) -> Text { return toml_string(enum_name(p.runner.systemd_scope)); }},
      {with_choices<RunMode>({"runner", "mode", "--mode", "", "", "",
                              "auto: a cgroup per task when one is usable, else subreaper; "
                              "cgroup; subreaper (the process tree through /proc, no cgroup "
                              "limits)"}),
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.runner.mode = r.choice<RunMode>(n, k);
       },
       [](const Policy& p) -> Text { return toml_string(enum_name(p.runner.mode)); }},
      // [seccomp]
      {{"seccomp", "default", "", "", "action", "", "what a call named in neither list gets"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.seccomp.default_action = r.action(n, k, true);
       },
       [](const Policy& p) -> Text { return toml_string(to_string(p.seccomp.default_action)); }},
      {{"seccomp", "allow", "", "", "array of system call names", "", "always allowed"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.seccomp.allow = r.syscalls(n, k);
       },
       [](const Policy& p) -> Text { return string_list(p.seccomp.allow); }},
      {{"seccomp", "deny", "", "", "array of system call names", "", "get deny_action"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.seccomp.deny = r.syscalls(n, k);
       },
       [](const Policy& p) -> Text { return string_list(p.seccomp.deny); }},
      {{"seccomp", "deny_action", "", "", "action, not \"allow\"", "", "what a denied call gets"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.seccomp.deny_action = r.action(n, k, false);
       },
       [](const Policy& p) -> Text { return toml_string(to_string(p.seccomp.deny_action)); }},
      {{"seccomp", "deny_new_namespaces", "", "", "boolean", "",
        "clone/unshare with CLONE_NEW* get deny_action; clone3 fails with ENOSYS"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.seccomp.deny_new_namespaces = r.boolean(n, k);
       },
       [](const Policy& p) -> Text { return p.seccomp.deny_new_namespaces ? "true" : "false"; }},
      // [sandbox]
      {{"sandbox", "user", "", "", "string (name) or integer, or \"dynamic\"",
        "not set: pollkill's own", "the task's user"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.user = r.id(n, k);
       },
       [](const Policy& p) { return maybe(p.sandbox.user, toml_string); }},
      {{"sandbox", "group", "", "", "string (name) or integer", "not set: the user's primary group",
        "the task's group"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.group = r.id(n, k);
       },
       [](const Policy& p) { return maybe(p.sandbox.group, toml_string); }},
      {{"sandbox", "no_new_privs", "", "", "boolean", "", "PR_SET_NO_NEW_PRIVS"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.no_new_privs = r.boolean(n, k);
       },
       [](const Policy& p) -> Text { return p.sandbox.no_new_privs ? "true" : "false"; }},
      {{"sandbox", "env", "", "", "table of strings", "", "variables set in the environment"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         read_env(r, n, k, p.sandbox.env);
       },
       [](const Policy& p) -> Text { return env_text(p.sandbox.env); }},
      {{"sandbox", "clear_env", "", "", "boolean", "", "start from an empty environment"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.clear_env = r.boolean(n, k);
       },
       [](const Policy& p) -> Text { return p.sandbox.clear_env ? "true" : "false"; }},
      {{"sandbox", "pass_env", "", "", "array of names", "", "variables clear_env keeps"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.pass_env = r.strings(n, k);
       },
       [](const Policy& p) -> Text { return string_list(p.sandbox.pass_env); }},
      {{"sandbox", "cwd", "", "", "string (absolute path)", "not set: pollkill's own",
        "the working directory"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.cwd = r.string(n, k);
         if (p.sandbox.cwd->front() != '/') {
           r.fail(n, k, "invalid path " + r.quoted(n) + ": must be absolute");
         }
       },
       [](const Policy& p) { return maybe(p.sandbox.cwd, toml_string); }},
      {{"sandbox", "umask", "", "", "octal string or integer", "not set: pollkill's own",
        "the task's umask"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.umask = read_umask(r, n, k);
       },
       [](const Policy& p) {
         return maybe(p.sandbox.umask, [](unsigned mask) {
           char text[8];
           std::snprintf(text, sizeof text, "%03o", mask);
           return toml_string(text);
         });
       }},
      {{"sandbox", "rlimits", "", "", "table", "", "setrlimit, soft = hard"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         read_rlimits(r, n, k, p.sandbox.rlimits);
       },
       [](const Policy& p) -> Text { return rlimits_text(p.sandbox.rlimits); }},
      {{"sandbox", "namespaces", "", "",
        "array of \"net\", \"pid\", \"ipc\", \"uts\", \"cgroup\", \"mount\"", "",
        "namespaces of the task's own"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         read_namespaces(r, n, k, p.sandbox.namespaces);
       },
       [](const Policy& p) -> Text { return namespaces_text(p.sandbox.namespaces); }},
      {{"sandbox", "hostname", "", "", "string", "not set", "the uts namespace's hostname"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.hostname = r.string(n, k);
       },
       [](const Policy& p) { return maybe(p.sandbox.hostname, toml_string); }},
      {{"sandbox", "private_tmp", "", "", "boolean", "", "a fresh tmpfs on /tmp"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.private_tmp = r.boolean(n, k);
       },
       [](const Policy& p) -> Text { return p.sandbox.private_tmp ? "true" : "false"; }},
      {{"sandbox", "read_only", "", "", "array of absolute paths", "", "made read-only"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.read_only = r.paths(n, k);
       },
       [](const Policy& p) -> Text { return string_list(p.sandbox.read_only); }},
      {{"sandbox", "hide", "", "", "array of absolute paths", "", "hidden"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.hide = r.paths(n, k);
       },
       [](const Policy& p) -> Text { return string_list(p.sandbox.hide); }},
      {{"sandbox", "dynamic_uids", "", "", "string \"FIRST-LAST\"", "",
        "the uids user = \"dynamic\" hands out, one per running task"},
       [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
         p.sandbox.dynamic_uids = read_uid_range(r, n, k);
       },
       [](const Policy& p) -> Text {
         return toml_string(std::to_string(p.sandbox.dynamic_uids.first) + "-" +
                            std::to_string(p.sandbox.dynamic_uids.last));
       }},
  };
  return kKeys;
}

}  // namespace pollkill::detail
