#include "pollkill/policy_schema.h"

#include <algorithm>
#include <charconv>
#include <memory>

#include "policy_detail.h"

namespace pollkill {
namespace {

using detail::Key;
using detail::keys;
using detail::Reader;
using detail::toml_number;

// The public view and the table are parallel vectors; a copy of a KeySpec is found by name.
const Key& key_of(const KeySpec& spec) {
  const std::vector<KeySpec>& specs = policy_keys();
  if (&spec >= specs.data() && &spec < specs.data() + specs.size()) {
    return keys()[static_cast<std::size_t>(&spec - specs.data())];
  }
  const KeySpec* found = find_key(spec.section, spec.name);
  if (!found) throw Error("no policy key " + spec.dotted());
  return key_of(*found);
}

/// A table's entries in the order they appear in the file (toml::table sorts by key), so the
/// first error reported is the first one a reader meets.
std::vector<std::pair<const toml::key*, const toml::node*>> in_file_order(
    const toml::table& table) {
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (const auto& [key, node] : table) entries.emplace_back(&key, &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const auto& pa = a.first->source().begin;
    const auto& pb = b.first->source().begin;
    return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
  });
  return entries;
}

/// "it belongs in [watchdog]" when `name` is a key of another section, else "".
std::string home_of(std::string_view name) {
  for (const KeySpec& spec : policy_keys()) {
    if (spec.name == name) return "it belongs in [" + std::string(spec.section) + "]";
  }
  return {};
}

void read_section(Reader& reader, std::string_view section, const toml::table& table,
                  Policy& policy) {
  std::vector<std::string_view> names;
  for (const KeySpec& spec : policy_keys()) {
    if (spec.section == section) names.push_back(spec.name);
  }
  for (const auto& [key, node] : in_file_order(table)) {
    const KeySpec* spec = find_key(section, key->str());
    if (!spec) {
      std::string message =
          "unknown key '" + std::string(key->str()) + "' in [" + std::string(section) + "]";
      if (std::string near = did_you_mean(key->str(), names); !near.empty()) {
        message += "; did you mean '" + near + "'?";
      } else if (std::string home = home_of(key->str()); !home.empty()) {
        message += "; " + home;
      }
      reader.fail_at(key->source(), message);
    }
    const std::string dotted = spec->dotted();
    key_of(*spec).read(reader, *node, dotted, policy);
    reader.note(dotted, key->source());
  }
}

// Hung means "CPU below hang_cpu_below", spinning means "CPU at or above spin_cpu_above". With
// both on, the bands must not meet: otherwise one stalled sample could count as both, and a task
// without progress would always be one or the other.
void check_watchdog_bands(const Reader& reader, const Policy& policy) {
  const WatchdogPolicy& w = policy.watchdog;
  if (!w.hang_after || !w.spin_after || w.hang_cpu_below < w.spin_cpu_above) return;
  // Point at the key in this text (or the flag) that made the conflict, when it made it.
  const detail::Where* where = nullptr;
  for (const char* key : {"watchdog.hang_cpu_below", "watchdog.spin_cpu_above",
                          "watchdog.spin_after", "watchdog.hang_after"}) {
    if (!where) where = reader.where(key);
  }
  reader.fail_where(where, "watchdog.hang_cpu_below (" + toml_number(w.hang_cpu_below) +
                               ") must be less than watchdog.spin_cpu_above (" +
                               toml_number(w.spin_cpu_above) +
                               ") when both hang and spin detection are on");
}

// Keys that only mean something together with a namespace, and lists that contradict each
// other. Checked on the effective policy; the error points at the key in this text.
void check_sandbox(const Reader& reader, const Policy& policy) {
  const SandboxPolicy& s = policy.sandbox;
  const auto fail_at = [&reader](const char* key, const std::string& message) {
    const detail::Where* where = reader.where(key);
    if (!where) where = reader.where("sandbox.namespaces");
    reader.fail_where(where, message);
  };
  if (s.hostname && !s.namespaces.uts) {
    fail_at("sandbox.hostname",
            "sandbox.hostname needs the uts namespace (add \"uts\" to sandbox.namespaces)");
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

}  // namespace

namespace detail {

void read_sections(Reader& reader, const toml::table& root, Policy& policy) {
  std::vector<std::string_view> top_names{"version"};
  for (std::string_view section : policy_sections()) top_names.push_back(section);
  for (const auto& [key, node] : in_file_order(root)) {
    if (key->str() == "version") continue;
    const auto& sections = policy_sections();
    if (std::find(sections.begin(), sections.end(), key->str()) == sections.end()) {
      const std::string near = did_you_mean(key->str(), top_names);
      std::string message = node->is_table() ? "unknown section [" + std::string(key->str()) + "]"
                                             : "unknown key '" + std::string(key->str()) + "'";
      if (!near.empty()) {
        message += "; did you mean '" + near + "'?";
      } else if (std::string home = home_of(key->str()); !home.empty()) {
        message += "; " + home;
      }
      reader.fail_at(key->source(), message);
    }
    if (!node->is_table()) {
      reader.fail_at(node->source(), "'" + std::string(key->str()) + "' must be a section ([" +
                                         std::string(key->str()) + "]), got " +
                                         reader.describe(*node));
    }
    read_section(reader, key->str(), *node->as_table(), policy);
  }
  check_policy(reader, policy);
}

void check_policy(const Reader& reader, const Policy& policy) {
  check_watchdog_bands(reader, policy);
  check_sandbox(reader, policy);
}

}  // namespace detail

const std::vector<KeySpec>& policy_keys() {
  static const std::vector<KeySpec> kSpecs = [] {
    std::vector<KeySpec> specs;
    for (const Key& key : keys()) specs.push_back(key.spec);
    return specs;
  }();
  return kSpecs;
}

const std::vector<std::string_view>& policy_sections() {
  static const std::vector<std::string_view> kSections = [] {
    std::vector<std::string_view> sections;
    for (const KeySpec& spec : policy_keys()) {
      if (sections.empty() || sections.back() != spec.section) sections.push_back(spec.section);
    }
    return sections;
  }();
  return kSections;
}

const KeySpec* find_key(std::string_view section, std::string_view name) {
  for (const KeySpec& spec : policy_keys()) {
    if (spec.section == section && spec.name == name) return &spec;
  }
  return nullptr;
}

const KeySpec* find_flag(std::string_view flag) {
  for (const KeySpec& spec : policy_keys()) {
    if (!spec.flag.empty() && spec.flag == flag) return &spec;
  }
  return nullptr;
}

bool is_set(const KeySpec& key, const Policy& policy) {
  return key_of(key).print(policy).has_value();
}

std::optional<std::string> toml_value(const KeySpec& key, const Policy& policy) {
  return key_of(key).print(policy);
}

Policy apply_settings(const Policy& base, const std::vector<Setting>& settings) {
  Reader reader(settings.empty() ? std::string("settings") : settings.front().origin);
  Policy policy = base;
  for (const Setting& setting : settings) {
    const std::unique_ptr<toml::node> node = std::visit(
        [](const auto& value) -> std::unique_ptr<toml::node> {
          return std::make_unique<toml::value<std::decay_t<decltype(value)>>>(value);
        },
        setting.value);
    reader.begin_setting(&setting);
    const std::string dotted = setting.key->dotted();
    key_of(*setting.key).read(reader, *node, dotted, policy);
    reader.note(dotted, {});
  }
  reader.begin_setting(nullptr);
  detail::check_policy(reader, policy);
  return policy;
}

std::int64_t parse_flag_integer(const std::string& flag, std::string_view text, std::int64_t min,
                                std::int64_t max) {
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto parsed = std::from_chars(text.data(), end, value);
  if (text.empty() || parsed.ec != std::errc() || parsed.ptr != end || value < min || value > max) {
    throw PolicyError(flag, 0, 0,
                      "invalid value '" + std::string(text) + "' (use an integer from " +
                          std::to_string(min) + " to " + std::to_string(max) + ")");
  }
  return value;
}

}  // namespace pollkill
