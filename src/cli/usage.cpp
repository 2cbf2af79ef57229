#include "usage.h"

#include <charconv>
#include <string_view>

#include "pollkill/policy.h"

namespace pollkill {
namespace {

// "pollkill policy check": the top-level App is "pollkill" whatever argv[0] was.
std::string command_path(const CLI::App& app) {
  std::string path;
  for (const CLI::App* a = &app; a->get_parent() != nullptr; a = a->get_parent()) {
    path = path.empty() ? a->get_name() : a->get_name() + " " + path;
  }
  return path.empty() ? "pollkill" : "pollkill " + path;
}

// The subcommands a person may be told about (not the hidden ones, whose group is empty).
std::vector<const CLI::App*> subcommands_of(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App*) { return true; });
}

bool hidden(const CLI::App& app) {
  return app.get_group().empty();
}

std::string list_commands(const CLI::App& app) {
  std::string out;
  for (const CLI::App* sub : subcommands_of(app)) {
    if (hidden(*sub)) continue;
    out += (out.empty() ? "" : ", ") + sub->get_name();
  }
  return out;
}

// A named option of `app` by its long ("memory") or short ("j") name.
const CLI::Option* find_option(const CLI::App& app, std::string_view name, bool is_long) {
  for (const CLI::Option* option : app.get_options()) {
    const auto& names = is_long ? option->get_lnames() : option->get_snames();
    for (const std::string& n : names) {
      if (n == name) return option;
    }
  }
  return nullptr;
}

// A flag expects no value (expected 0); an option one per occurrence.
bool takes_value(const CLI::Option& option) {
  return option.get_expected_max() > 0 && option.get_type_size_max() > 0;
}

// The nearest candidate: within a few edits (did_you_mean), else the one sharing the longest
// start of at least four letters after the dashes ("--retry" -> "--retries").
std::string nearest(const std::string& word, const std::vector<std::string>& names) {
  const std::vector<std::string_view> candidates(names.begin(), names.end());
  if (std::string near = did_you_mean(word, candidates); !near.empty()) return near;
  const std::size_t dashes = word.find_first_not_of('-');
  if (dashes == std::string::npos) return {};
  std::string best;
  std::size_t best_length = dashes + 4;
  bool tie = false;
  for (const std::string& name : names) {
    std::size_t length = 0;
    while (length < word.size() && length < name.size() && word[length] == name[length]) ++length;
    if (length > best_length || (length == best_length && best.empty())) {
      best = name;
      best_length = length;
      tie = false;
    } else if (length == best_length) {
      tie = true;
    }
  }
  return tie ? std::string() : best;
}

[[noreturn]] void unknown_option(const CLI::App& app, const std::string& word) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_group().empty()) continue;  // hidden
    for (const std::string& n : option->get_lnames()) names.push_back("--" + n);
    for (const std::string& n : option->get_snames()) names.push_back("-" + n);
  }
  std::string message = "unknown option '" + word + "'";
  const std::string path = command_path(app);
  if (path != "pollkill") message += " for '" + path + "'";
  if (std::string near = nearest(word, names); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  } else if (app.get_parent() == nullptr) {
    // `pollkill --memory 1G run ...`: the option belongs to a command.
    message += " (options come after the command: pollkill COMMAND [OPTIONS])";
  }
  throw UsageError(message, path);
}

[[noreturn]] void unknown_command(const CLI::App& app, const std::string& word) {
  std::vector<std::string> names;
  for (const CLI::App* sub : subcommands_of(app)) {
    if (!hidden(*sub)) names.push_back(sub->get_name());
  }
  std::string message = "unknown command '" + word + "'";
  const std::string path = command_path(app);
  if (path != "pollkill") message += " for '" + path + "'";
  if (std::string near = nearest(word, names); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  } else {
    message += " (commands: " + list_commands(app) + ")";
  }
  throw UsageError(message, path);
}

// How many positional words `app` takes; SIZE_MAX when one of them takes any number. The
// second says whether the options end at the first of them (`run -- COMMAND` style).
std::size_t positional_capacity(const CLI::App& app) {
  std::size_t capacity = 0;
  for (const CLI::Option* option : app.get_options()) {
    if (!option->get_positional()) continue;
    const int most = option->get_items_expected_max();
    if (most <= 0 || most >= CLI::detail::expected_max_vector_size) return SIZE_MAX;
    capacity += static_cast<std::size_t>(most);
  }
  return capacity;
}

std::string lower_first(std::string text) {
  if (!text.empty() && text.front() >= 'A' && text.front() <= 'Z') text.front() += 'a' - 'A';
  return text;
}

