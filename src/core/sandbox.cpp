#include "pollkill/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "pollkill/error.h"
#include "pollkill/seccomp.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

extern char** environ;

namespace pollkill {
namespace {

namespace fs = std::filesystem;

// The task's own temporary areas with private_tmp: /tmp always, the others where they exist.
// Every other place a user without privileges may write to on a Debian host (/run/lock, and
// /var/lock and /run/shm, which lead to it and to /dev/shm) is read-only with read_only = "/".
constexpr const char* kPrivateTmpAreas[] = {"/tmp", "/var/tmp", "/dev/shm"};

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

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// `path` is `area` or lies below it (both canonical).
bool within(const std::string& path, const std::string& area) {
  return path == area || area == "/" || path.rfind(area + "/", 0) == 0;
}

std::string canonical_or_same(const std::string& path) {
  std::error_code ec;
  const fs::path canonical = fs::canonical(path, ec);
  return ec ? path : canonical.string();
}

// A file (a socket included) becomes /dev/null, read-only like a hidden directory.
void cover_with_null(const std::string& path, bool skip_missing, SandboxPlan& plan) {
  plan.mounts.push_back({"/dev/null", path, "", "", MS_BIND, false, skip_missing});
  plan.mounts.push_back({"", path, "", "",
                         MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/dev/null"), false,
                         skip_missing});
}

// A network namespace separates abstract unix sockets, not those bound to a path: the
// task could still connect to every one whose file it can reach and write to. So each one
// the host has bound (outside the areas the task already sees empty) becomes /dev/null.
void cover_host_sockets(const std::vector<std::string>& covered_areas, SandboxPlan& plan) {
  std::ifstream in("/proc/net/unix");
  if (!in) return;  // no unix sockets in this kernel
  std::ostringstream text;
  text << in.rdbuf();
  std::set<std::string> done;
  for (const std::string& bound : bound_unix_socket_paths(text.str())) {
    struct stat st {};
    // Only a socket: a file put at a listed path since (or a crafted name) stays visible.
    if (::lstat(bound.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    const fs::path listed(bound);
    const std::string path =
        (fs::path(canonical_or_same(listed.parent_path().string())) / listed.filename()).string();
    if (std::any_of(covered_areas.begin(), covered_areas.end(),
                    [&path](const std::string& area) { return within(path, area); })) {
      continue;
    }
    if (done.insert(path).second) cover_with_null(path, true, plan);
  }
}

void plan_mounts(const SandboxPolicy& s, SandboxPlan& plan) {
  // Nothing done in the task's mount namespace may propagate back to the host.
  plan.mounts.push_back({"", "/", "", "", MS_REC | MS_PRIVATE});
  // First, so that the task's own mounts below (proc, temporary areas) stay writable.
  for (const std::string& path : s.read_only) {
    stat_or_throw(path, "read_only");
    // mount_setattr needs a mount root; "/" is one, and a mount on top of the root would not
    // be seen by the task (its root directory stays the mount below).
    if (fs::path(path).lexically_normal() != "/") {
      plan.mounts.push_back({path, path, "", "", MS_BIND | MS_REC});
    }
    plan.mounts.push_back({"", path, "", "", 0, true});
  }
  if (s.namespaces.pid) {
    // /proc of the task's own pid namespace: it sees only its own processes.
    plan.mounts.push_back({"proc", "/proc", "proc", "", MS_NOSUID | MS_NODEV | MS_NOEXEC});
  }
  std::vector<std::string> covered_areas;
  if (s.private_tmp) {
    for (const char* area : kPrivateTmpAreas) {
      if (area != std::string("/tmp") && !is_directory(area)) continue;
      plan.mounts.push_back({"tmpfs", area, "tmpfs", "mode=1777", MS_NOSUID | MS_NODEV});
      plan.owned_by_task.emplace_back(area);
      covered_areas.push_back(canonical_or_same(area));
    }
  }
  for (const std::string& path : s.hide) {
    const struct stat st = stat_or_throw(path, "hide");
    if (S_ISDIR(st.st_mode)) {
      plan.mounts.push_back({"tmpfs", path, "tmpfs", "mode=0555,size=4k",
                             MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC});
      covered_areas.push_back(canonical_or_same(path));
    } else {
      cover_with_null(path, false, plan);
    }
  }
  if (s.namespaces.net) cover_host_sockets(covered_areas, plan);
}

// mount_setattr(2) came with Linux 5.12: ENOSYS for a call that would otherwise fail on its
// bad descriptor.
bool kernel_has_mount_setattr() {
  return !(::syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0) != 0 && errno == ENOSYS);
}

// Where pollkill's arguments and environment lie in its memory: fields 48 to 51 of
// /proc/self/stat (Linux 3.5), counted after the command name, which may hold spaces.
void find_own_arguments(SandboxPlan& plan) {
  std::ifstream in("/proc/self/stat");
  std::string stat;
  std::getline(in, stat);
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return;
  std::istringstream fields(stat.substr(close + 2));  // from field 3, the state
  std::string field;
  std::uintptr_t area[4] = {};
  for (int number = 3; number <= 51 && fields >> field; ++number) {
    if (number >= 48) area[number - 48] = std::stoull(field);
  }
  const auto memory = [](std::uintptr_t start, std::uintptr_t end) {
    return start && end > start ? MemoryArea{reinterpret_cast<char*>(start), end - start}
                                : MemoryArea{};
  };
  plan.init_arguments = memory(area[0], area[1]);
  plan.init_environment = memory(area[2], area[3]);
}

// A dynamic uid shared with a subordinate id range would let the task read what a user's
// containers wrote: refuse the overlap before anything runs.
void check_subordinate_ids(const UidRange& range) {
  for (const char* file : {"/etc/subuid", "/etc/subgid"}) {
    std::ifstream in(file);
    int line_number = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_number;
      std::istringstream fields(line);
      std::string owner, start, count;
      if (!std::getline(fields, owner, ':') || !std::getline(fields, start, ':') ||
          !std::getline(fields, count)) {
        continue;
      }
      std::uint64_t first = 0, size = 0;
      if (std::from_chars(start.data(), start.data() + start.size(), first).ec != std::errc() ||
          std::from_chars(count.data(), count.data() + count.size(), size).ec != std::errc() ||
          size == 0) {
        continue;
      }
      if (first <= range.last && first + size - 1 >= range.first) {
        throw Error("sandbox.dynamic_uids " + std::to_string(range.first) + "-" +
                        std::to_string(range.last) + " overlaps " + file + ":" +
                        std::to_string(line_number) + " (" + owner + ": " + start + " to " +
                        std::to_string(first + size - 1) + ")",
                    "set sandbox.dynamic_uids to a range that no user, container or other tool "
                    "on this host uses");
      }
    }
  }
}

// The lock directory: created when missing, then accepted only if this user owns it and no
// one else may write to it (no one else can then plant or remove lock files).
UniqueFd open_lock_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw SystemError(ec.value(), "create the dynamic uid lock directory '" + path + "'");
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno("open the dynamic uid lock directory '" + path + "'");
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) throw_errno("stat '" + path + "'");
  if (st.st_uid != ::geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    throw Error("the dynamic uid lock directory '" + path +
                    "' belongs to another user or others may write to it",
                "remove it; pollkill creates it again (root, mode 0755)");
  }
  return dir;
}

