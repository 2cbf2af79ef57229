#include "pollkill/limits.h"

#include <algorithm>
#include <cmath>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/hostcase.h"
#include "pollkill/systemd.h"

namespace pollkill {
namespace {

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

void add_once(std::vector<std::string>& keys, const std::string& key) {
  if (!contains(keys, key)) keys.push_back(key);
}

std::string join(const std::vector<std::string>& words, const char* sep, const char* quote = "") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : sep) + (quote + w + quote);
  return out;
}

// A size as a cgroup file takes it: bytes, or `unlimited` for kSizeMax ("max" in cgroup v2 and
// v1's pids.max; v1's memory files read "-1" as no limit and round bytes to pages themselves).
std::string size_text(std::uint64_t bytes, const char* unlimited) {
  return bytes == kSizeMax ? std::string(unlimited) : std::to_string(bytes);
}

// The cpu.max / cpu.cfs_quota_us quota for `cpus` CPUs in a 100 ms period.
std::uint64_t cpu_quota(double cpus, std::uint64_t period) {
  auto quota = static_cast<std::uint64_t>(std::llround(cpus * static_cast<double>(period)));
  return std::max<std::uint64_t>(quota, 1000);  // the kernel's minimum quota is 1 ms
}
constexpr std::uint64_t kCpuPeriod = 100000;

std::string missing_controller_message(const std::vector<std::string>& keys,
                                       const std::vector<std::string>& missing,
                                       const std::filesystem::path& root,
                                       const std::vector<std::string>& available) {
  return "the " + join(keys, ", ") + " limit" + (keys.size() > 1 ? "s need" : " needs") +
         " the cgroup v2 " + join(missing, ", ", "'") + " controller" +
         (missing.size() > 1 ? "s" : "") + ", which '" + root.string() +
         "' does not offer (cgroup.controllers: " +
         (available.empty() ? "none" : join(available, " ")) + ")";
}

// The fix for limits whose controllers are missing, by host case.
std::string missing_controller_fix(const HostCgroups& host, const RunRoot& root,
                                   const RunnerPolicy& runner,
                                   const std::vector<std::string>& unmet) {
  if (host.mounts.layout == CgroupLayout::hybrid) {
    return runner.cgroup_v1 == CgroupV1::off
               ? "this host mounts cgroup v2 beside v1 (hybrid) and keeps the controller in "
                 "v1: set runner.cgroup_v1 = \"auto\" (--cgroup-v1 auto) to enforce it "
                 "through the v1 hierarchy, boot with systemd.unified_cgroup_hierarchy=1 "
                 "for a pure cgroup v2 host, or set runner.missing_controllers = \"warn\" "
                 "to run without the limit"
               : "this hybrid host's v1 hierarchy cannot take it (see above): set "
                 "runner.cgroup_v1_root to a v1 cgroup you may write to, boot with "
                 "systemd.unified_cgroup_hierarchy=1, or set runner.missing_controllers "
                 "= \"warn\" to run without the limit";
  }
  if (host.scope_from_user_manager) {
    return user_manager_delegate_fix(unmet) +
           "; or set runner.missing_controllers = \"warn\" to run without the limit";
  }
  return controller_fix(host, root, kernel_controllers(host), unmet);
}

// Writes `w` into `dir`, or, for a swap file the kernel does not have, decides what its
// absence means (see apply_limits).
void write_limit(const CgroupDir& dir, const LimitWrite& w, MissingControllers missing,
                 std::vector<std::string>& not_enforced) {
  if (w.key == "swap" && !dir.has(w.attr)) {
    if (w.implied) return;
    if (missing == MissingControllers::error) {
      throw Error("the swap limit cannot be enforced: '" + (dir.path() / w.attr).string() +
                      "' does not exist (swap accounting is off)",
                  "boot with swapaccount=1, remove the swap limit, or set "
                  "runner.missing_controllers = \"warn\"");
    }
    add_once(not_enforced, "swap");
    return;
  }
  dir.write(w.attr, w.value);
}

}  // namespace

