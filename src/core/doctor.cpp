#include "pollkill/doctor.h"

#include <seccomp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "pollkill/cgroup.h"
#include "pollkill/cgroup_v1.h"
#include "pollkill/container.h"
#include "pollkill/error.h"
#include "pollkill/hostcase.h"
#include "pollkill/limits.h"
#include "pollkill/mode.h"
#include "pollkill/sandbox.h"
#include "pollkill/session.h"
#include "pollkill/spawn.h"
#include "pollkill/systemd.h"

namespace pollkill {
namespace {

std::string join(const std::vector<std::string>& words, const char* sep = " ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : sep) + w;
  return out;
}

}  // namespace

bool DoctorReport::ready() const {
  return std::all_of(checks.begin(), checks.end(),
                     [](const DoctorCheck& c) { return c.ok || !c.required; });
}

namespace {

using AddCheck = std::function<void(std::string, bool, std::string, std::string, bool)>;

// The run root, its controllers and a real trial in it. Returns the controllers the run root
// offers (empty when there is none); `v1_controllers` gets those whose limits would go through
// cgroup v1 (runner.cgroup_v1 = "auto" on a hybrid host, hierarchy writable) and
// `v1_usable` those whose v1 hierarchy could take them with "auto" set or not. `decided` is
// the session's run root; without one (subreaper mode) the run root is still resolved, to
// report the cgroup facts a run would meet in cgroup mode.
std::vector<std::string> check_cgroups(
    const HostCgroups& host, const std::optional<std::string>& cgroup_root, const Policy& effective,
    bool needs_controllers, const std::optional<RunRoot>& decided, const AddCheck& add_check,
    std::vector<std::string>& v1_controllers, std::vector<std::string>& v1_usable) {
  auto add = [&](std::string name, bool ok, std::string detail, std::string fix = {},
                 bool required = true) {
    add_check(std::move(name), ok, std::move(detail), std::move(fix), required);
  };
  RunRoot root;
  try {
    root = decided ? *decided
                   : resolve_run_root(host, cgroup_root, effective, cgroup_root_env(),
                                      needs_controllers);
  } catch (const Error& e) {
    add("run root", false, e.what(), e.hint());
    return {};
  }
  bool writable = ::access(root.path.c_str(), W_OK) == 0;
  add("run root", writable,
      root.path.string() + " (" + root.source + (writable ? ", writable)" : ", not writable)") +
          (root.move_self_to_leaf ? "; pollkill moves itself into a leaf first" : ""),
      "pass --cgroup-root with a cgroup you may write to");
  std::vector<std::string> available;
  try {
    available = CgroupDir::open(root.path).controllers();
  } catch (const Error&) {
  }
  // Offered, but other processes there keep them from being enabled (see "host" above).
  if (!other_processes_in(root).empty()) available.clear();
  const bool v1_auto = effective.runner.cgroup_v1 == CgroupV1::automatic;
  for (const char* c : {"memory", "cpu", "pids"}) {
    bool has = std::find(available.begin(), available.end(), c) != available.end();
    // The "limit" lines above cover the cgroup v2 controllers; on a hybrid host, say where
    // the v1 backend would take each missing one.
    if (has || host.mounts.layout != CgroupLayout::hybrid) continue;
    // A hybrid host: the v1 backend may take the controller's limits.
    V1Placement v1 = place_v1(c, host.mounts, host.own_v1_cgroups, effective.runner.cgroup_v1_root);
    std::string detail = "not available in " + root.path.string() + "; ";
    if (v1.usable) v1_usable.push_back(c);
    if (v1.usable && v1_auto) {
      v1_controllers.push_back(c);
      add(std::string("controller ") + c, true,
          detail + "its limits go through cgroup v1 at " + v1.base.string() +
              " (runner.cgroup_v1 = \"auto\")",
          {}, false);
    } else if (v1.usable) {
      add(std::string("controller ") + c, false,
          detail + "cgroup v1 at " + v1.base.string() + " could enforce its limits",
          "set runner.cgroup_v1 = \"auto\" (--cgroup-v1 auto) to use it, or boot with "
          "systemd.unified_cgroup_hierarchy=1",
          false);
    } else {
      add(std::string("controller ") + c, false, detail + "cgroup v1: " + v1.why_not,
          "this hybrid host keeps it in cgroup v1: set runner.cgroup_v1_root to a v1 cgroup you "
          "may write to and runner.cgroup_v1 = \"auto\", or boot with "
          "systemd.unified_cgroup_hierarchy=1",
          false);
    }
  }

  // A real trial: a scratch run cgroup, /bin/true spawned into it, then everything removed.
  try {
    RunRoot trial_root = root;
    trial_root.move_self_to_leaf = false;
    // memory.peak only exists where the memory controller is on: enable it for the trial
    // when the run root offers it, moving into a leaf first where `run` with a memory limit
    // would (its own non-root cgroup, a cgroup namespace's root).
    std::vector<std::string> trial_controllers;
    if (std::find(available.begin(), available.end(), "memory") != available.end()) {
      trial_controllers.push_back("memory");
      trial_root.move_self_to_leaf =
          resolve_run_root(host, cgroup_root, effective, cgroup_root_env(), true).move_self_to_leaf;
    }
    RunCgroup run;
    try {
      run = RunCgroup::create(trial_root, *host.mounts.cgroup2, trial_controllers);
    } catch (const SystemError&) {  // e.g. EBUSY: processes arrived in the run root
      trial_root.move_self_to_leaf = false;
      run = RunCgroup::create(trial_root, *host.mounts.cgroup2, {});
    }
    CgroupDir task = run.create_child("doctor");
    add("cgroup.kill", task.has("cgroup.kill"),
        task.has("cgroup.kill") ? "present" : "absent: pollkill uses freeze + SIGKILL instead",
        "Linux 5.14 or newer provides cgroup.kill", false);
    add("cgroup.freeze", task.has("cgroup.freeze"),
        task.has("cgroup.freeze") ? "present" : "absent",
        "Linux 5.2 or newer provides cgroup.freeze", !task.has("cgroup.kill"));
    SpawnMethod method = default_spawn_method();
    Spawned spawned = spawn({{"/bin/true"}, {}, task.fd(), method});
    auto exit = spawned.child.reap();
    bool ok = !spawned.failure && exit.exit_code == 0;
    add(method == SpawnMethod::fork ? "fork + join cgroup" : "clone3 into a cgroup", ok,
        ok ? "ran /bin/true in " + (run.relative_path() + "/doctor")
           : "could not run /bin/true in a task cgroup",
        "Linux 5.7 or newer provides clone3(CLONE_INTO_CGROUP)");
    bool peak = task.has("memory.peak");
    add("memory.peak", peak, peak ? "present" : "absent (needs the memory controller, Linux 5.19)",
        "results fall back to the highest sampled memory.current, or null", false);
    bool pressure = task.has("cpu.pressure");
    add("pressure files", pressure, pressure ? "cpu/memory/io.pressure present" : "absent",
        "build the kernel with CONFIG_PSI=y (or boot without psi=0)", false);
  } catch (const Error& e) {
    add("task cgroup trial", false, e.what(),
        e.hint().empty() ? "see the run root above" : e.hint());
  }

  return available;
}

// The host case (pure cgroup v2 root, delegated or partly delegated subtree, cgroup
// namespace, hybrid, no usable cgroup) and, for each limit, whether it can be enforced here
// and the fix when not.
void check_host_case(const HostCgroups& host, const std::optional<std::string>& cgroup_root,
                     const Policy& effective, bool needs_controllers, const AddCheck& add) {
  const HostAssessment a =
      assess_host(probe_host_facts(host, cgroup_root, effective, needs_controllers));
  add("host", a.kind != HostCase::no_cgroup, std::string(to_string(a.kind)) + ": " + a.detail,
      a.fix, true);
  for (const auto& limit : a.limits) {
    add("limit " + limit.name + " (" + limit.flags + ")", limit.available, limit.detail, limit.fix,
        false);
  }
}

}  // namespace

namespace {

// On a systemd host: would run ask for a delegated scope, and does asking work? Asked for real,
// as run would: doctor then goes on inside the scope, so the checks below see what a run
// gets there.
void check_systemd(HostCgroups& host, const std::optional<std::string>& cgroup_root,
                   const Policy& effective, const AddCheck& add) {
  if (!host.systemd_pid1) {
    add("systemd", true, "PID 1 is not systemd: no scope is requested", {}, false);
    return;
  }
  add("systemd", true,
      std::string("PID 1 is systemd: pollkill's cgroup must be delegated; this build ") +
          (systemd_support_built() ? "can ask for a scope (libsystemd)"
                                   : "has no libsystemd (POLLKILL_SYSTEMD=OFF)"),
      {}, false);
  const char* env_root = cgroup_root_env();
  const bool explicit_root = cgroup_root.has_value() || effective.runner.cgroup_root.has_value() ||
                             (env_root && *env_root);
  ScopeDecision decision = decide_scope(effective.runner.systemd_scope, host.systemd_pid1,
                                        explicit_root, own_cgroup_usable(host));
  if (!decision.request) {
    add("systemd scope", true, "not requested: " + decision.why, {}, false);
    return;
  }
  const SystemdManager manager = host.root_user ? SystemdManager::system : SystemdManager::user;
  const bool required =
      !host.root_user || effective.runner.systemd_scope == SystemdScopeMode::always;
  if (!systemd_support_built()) {
    add("systemd scope", false,
        "would be requested (" + decision.why + "), but this build has no libsystemd",
        "run pollkill under `systemd-run " +
            std::string(manager == SystemdManager::user ? "--user " : "") +
            "--scope -p Delegate=yes`, or rebuild with libsystemd-dev",
        required);
    return;
  }
  try {
    SystemdScope scope = start_delegated_scope(manager, RunCgroup::make_name() + ".scope");
    host.own_cgroup = probe_own_cgroup();
    host.own_delegated = true;
    host.scope_from_user_manager = manager == SystemdManager::user;
    std::string delegated;
    try {
      delegated =
          join(CgroupDir::open(*host.mounts.cgroup2 / host.own_cgroup.substr(1)).controllers());
    } catch (const Error& e) {
      delegated = std::string("unknown (") + e.what() + ")";
    }
    add("systemd scope", true,
        "requested (" + decision.why + "): started " + scope.unit + " from the " +
            to_string(manager) + " over " + scope.bus + " (systemd " + scope.version +
            "); delegated controllers: " + (delegated.empty() ? "none" : delegated),
        {}, false);
  } catch (const Error& e) {
    add("systemd scope", false, std::string("requested (") + decision.why + ") but " + e.what(),
        e.hint() + (required ? "" : "; as root pollkill falls back to <mount>/pollkill"), required);
  }
}

}  // namespace

DoctorReport run_doctor(const std::optional<Policy>& policy,
                        const std::optional<std::string>& cgroup_root,
                        std::optional<SystemdScopeMode> systemd_scope) {
  DoctorReport report;
  // In subreaper mode the cgroup facts are still reported, but a run here needs none of them.
  bool cgroup_facts_optional = false;
  auto add = [&](std::string name, bool ok, std::string detail, std::string fix = {},
                 bool required = true) {
    report.checks.push_back({std::move(name), ok, required && !cgroup_facts_optional,
                             std::move(detail), std::move(fix)});
  };
  Policy effective = policy.value_or(default_policy());
  if (systemd_scope) effective.runner.systemd_scope = *systemd_scope;
  std::vector<std::string> available;
  std::vector<std::string> v1_controllers, v1_usable;
  const bool needs_controllers = !controllers_for(plan_limits(effective.limits)).empty();
  // The mode a run would use here, decided by the session's own decision, as a dry run but
  // for the systemd scope, which is asked for for real (doctor then goes on inside it) and
  // reported instead of warned about. With --mode subreaper a run never asks: neither does
  // doctor.
  HostCgroups host;
  ModeDecision mode;
  try {
    mode = decide_session(host, effective, cgroup_root, needs_controllers, [&](HostCgroups& h) {
      if (h.mounts.cgroup2) check_systemd(h, cgroup_root, effective, add);
    });
    const bool picked = effective.runner.mode == RunMode::automatic;
    add("mode", true,
        to_string(mode.mode) + (picked ? ", what --mode auto picks here: " : ": ") + mode.why +
            (mode.mode == RunMode::subreaper
                 ? "; hang, spin, wall and CPU time and reaping work, through /proc; memory, "
                   "memory_high, swap, cpus and pids limits and the cgroup namespace do not"
                 : ""));
  } catch (const Error& e) {
    add("mode", false, "cgroup (asked for), but: " + std::string(e.what()), e.hint());
  }
  const bool subreaper = mode.mode == RunMode::subreaper;
  if (subreaper) {
    try {
      SubreaperScope scope;
      SpawnRequest trial{{"/bin/true"}, {}, -1, default_spawn_method()};
      trial.subreaper_init = true;
      Spawned spawned = spawn(trial);
      auto exit = spawned.child.reap();
      bool ok = !spawned.failure && exit.exit_code == 0;
      add("subreaper trial", ok,
          ok ? "ran /bin/true under a child subreaper" : "could not run /bin/true as a task",
          "needs Linux 3.4 (PR_SET_CHILD_SUBREAPER) and 5.3 (pidfd_open)");
    } catch (const Error& e) {
      add("subreaper trial", false, e.what(), e.hint());
    }
  }
  cgroup_facts_optional = subreaper;
  if (!host.mounts.cgroup2) {
    add("cgroup2 mount", false, "none (layout: v1-only)",
        "mount cgroup2 (`mount -t cgroup2 none /sys/fs/cgroup/unified`) or boot with "
        "systemd.unified_cgroup_hierarchy=1");
    check_host_case(host, cgroup_root, effective, needs_controllers, add);
  } else {
    add("cgroup2 mount", true,
        host.mounts.cgroup2->string() + " (" + std::string(to_string(host.mounts.layout)) +
            (host.mounts.cgroup2_read_only ? ", read-only" : "") + ")");
    add("own cgroup", !host.own_cgroup.empty(),
        host.own_cgroup.empty() ? "unknown" : host.own_cgroup);
    check_host_case(host, cgroup_root, effective, needs_controllers, add);
    // The policy checks below still run when the cgroup part fails: a user learns both.
    available = check_cgroups(host, cgroup_root, effective, needs_controllers, mode.root, add,
                              v1_controllers, v1_usable);
  }
  cgroup_facts_optional = false;
  const unsigned seccomp_mode = static_cast<unsigned>(::prctl(PR_GET_SECCOMP));
  const scmp_version* v = seccomp_version();
  add("seccomp", seccomp_mode != static_cast<unsigned>(-1),
      "libseccomp " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
          std::to_string(v->micro) + (seccomp_mode == 0 ? ", not filtered" : ", already filtered"),
      "build the kernel with CONFIG_SECCOMP_FILTER=y", false);

  if (policy && subreaper) {
    std::vector<std::string> missing = cgroup_only_limits(effective.limits);
    bool ok = missing.empty();
    bool allowed = ok || effective.runner.missing_controllers == MissingControllers::warn;
    add("policy", ok,
        ok ? "every limit can be enforced in subreaper mode"
           : "cannot enforce without a cgroup: " + join(missing, ", ") +
                 (allowed ? " (runner.missing_controllers = \"warn\": runs without them)" : ""),
        "run where pollkill may create cgroups, or set runner.missing_controllers = \"warn\"",
        !allowed);
  } else if (policy) {
    LimitSplit split = split_limits(effective.limits, available, v1_controllers);
    const auto& missing = split.not_enforced;
    bool ok = missing.empty();
    bool allowed = ok || effective.runner.missing_controllers == MissingControllers::warn;
    std::string via_v1 =
        split.v1_keys.empty() ? "" : " (" + join(split.v1_keys, ", ") + " through cgroup v1)";
    // On a hybrid host with runner.cgroup_v1 = "off", the v1 hierarchies may enforce what
    // cgroup2 cannot: that is the first fix to name.
    std::string fix;
    if (effective.runner.cgroup_v1 == CgroupV1::off) {
      LimitSplit with_v1 = split_limits(effective.limits, available, v1_usable);
      if (!with_v1.v1_keys.empty()) {
        fix = "set runner.cgroup_v1 = \"auto\" (--cgroup-v1 auto) to enforce " +
              join(with_v1.v1_keys, ", ") + " through this hybrid host's cgroup v1; or ";
      }
    }
    fix +=
        "run on a pure cgroup v2 host with the controllers delegated, or set "
        "runner.missing_controllers = \"warn\"";
    add("policy", ok,
        ok ? "every limit can be enforced here" + via_v1
           : "cannot enforce: " + join(missing, ", ") +
                 (allowed ? " (runner.missing_controllers = \"warn\": runs without them)" : "") +
                 via_v1,
        fix, !allowed);
  }
  if (policy) {
    // The same preparation `run` does before anything is created, in either mode: users,
    // privileges for namespaces and user changes, rlimits, paths, the seccomp filter.
    try {
      prepare_sandbox(effective, {});
      add("policy sandbox", true, "[sandbox] and [seccomp] can be set up with these privileges");
    } catch (const Error& e) {
      add("policy sandbox", false, e.what(), e.hint());
    }
  }
  return report;
}

std::string format_doctor(const DoctorReport& report) {
  std::string out;
  for (const auto& c : report.checks) {
    out += (c.ok ? "[ok] " : (c.required ? "[!!] " : "[--] ")) + c.name + ": " + c.detail + "\n";
    if (!c.ok && !c.fix.empty()) out += "     fix: " + c.fix + "\n";
  }
  out += report.ready() ? "ready: pollkill can run tasks here\n"
                        : "not ready: fix the [!!] lines above\n";
  return out;
}

nlohmann::json doctor_json(const DoctorReport& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : report.checks) {
    nlohmann::json check = {
        {"name", c.name},
        {"status", c.ok ? "ok" : (c.required ? "fail" : "unavailable")},
        {"required", c.required},
        {"detail", c.detail},
    };
    check["fix"] = !c.ok && !c.fix.empty() ? nlohmann::json(c.fix) : nlohmann::json(nullptr);
    checks.push_back(std::move(check));
  }
  return {{"ready", report.ready()}, {"checks", std::move(checks)}};
}

}  // namespace pollkill