bool has_user_or_group(std::uint32_t id) {
  std::vector<char> buffer(16384);
  passwd user{}, *found_user = nullptr;
  group grp{}, *found_group = nullptr;
  return (::getpwuid_r(id, &user, buffer.data(), buffer.size(), &found_user) == 0 && found_user) ||
         (::getgrgid_r(id, &grp, buffer.data(), buffer.size(), &found_group) == 0 && found_group);
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
  if (read_only_tree) return "make '" + target + "' and every mount below it read-only";
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
    const std::string& wanted = name;  // clang 14 cannot capture a binding
    std::erase_if(env, [&](const std::string& entry) { return name_of(entry) == wanted; });
    env.push_back(name + "=" + value);
  }
  return env;
}

SandboxPlan prepare_sandbox(const Policy& policy, const std::vector<std::string>& environment) {
  const SandboxPolicy& s = policy.sandbox;
  SandboxPlan plan;
  plan.env = task_environment(s, environment);

  const bool dynamic = s.user == "dynamic";
  if (s.user || s.group) {
    if (!has_capability(CAP_SETUID) || !has_capability(CAP_SETGID)) {
      throw Error(
          "sandbox.user/sandbox.group: changing the task's user or group needs root "
          "(CAP_SETUID and CAP_SETGID), which this pollkill does not have",
          "run pollkill as root, or remove user and group from the policy");
    }
    UserEntry user{::getuid(), ::getgid()};
    if (s.user && !dynamic) {
      const auto found = find_user(*s.user);
      if (!found) throw Error("sandbox.user: unknown user '" + *s.user + "'");
      user = *found;
    }
    if (s.group) {
      const auto found = find_group(*s.group);
      if (!found) throw Error("sandbox.group: unknown group '" + *s.group + "'");
      user.gid = *found;
    }
    if (dynamic) {
      check_subordinate_ids(s.dynamic_uids);
      plan.dynamic_uids = s.dynamic_uids;
      if (s.group) plan.gid = user.gid;
    } else {
      plan.uid = user.uid;
      plan.gid = user.gid;
    }
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
  if (ns.pid) find_own_arguments(plan);
  if (ns.mount && !s.read_only.empty() && !kernel_has_mount_setattr()) {
    throw Error("sandbox.read_only needs mount_setattr (Linux 5.12), which this kernel lacks",
                "remove read_only from the policy, or run on Linux 5.12 or later");
  }
  plan.loopback_up = ns.net;
  if (s.hostname) plan.hostname = *s.hostname;
  if (ns.mount) plan_mounts(s, plan);

  plan_rlimits(s.rlimits, plan);
  if (s.umask) plan.umask = static_cast<int>(*s.umask);
  if (s.cwd) plan.cwd = *s.cwd;
  plan.no_new_privs = s.no_new_privs;
  plan.seccomp = build_seccomp_filter(policy.seccomp);
  const bool drops_user = plan.uid || plan.dynamic_uids;
  if (!plan.seccomp.empty() && !plan.no_new_privs &&
      (drops_user || !has_capability(CAP_SYS_ADMIN))) {
    // Without no_new_privs the kernel only takes a filter from a process with CAP_SYS_ADMIN,
    // and the filter is loaded after the user change.
    throw Error(
        "[seccomp] with sandbox.no_new_privs = false needs CAP_SYS_ADMIN when the filter "
        "is loaded, which " +
            std::string(drops_user ? "the task's user" : "this pollkill") + " does not have",
        "set sandbox.no_new_privs = true");
  }
  return plan;
}

std::vector<std::string> bound_unix_socket_paths(std::string_view proc_net_unix) {
  std::vector<std::string> paths;
  std::set<std::string, std::less<>> seen;
  std::size_t start = proc_net_unix.find('\n');  // the header
  while (start != std::string_view::npos && start + 1 < proc_net_unix.size()) {
    const std::size_t end = proc_net_unix.find('\n', start + 1);
    std::string_view line = proc_net_unix.substr(
        start + 1, end == std::string_view::npos ? std::string_view::npos : end - start - 1);
    start = end;
    // Num RefCount Protocol Flags Type St Inode Path: the path is what follows the seventh
    // field and its space, verbatim.
    std::size_t at = 0;
    for (int field = 0; field < 7 && at != std::string_view::npos; ++field) {
      at = line.find_first_not_of(' ', at);
      if (at != std::string_view::npos) at = line.find(' ', at);
    }
    if (at == std::string_view::npos || at + 1 >= line.size()) continue;  // unnamed
    const std::string_view path = line.substr(at + 1);
    if (path.front() != '/') continue;  // abstract (@...) or bound relative to its binder
    if (seen.insert(std::string(path)).second) paths.emplace_back(path);
  }
  return paths;
}

namespace {

constexpr int kProbeFailed = 100;  // errno values fit below 256 - 100

// The probe's child and grandchild share pollkill's memory (CLONE_VM | CLONE_VFORK, as
// posix_spawn does), so that neither copies pollkill's address space (the page tables of a
// process with a dozen libraries, then copy-on-write faults in pollkill afterwards). Each runs
// on a stack of its own in the parent's frame, while its parent is suspended, and makes only
// system calls.
constexpr std::size_t kProbeStackSize = 16 * 1024;

struct Probe {
  uid_t uid;
  std::byte* grandchild_stack_top;
};

// The raw exit: no sanitizer's _exit interceptor (a leak check) may run in pollkill's memory.
[[noreturn]] void probe_exit(int status) {
  for (;;) ::syscall(SYS_exit_group, status);
}

int probe_grandchild(void*) {
  probe_exit(0);
}

// The kernel counts a new child before it checks RLIMIT_NPROC, and exempts only root and
// CAP_SYS_RESOURCE/CAP_SYS_ADMIN, all gone after the uid change; the count is the same whether
// or not the child shares its parent's memory. Exit status: 0 alone, 1 not alone, else
// kProbeFailed + the errno of a failed step.
int probe_child(void* argument) {
  const Probe& probe = *static_cast<const Probe*>(argument);
  const rlimit two{2, 2};
  if (::setrlimit(RLIMIT_NPROC, &two) != 0) probe_exit(kProbeFailed + errno);
  // The raw system call: glibc's setresuid would signal the threads of the process whose
  // memory this child shares, to change their ids too.
  if (::syscall(SYS_setresuid, probe.uid, probe.uid, probe.uid) != 0)
    probe_exit(kProbeFailed + errno);
  const int grandchild = ::clone(probe_grandchild, probe.grandchild_stack_top,
                                 CLONE_VM | CLONE_VFORK | SIGCHLD, nullptr);
  if (grandchild < 0) probe_exit(errno == EAGAIN ? 1 : kProbeFailed + errno);
  ::waitpid(grandchild, nullptr, 0);
  probe_exit(0);
}

}  // namespace

bool uid_has_processes(uid_t uid) {
  alignas(16) std::byte child_stack[kProbeStackSize];
  alignas(16) std::byte grandchild_stack[kProbeStackSize];
  Probe probe{uid, grandchild_stack + sizeof grandchild_stack};
  // No handler of pollkill's may run in the children, which share its memory: every signal
  // stays blocked across the probe (the children never unblock them).
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  // glibc's clone() runs no atfork handlers (fork() would, and they take locks).
  const pid_t child = ::clone(probe_child, child_stack + sizeof child_stack,
                              CLONE_VM | CLONE_VFORK | SIGCHLD, &probe);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
#if defined(__SANITIZE_ADDRESS__)
  // The children's instrumented frames poisoned parts of them and never returned to clear them.
  ASAN_UNPOISON_MEMORY_REGION(child_stack, sizeof child_stack);
  ASAN_UNPOISON_MEMORY_REGION(grandchild_stack, sizeof grandchild_stack);
#endif
  if (child < 0) {
    throw SystemError(clone_errno, "start the process count of uid " + std::to_string(uid));
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("wait for the process count of uid " + std::to_string(uid));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) <= 1) return WEXITSTATUS(status) == 1;
  const std::string what = "count the processes of uid " + std::to_string(uid);
  if (WIFEXITED(status) && WEXITSTATUS(status) > kProbeFailed) {
    // EINVAL from setresuid: the uid is not mapped in pollkill's user namespace.
    throw SystemError(WEXITSTATUS(status) - kProbeFailed, what);
  }
  throw Error("cannot " + what + " (the check " +
              (WIFEXITED(status) ? "exited " + std::to_string(WEXITSTATUS(status))
                                 : "was killed by signal " + std::to_string(WTERMSIG(status))) +
              ")");
}

DynamicUid take_dynamic_uid(const UidRange& range, const std::string& lock_dir) {
  const UniqueFd dir = open_lock_dir(lock_dir);
  std::uint32_t in_use = 0, named = 0;
  for (std::uint64_t id = range.first; id <= range.last; ++id) {
    const auto uid = static_cast<uid_t>(id);
    if (has_user_or_group(uid)) {
      ++named;
      continue;
    }
    const std::string name = std::to_string(uid);
    UniqueFd lock(
        ::openat(dir.get(), name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!lock) throw_errno("open the lock of uid " + name + " in '" + lock_dir + "'");
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) throw_errno("lock uid " + name + " in '" + lock_dir + "'");
      ++in_use;
      continue;
    }
    if (uid_has_processes(uid)) {
      ++in_use;
      continue;
    }
    return {uid, std::move(lock)};
  }
  throw Error("sandbox.dynamic_uids: no uid of " + std::to_string(range.first) + "-" +
                  std::to_string(range.last) + " is free (" + std::to_string(in_use) +
                  " in use by tasks or other processes, " + std::to_string(named) +
                  " named by a user or group)",
              "widen sandbox.dynamic_uids, or run fewer tasks at once");
}

}  // namespace pollkill
