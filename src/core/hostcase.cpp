#include "pollkill/hostcase.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "pollkill/error.h"

namespace pollkill {
namespace fs = std::filesystem;
namespace {

// The controllers pollkill's limits use, and the limits each one enforces.
struct ControllerLimit {
  const char* controller;
  const char* flags;
};
constexpr ControllerLimit kControllerLimits[] = {
    {"memory", "--memory, --memory-high, --swap"},
    {"cpu", "--cpus"},
    {"pids", "--pids"},
};

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::string join(const std::vector<std::string>& words, const char* sep) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : sep) + w;
  return out;
}

std::string offers(const std::vector<std::string>& controllers) {
  return controllers.empty() ? "no controller" : join(controllers, " ");
}

// The controllers pollkill uses that the run root lacks, in kControllerLimits order.
std::vector<std::string> not_delegated(const HostFacts& f) {
  std::vector<std::string> out;
  for (const auto& cl : kControllerLimits) {
    if (!contains(f.run_root_controllers, cl.controller)) out.emplace_back(cl.controller);
  }
  return out;
}

std::string run_root_words(const RunRoot& root) {
  return "'" + root.path.string() + "'";
}

}  // namespace

std::string_view to_string(HostCase c) {
  switch (c) {
    case HostCase::no_cgroup: return "no usable cgroup";
    case HostCase::hybrid: return "hybrid";
    case HostCase::cgroup_namespace: return "cgroup namespace";
    case HostCase::pure_root: return "pure cgroup v2, hierarchy root";
    case HostCase::delegated: return "delegated subtree";
    case HostCase::partly_delegated: return "partly delegated subtree";
  }
  return "unknown";
}

std::string sharing_message(const fs::path& run_root,
                            const std::vector<std::string>& others_described) {
  const size_t n = others_described.size();
  std::vector<std::string> shown(
      others_described.begin(),
      others_described.begin() + static_cast<long>(std::min<size_t>(n, 3)));
  std::string list = join(shown, ", ");
  if (n > shown.size()) list += ", and " + std::to_string(n - shown.size()) + " more";
  return "'" + run_root.string() + "' also holds " + std::to_string(n) + " other process" +
         (n == 1 ? "" : "es") + " (" + list +
         "), and a cgroup with processes in it cannot enable controllers for its children "
         "(cgroup v2's no-internal-processes rule: writing its cgroup.subtree_control fails "
         "with EBUSY)";
}

std::string sharing_fix(const fs::path& run_root) {
  return "start pollkill in a cgroup of its own: move the other processes into a child "
         "cgroup of '" +
         run_root.string() +
         "', start pollkill under `systemd-run --scope -p Delegate=yes`, or pass --cgroup-root "
         "with an empty cgroup that has the controllers; or set runner.missing_controllers = "
         "\"warn\" to run without these limits";
}

std::string controller_fix(const HostCgroups& host, const RunRoot& root,
                           const std::vector<std::string>& kernel,
                           const std::vector<std::string>& controllers) {
  const std::string names = join(controllers, ", ");
  const bool several = controllers.size() > 1;
  const std::string it = several ? "them" : "it";
  const std::string warn = "; or set runner.missing_controllers = \"warn\" to run without " + it;
  if (host.mounts.layout == CgroupLayout::hybrid) {
    return "this hybrid host keeps " + names +
           " in cgroup v1: set runner.cgroup_v1 = \"auto\" (--cgroup-v1 auto) to enforce " + it +
           " there, or boot with systemd.unified_cgroup_hierarchy=1 for a pure cgroup v2 host" +
           warn;
  }
  std::vector<std::string> absent;
  for (const auto& c : controllers) {
    if (!kernel.empty() && !contains(kernel, c)) absent.push_back(c);
  }
  if (!absent.empty()) {
    return "the kernel offers no " + join(absent, ", ") +
           " controller (not built in, or turned off with cgroup_disable= on the kernel "
           "command line)" +
           warn;
  }
  std::string plus;
  for (const auto& c : controllers) plus += (plus.empty() ? "+" : " +") + c;
  if (host.mounts.cgroup2 && root.path == *host.mounts.cgroup2 && !host.mount_is_hierarchy_root) {
    return "this container's cgroup (the cgroup namespace's root) was not given " + names +
           ": whoever starts the container must enable " + it + " for it (`" + plus +
           "` in the cgroup.subtree_control of its parent cgroup, on the host)" + warn;
  }
  const fs::path parent = root.path.parent_path();
  return "enable " + it + " for '" + root.path.string() +
         "' in its parent, as the parent's owner: `echo " + (several ? "'" + plus + "'" : plus) +
         " > " + (parent / "cgroup.subtree_control").string() + "` (each ancestor must enable " +
         it +
         " too), or start pollkill under `systemd-run --scope -p Delegate=yes`, which delegates "
         "every controller" +
         warn;
}

