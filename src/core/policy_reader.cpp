#include "policy_detail.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include <seccomp.h>

namespace pollkill::detail {
namespace {

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

/// A bound in a message: "1000000" rather than "1e+06", "0.01" as it is.
std::string bound_text(double value) {
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  return toml_number(value);
}

/// "\"kill\" or \"wait\"": the options in a message.
std::string options_text(const std::vector<std::string_view>& options) {
  std::string use;
  for (std::string_view option : options) {
    use += (use.empty() ? "\"" : " or \"") + std::string(option) + "\"";
  }
  return use;
}

}  // namespace

std::string toml_number(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, result.ptr);
  if (std::isfinite(value) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
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

void Reader::fail(const toml::node& node, const std::string& key, const std::string& what) const {
  if (setting_) throw PolicyError(setting_->origin, 0, 0, what);
  fail_at(node.source(), key + ": " + what);
}

void Reader::fail_at(const toml::source_region& region, const std::string& message) const {
  throw PolicyError(source_, static_cast<int>(region.begin.line),
                    static_cast<int>(region.begin.column), message);
}

void Reader::fail_where(const Where* where, const std::string& message) const {
  if (where && !where->origin.empty()) throw PolicyError(where->origin, 0, 0, message);
  fail_at(where ? where->region : toml::source_region{}, message);
}

void Reader::note(const std::string& key, const toml::source_region& region) {
  seen_[key] = Where{region, setting_ ? setting_->origin : std::string()};
}

const Where* Reader::where(const std::string& key) const {
  auto it = seen_.find(key);
  return it == seen_.end() ? nullptr : &it->second;
}

const std::string* Reader::command_line_text(const toml::node& node) const {
  if (!setting_ || !setting_->command_line) return nullptr;
  const auto* text = node.as_string();
  return text ? &text->get() : nullptr;
}

std::string Reader::quoted(const toml::node& node) const {
  return "'" + scalar_text(node) + "'";
}

std::string Reader::describe(const toml::node& node) const {
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
      fail(node, key, e.what());
    }
  }
  if (const auto* integer = node.as_integer()) {
    if (integer->get() < 0)
      fail(node, key, "invalid size " + quoted(node) + ": must not be negative");
    return static_cast<std::uint64_t>(integer->get());
  }
  fail(node, key,
       "expected a size (a string such as \"2GiB\" or \"max\", or an integer number of bytes), "
       "got " +
           describe(node));
}

Duration Reader::duration(const toml::node& node, const std::string& key) const {
  const auto too_large = [&] {
    fail(node, key,
         "invalid duration " + quoted(node) + ": too large (at most " +
             format_duration(kMaxDuration) + ", 100 years)");
  };
  if (const auto* text = node.as_string()) {
    Duration value{};
    try {
      value = parse_duration(text->get());
    } catch (const Error& e) {
      fail(node, key, e.what());
    }
    if (value > kMaxDuration) too_large();
    return value;
  }
  if (node.is_number()) {
    const double seconds = node.value<double>().value_or(0);
    if (std::isnan(seconds) || seconds < 0) {
      fail(node, key, "invalid duration " + quoted(node) + ": must not be negative");
    }
    // Compared in seconds, before anything is multiplied, so nothing can overflow.
    if (seconds > static_cast<double>(kMaxDuration.count() / 1000)) too_large();
    if (const auto* integer = node.as_integer()) return Duration(integer->get() * 1000);
    return Duration(static_cast<Duration::rep>(std::floor(seconds * 1000)));
  }
  fail(node, key,
       "expected a duration (a string such as \"30s\" or \"1h30m\", or a number of seconds), "
       "got " +
           describe(node));
}

std::optional<Duration> Reader::limit_duration(const toml::node& node,
                                               const std::string& key) const {
  const Duration value = duration(node, key);
  if (value.count() == 0) return std::nullopt;
  return value;
}

double Reader::number(const toml::node& node, const std::string& key, double min,
                      bool min_exclusive, double max) const {
  double value = 0;
  if (const std::string* text = command_line_text(node)) {
    const char* end = text->data() + text->size();
    const auto parsed = std::from_chars(text->data(), end, value);
    if (text->empty() || parsed.ec != std::errc() || parsed.ptr != end) {
      fail(node, key, "invalid number " + quoted(node));
    }
  } else {
    if (!node.is_number()) fail(node, key, "expected a number, got " + describe(node));
    value = node.value<double>().value_or(0);
  }
  if (!std::isfinite(value)) fail(node, key, "invalid number " + quoted(node) + ": must be finite");
  if (min_exclusive ? value <= min : value < min) {
    if (min == 0 && !min_exclusive) {
      fail(node, key, "invalid value " + quoted(node) + ": must not be negative");
    }
    fail(node, key,
         "invalid value " + quoted(node) + ": must be " +
             (min_exclusive ? "greater than " : "at least ") + bound_text(min));
  }
  if (value > max) {
    fail(node, key, "invalid value " + quoted(node) + ": must be at most " + bound_text(max));
  }
  return value;
}

