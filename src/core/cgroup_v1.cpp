#include "pollkill/cgroup_v1.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "pollkill/diag.h"
#include "pollkill/error.h"

namespace pollkill {
namespace fs = std::filesystem;
namespace {

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// "/a/b" inside a mount whose root is "/a" is "b" below the mount point; a path outside the
// mount's root (another container's cgroup) cannot be reached through this mount.
std::optional<fs::path> below_mount(const std::string& mount_root, const std::string& path) {
  fs::path root = fs::path(mount_root.empty() ? "/" : mount_root).lexically_normal();
  fs::path p = fs::path(path.empty() ? "/" : path).lexically_normal();
  fs::path rel = p.lexically_relative(root);
  if (rel.empty() || *rel.begin() == "..") return std::nullopt;
  return rel == "." ? fs::path() : rel;
}

}  // namespace

V1Placement place_v1(const std::string& controller, const CgroupMounts& mounts,
                     const std::map<std::string, std::string, std::less<>>& own,
                     const std::optional<std::string>& v1_root) {
  V1Placement p;
  p.controller = controller;
  const V1Mount* mount = nullptr;
  for (const auto& m : mounts.v1_mounts) {
    if (contains(m.controllers, controller)) mount = &m;
    if (mount) break;
  }
  if (!mount) {
    p.why_not = "no cgroup v1 " + controller + " hierarchy is mounted";
    return p;
  }
  fs::path base;
  if (v1_root) {
    std::string rel = *v1_root;
    while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
    base = (mount->mount_point / rel).lexically_normal();
  } else {
    auto it = own.find(controller);
    if (it == own.end()) {
      p.why_not = "/proc/self/cgroup names no cgroup v1 " + controller + " cgroup for pollkill";
      return p;
    }
    auto rel = below_mount(mount->root, it->second);
    if (!rel) {
      p.why_not = "pollkill's v1 " + controller + " cgroup '" + it->second +
                  "' is outside the mount at " + mount->mount_point.string();
      return p;
    }
    base = rel->empty() ? mount->mount_point : (mount->mount_point / *rel).lexically_normal();
  }
  if (!fs::exists(base / "cgroup.procs")) {
    p.why_not = "'" + base.string() + "' is not a cgroup v1 " + controller + " directory";
    return p;
  }
  if (::access(base.c_str(), W_OK) != 0 || ::access((base / "cgroup.procs").c_str(), W_OK) != 0) {
    p.why_not = "the cgroup v1 " + controller + " cgroup '" + base.string() +
                "' is not writable by this user";
    return p;
  }
  p.base = base;
  p.usable = true;
  return p;
}

V1TaskCgroups V1TaskCgroups::create(const RunCgroup& run, const std::string& name) {
  V1TaskCgroups task;
  for (const auto& [controller, run_path] : run.v1_dirs()) {
    const fs::path wanted = run_path / name;  // a lambda may not capture a binding in clang 14
    auto same = std::find_if(task.dirs_.begin(), task.dirs_.end(),
                             [&](const Entry& e) { return e.dir.path() == wanted; });
    if (same != task.dirs_.end()) {
      same->controllers.push_back(controller);
      continue;
    }
    fs::path path = run_path / name;
    if (::mkdir(path.c_str(), 0755) != 0) {
      throw_errno("create the cgroup v1 " + controller + " task cgroup '" + path.string() + "'");
    }
    task.dirs_.push_back({{controller}, CgroupDir::open(path)});
  }
  return task;
}

V1TaskCgroups::V1TaskCgroups(V1TaskCgroups&& other) noexcept {
  *this = std::move(other);
}

V1TaskCgroups& V1TaskCgroups::operator=(V1TaskCgroups&& other) noexcept {
  if (this != &other) {
    remove();
    dirs_ = std::exchange(other.dirs_, {});
  }
  return *this;
}

const CgroupDir* V1TaskCgroups::dir_for(std::string_view controller) const {
  for (const auto& e : dirs_) {
    if (contains(e.controllers, controller)) return &e.dir;
  }
  return nullptr;
}

std::vector<UniqueFd> V1TaskCgroups::open_join_fds() const {
  std::vector<UniqueFd> fds;
  for (const auto& e : dirs_) {
    UniqueFd fd(::openat(e.dir.fd(), "cgroup.procs", O_WRONLY | O_CLOEXEC));
    if (!fd) throw_errno("open '" + (e.dir.path() / "cgroup.procs").string() + "' for writing");
    fds.push_back(std::move(fd));
  }
  return fds;
}

void V1TaskCgroups::remove() noexcept {
  for (auto& e : dirs_) {
    fs::path path = e.dir.path();
    e.dir = CgroupDir();
    try {
      remove_cgroup(path);
    } catch (const std::exception& ex) {
      diag::warning("cleaning up '" + path.string() + "': " + ex.what());
    }
  }
  dirs_.clear();
}

}  // namespace pollkill
