// `pollkill batch`: many tasks from a task file, in parallel, with durable, resumable results.
#pragma once

#include <optional>
#include <string>

#include "pollkill/live_view.h"
#include "pollkill/policy.h"
#include "pollkill/units.h"

namespace pollkill {

struct BatchRequest {
  std::string taskfile;  ///< path, or "-" for standard input; with generated_tasks, their name
  /// Task-file text made from `::: ARG...` (arguments.h), read instead of `taskfile`.
  std::optional<std::string> generated_tasks;
  /// Print what would run (each task's id, resolved command, limits, and whether --resume skips
  /// it) on stdout and run nothing: no cgroup, no results, no logs.
  bool dry_run = false;
  Policy policy;  ///< applied to every task (a task's limit keys override it)
  std::optional<std::string> cgroup_root;
  int jobs = 0;  ///< 0: default_jobs()
  std::string results = "pollkill-results.jsonl";
  std::string logs;    ///< empty: "<results without .jsonl>.logs" next to the results
  std::string joblog;  ///< empty: none
  bool resume = false;
  /// --progress=MODE; unset: `line` when stderr is a terminal, else off (EngineRequest).
  std::optional<ProgressMode> progress;
  int verbosity = 1;  ///< 0 quiet, 1 normal (summary), 2 verbose (every attempt)
  Duration sync_interval{100};
};

/// With `dry_run`, prints the tasks after the same validation and resume checks and returns 0.
///
/// Runs a batch to its end and returns the exit code: 0 every task's final status is ok,
/// 1 some is not, 128+N when interrupted by signal N (130, 143). Throws Error for problems
/// that stop the batch before anything runs (task file, resume mismatch, cgroup setup),
/// which the CLI maps to exit code 2.
///
/// Flow: validate the whole task file; read the results file for --resume (a recorded id
/// whose command differs from the task file's refuses the batch); then the engine (engine.h):
/// the session with its run cgroup and guard, after removing dead pollkills' run cgroups from
/// the root (gc); tasks started (ready retries first, then the next line of the task file)
/// while fewer than `jobs` run, each in its own task cgroup with stdout and stderr in
/// per-attempt log files; when an attempt ends its record appended, a retry queued or the
/// task counted final; the results fdatasync'd at most `sync_interval` after a record.
int run_batch(const BatchRequest& request);

}  // namespace pollkill
