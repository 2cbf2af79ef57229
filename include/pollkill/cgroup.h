// Task cgroups: where they live (the run root), the run cgroup that holds them, killing
// everything inside, and removing them. The limits written into them are limits.h's.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pollkill/cgroupfs.h"
#include "pollkill/policy.h"

namespace pollkill {

/// Facts about this host's cgroups that the run-root decision needs.
struct HostCgroups {
  CgroupMounts mounts;
  std::string own_cgroup;  ///< e.g. "/" or "/user.slice/.../session-2.scope"
  /// The cgroup v1 paths by controller (hybrid hosts), e.g. memory -> "/user.slice".
  std::map<std::string, std::string, std::less<>> own_v1_cgroups;
  bool systemd_pid1 = false;  ///< PID 1 is systemd (its cgroups need delegation)
  bool root_user = false;     ///< effective uid 0
  /// The mount's root directory is the kernel's root cgroup. False inside a cgroup namespace
  /// (the mount starts at the namespace's root, a cgroup like any other: it has a
  /// cgroup.type file, which the real root lacks).
  bool mount_is_hierarchy_root = true;
  /// pollkill started the scope it lives in with Delegate=yes (systemd.h), so its own cgroup
  /// is delegated even where systemd sets no delegation mark (before systemd 251).
  bool own_delegated = false;
  /// That scope came from the user's manager: a missing controller is one the user manager
  /// does not delegate, and the fix is a user@.service drop-in.
  bool scope_from_user_manager = false;
};
HostCgroups probe_host_cgroups();

/// Whether the process's own cgroup qualifies as a run root by itself: the hierarchy root
/// always does; a non-root one must be writable and, on a systemd host, delegated (a
/// trusted.delegate / user.delegate mark, or `own_delegated`). When not, `why_not` (if given)
/// receives a phrase such as "its own cgroup '/system.slice/x.service' is not writable".
bool own_cgroup_usable(const HostCgroups& host, std::string* why_not = nullptr);

/// Where this invocation's run cgroup will be created, and why.
struct RunRoot {
  std::filesystem::path path;  ///< absolute path under the cgroup2 mount
  std::string source;          ///< "--cgroup-root", "runner.cgroup_root", ... for messages
  /// pollkill must first move itself out of `path` into a leaf beneath it: `path` is its own,
  /// non-root cgroup and controllers must be enabled there (no-internal-processes rule).
  bool move_self_to_leaf = false;
  /// `path` is the kernel's root cgroup, exempt from the no-internal-processes rule.
  bool hierarchy_root = false;
};

/// POLLKILL_CGROUP_ROOT: a run root given through the environment, for resolve_run_root's
/// `env_value`; null when unset. The one place pollkill reads it.
const char* cgroup_root_env();

/// Resolves the run root in this order: `flag` (--cgroup-root), policy runner.cgroup_root,
/// `env_value` (POLLKILL_CGROUP_ROOT); then the process's own cgroup when usable (the
/// hierarchy root always is; a non-root one must be writable and, on a systemd host, carry
/// a delegation mark); then, as root, "<mount>/pollkill" (created). A root given explicitly
/// may be an absolute path under the mount or a path relative to it; it is created if missing.
/// `needs_controllers` says whether limits need controllers enabled (deciding whether a
/// non-root own cgroup requires moving pollkill into a leaf). Throws Error with a remedy.
RunRoot resolve_run_root(const HostCgroups& host, const std::optional<std::string>& flag,
                         const Policy& policy, const char* env_value, bool needs_controllers);

/// How a cgroup's processes are killed. cgroup.kill appeared in Linux 5.14; before that (or
/// when forced for tests) freeze the cgroup, SIGKILL every pid, thaw, until it is empty.
enum class KillMethod { cgroup_kill, freeze_and_kill };

/// Kills every process in `dir` (and its descendants). Returns the pids seen inside at the
/// time of the kill. Does not wait for the cgroup to empty.
std::vector<int> kill_cgroup(const CgroupDir& dir, KillMethod method);

/// Processes in `path` and every cgroup below it, counted from cgroup.procs (each line one
/// process, those of other PID namespaces, which read as 0, included).
std::size_t count_cgroup_processes(const std::filesystem::path& path);

/// Sends `sig` to every process listed in cgroup.procs (a polite SIGTERM before the kill).
std::vector<int> signal_cgroup(const CgroupDir& dir, int sig);

/// Waits (polling cgroup.events, 5 ms steps) until `dir` is no longer populated; false on
/// timeout.
bool wait_unpopulated(const CgroupDir& dir, Duration timeout);

/// Removes a cgroup directory, retrying EBUSY for a bounded time (its last processes may
/// still be exiting). Missing is fine. Throws on other errors or when the time runs out.
void remove_cgroup(const std::filesystem::path& path, Duration timeout = Duration(2000));

/// The kill method to use: cgroup.kill when `dir` has it, unless POLLKILL_KILL_METHOD=freeze
/// forces the fallback (used by tests to exercise it on new kernels).
KillMethod choose_kill_method(const CgroupDir& dir);

/// The liveness cgroup of the run cgroup named `run_name`: "<run name>.alive", a sibling of
/// the run cgroup under the run root. While a run lives, a process of its guard's sits in it
/// (see guard.h), and `populated 1` in its cgroup.events says so to every PID namespace.
std::string liveness_cgroup_name(std::string_view run_name);

/// This invocation's run cgroup: "<run root>/pollkill-<pid>-<random>", holding one cgroup per
/// task. Made in two steps so that the guard can exist before anything is created:
/// `prepare` decides every path without touching the hierarchy, the guard is forked with a
/// copy, then `realize` creates. Destruction kills whatever is left inside and removes it all
/// (and, when pollkill had moved itself into a leaf, moves it back and removes the leaf).
class RunCgroup {
 public:
  /// Decides the run cgroup's name and path, the leaf pollkill will move into (if
  /// root.move_self_to_leaf) and which `controllers` must be enabled on the way down. Only
  /// reads the root's cgroup.subtree_control. `v1_bases` (controller, directory in that
  /// controller's v1 hierarchy) adds a run cgroup of the same name in each, for the limits
  /// that go through cgroup v1 (see cgroup_v1.h); co-mounted controllers share one.
  static RunCgroup prepare(
      const RunRoot& root, const std::filesystem::path& mount,
      const std::vector<std::string>& controllers,
      const std::vector<std::pair<std::string, std::filesystem::path>>& v1_bases = {});
  /// prepare + realize, for callers that need no guard (doctor's trial).
  static RunCgroup create(const RunRoot& root, const std::filesystem::path& mount,
                          const std::vector<std::string>& controllers);
  /// A name for a run cgroup, unique per process and random: "pollkill-<pid>-<8 hex>".
  static std::string make_name();

