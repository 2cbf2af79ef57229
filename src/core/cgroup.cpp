#include "pollkill/cgroup.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "pollkill/diag.h"
#include "pollkill/error.h"

namespace pollkill {
namespace fs = std::filesystem;
namespace {

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// systemd marks delegated cgroups with an extended attribute (trusted.* as root, user.* for
// user managers, systemd >= 251); without it, systemd owns the cgroup and may move or
// remove what we create there.
bool has_delegation_mark(const fs::path& path) {
  for (const char* name : {"trusted.delegate", "user.delegate"}) {
    if (::getxattr(path.c_str(), name, nullptr, 0) >= 0) return true;
  }
  return false;
}

fs::path under_mount(const fs::path& mount, const std::string& value) {
  fs::path p(value);
  auto rel = p.lexically_relative(mount);
  if (p.is_absolute() && !rel.empty() && *rel.begin() != "..") return p.lexically_normal();
  std::string stripped = value;
  while (!stripped.empty() && stripped.front() == '/') stripped.erase(0, 1);
  if (stripped.empty()) return mount;
  return (mount / stripped).lexically_normal();
}

void make_cgroup_dirs(const fs::path& path, const std::string& source) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) {
    throw SystemError(ec.value(), "create run root '" + path.string() + "' (from " + source + ")",
                      "choose a cgroup you may write to with --cgroup-root, or run pollkill "
                      "under `systemd-run --scope -p Delegate=yes`");
  }
  if (!fs::exists(path / "cgroup.procs")) {
    throw Error(
        "run root '" + path.string() + "' (from " + source + ") is not a cgroup v2 directory",
        "give a directory inside the cgroup2 mount");
  }
}

void sleep_for(Duration d) {
  std::this_thread::sleep_for(d);
}

// All cgroups below `dir` (depth-first, children before parents).
void collect_descendants(const fs::path& dir, std::vector<fs::path>& out) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec) && !it->is_symlink(type_ec)) {
      collect_descendants(it->path(), out);
      out.push_back(it->path());
    }
  }
}

}  // namespace

HostCgroups probe_host_cgroups() {
  HostCgroups host;
  host.mounts = probe_cgroup_mounts();
  host.own_cgroup = probe_own_cgroup();
  if (!host.mounts.v1_mounts.empty()) host.own_v1_cgroups = probe_own_v1_cgroups();
  // sd_booted(3) uses the same test.
  struct stat st;
  host.systemd_pid1 = ::lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
  host.root_user = ::geteuid() == 0;
  if (host.mounts.cgroup2) {
    // The kernel gives every cgroup but the root a cgroup.type file.
    host.mount_is_hierarchy_root =
        ::access((*host.mounts.cgroup2 / "cgroup.type").c_str(), F_OK) != 0;
  }
  return host;
}

bool own_cgroup_usable(const HostCgroups& host, std::string* why_not) {
  if (!host.mounts.cgroup2) {
    if (why_not) *why_not = "no cgroup2 hierarchy is mounted";
    return false;
  }
  const fs::path mount = *host.mounts.cgroup2;
  // A path outside the cgroup namespace's root reads "/../..." (cgroup_namespaces(7)).
  if (host.own_cgroup == "/.." || host.own_cgroup.rfind("/../", 0) == 0) {
    if (why_not) {
      *why_not = "its own cgroup '" + host.own_cgroup +
                 "' lies outside the cgroup namespace's root, which the mount starts at";
    }
    return false;
  }
  const fs::path own = under_mount(mount, host.own_cgroup.empty() ? "/" : host.own_cgroup);
  const bool hierarchy_root = own == mount && host.mount_is_hierarchy_root;
  // Writable like any other candidate, the hierarchy root included (it is root's: a user
  // started in it may use no cgroup there, and `auto` falls back to subreaper mode).
  const bool writable =
      ::access(own.c_str(), W_OK) == 0 && ::access((own / "cgroup.procs").c_str(), W_OK) == 0;
  if (!writable) {
    if (why_not) {
      *why_not = hierarchy_root
                     ? "its own cgroup is the hierarchy root '" + own.string() +
                           "', which is not writable for uid " + std::to_string(::geteuid())
                     : "its own cgroup '" + host.own_cgroup + "' is not writable";
    }
    return false;
  }
  // The hierarchy root is exempt from the no-internal-processes rule and from delegation; a
  // cgroup namespace's root is an ordinary cgroup.
  if (hierarchy_root) return true;
  if (host.systemd_pid1 && !host.own_delegated && !has_delegation_mark(own)) {
    if (why_not) {
      *why_not = "its own cgroup '" + host.own_cgroup +
                 "' belongs to systemd and was not delegated (no trusted.delegate mark)";
    }
    return false;
  }
  return true;
}

