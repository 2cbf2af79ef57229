#include "pollkill/policy.h"

#include "pollkill/status.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

#include <seccomp.h>
#include <toml++/toml.h>

namespace pollkill {
namespace {

constexpr std::int64_t kVersion = 1;
constexpr Duration kMinPollInterval{10};

/// Reads one parsed document into a Policy. Every failure is a PolicyError pointing at the
/// key or value at fault, so that an editor can jump straight to it.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(const toml::source_region& where, const std::string& message) const {
    throw PolicyError(source_, static_cast<int>(where.begin.line),
                      static_cast<int>(where.begin.column), message);
  }

  /// Remembers where a key was written, for checks that involve more than one key.
  void note(const std::string& key, const toml::source_region& where) { seen_[key] = where; }
  const toml::source_region* where(const std::string& key) const {
    auto it = seen_.find(key);
    return it == seen_.end() ? nullptr : &it->second;
  }

  std::uint64_t size(const toml::node& node, const std::string& key) const;
  Duration duration(const toml::node& node, const std::string& key) const;
  double number(const toml::node& node, const std::string& key) const;
  std::string string(const toml::node& node, const std::string& key) const;
  std::string choice(const toml::node& node, const std::string& key,
                     const std::vector<std::string_view>& options) const;
  std::uint64_t pids(const toml::node& node, const std::string& key) const;
  bool boolean(const toml::node& node, const std::string& key) const;
  std::vector<std::string> strings(const toml::node& node, const std::string& key) const;
  std::vector<std::string> syscalls(const toml::node& node, const std::string& key) const;
  std::vector<std::string> paths(const toml::node& node, const std::string& key) const;
  SeccompAction action(const toml::node& node, const std::string& key, bool allow_ok) const;
  std::string id(const toml::node& node, const std::string& key) const;

 private:
  const std::string& source_;
  std::map<std::string, toml::source_region> seen_;
};

// Shortest text that reads back as the same double; "2.0" rather than "2" so it stays a float.
std::string toml_number(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, result.ptr);
  if (std::isfinite(value) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

/// A scalar as the user wrote it (as near as the parsed value allows): 12XB, -0.1, true.
std::string scalar_text(const toml::node& node) {
  if (const auto* text = node.as_string()) return text->get();
  if (const auto* integer = node.as_integer()) return std::to_string(integer->get());
  if (const auto* floating = node.as_floating_point()) return toml_number(floating->get());
  std::ostringstream out;
  node.visit([&out](const auto& value) {
    if constexpr (toml::is_value<decltype(value)>) out << value;
  });
  return out.str();
}

/// The value in single quotes, like the units errors: '12XB', '0.005'.
std::string quoted(const toml::node& node) {
  return "'" + scalar_text(node) + "'";
}

/// "integer 3", "string '4'", "a table": how a value of the wrong type reads in a message.
std::string describe(const toml::node& node) {
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  std::ostringstream out;
  out << node.type() << ' ' << (node.is_string() ? quoted(node) : scalar_text(node));
  return out.str();
}

std::uint64_t Reader::size(const toml::node& node, const std::string& key) const {
  if (const auto* text = node.as_string()) {
    try {
      return parse_size(text->get());
    } catch (const Error& e) {
      fail(node.source(), key + ": " + e.what());
    }
  }
  if (const auto* integer = node.as_integer()) {
    if (integer->get() < 0)
      fail(node.source(), key + ": invalid size " + quoted(node) + ": must not be negative");
    return static_cast<std::uint64_t>(integer->get());
  }
  fail(node.source(), key +
                          ": expected a size (a string such as \"2GiB\" or \"max\", or an integer "
                          "number of bytes), got " +
                          describe(node));
}

Duration Reader::duration(const toml::node& node, const std::string& key) const {
  if (const auto* text = node.as_string()) {
    try {
      return parse_duration(text->get());
    } catch (const Error& e) {
      fail(node.source(), key + ": " + e.what());
    }
  }
  if (node.is_number()) {
    const double seconds = node.value<double>().value_or(0);
    // The bound is a power of two so the comparison is exact; beyond it the count would overflow.
    constexpr double kMaxSeconds = 0x1p63 / 1000;
    if (std::isnan(seconds) || seconds < 0) {
      fail(node.source(), key + ": invalid duration " + quoted(node) + ": must not be negative");
    }
    if (seconds >= kMaxSeconds)
      fail(node.source(), key + ": invalid duration " + quoted(node) + ": too large");
    if (const auto* integer = node.as_integer()) return Duration(integer->get() * 1000);
    return Duration(static_cast<Duration::rep>(std::floor(seconds * 1000)));
  }
  fail(node.source(),
       key +
           ": expected a duration (a string such as \"30s\" or \"1h30m\", or a number "
           "of seconds), got " +
           describe(node));
}

double Reader::number(const toml::node& node, const std::string& key) const {
  if (!node.is_number()) fail(node.source(), key + ": expected a number, got " + describe(node));
  const double value = node.value<double>().value_or(0);
  if (!std::isfinite(value))
    fail(node.source(), key + ": invalid number " + quoted(node) + ": must be finite");
  return value;
}

std::string Reader::string(const toml::node& node, const std::string& key) const {
  const auto* text = node.as_string();
  if (!text) fail(node.source(), key + ": expected a string, got " + describe(node));
  if (text->get().empty())
    fail(node.source(), key + ": must not be empty (leave the key out instead)");
  return text->get();
}

std::string Reader::choice(const toml::node& node, const std::string& key,
                           const std::vector<std::string_view>& options) const {
  std::string use;
  for (std::string_view option : options) {
    use += (use.empty() ? "\"" : " or \"") + std::string(option) + "\"";
  }
  const auto* text = node.as_string();
  if (!text) fail(node.source(), key + ": expected " + use + ", got " + describe(node));
  for (std::string_view option : options) {
    if (text->get() == option) return text->get();
  }
  std::string message = key + ": invalid value " + quoted(node) + " (use " + use + ")";
  if (std::string near = did_you_mean(text->get(), options); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  }
  fail(node.source(), message);
}

std::uint64_t Reader::pids(const toml::node& node, const std::string& key) const {
  if (const auto* text = node.as_string(); text && text->get() == "max") return kSizeMax;
  if (const auto* integer = node.as_integer(); integer && integer->get() > 0) {
    return static_cast<std::uint64_t>(integer->get());
  }
  if (node.is_integer() || node.is_string()) {
    fail(node.source(),
         key + ": invalid value " + quoted(node) + " (use a positive integer or \"max\")");
  }
  fail(node.source(), key + ": expected a positive integer or \"max\", got " + describe(node));
}

bool Reader::boolean(const toml::node& node, const std::string& key) const {
  const auto* value = node.as_boolean();
  if (!value) fail(node.source(), key + ": expected true or false, got " + describe(node));
  return value->get();
}

std::vector<std::string> Reader::strings(const toml::node& node, const std::string& key) const {
  const auto* array = node.as_array();
  if (!array) fail(node.source(), key + ": expected an array of strings, got " + describe(node));
  std::vector<std::string> out;
  for (const toml::node& element : *array) {
    out.push_back(string(element, key));
    if (std::find(out.begin(), out.end() - 1, out.back()) != out.end() - 1) {
      fail(element.source(), key + ": " + quoted(element) + " is listed twice");
    }
  }
  return out;
}

// Names are checked against libseccomp's tables, so a typo is caught by `policy check` rather
// than when the filter is built. Names of other architectures' calls resolve too (negative
// pseudo numbers) and are accepted: the filter simply never meets them here.
std::vector<std::string> Reader::syscalls(const toml::node& node, const std::string& key) const {
  std::vector<std::string> names = strings(node, key);
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (seccomp_syscall_resolve_name(names[i].c_str()) == __NR_SCMP_ERROR) {
      fail((*node.as_array())[i].source(),
           key + ": unknown system call '" + names[i] + "' (libseccomp does not know it)");
    }
  }
  return names;
}

