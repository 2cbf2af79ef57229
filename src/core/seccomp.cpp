#include "pollkill/seccomp.h"

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "pollkill/error.h"
#include "pollkill/fd.h"

namespace pollkill {
namespace {

std::uint32_t to_scmp(const SeccompAction& action) {
  switch (action.kind) {
    case SeccompAction::allow: return SCMP_ACT_ALLOW;
    case SeccompAction::error:
      return SCMP_ACT_ERRNO(static_cast<std::uint32_t>(action.error_number));
    case SeccompAction::kill: return SCMP_ACT_KILL_PROCESS;
    case SeccompAction::log: return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;
}

// libseccomp returns -errno.
void check(int rc, const std::string& what) {
  if (rc < 0) throw SystemError(-rc, "seccomp: " + what);
}

// The CLONE_NEW* flags. clone(2) cannot take CLONE_NEWTIME (0x80 lies in its exit-signal
// byte); unshare(2) can.
constexpr std::uint64_t kCloneNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                                               CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                                               CLONE_NEWNET;
constexpr std::uint64_t kUnshareNamespaceFlags = kCloneNamespaceFlags | CLONE_NEWTIME;

// Which argument of clone holds the flags: the second on s390, whose clone takes the stack
// first.
#if defined(__s390__) || defined(__s390x__)
constexpr unsigned kCloneFlagsArgument = 1;
#else
constexpr unsigned kCloneFlagsArgument = 0;
#endif

bool lets_through(std::uint32_t action) {
  return action == SCMP_ACT_ALLOW || action == SCMP_ACT_LOG;
}

}  // namespace

std::vector<sock_filter> build_seccomp_filter(const SeccompPolicy& policy) {
  if (!policy.active()) return {};
  const std::uint32_t default_action = to_scmp(policy.default_action);
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(default_action),
                                                       &seccomp_release);
  if (!ctx) throw Error("seccomp: cannot create a filter (seccomp_init failed)");
  // Calls through a foreign syscall table (i386 int 0x80, x32) kill the task.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
        "set the action for other architectures");
  // The child sets no_new_privs itself (sandbox.no_new_privs); libseccomp only uses this
  // attribute in seccomp_load, which pollkill does not call.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "clear the no_new_privs attribute");
  const std::uint32_t deny_action = to_scmp(policy.deny_action);
  const auto listed = [](const std::vector<std::string>& names, const char* name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  // What a call gets without deny_new_namespaces.
  const auto action_of = [&](const char* name) {
    if (listed(policy.deny, name)) return deny_action;
    if (listed(policy.allow, name)) return static_cast<std::uint32_t>(SCMP_ACT_ALLOW);
    return default_action;
  };
  const auto resolve = [](const std::string& name) {
    const int number = seccomp_syscall_resolve_name(name.c_str());
    if (number == __NR_SCMP_ERROR) throw Error("seccomp: unknown system call '" + name + "'");
    return number;
  };
  // deny_new_namespaces: calls whose flags decide, kept out of the plain rules below (an
  // unconditional rule would swallow the conditional ones in libseccomp).
  std::vector<std::string> by_flags;
  if (policy.deny_new_namespaces) {
    const struct {
      const char* name;
      unsigned argument;
      std::uint64_t mask;
    } calls[] = {{"clone", kCloneFlagsArgument, kCloneNamespaceFlags},
                 {"unshare", 0, kUnshareNamespaceFlags}};
    for (const auto& call : calls) {
      const std::uint32_t base = action_of(call.name);
      if (!lets_through(base)) continue;  // refused whatever the flags
      by_flags.emplace_back(call.name);
      const int number = resolve(call.name);
      const std::string what = std::string("add the namespace rules for '") + call.name + "'";
      for (std::uint64_t bit = 1; bit != 0; bit <<= 1) {
        if (!(call.mask & bit) || deny_action == default_action) continue;
        check(seccomp_rule_add(ctx.get(), deny_action, number, 1,
                               SCMP_CMP(call.argument, SCMP_CMP_MASKED_EQ, bit, bit)),
              what);
      }
      if (base != default_action) {
        check(seccomp_rule_add(ctx.get(), base, number, 1,
                               SCMP_CMP(call.argument, SCMP_CMP_MASKED_EQ, call.mask, 0)),
              what);
      }
    }
    // clone3 takes its flags in a structure, which seccomp cannot read. ENOSYS is what a
    // kernel before 5.3 answers, and glibc (2.34 and later: pthread_create, posix_spawn)
    // then falls back to clone, whose flags the rules above see. Docker's default profile
    // does the same.
    if (lets_through(action_of("clone3"))) {
      if (listed(policy.allow, "clone3")) {
        throw Error(
            "seccomp: deny_new_namespaces cannot filter clone3, whose flags seccomp "
            "cannot read, and allow lists it",
            "remove clone3 from seccomp.allow");
      }
      by_flags.emplace_back("clone3");
      check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), resolve("clone3"), 0),
            "add the rule for 'clone3'");
    }
  }
  const auto add = [&](const std::vector<std::string>& names, std::uint32_t action) {
    if (action == default_action) return;
    for (const std::string& name : names) {
      const int number = resolve(name);
      if (listed(by_flags, name.c_str())) continue;
      check(seccomp_rule_add(ctx.get(), action, number, 0), "add a rule for '" + name + "'");
    }
  };
  add(policy.allow, SCMP_ACT_ALLOW);
  add(policy.deny, deny_action);

  // libseccomp 2.5 exports only to a descriptor; a memfd keeps it in memory.
  UniqueFd memory(::memfd_create("pollkill-seccomp", MFD_CLOEXEC));
  if (!memory) throw_errno("memfd_create for the seccomp filter");
  check(seccomp_export_bpf(ctx.get(), memory.get()), "export the filter as BPF");
  const off_t size = ::lseek(memory.get(), 0, SEEK_END);
  if (size < 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    throw Error("seccomp: the exported filter has an odd size");
  }
  std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
  if (::pread(memory.get(), program.data(), static_cast<std::size_t>(size), 0) != size) {
    throw_errno("read back the seccomp filter");
  }
  return program;
}

}  // namespace pollkill
