#include "policy_flags.h"

#include <cctype>

namespace pollkill {
namespace {

// "Limits" for [limits]: the help's group.
std::string group_of(const KeySpec& key) {
  std::string group(key.section);
  group.front() = static_cast<char>(std::toupper(static_cast<unsigned char>(group.front())));
  return group;
}

// The doc line, and the default for keys that always have a value: "(default 250ms)".
std::string help_of(const KeySpec& key) {
  std::string help(key.doc);
  if (key.unset.empty()) {
    if (std::optional<std::string> value = toml_value(key, default_policy())) {
      if (value->size() >= 2 && value->front() == '"') *value = value->substr(1, value->size() - 2);
      help += " (default " + *value + ")";
    }
  }
  return help;
}

}  // namespace

void add_limit_flags(CLI::App* app, LimitFlags& flags) {
  for (const KeySpec& key : policy_keys()) {
    if (key.flag.empty()) continue;
    std::string& value = flags.values.emplace_back();
    CLI::Option* option = app->add_option(std::string(key.flag), value, help_of(key))
                              ->type_name(key.placeholder)
                              ->group(group_of(key));
    flags.options.emplace_back(&key, option);
  }
}

void apply_flags(const LimitFlags& flags, Policy& policy) {
  std::vector<Setting> settings;
  std::size_t index = 0;
  for (const auto& [key, option] : flags.options) {
    const std::string& value = flags.values[index++];
    if (option->count() == 0) continue;
    settings.push_back(Setting{key, value, std::string(key->flag), true});
  }
  if (!settings.empty()) policy = apply_settings(policy, settings);
}

}  // namespace pollkill
