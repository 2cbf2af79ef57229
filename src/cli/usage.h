// Command-line mistakes in pollkill's own words. CLI11 parses; this module speaks for it:
// an unknown subcommand or option is found before CLI11 sees the line (so that
// `batch --retry 2 tasks.txt` blames --retry, not the task file) and named with the nearest
// real one, and every CLI11 parse error that remains is rewritten in the form
//
//   pollkill: error: unknown option '--memroy'; did you mean '--memory'?
//   pollkill: hint: see 'pollkill run --help'
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "pollkill/error.h"

namespace pollkill {

/// A mistake on the command line: its message, the command it was made in ("pollkill batch")
/// and, as the hint, the pointer to that command's --help.
class UsageError : public Error {
 public:
  UsageError(const std::string& message, const std::string& command);
  /// The subcommand path the mistake was made in, e.g. "pollkill policy check".
  const std::string& command() const noexcept { return command_; }

 private:
  std::string command_;
};

/// Walks `args` (argv without argv[0]) through `app`'s subcommands and options as CLI11 would,
/// up to `--` or the first word of a command that ends the options (`run`'s COMMAND), and
/// throws UsageError on the first word that is neither: "unknown command 'rnu'; did you mean
/// 'run'?", "unknown option '--memroy' for 'pollkill run'; did you mean '--memory'?". Values of
/// options that take one are skipped, in both `--opt value` and `--opt=value` forms.
void check_arguments(const CLI::App& app, const std::vector<std::string>& args);

/// The UsageError for a CLI11 parse error that check_arguments did not catch (a missing
/// positional, a missing value, a choice not among an option's choices), in plain words.
/// `app` is the top-level App after the failed parse.
UsageError usage_error(const CLI::App& app, const CLI::ParseError& e);

/// A CLI11 check for a whole number from `min` to `max` that says so in its error
/// ("--jobs: 0 is not allowed: use an integer from 1 to 100000") instead of CLI11's range of
/// doubles.
CLI::Validator integer_range(std::int64_t min, std::int64_t max);

/// A CLI11 check that a value is one of `words`: shown as `{auto,off}` in --help (what the
/// completion test reads), and "invalid value 'x' (use auto or off)" when it is not.
CLI::Validator one_of(std::vector<std::string> words);

}  // namespace pollkill
