// Which mode a run uses: a cgroup per task, or, where no cgroup is usable, the process tree
// under a child subreaper (degraded: no memory, cpu or pids limits, no cgroup namespace).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/policy.h"

namespace pollkill {

struct SandboxPlan;

/// The mode chosen, and why, for messages and `pollkill doctor`.
struct ModeDecision {
  RunMode mode = RunMode::cgroup;  ///< cgroup or subreaper, never automatic
  std::optional<RunRoot> root;     ///< set in cgroup mode
  std::string why;                 ///< e.g. "no cgroup pollkill may use: ..."
  /// automatic fell back to subreaper because the cgroup path failed: that error's fix (e.g.
  /// `loginctl enable-linger`), for a limit that needs a cgroup; empty otherwise.
  std::string cgroup_fix;
};

/// Decides the mode (pure but for `resolve_root`, which probes the host and resolves the
/// run root, throwing Error when there is none): `cgroup` resolves and lets its Error
/// through (today's behaviour); `subreaper` never calls it; `automatic` is cgroup when the
/// run root resolves, else subreaper with the Error's message as the reason.
ModeDecision decide_mode(RunMode requested, const std::function<RunRoot()>& resolve_root);

/// The policy keys of `limits` that need a cgroup controller (the schema's `needs_cgroup`
/// keys: memory, memory_high, swap, cpus, pids), in that order (pure).
std::vector<std::string> cgroup_only_limits(const Limits& limits);

/// Subreaper mode cannot enforce `keys` (from cgroup_only_limits): with
/// MissingControllers::error throws Error naming them and the reason; with warn prints a
/// warning and returns them for limits_not_enforced. Empty `keys`: returns nothing.
/// `decision`, when given, is the automatic fall back that led here: the error then also says
/// why no cgroup is usable and its fix.
std::vector<std::string> check_subreaper_limits(const std::vector<std::string>& keys,
                                                MissingControllers missing,
                                                const ModeDecision* decision = nullptr);

/// A [sandbox] that needs a task cgroup (the cgroup namespace) cannot run in subreaper
/// mode: throws Error naming it.
void check_subreaper_sandbox(const SandboxPlan& sandbox);

}  // namespace pollkill