// The deepest subcommand CLI11 had reached when it failed.
const CLI::App& deepest_parsed(const CLI::App& app) {
  const CLI::App* current = &app;
  while (true) {
    const CLI::App* next = nullptr;
    for (const CLI::App* sub : subcommands_of(*current)) {
      if (sub->parsed()) next = sub;
    }
    if (!next) return *current;
    current = next;
  }
}

}  // namespace

UsageError::UsageError(const std::string& message, const std::string& command)
    : Error(message, "see '" + command + " --help'"), command_(command) {}

void check_arguments(const CLI::App& app, const std::vector<std::string>& args) {
  const CLI::App* current = &app;
  std::size_t positionals = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") return;
    if (word.size() > 2 && word.starts_with("--")) {
      const std::size_t eq = word.find('=');
      const std::string name = word.substr(2, eq == std::string::npos ? eq : eq - 2);
      const CLI::Option* option = find_option(*current, name, true);
      if (!option) unknown_option(*current, word.substr(0, eq));
      if (eq == std::string::npos && takes_value(*option)) ++i;
      continue;
    }
    if (word.size() > 1 && word.front() == '-') {
      // "-q", "-qv", "-j4", "-j 4".
      for (std::size_t c = 1; c < word.size(); ++c) {
        const CLI::Option* option = find_option(*current, word.substr(c, 1), false);
        if (!option) unknown_option(*current, "-" + word.substr(c, 1));
        if (takes_value(*option)) {
          if (c + 1 == word.size()) ++i;
          break;
        }
      }
      continue;
    }
    if (positionals == 0 && !subcommands_of(*current).empty()) {
      const CLI::App* sub = nullptr;
      for (const CLI::App* s : subcommands_of(*current)) {
        if (s->get_name() == word) sub = s;
      }
      if (!sub) unknown_command(*current, word);
      current = sub;
      continue;
    }
    // A positional word: `run`'s COMMAND takes the rest of the line as it is.
    if (current->get_positionals_at_end()) return;
    if (++positionals > positional_capacity(*current)) {
      throw UsageError("unexpected argument '" + word + "'", command_path(*current));
    }
  }
}

UsageError usage_error(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App& where = deepest_parsed(app);
  const std::string path = command_path(where);
  std::string message = e.what();
  const std::string name = e.get_name();
  if (name == "RequiredError") {
    if (message.starts_with("A subcommand")) {
      return UsageError("missing a command (" + list_commands(where) + ")", path);
    }
    if (message.ends_with(" is required")) {
      message.resize(message.size() - std::string_view(" is required").size());
      return UsageError("missing " + message, path);
    }
  } else if (name == "ArgumentMismatch") {
    // "--jobs: 1 required N missing"
    if (const auto colon = message.find(": "); colon != std::string::npos &&
                                               message.find("required") != std::string::npos &&
                                               message.ends_with("missing")) {
      return UsageError(message.substr(0, colon) + " needs a value", path);
    }
  } else if (name == "ExtrasError") {
    // Left over after check_arguments: CLI11's own list of words it could not place.
    const auto colon = message.find(": ");
    if (colon != std::string::npos) {
      return UsageError("unexpected argument '" + message.substr(colon + 2) + "'", path);
    }
  } else if (name == "RequiresError") {
    // "--memory requires --html"
    if (const auto at = message.find(" requires "); at != std::string::npos) {
      return UsageError(message.substr(0, at) + " needs " + message.substr(at + 10), path);
    }
  } else if (name == "ConversionError") {
    // "Could not convert: --seq = x"
    if (const auto colon = message.find(": "); colon != std::string::npos) {
      std::string rest = message.substr(colon + 2);
      if (const auto eq = rest.find(" = "); eq != std::string::npos) {
        return UsageError(rest.substr(0, eq) + ": invalid value '" + rest.substr(eq + 3) + "'",
                          path);
      }
    }
  }
  return UsageError(lower_first(message), path);
}

CLI::Validator integer_range(std::int64_t min, std::int64_t max) {
  const std::string allowed =
      "use an integer from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [min, max, allowed](std::string& text) -> std::string {
        std::int64_t value = 0;
        const char* end = text.data() + text.size();
        const auto parsed = std::from_chars(text.data(), end, value);
        if (text.empty() || parsed.ec != std::errc() || parsed.ptr != end || value < min ||
            value > max) {
          return "invalid value '" + text + "' (" + allowed + ")";
        }
        return {};
      },
      "");
}

CLI::Validator one_of(std::vector<std::string> words) {
  std::string braces, spoken;
  for (std::size_t i = 0; i < words.size(); ++i) {
    braces += (i ? "," : "") + words[i];
    spoken += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  }
  return CLI::Validator(
      [words, spoken](std::string& text) -> std::string {
        for (const std::string& word : words) {
          if (text == word) return {};
        }
        return "invalid value '" + text + "' (use " + spoken + ")";
      },
      "{" + braces + "}");
}

}  // namespace pollkill