const char* cgroup_root_env() {
  return ::getenv("POLLKILL_CGROUP_ROOT");
}

RunRoot resolve_run_root(const HostCgroups& host, const std::optional<std::string>& flag,
                         const Policy& policy, const char* env_value, bool needs_controllers) {
  if (!host.mounts.cgroup2) {
    throw Error("no cgroup2 hierarchy is mounted (layout: " +
                    std::string(to_string(host.mounts.layout)) + ")",
                "mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`, or boot with "
                "systemd.unified_cgroup_hierarchy=1");
  }
  const fs::path mount = *host.mounts.cgroup2;
  if (host.mounts.cgroup2_read_only) {
    throw Error("the cgroup2 mount '" + mount.string() +
                    "' is read-only: pollkill cannot create the cgroups it runs tasks in "
                    "(containers are often given such a mount)",
                "remount it read-write if you may (`mount -o remount,rw " + mount.string() +
                    "` needs CAP_SYS_ADMIN), start the container with a writable cgroup2 "
                    "mount in its own cgroup namespace (e.g. `podman run --systemd=always`, "
                    "`docker run --privileged --cgroupns=private`), or run pollkill outside "
                    "the container");
  }
  // A path outside the cgroup namespace's root reads "/../..." (cgroup_namespaces(7)).
  const bool own_outside_namespace =
      host.own_cgroup == "/.." || host.own_cgroup.rfind("/../", 0) == 0;
  const fs::path own = own_outside_namespace
                           ? fs::path()
                           : under_mount(mount, host.own_cgroup.empty() ? "/" : host.own_cgroup);
  // Inside a cgroup namespace the mount's root is the namespace's root: an ordinary cgroup,
  // bound by the no-internal-processes rule like any other.
  const bool own_is_root = own == mount && host.mount_is_hierarchy_root;

  auto explicit_root = [&](const std::string& value, const std::string& source) {
    RunRoot root{under_mount(mount, value), source, false};
    make_cgroup_dirs(root.path, source);
    root.hierarchy_root = root.path == mount && host.mount_is_hierarchy_root;
    root.move_self_to_leaf = needs_controllers && root.path == own && !own_is_root;
    return root;
  };
  if (flag) return explicit_root(*flag, "--cgroup-root");
  if (policy.runner.cgroup_root) {
    return explicit_root(*policy.runner.cgroup_root, "runner.cgroup_root");
  }
  if (env_value && *env_value) return explicit_root(env_value, "POLLKILL_CGROUP_ROOT");

  std::string why_not;
  const bool own_usable = own_cgroup_usable(host, &why_not);
  // The hierarchy root is exempt from the no-internal-processes rule: usable when writable.
  if (own_is_root && own_usable) {
    return RunRoot{own, "own cgroup (the hierarchy root)", false, true};
  }
  if (own_usable) {
    return RunRoot{own,
                   host.own_delegated ? "own cgroup (a delegated systemd scope)"
                   : own == mount     ? "own cgroup (the cgroup namespace's root)"
                                      : "own cgroup",
                   needs_controllers};
  }
  if (host.root_user) {
    RunRoot root{mount / "pollkill", "root fallback", false};
    make_cgroup_dirs(root.path, "root fallback");
    return root;
  }
  throw Error("no cgroup pollkill may use: " + why_not,
              host.systemd_pid1
                  ? "run it in a delegated scope: `systemd-run --user --scope -p Delegate=yes "
                    "pollkill ...`, or pass --cgroup-root with a cgroup you own"
                  : "pass --cgroup-root (or set POLLKILL_CGROUP_ROOT) to a cgroup you may "
                    "write to, or run as root");
}

