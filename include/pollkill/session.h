// One invocation's setup and teardown, whatever runs inside it: the systemd scope, the mode
// (cgroup or subreaper), the run root, the controllers its limits need, the cleanup of dead
// pollkills' run cgroups, the run cgroup and the guard (or, in subreaper mode, pollkill as a
// child subreaper with a guard told each task's init), and the teardown in the right order.
// `run`, `batch` and the Slurm element each open one through the engine; `doctor` makes the
// same decisions as a dry run (decide_session).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/container.h"
#include "pollkill/guard.h"
#include "pollkill/limits.h"
#include "pollkill/mode.h"
#include "pollkill/policy.h"
#include "pollkill/sandbox.h"

namespace pollkill {

/// How an invocation asks systemd for a delegated scope (systemd.h): `run` and `batch` enter
/// one (enter_delegated_scope); doctor reports what asking gives instead of warning.
using ScopeStep = std::function<void(HostCgroups& host)>;

/// The mode decision of every invocation, doctor's included: `host` probed, a systemd scope
/// asked for through `enter_scope` when the mode may use a cgroup (before the decision with
/// runner.systemd_scope = "always", so that its failure is an error; otherwise while the run
/// root is resolved, so that a failure in "auto" falls back to subreaper mode), then
/// decide_mode with the run root resolved from `flag` (--cgroup-root), the policy and
/// POLLKILL_CGROUP_ROOT. `needs_controllers`: some limit needs a cgroup controller. `host`
/// is kept (probed again inside a scope pollkill entered) when the decision throws.
ModeDecision decide_session(HostCgroups& host, const Policy& policy,
                            const std::optional<std::string>& flag, bool needs_controllers,
                            const ScopeStep& enter_scope);

/// What one invocation asks of its session.
struct SessionRequest {
  Policy policy;  ///< the invocation's policy (batch: the base of every task's)
  std::optional<std::string> cgroup_root;  ///< --cgroup-root
  /// The limit writes of every task together: the controllers the run cgroup enables.
  std::vector<LimitWrite> plan;
  bool gc_dead_runs = false;  ///< remove dead pollkills' run cgroups from the run root first
};

/// One invocation's run environment. The constructor decides and checks (decide_session, then
/// what the mode can enforce: check_controllers in cgroup mode, check_subreaper_limits and
/// check_subreaper_sandbox in subreaper mode, and in both whether thrash detection has a
/// memory.pressure to read) and creates nothing; start() creates; close()
/// (or the destructor) tears down.
class Session {
 public:
  /// Throws Error (with the fix) when the policy cannot be run here.
  Session(const SessionRequest& request, const SandboxPlan& sandbox);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() { close(); }

  /// Creates what the tasks run in, in an order that leaves nothing behind when pollkill is
  /// SIGKILLed at any moment: [gc of dead runs], then the guard before anything it guards
  /// (the run cgroup is decided, the guard forked with a copy, then the cgroup made), or in
  /// subreaper mode pollkill a subreaper and the guard. Call with the stop signals blocked
  /// (the event loop exists), so that none of them kills pollkill halfway through.
  void start();
  /// Tears down in order: the run cgroup with whatever is left in it (subreaper mode: the
  /// stray children no task claimed), the guard, the leaf pollkill had moved into, the
  /// subreaper setting. Idempotent; never throws (problems are warnings).
  void close() noexcept;

  bool subreaper() const { return mode_.mode == RunMode::subreaper; }
  /// "cgroup" or "subreaper", for the result's `mode`.
  std::string mode_name() const;
  const ModeDecision& decision() const { return mode_; }
  /// A task's limits split between the backends the session enables (cgroup mode).
  LimitSplit split(const Limits& limits) const;
  /// The run cgroup (cgroup mode, after start).
  const RunCgroup& run_cgroup() const { return run_; }
  Guard& guard() { return guard_; }
  /// Watchdog keys this session cannot act on, run without under runner.missing_controllers
  /// = "warn" ("thrash_after": no memory.pressure here): the launcher turns them off and
  /// lists them in the result's limits_not_enforced.
  const std::vector<std::string>& watch_not_enforced() const { return watch_not_enforced_; }

 private:
  std::vector<std::string> check_thrash_detection(MissingControllers missing) const;

  SessionRequest request_;
  HostCgroups host_;
  ModeDecision mode_;
  std::vector<std::string> v2_controllers_;  ///< enabled in the run cgroup
  std::vector<std::string> v1_controllers_;  ///< limits through cgroup v1 (hybrid hosts)
  std::vector<std::pair<std::string, std::filesystem::path>> v1_bases_;
  bool started_ = false;
  RunCgroup run_;
  Guard guard_;
  std::unique_ptr<SubreaperScope> subreaper_scope_;
  std::vector<pid_t> own_children_;  ///< subreaper mode: never reaped as strays (the guard...)
  std::vector<std::string> watch_not_enforced_;
};

}  // namespace pollkill
