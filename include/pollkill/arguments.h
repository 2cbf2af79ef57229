// GNU parallel's way of giving a batch its tasks: `pollkill batch -- COMMAND {} ::: ARG...`.
// The words become the lines of a task file (one JSON `cmd` line per task, in parallel's
// order), so that a batch given this way validates, runs, records and resumes exactly as one
// given a file: task N is the N-th combination, on line N, with id "N".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pollkill {

/// The command template and its input sources: `::: A B` gives the words A and B, `:::: FILE`
/// the lines of FILE ("-": standard input).
struct ArgumentSources {
  std::vector<std::string> command;
  std::vector<std::vector<std::string>> sources;
};

/// Whether `words` (what follows `batch [OPTIONS]`) use `:::` or `::::`.
bool has_argument_sources(const std::vector<std::string>& words);

/// Splits the words at `:::` and `::::` and reads the `::::` files. Throws Error: no command
/// before the first separator, a separator with nothing after it, an unreadable file.
ArgumentSources parse_argument_sources(const std::vector<std::string>& words);

/// The command for one combination of arguments (one per source), job number `number` (1-based),
/// with parallel's replacement strings replaced anywhere inside a word:
///   {}   the arguments, joined by a space when there are several sources
///   {.}  without its extension          {/}  its basename      {//} its directory (dirname)
///   {/.} basename without extension     {#}  the job number
///   {N}, {N.}, {N/}, {N//}, {N/.}       the same for the N-th source's argument
/// A command without any replacement string gets the arguments appended, as parallel does.
std::vector<std::string> expand_command(const std::vector<std::string>& command,
                                        const std::vector<std::string>& arguments,
                                        std::uint64_t number);

/// Every combination (the first source varies slowest, as in parallel) as task-file text: one
/// line `{"cmd": [...]}` per task. Throws Error when there are no combinations.
std::string argument_task_lines(const ArgumentSources& sources);

}  // namespace pollkill
