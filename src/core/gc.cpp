#include "pollkill/gc.h"

#include <signal.h>

#include <cerrno>
#include <charconv>
#include <cstdio>

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

std::vector<GcRemoved> gc_run_cgroups(const std::filesystem::path& root) {
  std::vector<GcRemoved> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    if (!entry.is_directory(ec)) continue;
    auto owner = run_cgroup_owner(entry.path().filename().string());
    if (!owner) continue;
    // EPERM means the process exists (someone else's); only ESRCH means it is gone.
    if (::kill(*owner, 0) == 0 || errno != ESRCH) continue;
    try {
      CgroupDir dir = CgroupDir::open(entry.path());
      std::size_t killed = 0;
      if (dir.populated()) {
        killed = kill_cgroup(dir, choose_kill_method(dir)).size();
        wait_unpopulated(dir, Duration(5000));
      }
      remove_cgroup(entry.path());
      removed.push_back({entry.path(), *owner, killed});
    } catch (const std::exception& e) {
      diag::warning("gc '" + entry.path().string() + "': " + e.what());
    }
  }
  return removed;
}

std::vector<GcRemoved> gc_v1_run_cgroups(const std::filesystem::path& base) {
  std::vector<GcRemoved> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
    if (!entry.is_directory(ec)) continue;
    auto owner = run_cgroup_owner(entry.path().filename().string());
    if (!owner) continue;
    if (::kill(*owner, 0) == 0 || errno != ESRCH) continue;
    try {
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