std::vector<std::string> Reader::paths(const toml::node& node, const std::string& key) const {
  std::vector<std::string> out = strings(node, key);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].front() != '/') {
      fail((*node.as_array())[i].source(),
           key + ": invalid path '" + out[i] + "': must be absolute");
    }
  }
  return out;
}

SeccompAction Reader::action(const toml::node& node, const std::string& key, bool allow_ok) const {
  const std::string use = allow_ok ? "\"allow\", \"errno\", \"errno:NAME\", \"kill\" or \"log\""
                                   : "\"errno\", \"errno:NAME\", \"kill\" or \"log\"";
  const auto* text = node.as_string();
  if (!text) fail(node.source(), key + ": expected " + use + ", got " + describe(node));
  const std::string& value = text->get();
  if (value == "allow" && allow_ok) return {SeccompAction::allow, 1};
  if (value == "errno") return {SeccompAction::error, EPERM};
  if (value == "kill") return {SeccompAction::kill, 1};
  if (value == "log") return {SeccompAction::log, 1};
  if (value.rfind("errno:", 0) == 0) {
    const int number = errno_from_name(value.substr(6));
    if (number <= 0) {
      fail(node.source(), key + ": invalid value " + quoted(node) + ": unknown errno name '" +
                              value.substr(6) + "' (use a name such as EPERM or ENOSYS)");
    }
    return {SeccompAction::error, number};
  }
  std::vector<std::string_view> options{"errno", "kill", "log"};
  if (allow_ok) options.push_back("allow");
  std::string message = key + ": invalid value " + quoted(node) + " (use " + use + ")";
  if (std::string near = did_you_mean(value, options); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  }
  fail(node.source(), message);
}

// A user or group: a name, or a number (as an integer or a string of digits).
std::string Reader::id(const toml::node& node, const std::string& key) const {
  if (const auto* integer = node.as_integer()) {
    if (integer->get() < 0 || integer->get() > 0xfffffffe) {
      fail(node.source(), key + ": invalid value " + quoted(node) + ": not a valid id");
    }
    return std::to_string(integer->get());
  }
  if (!node.is_string()) {
    fail(node.source(), key + ": expected a name or a number, got " + describe(node));
  }
  return string(node, key);
}

