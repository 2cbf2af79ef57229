// Task files for `pollkill batch`: one task per line, as shell-like words or as a JSON object.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pollkill/error.h"
#include "pollkill/limits.h"
#include "pollkill/policy.h"
#include "pollkill/policy_schema.h"
#include "pollkill/results.h"

namespace pollkill {

/// One task of a batch.
struct TaskSpec {
  std::string id;          ///< given in JSON, else the line number
  std::uint64_t seq = 0;   ///< 1-based position among the file's tasks (a Slurm array index)
  std::uint64_t line = 0;  ///< line in the task file
  std::vector<std::string> command;
  std::string cwd;               ///< empty: pollkill's own
  std::vector<std::string> env;  ///< "NAME=value", set on top of pollkill's environment
  /// Per-task values of [limits] keys, applied with apply_settings on top of the batch's
  /// policy (each read and checked as in a policy file); empty when there are none.
  std::vector<Setting> limits;

  /// One task, one number: its line in the task file, which is also the id of a task without
  /// an explicit one, the joblog's Seq and the N of its task cgroups (`task-N-ATTEMPT`), so
  /// all three agree however many comment and blank lines come before it. seq where there is
  /// no line (a task not read from a file).
  std::uint64_t number() const { return line > 0 ? line : seq; }
};

/// Splits a line into words the way a POSIX shell splits a simple command, without running
/// one: blanks separate words; '...' is literal; "..." keeps blanks and takes backslash
/// escapes of \ " $ ` and newline; a backslash outside quotes escapes the next character; a
/// '#' that starts a word starts a comment. No expansion of any kind. Throws Error on an
/// unterminated quote or a trailing backslash.
std::vector<std::string> split_words(std::string_view line);

/// The first shell operator of a word line that a shell would act on but pollkill passes on
/// as a word, or as text inside a word: `>`, `<`, `|`, `&`, `;` and `&&`/`||`, `$` (also inside
/// double quotes, where a shell still expands it), a backquote, and the glob characters `*`, `?`
/// and `[` outside quotes. Empty when there is none (quoted or backslash-escaped ones are
/// literal in a shell too). Never throws: a line split_words refuses gives what it found.
std::string shell_syntax(std::string_view line);

/// The line as a task that a shell runs: `sh -c '...'`, its single quotes escaped.
std::string sh_c_rewrite(std::string_view line);

/// Parses one line of a task file. nullopt for blank and comment lines. A line whose first
/// non-blank character is '{' is a JSON object with `id` (string or integer), `cmd` (array
/// of strings) or `sh` (string, run with /bin/sh -c), and optional `cwd` (string), `env`
/// (object of strings) and limit keys (`memory`, `wall_time`, ... as in [limits]). Throws
/// Error with the bare message (no file or line) on a bad line.
std::optional<TaskSpec> parse_task_line(std::string_view text, std::uint64_t line_number,
                                        const Policy& base);

/// A task file read twice: `validate` reads it whole once (every line parsed, ids unique)
/// so that a bad line stops the batch before anything runs, then `next` streams the tasks.
/// The later passes read only the bytes validate() read: a line appended to the file while the
/// batch runs (or the rest of a last line that was unfinished) is never run unvalidated.
/// Memory holds one line at a time plus the set of ids during validation. "-" reads standard
/// input, spooled to an unlinked temporary file so that it can be read twice.
class TaskFile {
 public:
  /// Opens the file; throws Error("FILE: cannot read ...").
  static TaskFile open(const std::string& path);
  /// A task file whose lines are `text` (tasks made from `:::` arguments), named `name` in
  /// messages; spooled to an unlinked temporary file like standard input.
  static TaskFile from_text(const std::string& name, std::string_view text);

  struct Validation {
    std::uint64_t tasks = 0;
    /// The limit writes of every task's effective limits together (duplicates removed by
    /// attribute): what the run cgroup's controllers must cover.
    std::vector<LimitWrite> plan;
    /// Whether any task's effective policy has an output limit, or takes evidence (what
    /// a running task may hold: include/pollkill/fdlimit.h).
    bool output_limit = false;
    bool evidence = false;
  };
  /// Parses every line; throws Error("FILE:LINE: message") on the first bad one, a duplicate
  /// id, or an id too long for a log file name (kMaxIdFileName). A word line holding shell
  /// syntax (shell_syntax) gets a warning naming FILE:LINE and the `sh -c '...'` rewrite: it
  /// runs as words, as before, but that is rarely what was meant (the first kShellWarnings
  /// lines, then a count). Rewinds afterwards, and marks how far it read: the snapshot every
  /// later pass stops at.
  Validation validate(const Policy& base);
  /// Back to the first line (a second pass, e.g. the resume check).
  void rewind();
  /// The next task, or nullopt at the end.
  std::optional<TaskSpec> next(const Policy& base);
  const std::string& name() const { return name_; }

 private:
  bool read_line(std::string& line);
  /// The next task line parsed (comments and blank lines skipped), errors as FILE:LINE.
  std::optional<TaskSpec> read_task(const Policy& base);

  static constexpr std::uint64_t kShellWarnings = 5;

  std::string name_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
  std::uint64_t line_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t offset_ = 0;          ///< bytes read since the last rewind
  std::optional<std::uint64_t> end_;  ///< set by validate(): the bytes it read, the snapshot
  /// Set during validate: lines with shell syntax seen so far (warned about up to a bound).
  std::optional<std::uint64_t> shell_lines_;
};

/// The policy one task runs with: `base` with the task's limit overrides.
Policy task_policy(const TaskSpec& task, const Policy& base);

}  // namespace pollkill
