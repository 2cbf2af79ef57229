#include "pollkill/sandbox.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>

#include "pollkill/error.h"
#include "pollkill/seccomp.h"

extern char** environ;

namespace pollkill {
namespace {

// The effective capability set from /proc/self/status: pollkill may run as root without all
// capabilities (in a container), so euid 0 alone proves nothing.
std::uint64_t effective_capabilities() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  }
  return 0;
}

bool has_capability(int cap) {
  return (effective_capabilities() >> cap) & 1;
}

std::optional<std::uint32_t> as_number(const std::string& text) {
  std::uint32_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

struct UserEntry {
  uid_t uid;
  gid_t gid;
};

std::optional<UserEntry> find_user(const std::string& name_or_number) {
  passwd entry{}, *found = nullptr;
  std::vector<char> buffer(16384);
  const auto number = as_number(name_or_number);
  const int rc =
      number ? ::getpwuid_r(*number, &entry, buffer.data(), buffer.size(), &found)
             : ::getpwnam_r(name_or_number.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc == 0 && found) return UserEntry{found->pw_uid, found->pw_gid};
  // A number without a passwd entry is still a valid uid; its group is the same number.
  if (number) return UserEntry{*number, *number};
  return std::nullopt;
}

std::optional<gid_t> find_group(const std::string& name_or_number) {
  if (const auto number = as_number(name_or_number)) return *number;
  group entry{}, *found = nullptr;
  std::vector<char> buffer(16384);
  if (::getgrnam_r(name_or_number.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 &&
      found) {
    return found->gr_gid;
  }
  return std::nullopt;
}

// A read-only remount of a bind mount must repeat the flags the kernel locks (nosuid, nodev,
// noexec, atime), or it fails with EPERM where they are locked.
unsigned long locked_flags(const std::string& path) {
  struct statvfs fs {};
  if (::statvfs(path.c_str(), &fs) != 0) return 0;
  unsigned long flags = 0;
  if (fs.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (fs.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (fs.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (fs.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (fs.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (fs.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  return flags;
}

struct stat stat_or_throw(const std::string& path, const char* key) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw SystemError(errno, std::string("sandbox.") + key + ": '" + path + "'",
                      "the path must exist on this host");
  }
  return st;
}

void plan_mounts(const SandboxPolicy& s, SandboxPlan& plan) {
  // Nothing done in the task's mount namespace may propagate back to the host.
  plan.mounts.push_back({"", "/", "", "", MS_REC | MS_PRIVATE});
  if (s.namespaces.pid) {
    // /proc of the task's own pid namespace: it sees only its own processes.
    plan.mounts.push_back({"proc", "/proc", "proc", "", MS_NOSUID | MS_NODEV | MS_NOEXEC});
  }
  if (s.private_tmp) {
    plan.mounts.push_back({"tmpfs", "/tmp", "tmpfs", "mode=1777", MS_NOSUID | MS_NODEV});
  }
  for (const std::string& path : s.read_only) {
    stat_or_throw(path, "read_only");
    plan.mounts.push_back({path, path, "", "", MS_BIND | MS_REC});
    plan.mounts.push_back(
        {"", path, "", "", MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(path)});
  }
  for (const std::string& path : s.hide) {
    const struct stat st = stat_or_throw(path, "hide");
    if (S_ISDIR(st.st_mode)) {
      plan.mounts.push_back({"tmpfs", path, "tmpfs", "mode=0555,size=4k",
                             MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC});
    } else {
      plan.mounts.push_back({"/dev/null", path, "", "", MS_BIND});
    }
  }
}

void plan_rlimits(const Rlimits& r, SandboxPlan& plan) {
  const std::pair<const char*, std::pair<int, std::optional<std::uint64_t>>> limits[] = {
      {"core", {RLIMIT_CORE, r.core}},    {"nofile", {RLIMIT_NOFILE, r.nofile}},
      {"fsize", {RLIMIT_FSIZE, r.fsize}}, {"stack", {RLIMIT_STACK, r.stack}},
      {"as", {RLIMIT_AS, r.as}},          {"nproc", {RLIMIT_NPROC, r.nproc}}};
  for (const auto& [name, entry] : limits) {
    const auto& [resource, value] = entry;
    if (!value) continue;
    const rlim_t wanted = *value == kRlimitUnlimited ? RLIM_INFINITY : *value;
    rlimit current{};
    ::getrlimit(resource, &current);
    if (wanted > current.rlim_max && !has_capability(CAP_SYS_RESOURCE)) {
      throw Error("sandbox.rlimits." + std::string(name) + " is above pollkill's own hard limit (" +
                      (current.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                                         : std::to_string(current.rlim_max)) +
                      "), which only root (CAP_SYS_RESOURCE) can raise",
                  "lower the limit or run pollkill as root");
    }
    plan.rlimits.push_back({resource, rlimit{wanted, wanted}});
  }
}

}  // namespace

std::string MountStep::describe() const {
  if (flags & MS_REMOUNT) return "remount '" + target + "' read-only";
  if (flags & MS_BIND) return "bind-mount '" + source + "' on '" + target + "'";
  if (!fstype.empty()) return "mount " + fstype + " on '" + target + "'";
  return "make '" + target + "' a private mount";
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return env;
}

std::vector<std::string> task_environment(const SandboxPolicy& sandbox,
                                          const std::vector<std::string>& environment) {
  std::vector<std::string> env;
  const auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (const std::string& entry : environment) {
    if (sandbox.clear_env && std::find(sandbox.pass_env.begin(), sandbox.pass_env.end(),
                                       name_of(entry)) == sandbox.pass_env.end()) {
      continue;
    }
    env.push_back(entry);
  }
  for (const auto& [name, value] : sandbox.env) {
    std::erase_if(env, [&](const std::string& entry) { return name_of(entry) == name; });
    env.push_back(name + "=" + value);
  }
  return env;
}

SandboxPlan prepare_sandbox(const Policy& policy, const std::vector<std::string>& environment) {
  const SandboxPolicy& s = policy.sandbox;
  SandboxPlan plan;
  plan.env = task_environment(s, environment);

  if (s.user || s.group) {
    if (!has_capability(CAP_SETUID) || !has_capability(CAP_SETGID)) {
      throw Error(
          "sandbox.user/sandbox.group: changing the task's user or group needs root "
          "(CAP_SETUID and CAP_SETGID), which this pollkill does not have",
          "run pollkill as root, or remove user and group from the policy");
    }
    UserEntry user{::getuid(), ::getgid()};
    if (s.user) {
      const auto found = find_user(*s.user);
      if (!found) throw Error("sandbox.user: unknown user '" + *s.user + "'");
      user = *found;
    }
    if (s.group) {
      const auto found = find_group(*s.group);
      if (!found) throw Error("sandbox.group: unknown group '" + *s.group + "'");
      user.gid = *found;
    }
    plan.uid = user.uid;
    plan.gid = user.gid;
  }

  const Namespaces& ns = s.namespaces;
  if (ns.any() && !has_capability(CAP_SYS_ADMIN)) {
    throw Error(
        "sandbox.namespaces: creating namespaces needs root (CAP_SYS_ADMIN), which this "
        "pollkill does not have",
        "run pollkill as root, or remove sandbox.namespaces from the policy");
  }
  if (ns.net) plan.clone_flags |= CLONE_NEWNET;
  if (ns.pid) plan.clone_flags |= CLONE_NEWPID;
  if (ns.ipc) plan.clone_flags |= CLONE_NEWIPC;
  if (ns.uts) plan.clone_flags |= CLONE_NEWUTS;
  if (ns.mount) plan.clone_flags |= CLONE_NEWNS;
  plan.new_cgroup_ns = ns.cgroup;
  plan.pid_init = ns.pid;
  plan.loopback_up = ns.net;
  if (s.hostname) plan.hostname = *s.hostname;
  if (ns.mount) plan_mounts(s, plan);

  plan_rlimits(s.rlimits, plan);
  if (s.umask) plan.umask = static_cast<int>(*s.umask);
  if (s.cwd) plan.cwd = *s.cwd;
  plan.no_new_privs = s.no_new_privs;
  plan.seccomp = build_seccomp_filter(policy.seccomp);
  if (!plan.seccomp.empty() && !plan.no_new_privs && (plan.uid || !has_capability(CAP_SYS_ADMIN))) {
    // Without no_new_privs the kernel only takes a filter from a process with CAP_SYS_ADMIN,
    // and the filter is loaded after the user change.
    throw Error(
        "[seccomp] with sandbox.no_new_privs = false needs CAP_SYS_ADMIN when the filter "
        "is loaded, which " +
            std::string(plan.uid ? "the task's user" : "this pollkill") + " does not have",
        "set sandbox.no_new_privs = true");
  }
  return plan;
}

}  // namespace pollkill