// A byte-sized limit may be written as a size ("64MiB"); every limit as an integer or
// "unlimited".
std::uint64_t rlimit_value(const Reader& r, const toml::node& n, const std::string& k, bool bytes) {
  if (const auto* text = n.as_string()) {
    if (text->get() == "unlimited") return kRlimitUnlimited;
    if (bytes) {
      const std::uint64_t size = r.size(n, k);
      return size == kSizeMax ? kRlimitUnlimited : size;
    }
  }
  if (const auto* integer = n.as_integer(); integer && integer->get() >= 0) {
    return static_cast<std::uint64_t>(integer->get());
  }
  r.fail(n.source(), k + ": expected a non-negative integer" +
                         std::string(bytes ? ", a size" : "") + " or \"unlimited\", got " +
                         describe(n));
}

void read_rlimits(const Reader& r, const toml::node& n, const std::string& k, Rlimits& out) {
  const auto* table = n.as_table();
  if (!table) {
    r.fail(n.source(), k + ": expected a table such as { nofile = 1024 }, got " + describe(n));
  }
  struct Entry {
    std::string_view name;
    std::optional<std::uint64_t> Rlimits::*member;
    bool bytes;
  };
  static const Entry kEntries[] = {
      {"core", &Rlimits::core, true},   {"nofile", &Rlimits::nofile, false},
      {"fsize", &Rlimits::fsize, true}, {"stack", &Rlimits::stack, true},
      {"as", &Rlimits::as, true},       {"nproc", &Rlimits::nproc, false}};
  std::vector<std::string_view> names;
  for (const Entry& e : kEntries) names.push_back(e.name);
  for (const auto& [key, node] : *table) {
    const Entry* entry = nullptr;
    for (const Entry& e : kEntries) {
      if (e.name == key.str()) entry = &e;
    }
    if (!entry) {
      std::string message = "unknown key '" + std::string(key.str()) + "' in " + k +
                            " (use core, nofile, fsize, stack, as or nproc)";
      if (std::string near = did_you_mean(key.str(), names); !near.empty()) {
        message += "; did you mean '" + near + "'?";
      }
      r.fail(key.source(), message);
    }
    out.*(entry->member) = rlimit_value(r, node, k + "." + std::string(key.str()), entry->bytes);
  }
}

void read_env(const Reader& r, const toml::node& n, const std::string& k,
              std::vector<std::pair<std::string, std::string>>& out) {
  const auto* table = n.as_table();
  if (!table) {
    r.fail(n.source(), k + ": expected a table such as { LANG = \"C.UTF-8\" }, got " + describe(n));
  }
  out.clear();
  for (const auto& [key, node] : *table) {
    const std::string name(key.str());
    if (name.empty() || name.find('=') != std::string::npos) {
      r.fail(key.source(), k + ": invalid variable name '" + name + "'");
    }
    const auto* text = node.as_string();
    if (!text) r.fail(node.source(), k + "." + name + ": expected a string, got " + describe(node));
    out.emplace_back(name, text->get());
  }
}

void read_namespaces(const Reader& r, const toml::node& n, const std::string& k, Namespaces& out) {
  out = Namespaces{};
  const auto* array = n.as_array();
  if (!array) r.fail(n.source(), k + ": expected an array of strings, got " + describe(n));
  for (const toml::node& element : *array) {
    const std::string name = r.choice(element, k, {"net", "pid", "ipc", "uts", "cgroup", "mount"});
    bool* flag = name == "net"      ? &out.net
                 : name == "pid"    ? &out.pid
                 : name == "ipc"    ? &out.ipc
                 : name == "uts"    ? &out.uts
                 : name == "cgroup" ? &out.cgroup
                                    : &out.mount;
    if (*flag) r.fail(element.source(), k + ": " + quoted(element) + " is listed twice");
    *flag = true;
  }
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
    r.fail(n.source(), k + ": invalid value " + quoted(n) +
                           " (use \"FIRST-LAST\", two uids from 1 to 4294967294, FIRST <= LAST)");
  }
  return {*first, *last};
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
    r.fail(n.source(),
           k + ": invalid value " + quoted(n) + " (use an octal string such as \"022\", or 0o022)");
  }
  return static_cast<unsigned>(value);
}

// Limits and timeouts of zero are refused: they would stop every task at once, and leaving the
// key out is how a policy says "no limit".
void require_positive(const Reader& r, const toml::node& node, const std::string& key,
                      bool positive) {
  if (!positive) {
    r.fail(node.source(), key + ": invalid value " + quoted(node) +
                              ": must be greater than 0 (leave the key out for no limit)");
  }
}

using Apply = void (*)(Reader&, const toml::node&, const std::string&, Policy&);
struct Field {
  std::string_view name;
  Apply apply;
};
struct Section {
  std::string_view name;
  std::vector<Field> fields;
};

