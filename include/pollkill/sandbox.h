// Everything `[sandbox]` and `[seccomp]` ask of the task, worked out in pollkill before the
// clone: user and group ids, the environment, rlimits, the namespaces and the mounts, the BPF
// filter. The child then only has to make system calls (see spawn.cpp).
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/policy.h"

namespace pollkill {

/// One mount(2) call in the task's mount namespace. Empty strings are passed as NULL.
struct MountStep {
  std::string source, target, fstype, data;
  unsigned long flags = 0;
  std::string describe() const;  ///< "mount tmpfs on /tmp", for error messages
};

struct SandboxPlan {
  std::vector<std::string> env;  ///< the task's environment, "NAME=value"
  /// Namespaces created by clone3 itself (CLONE_NEW*). The cgroup namespace is not among
  /// them: the child unshares it once it is inside its task cgroup, so that the task cgroup
  /// (not pollkill's) is the namespace's root.
  std::uint64_t clone_flags = 0;
  bool new_cgroup_ns = false;
  bool pid_init = false;  ///< the cloned child is PID 1: it forks the task and acts as init
  bool loopback_up = false;
  std::string hostname;  ///< empty: leave it
  std::vector<MountStep> mounts;
  std::vector<std::pair<int, rlimit>> rlimits;  ///< RLIMIT_* resource, soft = hard
  int umask = -1;                               ///< -1: inherit
  std::string cwd;                              ///< empty: inherit
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;  ///< set with uid (supplementary groups are dropped)
  bool no_new_privs = true;
  std::vector<sock_filter> seccomp;  ///< empty: no filter
};

/// Prepares the plan for `policy`, starting from pollkill's own environment `environment`.
/// Throws Error, before anything has been created, when the policy asks for something this
/// process cannot do: an unknown user or group, a user change or namespaces without root
/// (CAP_SETUID/CAP_SETGID, CAP_SYS_ADMIN), an rlimit above the hard limit without
/// CAP_SYS_RESOURCE, a seccomp filter with no_new_privs = false and a dropped user, a path to
/// make read-only or hide that does not exist.
SandboxPlan prepare_sandbox(const Policy& policy, const std::vector<std::string>& environment);

/// pollkill's own environment as "NAME=value" strings (what prepare_sandbox starts from).
std::vector<std::string> current_environment();

/// The task's environment: pollkill's (or, with clear_env, only the pass_env variables of it),
/// then every `env` entry set on top. Pure.
std::vector<std::string> task_environment(const SandboxPolicy& sandbox,
                                          const std::vector<std::string>& environment);

}  // namespace pollkill
