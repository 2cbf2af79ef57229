// Hybrid hosts: the limits the unified hierarchy cannot enforce, applied through the cgroup v1
// controller hierarchies mounted beside it. Tracking, events, freezing and killing stay on
// the unified hierarchy; a task is in its unified task cgroup and, for each v1 controller
// used, in a v1 task cgroup of the same name. Used only with runner.cgroup_v1 = "auto". The
// v1 limit plans and writes are limits.h's.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/fd.h"

namespace pollkill {

/// The controllers whose limits the v1 backend can apply.
inline constexpr std::string_view kV1LimitControllers[] = {"memory", "cpu", "pids"};

/// Where a controller's v1 cgroups would go, or why they cannot.
struct V1Placement {
  std::string controller;
  std::filesystem::path base;  ///< run cgroups are created here (empty when unusable)
  bool usable = false;         ///< mounted, and `base` is a writable v1 cgroup directory
  std::string why_not;         ///< when not usable: a sentence for messages and doctor
};

/// Finds `controller`'s v1 hierarchy in `mounts` and the directory beneath which run cgroups
/// go: `v1_root` (runner.cgroup_v1_root, relative to the hierarchy's root) when given, else
/// pollkill's own cgroup there (`own`, from /proc/self/cgroup), translated through the mount's
/// root. Usable when that directory exists and this process may write to it and its
/// cgroup.procs (access(2)); nothing is created.
V1Placement place_v1(const std::string& controller, const CgroupMounts& mounts,
                     const std::map<std::string, std::string, std::less<>>& own,
                     const std::optional<std::string>& v1_root);

/// One task's v1 cgroups, named like its unified task cgroup, one per v1 run cgroup of the
/// RunCgroup. Removed at destruction (by then the unified cgroup is empty, so these are too).
class V1TaskCgroups {
 public:
  /// Creates "<v1 run cgroup>/<name>" in every v1 hierarchy `run` uses (none: an empty set).
  static V1TaskCgroups create(const RunCgroup& run, const std::string& name);

  V1TaskCgroups() = default;
  V1TaskCgroups(V1TaskCgroups&& other) noexcept;
  V1TaskCgroups& operator=(V1TaskCgroups&& other) noexcept;
  V1TaskCgroups(const V1TaskCgroups&) = delete;
  V1TaskCgroups& operator=(const V1TaskCgroups&) = delete;
  ~V1TaskCgroups() { remove(); }

  bool empty() const noexcept { return dirs_.empty(); }
  /// The task cgroup in `controller`'s hierarchy; null when that controller is not used.
  const CgroupDir* dir_for(std::string_view controller) const;
  /// Each cgroup's cgroup.procs opened for writing (close-on-exec): the child writes "0" to
  /// them before exec, so the program starts inside (see spawn.h).
  std::vector<UniqueFd> open_join_fds() const;
  /// Removes the directories (EBUSY retried briefly; missing is fine). Idempotent; warns on
  /// failure.
  void remove() noexcept;

 private:
  struct Entry {
    std::vector<std::string> controllers;  ///< co-mounted ones share the directory
    CgroupDir dir;
  };
  std::vector<Entry> dirs_;
};

}  // namespace pollkill