const std::vector<Section>& sections() {
  static const std::vector<Section> kSections{
      {"limits",
       {
           {"memory",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.limits.memory = r.size(n, k);
              require_positive(r, n, k, *p.limits.memory > 0);
            }},
           {"memory_high",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.limits.memory_high = r.size(n, k);
              require_positive(r, n, k, *p.limits.memory_high > 0);
            }},
           {"swap", [](Reader& r, const toml::node& n, const std::string& k,
                       Policy& p) { p.limits.swap = r.size(n, k); }},
           {"cpus",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.limits.cpus = r.number(n, k);
              require_positive(r, n, k, *p.limits.cpus > 0);
            }},
           {"pids", [](Reader& r, const toml::node& n, const std::string& k,
                       Policy& p) { p.limits.pids = r.pids(n, k); }},
           {"wall_time",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              if (const auto* text = n.as_string();
                  text && !text->get().empty() && text->get().back() == '%') {
                const std::string number = text->get().substr(0, text->get().size() - 1);
                double percent = 0;
                try {
                  size_t used = 0;
                  percent = std::stod(number, &used);
                  if (used != number.size()) percent = 0;
                } catch (const std::exception&) {
                }
                require_positive(r, n, k, std::isfinite(percent) && percent > 0);
                p.limits.wall_time_percent = percent;
                p.limits.wall_time.reset();
                return;
              }
              p.limits.wall_time = r.duration(n, k);
              require_positive(r, n, k, p.limits.wall_time->count() > 0);
              p.limits.wall_time_percent.reset();
            }},
           {"wall_time_max",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.limits.wall_time_max = r.duration(n, k);
              require_positive(r, n, k, p.limits.wall_time_max->count() > 0);
            }},
           {"cpu_time",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.limits.cpu_time = r.duration(n, k);
              require_positive(r, n, k, p.limits.cpu_time->count() > 0);
            }},
           {"output", [](Reader& r, const toml::node& n, const std::string& k,
                         Policy& p) { p.limits.output = r.size(n, k); }},
       }},
      {"watchdog",
       {
           {"poll_interval",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.watchdog.poll_interval = r.duration(n, k);
              if (p.watchdog.poll_interval < kMinPollInterval) {
                r.fail(n.source(), k + ": invalid value " + quoted(n) + ": must be at least " +
                                       format_duration(kMinPollInterval));
              }
            }},
           {"hang_after",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.watchdog.hang_after = r.duration(n, k);
              require_positive(r, n, k, p.watchdog.hang_after->count() > 0);
            }},
           {"hang_cpu_below",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.watchdog.hang_cpu_below = r.number(n, k);
              if (p.watchdog.hang_cpu_below < 0) {
                r.fail(n.source(), k + ": invalid value " + quoted(n) + ": must not be negative");
              }
            }},
           {"spin_after",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.watchdog.spin_after = r.duration(n, k);
              require_positive(r, n, k, p.watchdog.spin_after->count() > 0);
            }},
           {"spin_cpu_above",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.watchdog.spin_cpu_above = r.number(n, k);
              if (p.watchdog.spin_cpu_above < 0) {
                r.fail(n.source(), k + ": invalid value " + quoted(n) + ": must not be negative");
              }
            }},
           {"heartbeat", [](Reader& r, const toml::node& n, const std::string& k,
                            Policy& p) { p.watchdog.heartbeat = r.string(n, k); }},
           {"kill_grace", [](Reader& r, const toml::node& n, const std::string& k,
                             Policy& p) { p.watchdog.kill_grace = r.duration(n, k); }},
           {"orphans",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.watchdog.orphans = r.choice(n, k, {"kill", "wait"}) == "kill" ? OrphanPolicy::kill
                                                                              : OrphanPolicy::wait;
            }},
       }},
      {"retry",
       {
           {"attempts",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              const auto* integer = n.as_integer();
              if (!integer || integer->get() < 1 || integer->get() > 1000) {
                r.fail(n.source(), k + ": expected an integer from 1 to 1000, got " + describe(n));
              }
              p.retry.attempts = static_cast<int>(integer->get());
            }},
           {"on",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              const auto* array = n.as_array();
              if (!array)
                r.fail(n.source(), k + ": expected an array of statuses, got " + describe(n));
              std::vector<std::string_view> names;
              for (auto s = Status::ok; s <= Status::error;
                   s = static_cast<Status>(static_cast<int>(s) + 1))
                names.push_back(to_string(s));
              p.retry.on.clear();
              for (const auto& item : *array) {
                std::string name = r.choice(item, k, names);
                p.retry.on.push_back(name);
              }
            }},
           {"backoff", [](Reader& r, const toml::node& n, const std::string& k,
                          Policy& p) { p.retry.backoff = r.duration(n, k); }},
       }},
      {"runner",
       {
           {"cgroup_root", [](Reader& r, const toml::node& n, const std::string& k,
                              Policy& p) { p.runner.cgroup_root = r.string(n, k); }},
           {"missing_controllers",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.runner.missing_controllers = r.choice(n, k, {"error", "warn"}) == "error"
                                                 ? MissingControllers::error
                                                 : MissingControllers::warn;
            }},
           {"cgroup_v1",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.runner.cgroup_v1 =
                  r.choice(n, k, {"off", "auto"}) == "auto" ? CgroupV1::automatic : CgroupV1::off;
            }},
           {"cgroup_v1_root", [](Reader& r, const toml::node& n, const std::string& k,
                                 Policy& p) { p.runner.cgroup_v1_root = r.string(n, k); }},
           {"systemd_scope",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.runner.systemd_scope =
                  parse_systemd_scope(r.choice(n, k, {"auto", "never", "always"}));
            }},
           {"mode",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.runner.mode = parse_run_mode(r.choice(n, k, {"auto", "cgroup", "subreaper"}));
            }},
       }},
      {"seccomp",
       {
           {"default", [](Reader& r, const toml::node& n, const std::string& k,
                          Policy& p) { p.seccomp.default_action = r.action(n, k, true); }},
           {"allow", [](Reader& r, const toml::node& n, const std::string& k,
                        Policy& p) { p.seccomp.allow = r.syscalls(n, k); }},
           {"deny", [](Reader& r, const toml::node& n, const std::string& k,
                       Policy& p) { p.seccomp.deny = r.syscalls(n, k); }},
           {"deny_new_namespaces",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.seccomp.deny_new_namespaces = r.boolean(n, k);
            }},
           {"deny_action", [](Reader& r, const toml::node& n, const std::string& k,
                              Policy& p) { p.seccomp.deny_action = r.action(n, k, false); }},
       }},
      {"sandbox",
       {
           {"user", [](Reader& r, const toml::node& n, const std::string& k,
                       Policy& p) { p.sandbox.user = r.id(n, k); }},
           {"group", [](Reader& r, const toml::node& n, const std::string& k,
                        Policy& p) { p.sandbox.group = r.id(n, k); }},
           {"no_new_privs", [](Reader& r, const toml::node& n, const std::string& k,
                               Policy& p) { p.sandbox.no_new_privs = r.boolean(n, k); }},
           {"env", [](Reader& r, const toml::node& n, const std::string& k,
                      Policy& p) { read_env(r, n, k, p.sandbox.env); }},
           {"clear_env", [](Reader& r, const toml::node& n, const std::string& k,
                            Policy& p) { p.sandbox.clear_env = r.boolean(n, k); }},
           {"pass_env", [](Reader& r, const toml::node& n, const std::string& k,
                           Policy& p) { p.sandbox.pass_env = r.strings(n, k); }},
           {"cwd",
            [](Reader& r, const toml::node& n, const std::string& k, Policy& p) {
              p.sandbox.cwd = r.string(n, k);
              if (p.sandbox.cwd->front() != '/') {
                r.fail(n.source(), k + ": invalid path " + quoted(n) + ": must be absolute");
              }
            }},
           {"umask", [](Reader& r, const toml::node& n, const std::string& k,
                        Policy& p) { p.sandbox.umask = read_umask(r, n, k); }},
           {"rlimits", [](Reader& r, const toml::node& n, const std::string& k,
                          Policy& p) { read_rlimits(r, n, k, p.sandbox.rlimits); }},
           {"namespaces", [](Reader& r, const toml::node& n, const std::string& k,
                             Policy& p) { read_namespaces(r, n, k, p.sandbox.namespaces); }},
           {"hostname", [](Reader& r, const toml::node& n, const std::string& k,
                           Policy& p) { p.sandbox.hostname = r.string(n, k); }},
           {"private_tmp", [](Reader& r, const toml::node& n, const std::string& k,
                              Policy& p) { p.sandbox.private_tmp = r.boolean(n, k); }},
           {"read_only", [](Reader& r, const toml::node& n, const std::string& k,
                            Policy& p) { p.sandbox.read_only = r.paths(n, k); }},
           {"hide", [](Reader& r, const toml::node& n, const std::string& k,
                       Policy& p) { p.sandbox.hide = r.paths(n, k); }},
           {"dynamic_uids", [](Reader& r, const toml::node& n, const std::string& k,
                               Policy& p) { p.sandbox.dynamic_uids = read_uid_range(r, n, k); }},
       }},
  };
  return kSections;
}

