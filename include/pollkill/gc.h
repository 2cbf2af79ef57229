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

struct GcRemoved {
  std::filesystem::path path;
  pid_t owner = 0;
  std::size_t processes_killed = 0;
};

/// Finds the run cgroups directly under `root` whose owner pid is not alive (kill(pid, 0)
/// fails with ESRCH), kills what is inside, and removes them. A cgroup that cannot be
/// removed is reported as a warning on stderr and skipped. Returns what was removed.
std::vector<GcRemoved> gc_run_cgroups(const std::filesystem::path& root);

/// The same for the v1 run cgroups under `base` (a cgroup v1 hierarchy's directory, see
/// cgroup_v1.h). v1 cannot kill a cgroup's processes as a whole, and every task process was
/// in a unified run cgroup too: so call this after gc_run_cgroups, and a v1 run cgroup that
/// still holds processes is reported as a warning and left alone.
std::vector<GcRemoved> gc_v1_run_cgroups(const std::filesystem::path& base);

}  // namespace pollkill
