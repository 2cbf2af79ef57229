// The seccomp filter of a task: built with libseccomp in pollkill itself, before the clone, and
// handed to the child as classic BPF so that the child only has to make one system call.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "pollkill/policy.h"

namespace pollkill {

/// The filter for `policy`, as BPF instructions ready for seccomp(SECCOMP_SET_MODE_FILTER).
/// Empty when the policy asks for no filter (default "allow" and no deny list).
///
/// Rules: each name in `allow` gets SCMP_ACT_ALLOW, each name in `deny` gets `deny_action`,
/// every other call of the native architecture gets `default`. A rule whose action equals the
/// default is left out (libseccomp refuses it, and it would change nothing). "kill" is
/// SECCOMP_RET_KILL_PROCESS, so the whole task dies of SIGSYS, not just the calling thread.
///
/// deny_new_namespaces: where clone or unshare would otherwise go through, a CLONE_NEW* bit
/// in its flags word gets `deny_action` (the argument comparison is on the flags alone), and
/// clone3, whose flags lie in memory seccomp cannot read, fails with ENOSYS so that libc
/// falls back to clone. An allow list naming clone3 is then an Error.
///
/// Only the native architecture's table is in the filter, and a call made through another
/// one (i386 `int 0x80` on x86_64, or the x32 ABI) kills the task (SCMP_FLTATR_ACT_BADARCH =
/// KILL_PROCESS): otherwise a deny list could be bypassed by calling the same system call under
/// its i386 number. Throws Error when libseccomp fails.
std::vector<sock_filter> build_seccomp_filter(const SeccompPolicy& policy);

}  // namespace pollkill