/// A table's entries in the order they appear in the file (toml::table sorts by key), so the
/// first error reported is the first one a reader meets.
std::vector<std::pair<const toml::key*, const toml::node*>> in_file_order(
    const toml::table& table) {
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (const auto& [key, node] : table) entries.emplace_back(&key, &node);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const auto& pa = a.first->source().begin;
    const auto& pb = b.first->source().begin;
    return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
  });
  return entries;
}

/// "it belongs in [watchdog]" when `name` is a key of another section, else "".
std::string home_of(std::string_view name) {
  for (const Section& section : sections()) {
    for (const Field& field : section.fields) {
      if (field.name == name) return "it belongs in [" + std::string(section.name) + "]";
    }
  }
  return {};
}

void read_section(Reader& reader, const Section& section, const toml::table& table,
                  Policy& policy) {
  std::vector<std::string_view> names;
  for (const Field& field : section.fields) names.push_back(field.name);
  for (const auto& [key, node] : in_file_order(table)) {
    const auto field = std::find_if(section.fields.begin(), section.fields.end(),
                                    [key = key](const Field& f) { return f.name == key->str(); });
    if (field == section.fields.end()) {
      std::string message =
          "unknown key '" + std::string(key->str()) + "' in [" + std::string(section.name) + "]";
      if (std::string near = did_you_mean(key->str(), names); !near.empty()) {
        message += "; did you mean '" + near + "'?";
      } else if (std::string home = home_of(key->str()); !home.empty()) {
        message += "; " + home;
      }
      reader.fail(key->source(), message);
    }
    const std::string dotted = std::string(section.name) + "." + std::string(key->str());
    field->apply(reader, *node, dotted, policy);
    reader.note(dotted, key->source());
  }
}

