// `pollkill run`: one command as a batch of one task, its record written to --result.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pollkill/policy.h"
#include "pollkill/result.h"

namespace pollkill {

/// What `pollkill run` asks for.
struct RunRequest {
  std::vector<std::string> command;
  Policy policy;
  std::optional<std::string> cgroup_root;  ///< --cgroup-root
  std::string id = "run";
  /// --result: the record is written there when the task has ended ("-": standard output),
  /// by the same writer as a batch's records.
  std::optional<std::string> result;
  /// The task cgroup's name; empty: "task-<id>".
  std::string cgroup_name;
  /// --evidence-dir: where a verdict's evidence is written ([evidence] on); empty: none.
  std::string evidence_dir;
  /// The evidence files' name stem; empty: "<id>.1".
  std::string evidence_stem;
};

/// Runs one task to its end and returns its result.
///
/// The engine (engine.h) with one task and one slot: the session (systemd scope, mode, run
/// root, controllers, run cgroup and guard), then the attempt in pollkill's own stdin, stdout
/// and stderr (through a relay that counts the bytes when an `output` limit is set), watched
/// in the one event loop with the stop signals read through a signalfd. On a verdict or
/// cancellation: SIGTERM to every process, the kill after kill_grace, a bounded wait for the
/// cgroup to empty, what would not die reported. When the main process exits, what it left
/// behind is killed and counted (orphans = "kill") or watched until gone (orphans = "wait").
/// Everything is removed at the end. A percentage wall time leaves only its cap (one task has
/// no median to adapt to); [retry] does not apply. Setup failures, the task's own included,
/// throw pollkill::Error (the CLI maps them to exit 125); a task's own failure is a result,
/// never an exception.
Result run_task(const RunRequest& request);

}  // namespace pollkill
