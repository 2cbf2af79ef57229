// The flags of `run` and `batch` that set policy keys, made from the policy schema: one flag per
// key that declares one, with its placeholder and help, read through the key's own reader.
#pragma once

#include <CLI/CLI.hpp>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "pollkill/policy.h"
#include "pollkill/policy_schema.h"
#include "usage.h"

namespace pollkill {

/// The flag values as typed, one per schema key with a flag.
struct LimitFlags {
  std::vector<std::pair<const KeySpec*, CLI::Option*>> options;
  std::deque<std::string> values;  ///< CLI11 writes here; a deque keeps the addresses
};

/// Adds `--memory SIZE`, `--wall-time DURATION`, ... to `app`, grouped by section, with the
/// key's doc line (and its default, when it has one) as help.
void add_limit_flags(CLI::App* app, LimitFlags& flags);

/// Applies the flags given on top of `policy` (flags win) through apply_settings: the same
/// reader, range checks and cross-key checks as a policy file. Errors name the flag:
/// "--memory: invalid size '12XB': ...".
void apply_flags(const LimitFlags& flags, Policy& policy);

/// A CLI11 check that a value is one of an enum's words, from its name table (for the flags
/// of `gc` and `doctor` that name a policy value without setting a policy).
template <typename E>
CLI::Validator enum_choice() {
  std::vector<std::string> words;
  for (const auto& entry : enum_names<E>()) words.emplace_back(entry.name);
  return one_of(std::move(words));
}

}  // namespace pollkill
