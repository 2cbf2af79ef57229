// The supervisor: runs one task from cgroup setup to cleanup, watching it with one epoll loop.
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
};

/// Runs one task to its end and returns its result.
///
/// Flow: resolve the run root, check the limits' controllers (error, or warn and record
/// `limits_not_enforced`), create the run cgroup and the guard, create the task cgroup and
/// write the limits, spawn the command into it, then watch with one epoll loop over the
/// pidfd, inotify on cgroup.events, a sampling timerfd, a deadline timerfd and a signalfd
/// (SIGINT, SIGTERM, SIGHUP). On a verdict or cancellation: SIGTERM to every process,
/// cgroup.kill after kill_grace, wait (bounded) for the cgroup to empty, report what would
/// not die. When the main process exits, what it left behind is killed and counted
/// (orphans = "kill") or watched until gone (orphans = "wait"). Everything is removed at the
/// end. Setup failures throw pollkill::Error (the CLI maps them to exit 125); a task's own
/// failure is a result, never an exception. Warnings go to stderr.
Result run_task(const RunRequest& request);

}  // namespace pollkill
