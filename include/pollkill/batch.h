// `pollkill batch`: many tasks from a task file, in parallel, with durable, resumable results.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "pollkill/policy.h"
#include "pollkill/units.h"

namespace pollkill {

struct BatchRequest {
  std::string taskfile;  ///< path, or "-" for standard input
  Policy policy;         ///< applied to every task (a task's limit keys override it)
  std::optional<std::string> cgroup_root;
  int jobs = 0;  ///< 0: default_jobs()
  std::string results = "pollkill-results.jsonl";
  std::string logs;    ///< empty: "<results without .jsonl>.logs" next to the results
  std::string joblog;  ///< empty: none
  bool resume = false;
  std::optional<bool> progress;  ///< unset: on when stderr is a terminal
  int verbosity = 1;             ///< 0 quiet, 1 normal (summary), 2 verbose (every attempt)
  Duration sync_interval{100};
};

/// The CPUs this process may use: its affinity mask, lowered to the quota of its cgroup's
/// cpu.max (rounded up) when there is one; at least 1.
int default_jobs();
/// The pure part of default_jobs: `affinity_cpus` lowered to ceil(quota / period) of a
/// cpu.max text ("150000 100000" -> 2; "max 100000" or "" -> no change); at least 1.
int jobs_for(int affinity_cpus, std::string_view cpu_max);

/// Runs a batch to its end and returns the exit code: 0 every task's final status is ok,
/// 1 some is not, 128+N when interrupted by signal N (130, 143). Throws Error for problems
/// that stop the batch before anything runs (task file, resume mismatch, cgroup setup),
/// which the CLI maps to exit code 2.
///
/// Flow: validate the whole task file; read the results file for --resume (a recorded id
/// whose command differs from the task file's refuses the batch); set up the run cgroup with
/// its guard, after removing dead pollkills' run cgroups from the root (gc); then one epoll
/// loop: start tasks (ready retries first, then the next line of the task file) while fewer
/// than `jobs` run, each in its own task cgroup with stdout and stderr in per-attempt log
/// files; drive each TaskWatch; when an attempt ends append its record, schedule a retry
/// (timer) or count it final; fdatasync the results at most `sync_interval` after a record.
int run_batch(const BatchRequest& request);

}  // namespace pollkill