// Hung means "CPU below hang_cpu_below", spinning means "CPU at or above spin_cpu_above". With
// both on, the bands must not meet: otherwise one stalled sample could count as both, and a task
// without progress would always be one or the other.
void check_watchdog_bands(const Reader& reader, const Policy& policy) {
  const WatchdogPolicy& w = policy.watchdog;
  if (!w.hang_after || !w.spin_after || w.hang_cpu_below < w.spin_cpu_above) return;
  // Point at the key in this text that made the conflict, when the text made it.
  const toml::source_region* where = nullptr;
  for (const char* key : {"watchdog.hang_cpu_below", "watchdog.spin_cpu_above",
                          "watchdog.spin_after", "watchdog.hang_after"}) {
    if (!where) where = reader.where(key);
  }
  reader.fail(where ? *where : toml::source_region{},
              "watchdog.hang_cpu_below (" + toml_number(w.hang_cpu_below) +
                  ") must be less than watchdog.spin_cpu_above (" + toml_number(w.spin_cpu_above) +
                  ") when both hang and spin detection are on");
}

// Keys that only mean something together with a namespace, and lists that contradict each
// other. Checked on the effective policy; the error points at the key in this text.
void check_sandbox(const Reader& reader, const Policy& policy) {
  const SandboxPolicy& s = policy.sandbox;
  const auto fail_at = [&reader](const char* key, const std::string& message) {
    const toml::source_region* where = reader.where(key);
    if (!where) where = reader.where("sandbox.namespaces");
    reader.fail(where ? *where : toml::source_region{}, message);
  };
  if (s.hostname && !s.namespaces.uts) {
    fail_at("sandbox.hostname",
            "sandbox.hostname needs the uts namespace (add \"uts\" to "
            "sandbox.namespaces)");
  }
  for (auto [key, used] : {std::pair{"sandbox.private_tmp", s.private_tmp},
                           std::pair{"sandbox.read_only", !s.read_only.empty()},
                           std::pair{"sandbox.hide", !s.hide.empty()}}) {
    if (used && !s.namespaces.mount) {
      fail_at(key, std::string(key) +
                       " needs the mount namespace (add \"mount\" to sandbox.namespaces)");
    }
  }
  if (s.namespaces.pid && !s.namespaces.mount) {
    fail_at("sandbox.namespaces",
            "sandbox.namespaces: \"pid\" needs \"mount\" as well, so that /proc can show the "
            "task's own namespace");
  }
  // A dynamic uid goes to the next task once this one's processes are gone: nothing the task
  // leaves behind may still belong to it (files outside its own temporary areas, IPC objects).
  if (s.user == "dynamic" &&
      (!s.namespaces.mount || !s.namespaces.ipc || !s.private_tmp ||
       std::find(s.read_only.begin(), s.read_only.end(), "/") == s.read_only.end())) {
    fail_at("sandbox.user",
            "sandbox.user = \"dynamic\" needs a task that leaves nothing behind owned by its "
            "uid: sandbox.namespaces with \"mount\" and \"ipc\", sandbox.private_tmp = true "
            "and \"/\" in sandbox.read_only");
  }
  for (const std::string& name : policy.seccomp.deny) {
    if (std::find(policy.seccomp.allow.begin(), policy.seccomp.allow.end(), name) !=
        policy.seccomp.allow.end()) {
      fail_at("seccomp.deny", "seccomp: '" + name + "' is in both allow and deny");
    }
  }
}

std::string toml_string(std::string_view text) {
  // Basic ("...") strings throughout: literal ones would read oddly next to the docs.
  std::ostringstream out;
  out << toml::toml_formatter(toml::value<std::string>(std::string(text)),
                              toml::format_flags::none);
  return out.str();
}

// Sizes read best as "2GiB"; a size that format_size would round is written as exact bytes.
std::string toml_size(std::uint64_t bytes) {
  const std::string human = format_size(bytes);
  try {
    if (parse_size(human) == bytes) return toml_string(human);
  } catch (const Error&) {
    // Rounded past the largest size; fall through to exact bytes.
  }
  if (bytes <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return std::to_string(bytes);
  }
  return toml_string(std::to_string(bytes));
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
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw PolicyError(source, static_cast<int>(e.source().begin.line),
                      static_cast<int>(e.source().begin.column), std::string(e.description()));
  }
  Reader reader(source);
  const toml::node* version = root.get("version");
  if (!version) {
    throw PolicyError(source, 1, 1, "missing 'version = 1' (put it at the top of the policy)");
  }
  if (!version->is_integer()) {
    reader.fail(version->source(), "version: expected the integer 1, got " + describe(*version));
  }
  if (version->as_integer()->get() != kVersion) {
    reader.fail(version->source(), "unsupported policy version " + quoted(*version) +
                                       " (this pollkill reads version 1)");
  }

  Policy policy = base;
  std::vector<std::string_view> top_names{"version"};
  for (const Section& section : sections()) top_names.push_back(section.name);
  for (const auto& [key, node] : in_file_order(root)) {
    if (key->str() == "version") continue;
    const auto section =
        std::find_if(sections().begin(), sections().end(),
                     [key = key](const Section& s) { return s.name == key->str(); });
    if (section == sections().end()) {
      const std::string near = did_you_mean(key->str(), top_names);
      std::string message = node->is_table() ? "unknown section [" + std::string(key->str()) + "]"
                                             : "unknown key '" + std::string(key->str()) + "'";
      if (!near.empty()) {
        message += "; did you mean '" + near + "'?";
      } else if (std::string home = home_of(key->str()); !home.empty()) {
        message += "; " + home;
      }
      reader.fail(key->source(), message);
    }
    if (!node->is_table()) {
      reader.fail(node->source(), "'" + std::string(key->str()) + "' must be a section ([" +
                                      std::string(key->str()) + "]), got " + describe(*node));
    }
    read_section(reader, *section, *node->as_table(), policy);
  }
  check_watchdog_bands(reader, policy);
  check_sandbox(reader, policy);
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
  std::string text;
  char buffer[4096];
  std::size_t count;
  while ((count = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, count);
  // fopen succeeds on a directory; the read is what fails (EISDIR).
  if (std::ferror(file.get())) fail(errno);
  return parse_policy(text, path.string());
}