  RunCgroup() = default;
  RunCgroup(RunCgroup&& other) noexcept;
  RunCgroup& operator=(RunCgroup&& other) noexcept;
  RunCgroup(const RunCgroup&) = delete;
  RunCgroup& operator=(const RunCgroup&) = delete;
  ~RunCgroup();

  /// Creates what `prepare` decided: moves pollkill (and `companion`, the guard, when > 0)
  /// into the leaf if needed, puts `liveness` (when > 0, the guard's liveness process) into
  /// the liveness cgroup (liveness_cgroup_name) unless `liveness_placed` says the guard forked
  /// it there already (Guard::liveness_placed), enables the controllers in the root, creates the
  /// run cgroup and enables them there. The liveness cgroup is populated before the run cgroup
  /// exists, so a gc anywhere never sees this run cgroup without a live process beside it. On
  /// failure undoes what it did (but the liveness cgroup, which its process's owner removes)
  /// and throws SystemError with a remedy.
  void realize(pid_t companion = -1, pid_t liveness = -1, bool liveness_placed = false);
  /// "<run root>/<run cgroup's name>.alive" (see realize).
  std::filesystem::path liveness_path() const;

  const CgroupDir& dir() const noexcept { return dir_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  /// Path relative to the cgroup2 mount, e.g. "/pollkill-123-0a1b2c3d".
  const std::string& relative_path() const noexcept { return relative_; }
  /// Creates a task cgroup beneath (name must be a valid directory name).
  CgroupDir create_child(const std::string& name) const;
  /// The v1 run cgroups: (controller, path) for every controller given to `prepare`.
  const std::vector<std::pair<std::string, std::filesystem::path>>& v1_dirs() const noexcept {
    return v1_;
  }
  /// Kills, waits and removes everything inside and the run cgroup itself, found by path
  /// (so the guard's copy works even though it was made before `realize`), then removes the
  /// v1 run cgroups (empty by then: every process was in the unified one). Idempotent.
  void destroy() noexcept;
  /// When pollkill had (or was going to have) moved itself into a leaf: turns off the
  /// controllers it enabled in the root, moves the calling process back to its original
  /// cgroup and removes the leaf (which fails harmlessly while another process, e.g.
  /// pollkill seen from the guard, is still inside). Idempotent.
  void leave_leaf() noexcept;

 private:
  std::filesystem::path path_;
  CgroupDir dir_;
  std::string relative_;
  std::filesystem::path root_;
  std::vector<std::string> controllers_;            ///< to enable in the root and here
  std::vector<std::string> enable_in_root_;         ///< not yet enabled in the root
  std::optional<std::filesystem::path> self_leaf_;  ///< leaf pollkill moves itself into
  std::vector<std::pair<std::string, std::filesystem::path>> v1_;  ///< controller, v1 run cgroup
};

}  // namespace pollkill