std::vector<int> signal_cgroup(const CgroupDir& dir, int sig) {
  std::vector<int> pids = dir.procs();
  for (int pid : pids) ::kill(pid, sig);  // ESRCH: it exited meanwhile, which is fine
  return pids;
}

std::vector<int> kill_cgroup(const CgroupDir& dir, KillMethod method) {
  std::vector<fs::path> cgroups;
  collect_descendants(dir.path(), cgroups);
  cgroups.push_back(dir.path());
  std::vector<int> seen;
  auto gather = [&]() {
    std::vector<int> now;
    for (const auto& path : cgroups) {
      try {
        for (int pid : CgroupDir::open(path).procs()) now.push_back(pid);
      } catch (const SystemError&) {
        // a child cgroup removed meanwhile
      }
    }
    for (int pid : now) {
      if (std::find(seen.begin(), seen.end(), pid) == seen.end()) seen.push_back(pid);
    }
    return now;
  };
  if (method == KillMethod::cgroup_kill) {
    gather();
    dir.write("cgroup.kill", "1");
    return seen;
  }
  // Freezing first means nothing inside can fork while we kill pid by pid.
  for (int round = 0; round < 100; ++round) {
    dir.write("cgroup.freeze", "1");
    for (int i = 0; i < 20; ++i) {  // frozen within 100 ms, or go on regardless (D state)
      auto events = dir.read_keyed("cgroup.events");
      if (events && (*events)["frozen"] == 1) break;
      sleep_for(Duration(5));
    }
    auto pids = gather();
    for (int pid : pids) ::kill(pid, SIGKILL);
    dir.write("cgroup.freeze", "0");
    if (pids.empty() || !dir.populated()) break;
    sleep_for(Duration(10));
  }
  return seen;
}

std::size_t count_cgroup_processes(const fs::path& path) {
  std::vector<fs::path> cgroups;
  collect_descendants(path, cgroups);
  cgroups.push_back(path);
  std::size_t count = 0;
  for (const auto& cgroup : cgroups) {
    try {
      // pids of other PID namespaces read as 0: still a process each.
      std::string procs = CgroupDir::open(cgroup).read("cgroup.procs");
      count += static_cast<std::size_t>(std::count(procs.begin(), procs.end(), '\n'));
    } catch (const SystemError&) {
      // removed meanwhile
    }
  }
  return count;
}

bool wait_unpopulated(const CgroupDir& dir, Duration timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (!dir.populated()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    sleep_for(Duration(5));
  }
}

void remove_cgroup(const fs::path& path, Duration timeout) {
  std::vector<fs::path> dirs;
  collect_descendants(path, dirs);
  dirs.push_back(path);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& dir : dirs) {
    for (;;) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || std::chrono::steady_clock::now() >= deadline) {
        throw_errno("remove cgroup '" + dir.string() + "'");
      }
      sleep_for(Duration(10));
    }
  }
}

KillMethod choose_kill_method(const CgroupDir& dir) {
  const char* forced = ::getenv("POLLKILL_KILL_METHOD");
  if (forced && std::string_view(forced) == "freeze") return KillMethod::freeze_and_kill;
  return dir.has("cgroup.kill") ? KillMethod::cgroup_kill : KillMethod::freeze_and_kill;
}

