#include "pollkill/session.h"

#include <unistd.h>

#include <exception>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/gc.h"
#include "pollkill/systemd.h"

namespace pollkill {

ModeDecision decide_session(HostCgroups& host, const Policy& policy,
                            const std::optional<std::string>& flag, bool needs_controllers,
                            const ScopeStep& enter_scope) {
  // Unreadable /proc files are a reason for subreaper mode in "auto", not a crash: the error
  // goes where resolving the run root would have met it.
  std::exception_ptr probe_error;
  try {
    host = probe_host_cgroups();
  } catch (const Error&) {
    probe_error = std::current_exception();
  }
  // A scope asked for with "always" must be had: its failure is an error, not a reason to fall
  // back to subreaper mode as a failed "auto" request is (decide_mode says why).
  const bool scope_required = policy.runner.systemd_scope == SystemdScopeMode::always &&
                              policy.runner.mode != RunMode::subreaper;
  if (scope_required) {
    if (probe_error) std::rethrow_exception(probe_error);
    enter_scope(host);
  }
  return decide_mode(policy.runner.mode, [&] {
    if (probe_error) std::rethrow_exception(probe_error);
    if (!scope_required) enter_scope(host);
    return resolve_run_root(host, flag, policy, cgroup_root_env(), needs_controllers);
  });
}

// `watchdog.thrash_after` reads the task cgroup's memory.pressure: every cgroup of the unified
// hierarchy has one when the kernel keeps pressure stall information (CONFIG_PSI, not booted
// with psi=0), whether or not the memory controller is enabled there (a memory limit through
// cgroup v1 on a hybrid host shows its stalls there too). /proc/pressure/memory says whether it
// does. Subreaper mode has no cgroup, hence no memory.pressure.
std::vector<std::string> Session::check_thrash_detection(MissingControllers missing) const {
  if (!request_.policy.watchdog.thrash_after) return {};
  std::string why;
  if (subreaper()) {
    why = "subreaper mode has no cgroup (" + mode_.why + ")";
  } else if (::access("/proc/pressure/memory", R_OK) != 0) {
    why =
        "the kernel keeps no pressure stall information (/proc/pressure/memory is missing: "
        "a kernel without CONFIG_PSI, or booted with psi=0)";
  } else {
    return {};
  }
  const std::string message =
      "watchdog.thrash_after needs the task cgroup's memory.pressure, and " + why;
  if (missing == MissingControllers::error) {
    throw Error(message, subreaper()
                             ? "run where pollkill may create cgroups (--cgroup-root, or "
                               "`systemd-run --scope -p Delegate=yes`), or "
                               "set runner.missing_controllers = \"warn\" to run without it"
                             : "boot with psi=1, or set runner.missing_controllers = \"warn\" "
                               "(--missing-controllers warn) to run without it");
  }
  diag::warning(message + "; running without thrash detection");
  return {"thrash_after"};
}

Session::Session(const SessionRequest& request, const SandboxPlan& sandbox) : request_(request) {
  const Policy& policy = request_.policy;
  mode_ =
      decide_session(host_, policy, request_.cgroup_root, !controllers_for(request_.plan).empty(),
                     [&](HostCgroups& host) {
                       enter_delegated_scope(host, request_.cgroup_root, policy, cgroup_root_env());
                     });
  if (subreaper()) {
    if (policy.runner.mode == RunMode::automatic) {
      diag::notice("no usable cgroup (" + mode_.why + "): running in subreaper mode");
    }
    check_subreaper_sandbox(sandbox);
    check_subreaper_limits(keys_of(request_.plan), policy.runner.missing_controllers, &mode_);
    watch_not_enforced_ = check_thrash_detection(policy.runner.missing_controllers);
    return;
  }
  EnforceablePlan checked = check_controllers(host_, *mode_.root, request_.plan, policy.runner);
  v2_controllers_ = controllers_for(checked.enforceable);
  v1_controllers_ = std::move(checked.v1_controllers);
  v1_bases_ = std::move(checked.v1_bases);
  watch_not_enforced_ = check_thrash_detection(policy.runner.missing_controllers);
}

void Session::start() {
  started_ = true;
  if (subreaper()) {
    // Orphans whose task's init was killed from outside come to pollkill, not to PID 1.
    own_children_ = children_of_self();
    subreaper_scope_ = std::make_unique<SubreaperScope>();
    guard_ = Guard::start(nullptr);
    own_children_.push_back(guard_.pid());
    return;
  }
  if (request_.gc_dead_runs) {
    // Run cgroups of pollkills that died without cleaning up (a machine crash, an old
    // version). v1 after v2: every task process was in a unified run cgroup too.
    std::vector<GcRemoved> removed = gc_run_cgroups(mode_.root->path);
    for (const auto& [controller, base] : v1_bases_) {
      for (auto& r : gc_v1_run_cgroups(base, mode_.root->path)) removed.push_back(std::move(r));
    }
    for (const auto& r : removed) {
      diag::detail("gc: removed '" + r.path.string() + "' (pollkill " + std::to_string(r.owner) +
                   " is gone)");
    }
  }
  // The guard exists before anything is created, so a SIGKILL at any moment leaves nothing.
  run_ = RunCgroup::prepare(*mode_.root, *host_.mounts.cgroup2, v2_controllers_, v1_bases_);
  guard_ = Guard::start(run_);
  run_.realize(guard_.pid(), guard_.liveness_pid(), guard_.liveness_placed());
}

void Session::close() noexcept {
  if (!started_) return;
  started_ = false;
  if (subreaper()) {
    try {
      reap_stray_children(own_children_);
    } catch (const std::exception& e) {
      diag::warning(std::string("reaping stray children: ") + e.what());
    }
  } else {
    run_.destroy();
  }
  guard_.stop();
  if (!subreaper()) run_.leave_leaf();
  subreaper_scope_.reset();
}

std::string Session::mode_name() const {
  return to_string(mode_.mode);
}

LimitSplit Session::split(const Limits& limits) const {
  return split_limits(limits, v2_controllers_, v1_controllers_);
}

}  // namespace pollkill