std::uint64_t Reader::count(const toml::node& node, const std::string& key, std::uint64_t min,
                            std::uint64_t max, bool max_word) const {
  const std::string range = "an integer from " + std::to_string(min) + " to " +
                            std::to_string(max) + (max_word ? " or \"max\"" : "");
  std::optional<std::uint64_t> value;
  if (const auto* text = node.as_string(); text && max_word && text->get() == "max") {
    return kSizeMax;
  }
  if (const std::string* text = command_line_text(node)) {
    std::uint64_t parsed = 0;
    const char* end = text->data() + text->size();
    const auto result = std::from_chars(text->data(), end, parsed);
    if (!text->empty() && result.ec == std::errc() && result.ptr == end) value = parsed;
  } else if (const auto* integer = node.as_integer(); integer && integer->get() >= 0) {
    value = static_cast<std::uint64_t>(integer->get());
  } else if (!node.is_integer() && !node.is_string()) {
    fail(node, key, "expected " + range + ", got " + describe(node));
  }
  if (!value || *value < min || *value > max) {
    fail(node, key, "invalid value " + quoted(node) + " (use " + range + ")");
  }
  return *value;
}

bool Reader::boolean(const toml::node& node, const std::string& key) const {
  const auto* value = node.as_boolean();
  if (!value) fail(node, key, "expected true or false, got " + describe(node));
  return value->get();
}

std::string Reader::string(const toml::node& node, const std::string& key) const {
  const auto* text = node.as_string();
  if (!text) fail(node, key, "expected a string, got " + describe(node));
  if (text->get().empty()) fail(node, key, "must not be empty (leave it out instead)");
  return text->get();
}

std::string Reader::choice(const toml::node& node, const std::string& key,
                           const std::vector<std::string_view>& options) const {
  const std::string use = options_text(options);
  const auto* text = node.as_string();
  if (!text) fail(node, key, "expected " + use + ", got " + describe(node));
  for (std::string_view option : options) {
    if (text->get() == option) return text->get();
  }
  std::string message = "invalid value " + quoted(node) + " (use " + use + ")";
  if (std::string near = did_you_mean(text->get(), options); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  }
  fail(node, key, message);
}

std::vector<std::string> Reader::strings(const toml::node& node, const std::string& key) const {
  const auto* array = node.as_array();
  if (!array) fail(node, key, "expected an array of strings, got " + describe(node));
  std::vector<std::string> out;
  for (const toml::node& element : *array) {
    out.push_back(string(element, key));
    if (std::find(out.begin(), out.end() - 1, out.back()) != out.end() - 1) {
      fail(element, key, quoted(element) + " is listed twice");
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
      fail((*node.as_array())[i], key,
           "unknown system call '" + names[i] + "' (libseccomp does not know it)");
    }
  }
  return names;
}

std::vector<std::string> Reader::paths(const toml::node& node, const std::string& key) const {
  std::vector<std::string> out = strings(node, key);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].front() != '/') {
      fail((*node.as_array())[i], key, "invalid path '" + out[i] + "': must be absolute");
    }
  }
  return out;
}

SeccompAction Reader::action(const toml::node& node, const std::string& key, bool allow_ok) const {
  const std::string use = allow_ok ? "\"allow\", \"errno\", \"errno:NAME\", \"kill\" or \"log\""
                                   : "\"errno\", \"errno:NAME\", \"kill\" or \"log\"";
  const auto* text = node.as_string();
  if (!text) fail(node, key, "expected " + use + ", got " + describe(node));
  const std::string& value = text->get();
  if (value.rfind("errno:", 0) == 0) {
    const int number = errno_from_name(value.substr(6));
    if (number <= 0) {
      fail(node, key,
           "invalid value " + quoted(node) + ": unknown errno name '" + value.substr(6) +
               "' (use a name such as EPERM or ENOSYS)");
    }
    return {SeccompAction::error, number};
  }
  const std::optional<SeccompAction::Kind> kind = enum_value<SeccompAction::Kind>(value);
  if (kind && (*kind != SeccompAction::allow || allow_ok)) {
    return {*kind, *kind == SeccompAction::error ? EPERM : 1};
  }
  std::vector<std::string_view> options;
  for (const auto& entry : enum_names<SeccompAction::Kind>()) {
    if (entry.value != SeccompAction::allow || allow_ok) options.push_back(entry.name);
  }
  std::string message = "invalid value " + quoted(node) + " (use " + use + ")";
  if (std::string near = did_you_mean(value, options); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  }
  fail(node, key, message);
}

std::string Reader::id(const toml::node& node, const std::string& key) const {
  if (const auto* integer = node.as_integer()) {
    if (integer->get() < 0 || integer->get() > 0xfffffffe) {
      fail(node, key, "invalid value " + quoted(node) + ": not a valid id");
    }
    return std::to_string(integer->get());
  }
  if (!node.is_string()) fail(node, key, "expected a name or a number, got " + describe(node));
  return string(node, key);
}

// Limits of zero are refused where they would stop every task at once, and leaving the key
// out is how a policy says "no limit".
void Reader::require_positive(const toml::node& node, const std::string& key, bool positive) const {
  if (!positive) {
    fail(node, key,
         "invalid value " + quoted(node) + ": must be greater than 0 (leave it out for no limit)");
  }
}

}  // namespace pollkill::detail