std::string to_toml(const Policy& policy) {
  std::ostringstream out;
  const auto line = [&out](std::string_view key, const auto& value, auto format,
                           std::string_view unset) {
    if (value) {
      out << key << " = " << format(*value) << '\n';
    } else {
      out << "# " << key << " = (" << unset << ")\n";
    }
  };
  const auto size = [](std::uint64_t bytes) { return toml_size(bytes); };
  const auto duration = [](Duration d) { return toml_string(format_duration(d)); };
  const auto number = [](double value) { return toml_number(value); };
  const auto string = [](const std::string& text) { return toml_string(text); };
  const auto pids = [](std::uint64_t count) {
    return count == kSizeMax ? toml_string("max") : std::to_string(count);
  };
  const Limits& l = policy.limits;
  const WatchdogPolicy& w = policy.watchdog;
  const RunnerPolicy& r = policy.runner;

  out << "# pollkill policy; keys shown as comments are not set.\nversion = " << kVersion << "\n";
  out << "\n[limits]\n";
  line("memory", l.memory, size, "no limit");
  line("memory_high", l.memory_high, size, "no limit");
  line("swap", l.swap, size, "not set: 0 when memory is set");
  line("cpus", l.cpus, number, "no limit");
  line("pids", l.pids, pids, "no limit");
  if (!l.wall_time_percent) line("wall_time", l.wall_time, duration, "no limit");
  if (l.wall_time_percent)
    out << "wall_time = " << toml_string(toml_number(*l.wall_time_percent) + "%") << '\n';
  line("wall_time_max", l.wall_time_max, duration, "no cap");
  line("cpu_time", l.cpu_time, duration, "no limit");
  line("output", l.output, size, "no limit");
  out << "\n[watchdog]\n";
  out << "poll_interval = " << duration(w.poll_interval) << '\n';
  line("hang_after", w.hang_after, duration, "off");
  out << "hang_cpu_below = " << number(w.hang_cpu_below) << '\n';
  line("spin_after", w.spin_after, duration, "off");
  out << "spin_cpu_above = " << number(w.spin_cpu_above) << '\n';
  line("heartbeat", w.heartbeat, string, "off");
  out << "kill_grace = " << duration(w.kill_grace) << '\n';
  out << "orphans = \"" << (w.orphans == OrphanPolicy::kill ? "kill" : "wait") << "\"\n";
  out << "\n[retry]\n";
  out << "attempts = " << policy.retry.attempts << '\n';
  out << "on = [";
  for (size_t i = 0; i < policy.retry.on.size(); ++i)
    out << (i ? ", " : "") << toml_string(policy.retry.on[i]);
  out << "]\n";
  out << "backoff = " << duration(policy.retry.backoff) << '\n';
  out << "\n[runner]\n";
  line("cgroup_root", r.cgroup_root, string, "not set");
  out << "missing_controllers = \""
      << (r.missing_controllers == MissingControllers::error ? "error" : "warn") << "\"\n";
  out << "cgroup_v1 = \"" << (r.cgroup_v1 == CgroupV1::automatic ? "auto" : "off") << "\"\n";
  line("cgroup_v1_root", r.cgroup_v1_root, string, "not set");
  out << "systemd_scope = \"" << to_string(r.systemd_scope) << "\"\n";
  out << "mode = \"" << to_string(r.mode) << "\"\n";
  const auto list = [](const std::vector<std::string>& items) {
    std::string text = "[";
    for (const auto& item : items) text += (text.size() > 1 ? ", " : "") + toml_string(item);
    return text + "]";
  };
  const SeccompPolicy& sc = policy.seccomp;
  out << "\n[seccomp]\n";
  out << "default = " << toml_string(to_string(sc.default_action)) << '\n';
  out << "allow = " << list(sc.allow) << '\n';
  out << "deny = " << list(sc.deny) << '\n';
  out << "deny_action = " << toml_string(to_string(sc.deny_action)) << '\n';
  out << "deny_new_namespaces = " << (sc.deny_new_namespaces ? "true" : "false") << '\n';
  const SandboxPolicy& sb = policy.sandbox;
  out << "\n[sandbox]\n";
  line("user", sb.user, string, "not set: pollkill's own");
  line("group", sb.group, string, "not set: the user's primary group");
  out << "no_new_privs = " << (sb.no_new_privs ? "true" : "false") << '\n';
  out << "env = {";
  for (std::size_t i = 0; i < sb.env.size(); ++i) {
    out << (i ? ", " : " ") << toml_string(sb.env[i].first) << " = "
        << toml_string(sb.env[i].second) << (i + 1 == sb.env.size() ? " " : "");
  }
  out << "}\n";
  out << "clear_env = " << (sb.clear_env ? "true" : "false") << '\n';
  out << "pass_env = " << list(sb.pass_env) << '\n';
  line("cwd", sb.cwd, string, "not set: pollkill's own");
  line(
      "umask", sb.umask,
      [](unsigned m) {
        char text[8];
        std::snprintf(text, sizeof text, "%03o", m);
        return toml_string(text);
      },
      "not set: pollkill's own");
  out << "rlimits = {";
  bool first = true;
  const std::pair<const char*, std::optional<std::uint64_t>> limits[] = {
      {"core", sb.rlimits.core},   {"nofile", sb.rlimits.nofile}, {"fsize", sb.rlimits.fsize},
      {"stack", sb.rlimits.stack}, {"as", sb.rlimits.as},         {"nproc", sb.rlimits.nproc}};
  for (const auto& [name, value] : limits) {
    if (!value) continue;
    out << (first ? " " : ", ") << name << " = "
        << (*value == kRlimitUnlimited ? toml_string("unlimited") : std::to_string(*value));
    first = false;
  }
  out << (first ? "}\n" : " }\n");
  std::vector<std::string> ns;
  const Namespaces& n = sb.namespaces;
  const std::pair<const char*, bool> names[] = {{"net", n.net},       {"pid", n.pid},
                                                {"ipc", n.ipc},       {"uts", n.uts},
                                                {"cgroup", n.cgroup}, {"mount", n.mount}};
  for (const auto& [name, on] : names) {
    if (on) ns.emplace_back(name);
  }
  out << "namespaces = " << list(ns) << '\n';
  line("hostname", sb.hostname, string, "not set");
  out << "private_tmp = " << (sb.private_tmp ? "true" : "false") << '\n';
  out << "read_only = " << list(sb.read_only) << '\n';
  out << "hide = " << list(sb.hide) << '\n';
  out << "dynamic_uids = "
      << toml_string(std::to_string(sb.dynamic_uids.first) + "-" +
                     std::to_string(sb.dynamic_uids.last))
      << '\n';
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
         a.kill_grace == b.kill_grace && a.orphans == b.orphans;
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
  return a.attempts == b.attempts && a.on == b.on && a.backoff == b.backoff;
}