std::vector<LimitWrite> plan_limits(const Limits& limits) {
  std::vector<LimitWrite> plan;
  auto size = [](std::uint64_t bytes) { return size_text(bytes, "max"); };
  if (limits.memory) {
    plan.push_back({"memory.max", size(*limits.memory), "memory", "memory"});
    // Without a swap limit a memory-limited task would quietly page out instead of
    // reaching its limit; 0 makes memory mean memory unless the user says otherwise.
    plan.push_back({"memory.swap.max", size(limits.swap.value_or(0)), "swap", "memory",
                    !limits.swap.has_value()});
    // One OOM kill ends the whole task, not a random process inside it.
    plan.push_back({"memory.oom.group", "1", "memory", "memory", true});
  } else if (limits.swap) {
    plan.push_back({"memory.swap.max", size(*limits.swap), "swap", "memory"});
  }
  if (limits.memory_high) {
    plan.push_back({"memory.high", size(*limits.memory_high), "memory_high", "memory"});
  }
  if (limits.cpus) {
    plan.push_back(
        {"cpu.max",
         std::to_string(cpu_quota(*limits.cpus, kCpuPeriod)) + " " + std::to_string(kCpuPeriod),
         "cpus", "cpu"});
  }
  if (limits.pids) plan.push_back({"pids.max", size(*limits.pids), "pids", "pids"});
  return plan;
}

std::vector<std::string> controllers_for(const std::vector<LimitWrite>& plan) {
  std::vector<std::string> out;
  for (const auto& w : plan) add_once(out, w.controller);
  return out;
}

std::vector<std::string> keys_of(const std::vector<LimitWrite>& plan) {
  std::vector<std::string> out;
  for (const auto& w : plan) {
    if (!w.implied) add_once(out, w.key);
  }
  return out;
}

std::pair<std::vector<LimitWrite>, std::vector<std::string>> split_enforceable(
    const std::vector<LimitWrite>& plan, const std::vector<std::string>& available) {
  std::vector<LimitWrite> ok;
  std::vector<std::string> missing_keys;
  for (const auto& w : plan) {
    if (contains(available, w.controller)) {
      ok.push_back(w);
    } else if (!w.implied) {
      add_once(missing_keys, w.key);
    }
  }
  return {ok, missing_keys};
}

std::vector<LimitWrite> plan_limits_v1(const Limits& limits) {
  std::vector<LimitWrite> plan;
  auto size = [](std::uint64_t bytes) { return size_text(bytes, "-1"); };
  if (limits.memory) {
    plan.push_back({"memory.limit_in_bytes", size(*limits.memory), "memory", "memory"});
    // memsw counts memory plus swap, and may not be below limit_in_bytes: written second.
    std::uint64_t swap = limits.swap.value_or(0);
    std::uint64_t memsw =
        (*limits.memory == kSizeMax || swap == kSizeMax) ? kSizeMax : *limits.memory + swap;
    plan.push_back(
        {"memory.memsw.limit_in_bytes", size(memsw), "swap", "memory", !limits.swap.has_value()});
  }
  if (limits.cpus) {
    plan.push_back({"cpu.cfs_period_us", std::to_string(kCpuPeriod), "cpus", "cpu", true});
    plan.push_back(
        {"cpu.cfs_quota_us", std::to_string(cpu_quota(*limits.cpus, kCpuPeriod)), "cpus", "cpu"});
  }
  if (limits.pids) {
    plan.push_back({"pids.max", size_text(*limits.pids, "max"), "pids", "pids"});
  }
  return plan;
}

bool v1_can_enforce(std::string_view key, const Limits& limits) {
  if (key == "memory" || key == "cpus" || key == "pids") return true;
  if (key == "swap") return limits.memory.has_value();
  return false;
}

LimitSplit split_limits(const Limits& limits, const std::vector<std::string>& v2_available,
                        const std::vector<std::string>& v1_controllers) {
  LimitSplit split;
  for (const auto& w : plan_limits(limits)) {
    if (contains(v2_available, w.controller)) {
      split.v2.push_back(w);
    } else if (contains(v1_controllers, w.controller) && v1_can_enforce(w.key, limits)) {
      if (!w.implied) add_once(split.v1_keys, w.key);
    } else if (!w.implied) {
      add_once(split.not_enforced, w.key);
    }
  }
  for (const auto& w : plan_limits_v1(limits)) {
    if (contains(v1_controllers, w.controller) && !contains(v2_available, w.controller)) {
      split.v1.push_back(w);
    }
  }
  return split;
}