std::vector<std::string> kernel_controllers(const HostCgroups& host) {
  std::vector<std::string> out;
  if (!host.mounts.cgroup2) return out;
  if (host.mount_is_hierarchy_root) {
    try {
      return CgroupDir::open(*host.mounts.cgroup2).controllers();
    } catch (const Error&) {
      return out;
    }
  }
  // "#subsys_name hierarchy num_cgroups enabled"
  std::ifstream in("/proc/cgroups");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string name;
    int hierarchy = -1, count = 0, enabled = 0;
    if (words >> name >> hierarchy >> count >> enabled && enabled == 1) out.push_back(name);
  }
  return out;
}

HostAssessment assess_host(const HostFacts& f) {
  HostAssessment a;
  const std::string time_limits = "wall_time, cpu_time, hang, spin";
  const std::string time_flags = "--wall-time, --cpu-time, --hang-after, --spin-after";

  if (!f.host.mounts.cgroup2 || !f.run_root) {
    a.kind = HostCase::no_cgroup;
    a.detail = f.host.mounts.cgroup2 ? f.run_root_error
                                     : "no cgroup2 hierarchy is mounted (" +
                                           std::string(to_string(f.host.mounts.layout)) + ")";
    a.fix = f.host.mounts.cgroup2
                ? f.run_root_fix
                : "mount cgroup2 (`mount -t cgroup2 none /sys/fs/cgroup/unified`) "
                  "or boot with systemd.unified_cgroup_hierarchy=1";
    for (const auto& cl : kControllerLimits) {
      a.limits.push_back(
          {cl.controller, cl.flags, cl.controller, false, "unavailable: no usable cgroup", ""});
    }
    // Subreaper mode (--mode auto picks it here) measures them from /proc.
    a.limits.push_back({time_limits, time_flags, "", true,
                        "in subreaper mode (--mode auto or subreaper): from the processes' own "
                        "counters in /proc",
                        ""});
    return a;
  }

  const RunRoot& root = *f.run_root;
  const std::vector<std::string> missing = not_delegated(f);
  const std::string missing_words =
      missing.empty() ? "" : "; not delegated: " + join(missing, ", ");
  if (f.host.mounts.layout == CgroupLayout::hybrid) {
    a.kind = HostCase::hybrid;
    a.detail = "cgroup2 at " + f.host.mounts.cgroup2->string() +
               " (tracking, events, kill) beside cgroup v1 (" +
               join(f.host.mounts.v1_controllers, ", ") + "); the run root " +
               run_root_words(root) + " offers " + offers(f.run_root_controllers);
  } else if (!f.host.mount_is_hierarchy_root) {
    a.kind = HostCase::cgroup_namespace;
    a.detail = "the cgroup2 mount " + f.host.mounts.cgroup2->string() +
               " starts at a cgroup namespace's root, not the hierarchy root (own cgroup " +
               f.host.own_cgroup + "); the run root " + run_root_words(root) + " offers " +
               offers(f.run_root_controllers) + missing_words;
  } else if (root.hierarchy_root) {
    a.kind = HostCase::pure_root;
    a.detail = f.host.mounts.cgroup2->string() + " offers " + offers(f.run_root_controllers);
  } else {
    a.kind = missing.empty() ? HostCase::delegated : HostCase::partly_delegated;
    a.detail = run_root_words(root) + " offers " + offers(f.run_root_controllers) + missing_words;
  }
  if (!f.others.empty()) a.detail += "; " + sharing_message(root.path, f.others_described);

  for (const auto& cl : kControllerLimits) {
    LimitAvailability limit{cl.controller, cl.flags, cl.controller, false, "", ""};
    if (!contains(f.run_root_controllers, cl.controller)) {
      limit.detail = "the " + std::string(cl.controller) + " controller is not available in '" +
                     root.path.string() + "'";
      limit.fix = controller_fix(f.host, root, f.kernel_controllers, {cl.controller});
    } else if (!f.others.empty()) {
      limit.detail = "the " + std::string(cl.controller) +
                     " controller is delegated, but cannot be enabled for task cgroups while "
                     "other processes share '" +
                     root.path.string() + "' (" + join(f.others_described, ", ") + ")";
      limit.fix = sharing_fix(root.path);
    } else {
      limit.available = true;
      limit.detail =
          "the " + std::string(cl.controller) + " controller" +
          (root.move_self_to_leaf ? " (pollkill moves itself into a leaf to enable it)" : "");
    }
    a.limits.push_back(std::move(limit));
  }
  a.limits.push_back({time_limits, time_flags, "", true, "from cpu.stat, on every cgroup", ""});
  return a;
}

