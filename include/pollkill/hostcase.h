// Which kind of host pollkill is on, and which limits it can enforce there: the
// classification `pollkill doctor` prints. `assess_host` is pure (unit tests feed it fake
// layouts); `probe_host_facts` reads the facts from the running system.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pollkill/cgroup.h"

namespace pollkill {

/// The host cases pollkill tells apart, in the order they are decided.
enum class HostCase {
  no_cgroup,         ///< no cgroup pollkill can use: v1 only, a read-only mount, no delegation
  hybrid,            ///< cgroup2 mounted beside cgroup v1 controller hierarchies
  cgroup_namespace,  ///< the cgroup2 mount's root is a namespace root (a container)
  pure_root,         ///< pure cgroup v2, the run root is the hierarchy root
  delegated,         ///< a non-root run root offered every controller pollkill uses
  partly_delegated,  ///< a non-root run root offered only some of them
};
/// "no usable cgroup", "hybrid", "cgroup namespace", "pure cgroup v2, hierarchy root",
/// "delegated subtree", "partly delegated subtree".
std::string_view to_string(HostCase c);

/// Everything the classification looks at.
struct HostFacts {
  HostCgroups host;  ///< mounts, own cgroup, whether the mount's root is the hierarchy root
  /// The controllers the kernel offers (see kernel_controllers()).
  std::vector<std::string> kernel_controllers;
  /// The run root pollkill would use, or why there is none.
  std::optional<RunRoot> run_root;
  std::string run_root_error;
  std::string run_root_fix;
  std::vector<std::string> run_root_controllers;  ///< its cgroup.controllers
  /// Processes other than pollkill in a run root that is not the hierarchy root: while
  /// any is there, no controller can be enabled for its children (EBUSY).
  std::vector<pid_t> others;
  std::vector<std::string> others_described;  ///< "pid 12 (sleep)", same order
};

/// A limit (or group of limits) and whether this host can enforce it.
struct LimitAvailability {
  std::string name;        ///< "memory", "cpu", "pids", "wall_time, cpu_time, hang, spin"
  std::string flags;       ///< the flags that set it: "--memory, --memory-high, --swap"
  std::string controller;  ///< the cgroup v2 controller it needs; empty: none
  bool available = false;
  std::string detail;  ///< what was found
  std::string fix;     ///< what to do when it is not available
};

/// The case, one line saying what the host offers, and each limit.
struct HostAssessment {
  HostCase kind = HostCase::no_cgroup;
  std::string detail;
  std::string fix;  ///< for no_cgroup
  std::vector<LimitAvailability> limits;
};

/// Classifies the host (pure).
HostAssessment assess_host(const HostFacts& facts);

/// What to do about `controllers` that `root` does not offer (pure), for both `doctor` and
/// the missing-controller error: enable them one level up (naming the parent's
/// cgroup.subtree_control), or how this host case gets them. `kernel` as from
/// kernel_controllers(); empty when unknown.
std::string controller_fix(const HostCgroups& host, const RunRoot& root,
                           const std::vector<std::string>& kernel,
                           const std::vector<std::string>& controllers);

/// One sentence about processes that keep controllers from being enabled in `run_root`:
/// "'<path>' also holds 2 other processes (pid 12 (sleep), pid 13 (bash)) ...".
std::string sharing_message(const std::filesystem::path& run_root,
                            const std::vector<std::string>& others_described);
/// The fix for that case.
std::string sharing_fix(const std::filesystem::path& run_root);

/// Reads the facts: mountinfo, /proc/self/cgroup, the run root (resolved as `run` would,
/// with `flag` as --cgroup-root and `needs_controllers` as the policy's limits demand),
/// cgroup.controllers, cgroup.procs, /proc/cgroups.
HostFacts probe_host_facts(const HostCgroups& host, const std::optional<std::string>& flag,
                           const Policy& policy, bool needs_controllers);

/// The controllers the kernel offers: the hierarchy root's cgroup.controllers, or, where the
/// mount does not show the hierarchy root (a cgroup namespace), the enabled entries of
/// /proc/cgroups. Empty when neither can be read.
std::vector<std::string> kernel_controllers(const HostCgroups& host);

/// "pid 12 (sleep)" for each pid (comm from /proc/PID/comm; "?" when it is gone).
std::vector<std::string> describe_pids(const std::vector<pid_t>& pids);

/// The CPUs this process may use (`batch`'s default --jobs): its affinity mask, lowered to the
/// quota of its cgroup's cpu.max (rounded up) when there is one; at least 1.
int default_jobs();
/// The pure part of default_jobs: `affinity_cpus` lowered to ceil(quota / period) of a
/// cpu.max text ("150000 100000" -> 2; "max 100000" or "" -> no change); at least 1.
int jobs_for(int affinity_cpus, std::string_view cpu_max);

/// The processes in `root`'s cgroup.procs other than the calling process, when `root` is
/// not the hierarchy root (the hierarchy root is exempt from the no-internal-processes
/// rule); empty otherwise or when unreadable.
std::vector<pid_t> other_processes_in(const RunRoot& root);

}  // namespace pollkill