std::string RunCgroup::make_name() {
  unsigned char bytes[4] = {};
  if (::getrandom(bytes, sizeof bytes, 0) != sizeof bytes) {
    auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    for (unsigned char& b : bytes) b = static_cast<unsigned char>(t >>= 8);
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", bytes[0], bytes[1], bytes[2], bytes[3]);
  return "pollkill-" + std::to_string(::getpid()) + "-" + hex;
}

RunCgroup RunCgroup::prepare(const RunRoot& root, const fs::path& mount,
                             const std::vector<std::string>& controllers,
                             const std::vector<std::pair<std::string, fs::path>>& v1_bases) {
  RunCgroup run;
  run.root_ = root.path;
  const std::string name = make_name();
  run.path_ = root.path / name;
  for (const auto& [controller, base] : v1_bases) run.v1_.emplace_back(controller, base / name);
  run.relative_ = "/" + run.path_.lexically_relative(mount).string();
  run.controllers_ = controllers;
  auto enabled = CgroupDir::open(root.path).subtree_control();
  for (const auto& c : controllers) {
    if (!contains(enabled, c)) run.enable_in_root_.push_back(c);
  }
  if (root.move_self_to_leaf) {
    run.self_leaf_ = root.path / ("pollkill-runner." + std::to_string(::getpid()));
  }
  return run;
}

RunCgroup RunCgroup::create(const RunRoot& root, const fs::path& mount,
                            const std::vector<std::string>& controllers) {
  RunCgroup run = prepare(root, mount, controllers);
  run.realize();
  return run;
}

std::string liveness_cgroup_name(std::string_view run_name) {
  return std::string(run_name) + ".alive";
}

fs::path RunCgroup::liveness_path() const {
  return root_ / liveness_cgroup_name(path_.filename().string());
}

void RunCgroup::realize(pid_t companion, pid_t liveness, bool liveness_placed) {
  CgroupDir root_dir = CgroupDir::open(root_);
  if (self_leaf_) {
    // A cgroup with controllers enabled for its children may hold no processes itself,
    // so pollkill (and its guard) step into a leaf of their own first, as nsjail and runc do.
    if (::mkdir(self_leaf_->c_str(), 0755) != 0 && errno != EEXIST) {
      throw_errno("create cgroup '" + self_leaf_->string() + "'");
    }
    try {
      CgroupDir leaf = CgroupDir::open(*self_leaf_);
      leaf.write("cgroup.procs", "0");
      if (companion > 0) leaf.write("cgroup.procs", std::to_string(companion));
    } catch (const SystemError& e) {
      leave_leaf();
      throw SystemError(e.code(),
                        "move pollkill into the leaf cgroup '" + self_leaf_->string() + "'",
                        "run pollkill in a cgroup delegated to it, e.g. `systemd-run --scope -p "
                        "Delegate=yes pollkill ...`, or pass --cgroup-root");
    }
  }
  if (liveness > 0 && !liveness_placed) {
    // Where the guard could not fork it into its cgroup (clone3 without CLONE_INTO_CGROUP).
    // Before the controllers (it must leave pollkill's cgroup, which may be the root) and
    // before the run cgroup. A gc elsewhere may remove the empty directory between the mkdir
    // and the move: then make it again.
    const fs::path alive = liveness_path();
    for (int attempt = 1;; ++attempt) {
      if (::mkdir(alive.c_str(), 0755) != 0 && errno != EEXIST) {
        int err = errno;
        leave_leaf();
        throw SystemError(err, "create the liveness cgroup '" + alive.string() + "'");
      }
      int fd = ::open((alive / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
      const std::string pid = std::to_string(liveness);
      bool moved =
          fd >= 0 && ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
      int err = errno;
      if (fd >= 0) ::close(fd);
      if (moved) break;
      if (err != ENOENT || attempt == 3) {
        leave_leaf();
        throw SystemError(err, "move the guard's liveness process into '" + alive.string() + "'",
                          "pass --cgroup-root with a cgroup delegated to you");
      }
    }
  }
  for (const auto& c : enable_in_root_) {
    try {
      root_dir.write("cgroup.subtree_control", "+" + c);
    } catch (const SystemError& e) {
      leave_leaf();
      throw SystemError(
          e.code(),
          "enable the " + c + " controller: write '+" + c + "' to '" +
              (root_ / "cgroup.subtree_control").string() + "'",
          e.code() == EBUSY
              ? "other processes live in '" + root_.string() +
                    "'; start pollkill in a cgroup of its own (`systemd-run --scope -p "
                    "Delegate=yes pollkill ...`) or pass --cgroup-root"
              : "pass --cgroup-root with a cgroup delegated to you");
    }
  }
  if (::mkdir(path_.c_str(), 0755) != 0) {
    int err = errno;
    leave_leaf();
    throw SystemError(err, "create run cgroup '" + path_.string() + "'");
  }
  dir_ = CgroupDir::open(path_);
  for (const auto& c : controllers_) dir_.write("cgroup.subtree_control", "+" + c);
  for (const auto& [controller, path] : v1_) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {  // EEXIST: co-mounted
      int err = errno;
      destroy();
      leave_leaf();
      throw SystemError(
          err, "create the cgroup v1 " + controller + " run cgroup '" + path.string() + "'",
          "set runner.cgroup_v1_root to a v1 cgroup you may write to, or "
          "runner.cgroup_v1 = \"off\" (--cgroup-v1 off)");
    }
  }
}

RunCgroup::RunCgroup(RunCgroup&& other) noexcept {
  *this = std::move(other);
}

RunCgroup& RunCgroup::operator=(RunCgroup&& other) noexcept {
  if (this != &other) {
    destroy();
    leave_leaf();
    path_ = std::exchange(other.path_, {});
    v1_ = std::exchange(other.v1_, {});
    dir_ = std::move(other.dir_);
    relative_ = std::move(other.relative_);
    root_ = std::move(other.root_);
    controllers_ = std::move(other.controllers_);
    enable_in_root_ = std::move(other.enable_in_root_);
    self_leaf_ = std::exchange(other.self_leaf_, std::nullopt);
  }
  return *this;
}

RunCgroup::~RunCgroup() {
  destroy();
  leave_leaf();
}

CgroupDir RunCgroup::create_child(const std::string& name) const {
  fs::path path = dir_.path() / name;
  if (::mkdir(path.c_str(), 0755) != 0) throw_errno("create task cgroup '" + path.string() + "'");
  return CgroupDir::open(path);
}

void RunCgroup::destroy() noexcept {
  if (path_.empty()) return;
  dir_ = CgroupDir();
  try {
    CgroupDir dir;
    try {
      dir = CgroupDir::open(path_);
    } catch (const SystemError& e) {
      if (e.code() != ENOENT) throw;  // ENOENT: never created, or already removed
    }
    if (dir) {
      if (dir.populated()) {
        kill_cgroup(dir, choose_kill_method(dir));
        wait_unpopulated(dir, Duration(5000));
      }
      remove_cgroup(path_);
    }
  } catch (const std::exception& e) {
    diag::warning("cleaning up '" + path_.string() + "': " + e.what());
  }
  // Every task process lived in the unified run cgroup too, so once that is empty the v1 ones
  // are: only their directories are left (remove_cgroup: missing is fine, co-mounted twice too).
  for (const auto& [controller, path] : v1_) {
    try {
      remove_cgroup(path);
    } catch (const std::exception& e) {
      diag::warning("cleaning up '" + path.string() + "': " + e.what());
    }
  }
  path_.clear();
}

void RunCgroup::leave_leaf() noexcept {
  if (!self_leaf_) return;
  try {
    CgroupDir root = CgroupDir::open(root_);
    for (const auto& c : enable_in_root_) root.write("cgroup.subtree_control", "-" + c);
    root.write("cgroup.procs", "0");
    if (::rmdir(self_leaf_->c_str()) != 0 && errno != EBUSY && errno != ENOENT) {
      throw_errno("remove cgroup '" + self_leaf_->string() + "'");
    }
  } catch (const std::exception& e) {
    diag::warning("leaving '" + self_leaf_->string() + "': " + e.what());
  }
  self_leaf_.reset();
}

}  // namespace pollkill