std::vector<std::string> describe_pids(const std::vector<pid_t>& pids) {
  std::vector<std::string> out;
  for (pid_t pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    std::getline(in, comm);
    out.push_back("pid " + std::to_string(pid) + " (" + (comm.empty() ? "?" : comm) + ")");
  }
  return out;
}

std::vector<pid_t> other_processes_in(const RunRoot& root) {
  if (root.hierarchy_root) return {};
  std::vector<pid_t> others;
  try {
    for (int pid : CgroupDir::open(root.path).procs()) {
      if (pid != ::getpid()) others.push_back(pid);
    }
  } catch (const Error&) {
    return {};
  }
  return others;
}

int jobs_for(int affinity_cpus, std::string_view cpu_max) {
  int cpus = std::max(1, affinity_cpus);
  char quota[32] = {};
  unsigned long long period = 0;
  std::string text(cpu_max);
  if (std::sscanf(text.c_str(), "%31s %llu", quota, &period) == 2 &&
      std::string_view(quota) != "max" && period > 0) {
    double q = std::strtod(quota, nullptr) / static_cast<double>(period);
    if (q > 0) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(q))));
  }
  return cpus;
}

int default_jobs() {
  int cpus = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  std::string cpu_max;
  try {
    CgroupMounts mounts = probe_cgroup_mounts();
    std::string own = probe_own_cgroup();
    if (mounts.cgroup2 && !own.empty()) {
      if (auto text = CgroupDir::open(*mounts.cgroup2 / own.substr(1)).try_read("cpu.max"))
        cpu_max = *text;
    }
  } catch (const std::exception&) {
    // No cgroup to read: the affinity mask alone decides.
  }
  return jobs_for(cpus, cpu_max);
}

HostFacts probe_host_facts(const HostCgroups& host, const std::optional<std::string>& flag,
                           const Policy& policy, bool needs_controllers) {
  HostFacts f;
  f.host = host;
  if (!host.mounts.cgroup2) return f;
  try {
    f.run_root = resolve_run_root(host, flag, policy, cgroup_root_env(), needs_controllers);
  } catch (const Error& e) {
    f.run_root_error = e.what();
    f.run_root_fix = e.hint();
    return f;
  }
  try {
    f.run_root_controllers = CgroupDir::open(f.run_root->path).controllers();
  } catch (const Error&) {
  }
  f.kernel_controllers = kernel_controllers(host);
  f.others = other_processes_in(*f.run_root);
  f.others_described = describe_pids(f.others);
  return f;
}

}  // namespace pollkill
