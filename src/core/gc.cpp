#include "pollkill/gc.h"

#include <signal.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "pollkill/cgroup.h"
#include "pollkill/cgroupfs.h"
#include "pollkill/diag.h"

namespace pollkill {
namespace fs = std::filesystem;

std::optional<pid_t> run_cgroup_owner(std::string_view name) {
  constexpr std::string_view kPrefix = "pollkill-";
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  auto dash = name.find('-');
  if (dash == 0 || dash == std::string_view::npos) return std::nullopt;
  std::string_view hex = name.substr(dash + 1);
  if (hex.size() != 8) return std::nullopt;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + dash, pid);
  if (ec != std::errc() || end != name.data() + dash || pid <= 0) return std::nullopt;
  return pid;
}

bool run_cgroup_alive(const fs::path& run) {
  const fs::path liveness = run.parent_path() / liveness_cgroup_name(run.filename().string());
  try {
    return CgroupDir::open(liveness).populated();
  } catch (const SystemError& e) {
    if (e.code() != ENOENT) throw;
  }
  auto owner = run_cgroup_owner(run.filename().string());
  // EPERM means the process exists (someone else's); only ESRCH means it is gone.
  return !owner || ::kill(*owner, 0) == 0 || errno != ESRCH;
}

std::vector<GcRemoved> gc_run_cgroups(const std::filesystem::path& root) {
  std::vector<GcRemoved> removed;
  std::error_code ec;
  std::vector<fs::path> runs, liveness;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string name = entry.path().filename().string();
    if (run_cgroup_owner(name)) {
      runs.push_back(entry.path());
    } else if (name.size() > 6 && name.compare(name.size() - 6, 6, ".alive") == 0 &&
               run_cgroup_owner(std::string_view(name).substr(0, name.size() - 6))) {
      liveness.push_back(entry.path());
    }
  }
  for (const auto& run : runs) {
    try {
      // The directory was listed above, before its liveness is read: see run_cgroup_alive.
      if (run_cgroup_alive(run)) continue;
      CgroupDir dir = CgroupDir::open(run);
      std::size_t killed = 0;
      if (dir.populated()) {
        killed = count_cgroup_processes(run);
        kill_cgroup(dir, choose_kill_method(dir));
        wait_unpopulated(dir, Duration(5000));
      }
      remove_cgroup(run);
      removed.push_back({run, *run_cgroup_owner(run.filename().string()), killed});
    } catch (const std::exception& e) {
      diag::warning("gc '" + run.string() + "': " + e.what());
    }
  }
  for (const auto& path : liveness) {
    // Only an empty one whose run cgroup is gone: the guard that held it is dead (or, while a
    // run is being made, not in it yet: then rmdir fails with EBUSY once it is, and the
    // pollkill making it starts over if it finds it gone).
    std::string name = path.filename().string();
    if (fs::exists(root / name.substr(0, name.size() - 6), ec)) continue;
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT && errno != EBUSY) {
      diag::warning("gc '" + path.string() + "': " + std::strerror(errno));
    }
  }
  return removed;
}

std::vector<GcRemoved> gc_v1_run_cgroups(const std::filesystem::path& base,
                                         const std::filesystem::path& unified_root) {
  std::vector<GcRemoved> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
    if (!entry.is_directory(ec)) continue;
    auto owner = run_cgroup_owner(entry.path().filename().string());
    if (!owner) continue;
    try {
      if (run_cgroup_alive(unified_root / entry.path().filename())) continue;
      std::size_t inside = 0;
      for (fs::recursive_directory_iterator it(entry.path(), ec), end; !ec && it != end;
           it.increment(ec)) {
        if (it->is_directory(ec)) inside += CgroupDir::open(it->path()).procs().size();
      }
      inside += CgroupDir::open(entry.path()).procs().size();
      if (inside > 0) {
        diag::warning("gc '" + entry.path().string() + "': " + std::to_string(inside) +
                      " processes are still inside; left alone");
        continue;
      }
      remove_cgroup(entry.path());
      removed.push_back({entry.path(), *owner, 0});
    } catch (const std::exception& e) {
      diag::warning("gc '" + entry.path().string() + "': " + e.what());
    }
  }
  return removed;
}

}  // namespace pollkill
