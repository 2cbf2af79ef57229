#include "pollkill/mode.h"

#include <cstdio>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/policy_schema.h"
#include "pollkill/sandbox.h"

namespace pollkill {

ModeDecision decide_mode(RunMode requested, const std::function<RunRoot()>& resolve_root) {
  ModeDecision decision;
  if (requested == RunMode::subreaper) {
    decision.mode = RunMode::subreaper;
    decision.why = "asked for with --mode or runner.mode";
    return decision;
  }
  if (requested == RunMode::cgroup) {
    decision.root = resolve_root();
    decision.why = "asked for with --mode or runner.mode";
    return decision;
  }
  try {
    decision.root = resolve_root();
    decision.why = "a usable run root exists: " + decision.root->path.string() + ", from " +
                   decision.root->source;
  } catch (const Error& e) {
    decision.mode = RunMode::subreaper;
    decision.root.reset();
    decision.why = e.what();
    decision.cgroup_fix = e.hint();
  }
  return decision;
}

std::vector<std::string> cgroup_only_limits(const Limits& limits) {
  Policy policy;
  policy.limits = limits;
  std::vector<std::string> keys;
  for (const KeySpec& key : policy_keys()) {
    if (key.needs_cgroup && is_set(key, policy)) keys.emplace_back(key.name);
  }
  return keys;
}

std::vector<std::string> check_subreaper_limits(const std::vector<std::string>& keys,
                                                MissingControllers missing,
                                                const ModeDecision* decision) {
  if (keys.empty()) return {};
  std::string names;
  for (const auto& k : keys) names += (names.empty() ? "" : ", ") + k;
  std::string message = "the " + names + " limit" + (keys.size() > 1 ? "s need" : " needs") +
                        " a cgroup, and subreaper mode has none";
  const bool fell_back = decision && !decision->cgroup_fix.empty();
  if (fell_back) message += " (no cgroup is usable here: " + decision->why + ")";
  if (missing == MissingControllers::error) {
    if (fell_back) {
      throw Error(message, decision->cgroup_fix +
                               "; or set runner.missing_controllers = \"warn\" "
                               "(--missing-controllers warn) to run without the limit");
    }
    throw Error(message,
                "run where pollkill may create cgroups (root, a delegated cgroup, "
                "`systemd-run --scope -p Delegate=yes`, or --cgroup-root), or set "
                "runner.missing_controllers = \"warn\" (--missing-controllers warn) to run "
                "without the limit; rlimits in [sandbox.rlimits] still apply per process");
  }
  diag::warning(message + "; running without " + (keys.size() > 1 ? "these limits" : "this limit"));
  return keys;
}

void check_subreaper_sandbox(const SandboxPlan& sandbox) {
  if (sandbox.new_cgroup_ns) {
    throw Error(
        "sandbox.namespaces lists \"cgroup\", which needs a task cgroup as the namespace's "
        "root, and subreaper mode has none",
        "remove \"cgroup\" from sandbox.namespaces, or run where pollkill may create cgroups");
  }
}

}  // namespace pollkill
