#include "pollkill/doctor.h"

#include <seccomp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "pollkill/cgroup.h"
#include "pollkill/container.h"
#include "pollkill/error.h"
#include "pollkill/mode.h"
#include "pollkill/sandbox.h"
#include "pollkill/spawn.h"

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
// offers (empty when there is none).
std::vector<std::string> check_cgroups(const HostCgroups& host,
                                       const std::optional<std::string>& cgroup_root,
                                       const Policy& effective, bool needs_controllers,
                                       const AddCheck& add_check) {
  auto add = [&](std::string name, bool ok, std::string detail, std::string fix = {},
                 bool required = true) {
    add_check(std::move(name), ok, std::move(detail), std::move(fix), required);
  };
  RunRoot root;
  try {
    root = resolve_run_root(host, cgroup_root, effective, ::getenv("POLLKILL_CGROUP_ROOT"),
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
  for (const char* c : {"memory", "cpu", "pids"}) {
    bool has = std::find(available.begin(), available.end(), c) != available.end();
    add(std::string("controller ") + c, has,
        has ? "available" : "not available in " + root.path.string(),
        host.mounts.layout == CgroupLayout::hybrid
            ? "this hybrid host keeps it in cgroup v1; boot with systemd.unified_cgroup_hierarchy=1"
            : "enable it in the parent's cgroup.subtree_control or ask for delegation",
        false);
  }

  // A real trial: a scratch run cgroup, /bin/true spawned into it, then everything removed.
  try {
    RunRoot trial_root = root;
    trial_root.move_self_to_leaf = false;
    // memory.peak only exists where the memory controller is on: enable it for the trial
    // when the run root offers it and pollkill need not move itself to do so.
    std::vector<std::string> trial_controllers;
    if (!root.move_self_to_leaf &&
        std::find(available.begin(), available.end(), "memory") != available.end()) {
      trial_controllers.push_back("memory");
    }
    RunCgroup run;
    try {
      run = RunCgroup::create(trial_root, *host.mounts.cgroup2, trial_controllers);
    } catch (const SystemError&) {  // e.g. EBUSY: processes live in the run root
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
    add(method == SpawnMethod::clone3 ? "clone3 into a cgroup" : "fork + join cgroup", ok,
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

}  // namespace

DoctorReport run_doctor(const std::optional<Policy>& policy,
                        const std::optional<std::string>& cgroup_root) {
  DoctorReport report;
  // In subreaper mode the cgroup facts are still reported, but a run here needs none of them.
  bool cgroup_facts_optional = false;
  auto add = [&](std::string name, bool ok, std::string detail, std::string fix = {},
                 bool required = true) {
    report.checks.push_back({std::move(name), ok, required && !cgroup_facts_optional,
                             std::move(detail), std::move(fix)});
  };
  HostCgroups host = probe_host_cgroups();
  add("PID 1 is systemd", true,
      host.systemd_pid1 ? "yes: pollkill's cgroup must be delegated" : "no", {}, false);
  Policy effective = policy.value_or(default_policy());
  std::vector<LimitWrite> plan = plan_limits(effective.limits);
  std::vector<std::string> available;
  // The mode a run would use here, decided as `run` decides it.
  ModeDecision mode;
  try {
    mode = decide_mode(effective.runner.mode, [&] {
      return resolve_run_root(host, cgroup_root, effective, ::getenv("POLLKILL_CGROUP_ROOT"),
                              !controllers_for(plan).empty());
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
  } else {
    add("cgroup2 mount", true,
        host.mounts.cgroup2->string() + " (" + std::string(to_string(host.mounts.layout)) + ")");
    add("own cgroup", !host.own_cgroup.empty(),
        host.own_cgroup.empty() ? "unknown" : host.own_cgroup);
    // The policy checks below still run when the cgroup part fails: a user learns both.
    available = check_cgroups(host, cgroup_root, effective, !controllers_for(plan).empty(), add);
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
    auto [enforceable, missing] = split_enforceable(plan, available);
    bool ok = missing.empty();
    bool allowed = ok || effective.runner.missing_controllers == MissingControllers::warn;
    add("policy", ok,
        ok ? "every limit can be enforced here"
           : "cannot enforce: " + join(missing, ", ") +
                 (allowed ? " (runner.missing_controllers = \"warn\": runs without them)" : ""),
        "run on a pure cgroup v2 host with the controllers delegated, or set "
        "runner.missing_controllers = \"warn\"",
        !allowed);
    // The same preparation `run` does before anything is created: users, privileges for
    // namespaces and user changes, rlimits, paths, the seccomp filter.
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

}  // namespace pollkill