bool operator==(const Policy& a, const Policy& b) {
  return a.limits == b.limits && a.watchdog == b.watchdog && a.runner == b.runner &&
         a.seccomp == b.seccomp && a.sandbox == b.sandbox && a.retry == b.retry;
}

std::string to_string(RunMode mode) {
  switch (mode) {
    case RunMode::automatic: return "auto";
    case RunMode::cgroup: return "cgroup";
    case RunMode::subreaper: return "subreaper";
  }
  return "auto";
}

RunMode parse_run_mode(std::string_view word) {
  if (word == "auto") return RunMode::automatic;
  if (word == "cgroup") return RunMode::cgroup;
  if (word == "subreaper") return RunMode::subreaper;
  throw Error("unknown mode '" + std::string(word) + "'", "use auto, cgroup or subreaper");
}

std::string to_string(const SeccompAction& action) {
  switch (action.kind) {
    case SeccompAction::allow: return "allow";
    case SeccompAction::kill: return "kill";
    case SeccompAction::log: return "log";
    case SeccompAction::error:
      return action.error_number == EPERM ? "errno" : "errno:" + errno_name(action.error_number);
  }
  return "allow";
}

const char* to_string(SystemdScopeMode mode) {
  switch (mode) {
    case SystemdScopeMode::automatic: return "auto";
    case SystemdScopeMode::never: return "never";
    case SystemdScopeMode::always: return "always";
  }
  return "auto";
}

SystemdScopeMode parse_systemd_scope(const std::string& word) {
  if (word == "auto") return SystemdScopeMode::automatic;
  if (word == "never") return SystemdScopeMode::never;
  if (word == "always") return SystemdScopeMode::always;
  throw Error("invalid systemd_scope '" + word + "': expected auto, never or always");
}

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates) {
  const std::size_t allowed = word.size() <= 4 ? 1 : 2;
  std::string best;
  std::size_t best_distance = allowed + 1;
  std::vector<std::size_t> previous, current;
  for (std::string_view candidate : candidates) {
    // Levenshtein distance, one row at a time.
    previous.resize(candidate.size() + 1);
    current.resize(candidate.size() + 1);
    for (std::size_t j = 0; j <= candidate.size(); ++j) previous[j] = j;
    for (std::size_t i = 1; i <= word.size(); ++i) {
      current[0] = i;
      for (std::size_t j = 1; j <= candidate.size(); ++j) {
        const std::size_t substitution =
            previous[j - 1] + (word[i - 1] == candidate[j - 1] ? 0 : 1);
        current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
      }
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
