#include "pollkill/seccomp.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

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
  const auto add = [&ctx, default_action](const std::vector<std::string>& names,
                                          std::uint32_t action) {
    if (action == default_action) return;
    for (const std::string& name : names) {
      const int number = seccomp_syscall_resolve_name(name.c_str());
      if (number == __NR_SCMP_ERROR) throw Error("seccomp: unknown system call '" + name + "'");
      check(seccomp_rule_add(ctx.get(), action, number, 0), "add a rule for '" + name + "'");
    }
  };
  add(policy.allow, SCMP_ACT_ALLOW);
  add(policy.deny, to_scmp(policy.deny_action));

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