EnforceablePlan check_controllers(const HostCgroups& host, RunRoot& root,
                                  const std::vector<LimitWrite>& plan, const RunnerPolicy& runner) {
  std::vector<std::string> wanted = controllers_for(plan);
  std::vector<std::string> available = CgroupDir::open(root.path).controllers();
  EnforceablePlan out;
  std::vector<std::string> missing;
  for (const auto& c : wanted) {
    if (!contains(available, c)) missing.push_back(c);
  }
  // The v1 backend, for the controllers the unified hierarchy lacks.
  std::vector<std::string> v1_notes;
  if (runner.cgroup_v1 == CgroupV1::automatic) {
    for (const auto& c : missing) {
      if (std::find(std::begin(kV1LimitControllers), std::end(kV1LimitControllers), c) ==
          std::end(kV1LimitControllers)) {
        continue;
      }
      V1Placement place = place_v1(c, host.mounts, host.own_v1_cgroups, runner.cgroup_v1_root);
      if (place.usable) {
        out.v1_controllers.push_back(c);
        out.v1_bases.emplace_back(c, place.base);
      } else {
        v1_notes.push_back(place.why_not);
      }
    }
  }
  // The same keys v1_can_enforce accepts, judged from the plan (a batch's plan is the union of
  // its tasks'): swap only next to a memory limit, never memory_high.
  const bool plan_limits_memory = std::any_of(
      plan.begin(), plan.end(), [](const LimitWrite& w) { return w.attr == "memory.max"; });
  for (const auto& w : plan) {
    bool on_v2 = contains(available, w.controller);
    bool on_v1 = contains(out.v1_controllers, w.controller);
    if (on_v2) {
      out.enforceable.push_back(w);
    } else if (on_v1 && w.key != "memory_high" && (w.key != "swap" || plan_limits_memory)) {
      if (!w.implied) add_once(out.v1_keys, w.key);
    } else if (!w.implied) {
      add_once(out.not_enforced, w.key);
      if (on_v1 && w.key == "memory_high") {
        v1_notes.push_back(
            "cgroup v1 has no equivalent of memory.high (memory.soft_limit_in_bytes only acts "
            "under global memory pressure)");
      } else if (on_v1) {
        v1_notes.push_back("cgroup v1 limits swap only together with memory (memsw)");
      }
    }
  }
  if (!out.not_enforced.empty()) {
    // Controllers of the keys still not enforced, for the message.
    std::vector<std::string> unmet;
    for (const auto& w : plan) {
      if (!w.implied && contains(out.not_enforced, w.key)) add_once(unmet, w.controller);
    }
    std::string message = missing_controller_message(out.not_enforced, unmet, root.path, available);
    for (const auto& note : v1_notes) message += "; " + note;
    if (runner.missing_controllers == MissingControllers::error) {
      throw Error(message, missing_controller_fix(host, root, runner, unmet));
    }
    diag::warning(message + "; running without " +
                  (out.not_enforced.size() > 1 ? "these limits" : "this limit"));
  }
  // The controllers are there, but a cgroup other than the hierarchy root cannot enable them
  // for its children while processes live in it. pollkill moves itself out into a leaf; other
  // processes it did not start it leaves where they are, so that case is told apart here,
  // naming them, before anything is created. (cgroup v1 has no such rule.)
  if (!controllers_for(out.enforceable).empty()) {
    const std::vector<pid_t> others = other_processes_in(root);
    if (!others.empty()) {
      const std::vector<std::string> keys = keys_of(out.enforceable);
      const std::string message = "the " + join(keys, ", ") + " limit" +
                                  (keys.size() > 1 ? "s need" : " needs") +
                                  " controllers enabled for pollkill's task cgroups, but " +
                                  sharing_message(root.path, describe_pids(others));
      if (runner.missing_controllers == MissingControllers::error) {
        throw Error(message, sharing_fix(root.path));
      }
      diag::warning(message + "; running without " +
                    (keys.size() > 1 ? "these limits" : "this limit"));
      out.not_enforced.insert(out.not_enforced.end(), keys.begin(), keys.end());
      out.enforceable.clear();
    }
  }
  // No cgroup v2 controller to enable: no reason to leave the cgroup pollkill was started in.
  if (controllers_for(out.enforceable).empty()) root.move_self_to_leaf = false;
  return out;
}

void apply_limits(const CgroupDir& dir, const V1TaskCgroups& v1, const LimitSplit& split,
                  MissingControllers missing, std::vector<std::string>& not_enforced,
                  std::vector<std::string>& v1_keys) {
  for (const auto& w : split.v2) write_limit(dir, w, missing, not_enforced);
  for (const auto& w : split.v1) {
    const CgroupDir* v1_dir = v1.dir_for(w.controller);
    if (!v1_dir) {
      throw Error("no cgroup v1 " + w.controller + " task cgroup for the " + w.key + " limit");
    }
    write_limit(*v1_dir, w, missing, not_enforced);
  }
  // swap, when v1 does not account it
  std::erase_if(v1_keys, [&](const std::string& key) { return contains(not_enforced, key); });
}

}  // namespace pollkill
