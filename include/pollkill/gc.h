// `pollkill gc`: run cgroups whose pollkill process no longer exists.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pollkill {

/// The pid in a run cgroup's name "pollkill-<pid>-<8 hex digits>"; nullopt for any other
/// name (task cgroups, the runner leaf "pollkill-runner.<pid>", foreign directories).
std::optional<pid_t> run_cgroup_owner(std::string_view name);

/// Whether the run cgroup `run` (directly under its run root) belongs to a live pollkill:
/// its liveness cgroup is populated. A run cgroup without one (made by a pollkill from before
/// liveness cgroups, or by doctor's trial) is judged by its owner pid, kill(pid, 0), which only
/// means something in the owner's PID namespace. Check that `run` exists before calling: the
/// liveness cgroup is populated before the run cgroup is made, so one that is empty now is dead for
/// good.
bool run_cgroup_alive(const std::filesystem::path& run);

struct GcRemoved {
  std::filesystem::path path;
  pid_t owner = 0;
  std::size_t processes_killed = 0;
};

/// Finds the run cgroups directly under `root` that are not alive (run_cgroup_alive), kills
/// what is inside (processes_killed counts the whole subtree), and removes them with their
/// liveness cgroups; also removes empty liveness cgroups left without a run cgroup. A cgroup
/// that cannot be removed is reported as a warning and skipped. Returns what was removed.
std::vector<GcRemoved> gc_run_cgroups(const std::filesystem::path& root);

/// The same for the v1 run cgroups under `base` (a cgroup v1 hierarchy's directory, see
/// cgroup_v1.h). v1 cannot kill a cgroup's processes as a whole, and every task process was
/// in a unified run cgroup too: so call this after gc_run_cgroups, and a v1 run cgroup that
/// still holds processes is reported as a warning and left alone. `unified_root` is the run
/// root in the unified hierarchy, where the run's liveness cgroup is.
std::vector<GcRemoved> gc_v1_run_cgroups(const std::filesystem::path& base,
                                         const std::filesystem::path& unified_root);

}  // namespace pollkill
