// The one home of cgroup limits: which attribute writes enforce a policy's limits (the plan,
// for cgroup v2 and, on hybrid hosts, for the v1 hierarchies), which of them the run root can
// take (the controller check, once per invocation), how a task's limits split between the two
// backends, and the writes into a task's cgroups. Everything above (session, launcher) calls
// down into this module; nothing here calls back up.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/cgroup_v1.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/policy.h"

namespace pollkill {

// ---- plans (pure) ----

/// One cgroup attribute write that applies a limit.
struct LimitWrite {
  std::string attr;   ///< e.g. "memory.max"
  std::string value;  ///< e.g. "67108864"
  std::string key;    ///< the policy key it enforces, e.g. "memory"
  std::string controller;
  /// Written because another key implies it (swap = 0 and oom.group with memory), not
  /// because the user set it: when unenforceable it is not reported on its own.
  bool implied = false;
};

/// The writes that enforce `limits` (pure): memory.max, memory.swap.max (0 unless swap is
/// set), memory.oom.group=1, memory.high, cpu.max ("QUOTA 100000"), pids.max.
std::vector<LimitWrite> plan_limits(const Limits& limits);

/// The controllers a plan needs, without duplicates, in a stable order.
std::vector<std::string> controllers_for(const std::vector<LimitWrite>& plan);

/// The policy keys a plan enforces that the user set (implied writes left out), without
/// duplicates, in plan order.
std::vector<std::string> keys_of(const std::vector<LimitWrite>& plan);

/// Splits a plan into what `available` controllers can enforce and the policy keys that
/// cannot be enforced (for the result's limits_not_enforced).
std::pair<std::vector<LimitWrite>, std::vector<std::string>> split_enforceable(
    const std::vector<LimitWrite>& plan, const std::vector<std::string>& available);

/// The v1 writes that enforce `limits` (pure), for the memory, cpu and pids controllers:
/// memory.limit_in_bytes; memory.memsw.limit_in_bytes = memory + swap (swap 0 unless set, as
/// on v2; implied); cpu.cfs_period_us = 100000 and cpu.cfs_quota_us; pids.max. memory_high has
/// no v1 equivalent (memory.soft_limit_in_bytes only acts under global memory pressure, which
/// is not what memory.high promises), nor has a swap limit without a memory limit.
std::vector<LimitWrite> plan_limits_v1(const Limits& limits);

/// Whether the v1 backend can enforce policy key `key` (pure): memory, cpus, pids, and swap
/// when `limits` also sets memory.
bool v1_can_enforce(std::string_view key, const Limits& limits);

/// A task's limits split between the two backends (pure).
struct LimitSplit {
  std::vector<LimitWrite> v2;             ///< writes to the unified task cgroup
  std::vector<LimitWrite> v1;             ///< writes to the v1 task cgroups
  std::vector<std::string> v1_keys;       ///< policy keys enforced through v1 (the result's
                                          ///< limits_cgroup_v1), implied ones not listed
  std::vector<std::string> not_enforced;  ///< policy keys neither backend can enforce
};
/// `v2_available`: the controllers the unified run cgroup enables; `v1_controllers`: those
/// whose limits go through v1 (never one of `v2_available`).
LimitSplit split_limits(const Limits& limits, const std::vector<std::string>& v2_available,
                        const std::vector<std::string>& v1_controllers);

// ---- the controller check (once per invocation) ----

/// Which limit writes the run root can enforce, and which controllers go through cgroup v1
/// instead: with runner.cgroup_v1 = "auto", a controller the run root lacks whose v1
/// hierarchy is mounted and writable (place_v1). A v2 controller must be offered by the run
/// root's cgroup.controllers, and a run root other than the hierarchy root must hold no
/// process but pollkill (other processes keep controllers from being enabled for its children:
/// EBUSY). When some limits cannot be enforced: with runner.missing_controllers = "error"
/// throws Error naming the controllers (or the other processes), why v1 could not help, the
/// cgroup and the fix; with "warn" prints a warning and returns the keys in `not_enforced`.
/// Clears root.move_self_to_leaf when no v2 controller is left to enable.
struct EnforceablePlan {
  std::vector<LimitWrite> enforceable;  ///< the v2 writes
  std::vector<std::string> not_enforced;
  std::vector<std::string> v1_controllers;  ///< controllers whose limits go through v1
  /// (controller, base directory in its v1 hierarchy) for RunCgroup::prepare.
  std::vector<std::pair<std::string, std::filesystem::path>> v1_bases;
  std::vector<std::string> v1_keys;  ///< policy keys enforced through v1 (all tasks)
};
EnforceablePlan check_controllers(const HostCgroups& host, RunRoot& root,
                                  const std::vector<LimitWrite>& plan, const RunnerPolicy& runner);

// ---- the writes (per task) ----

/// Writes a task's limits: `split.v2` into its unified cgroup `dir`, `split.v1` into its v1
/// cgroups `v1`. A swap file (memory.swap.max, v1's memory.memsw.limit_in_bytes) is absent
/// when the kernel does not account swap: an implied swap limit of 0 cannot matter there and
/// is skipped; an explicit one is an Error with `missing` = error, else its key goes to
/// `not_enforced` (and leaves `v1_keys`). Throws SystemError for a write the kernel refuses.
void apply_limits(const CgroupDir& dir, const V1TaskCgroups& v1, const LimitSplit& split,
                  MissingControllers missing, std::vector<std::string>& not_enforced,
                  std::vector<std::string>& v1_keys);

}  // namespace pollkill
