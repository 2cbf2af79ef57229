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
#include <string_view>
#include <vector>

#include "pollkill/fd.h"
#include "pollkill/policy.h"

namespace pollkill {

/// One mount(2) call in the task's mount namespace. Empty strings are passed as NULL.
struct MountStep {
  std::string source, target, fstype, data;
  unsigned long flags = 0;
  /// Instead of mount(2): mount_setattr(2) with AT_RECURSIVE, making `target` (a mount root)
  /// and every mount below it read-only (Linux 5.12).
  bool read_only_tree = false;
  /// A target that is gone by then is skipped: a host socket removed since the plan was made.
  bool skip_missing = false;
  std::string describe() const;  ///< "mount tmpfs on /tmp", for error messages
};

/// A memory area of pollkill's own process: the pid namespace's init, a fork of pollkill,
/// clears its copy of pollkill's arguments and environment there, so that the task cannot
/// read pollkill's command line from /proc/1/cmdline.
struct MemoryArea {
  char* start = nullptr;
  std::size_t size = 0;
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
  /// user = "dynamic": spawn takes a uid of this range for each task (take_dynamic_uid) and
  /// runs it as that uid, with `gid` as its group when set, else the same number.
  std::optional<UidRange> dynamic_uids;
  /// The task's own temporary areas, given to its user (when it has one) after the mounts.
  std::vector<std::string> owned_by_task;
  /// With a pid namespace: pollkill's arguments and environment, which the init clears.
  MemoryArea init_arguments, init_environment;
  bool no_new_privs = true;
  std::vector<sock_filter> seccomp;  ///< empty: no filter
};

/// Prepares the plan for `policy`, starting from pollkill's own environment `environment`.
/// Throws Error, before anything has been created, when the policy asks for something this
/// process cannot do: an unknown user or group, a user change or namespaces without root
/// (CAP_SETUID/CAP_SETGID, CAP_SYS_ADMIN), an rlimit above the hard limit without
/// CAP_SYS_RESOURCE, a seccomp filter with no_new_privs = false and a dropped user, a path to
/// make read-only or hide that does not exist, read_only on a kernel without mount_setattr
/// (before 5.12), dynamic uids that overlap a range of /etc/subuid or /etc/subgid.
///
/// The mounts, in order: the whole tree private; each read_only path with every mount below
/// it read-only; a fresh /proc (pid namespace); an empty tmpfs on /tmp, /var/tmp and /dev/shm
/// (private_tmp; the last two where they exist); each hide path covered; and with the net
/// namespace, /dev/null on every pathname unix socket of the host that /proc/net/unix lists
/// outside those areas, so that "no network" holds for unix sockets too.
SandboxPlan prepare_sandbox(const Policy& policy, const std::vector<std::string>& environment);

/// pollkill's own environment as "NAME=value" strings (what prepare_sandbox starts from).
std::vector<std::string> current_environment();

/// The absolute paths of the unix sockets bound in /proc/net/unix text, each once, in order.
/// Abstract (`@...`) and unnamed sockets are left out: the net namespace already separates
/// those. Pure.
std::vector<std::string> bound_unix_socket_paths(std::string_view proc_net_unix);

/// Where pollkills on this host record the dynamic uids in use: one lock file per uid, held
/// with flock(2) by the pollkill whose task runs as it. Every pollkill that shares the host's
/// uids must use this same directory, so it is fixed.
inline constexpr const char* kDynamicUidLockDir = "/run/pollkill/dynamic-uids";

/// A uid taken for one task, and the lock that keeps other pollkills off it: closing `lock`
/// gives it back.
struct DynamicUid {
  uid_t uid = 0;
  UniqueFd lock;
};

/// Takes the first uid of `range` that no user or group entry names, whose lock in `lock_dir`
/// (created 0755 when missing; refused unless it is a directory of this user that no one else
/// may write to) no other pollkill holds, and as which no process runs (uid_has_processes),
/// checked after the lock is taken so that no process can appear as it meanwhile. A pollkill
/// that was SIGKILLed gave its lock back at once, and its task's processes may still live for
/// a moment: the process check is what keeps their uid from the next task. Throws Error when
/// every uid of the range is in use.
DynamicUid take_dynamic_uid(const UidRange& range,
                            const std::string& lock_dir = kDynamicUidLockDir);

/// Whether any process or thread (zombies included) runs as `uid` anywhere on the host, in
/// every pid namespace: a child takes the uid with RLIMIT_NPROC at 2 and forks, which the
/// kernel allows only while the child is the uid's only process. Needs root (CAP_SETUID).
bool uid_has_processes(uid_t uid);

/// The task's environment: pollkill's (or, with clear_env, only the pass_env variables of it),
/// then every `env` entry set on top. Pure.
std::vector<std::string> task_environment(const SandboxPolicy& sandbox,
                                          const std::vector<std::string>& environment);

}  // namespace pollkill
