// User-space stacks of a live, stopped process, unwound and symbolized with elfutils' libdwfl
// (the library behind eu-stack and systemd-coredump): pollkill writes no unwinder of its own.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "pollkill/evidence.h"

namespace pollkill {

/// The stacks of one process's threads.
struct UnwoundStacks {
  std::map<pid_t, std::vector<Frame>> frames;  ///< by tid, innermost first
  std::map<pid_t, std::string> missing;        ///< by tid: why there is no stack
};

/// Unwinds the threads `tids` of process `pid`, giving up on what is left at `deadline`.
///
/// Each thread is attached with PTRACE_SEIZE and stopped with PTRACE_INTERRUPT. Unlike
/// PTRACE_ATTACH (which sends SIGSTOP, and is what libdwfl does by itself), this stops a thread
/// frozen by cgroup v2's cgroup.freeze: the interrupt trap is taken before the freezer's, and
/// once detached the thread goes back to being frozen (checked on Linux 6.1 and 6.18). A thread
/// in a group stop (SIGSTOP) is re-trapped the same way and stays stopped after the detach. A
/// thread in uninterruptible sleep (D) stops only when it wakes: it is waited for until the
/// deadline and then reported missing. Stopped threads are unwound with
/// dwfl_linux_proc_attach(assume_ptrace_stopped) and dwfl_getthread_frames (at most
/// `max_frames` each), symbolized (function, offset, module, file:line where debug information
/// exists; modules are opened through /proc/PID/root, so a task in its own mount namespace is
/// read as it sees its files), then detached, a signal that stopped them re-delivered.
///
/// Threads that were seized but never stopped stay attached until the calling process exits
/// (ptrace detaches only stopped tracees): call this from a process that exits afterwards, as
/// EvidenceCapture does. Unset DEBUGINFOD_URLS in that process: libdwfl would otherwise fetch
/// debug information over the network.
///
/// Permission: ptrace needs the task's uid (and a task that is not dumpable needs
/// CAP_SYS_PTRACE), and with Yama's kernel.yama.ptrace_scope >= 1 a process that is not the
/// task's ancestor needs CAP_SYS_PTRACE. A refusal is reported per thread in `missing`.
UnwoundStacks unwind_process(pid_t pid, const std::vector<pid_t>& tids,
                             std::chrono::steady_clock::time_point deadline,
                             std::size_t max_frames = 64);

}  // namespace pollkill
