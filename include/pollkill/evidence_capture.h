// Taking evidence from a stuck task before it is killed: freeze it, read every process and
// thread, unwind their stacks, write `<dir>/<id>.<attempt>.evidence.{json,txt}`. The capture
// runs in a process of its own (EvidenceCapture) with a time budget, so that it never holds up
// the event loop or the other tasks of a batch, and the kill happens whatever becomes of it.
//
// The engine's sequence for a verdict whose status is in `[evidence] on`:
//   1. capture = EvidenceCapture::start(request)         forks; returns at once
//   2. register capture.fd() (readable when it ended) and a timer at capture.deadline()
//   3. on fd readable: outcome = capture.finish();  on the timer first: outcome = capture.abandon()
//   4. thaw_target(request.target)                        the task runs again (see below)
//   5. the usual termination: SIGTERM, kill_grace, kill (cgroup.kill or kill_members)
//   6. result.evidence = outcome.path; result.stack_signature = outcome.stack_signature;
//      result.reason = with_evidence_note(result.reason, outcome)
// Steps 3 and 4 must come before 5: a process pollkill is not the tracer of can only be reaped
// once its tracer (the capture process) has detached or exited, and a frozen task cannot run
// its SIGTERM handler.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/cgroupfs.h"
#include "pollkill/evidence.h"
#include "pollkill/spawn.h"
#include "pollkill/units.h"

namespace pollkill {

/// Where the task's processes are. Exactly one of `cgroup` and `tree_root` is set.
struct EvidenceTarget {
  /// cgroup mode: the task's cgroup (its processes from cgroup.procs; frozen with
  /// cgroup.freeze). Must stay open until the capture ends (the capture process uses the fd).
  const CgroupDir* cgroup = nullptr;
  /// subreaper mode: the task's lingering init; the task is every process under it (the init
  /// itself, pollkill's code, left out), stopped with SIGSTOP.
  pid_t tree_root = 0;
  /// The task's main process (for the signature of a task that is not burning CPU).
  pid_t main_pid = 0;
  /// subreaper mode: members that were stopped (state T) before the capture, which
  /// thaw_target leaves stopped.
  std::vector<pid_t> keep_stopped;
};

/// What to capture, and where to write it.
struct EvidenceRequest {
  EvidenceTarget target;
  std::filesystem::path dir;  ///< existing directory for the two files
  std::string id = "run";
  int attempt = 1;
  /// The files' names before ".evidence.json" and ".evidence.txt" (the task's log files'
  /// stem, safe for a file name); empty: "<id>.<attempt>".
  std::string file_stem;
  Status status = Status::hung;  ///< the verdict
  std::string reason;            ///< the verdict's reason
  Duration budget{2000};         ///< the whole capture, freeze to files written
};

/// What became of a capture, for the result.
struct EvidenceOutcome {
  std::optional<std::string> path;             ///< the .json file, when it was written
  std::optional<std::string> stack_signature;  ///< when one could be taken
  /// Empty when the evidence is complete; otherwise why it is missing or partial, e.g.
  /// "capture ran past its 2s budget" or "no stack signature: ptrace(PTRACE_SEIZE) ... EPERM".
  std::string missing;
};

/// The result's reason with a note when evidence is missing or partial:
/// "no CPU use ... for 2s (evidence: capture ran past its 2s budget)". Missing details that
/// leave a signature (kernel stacks of a non-root pollkill, one thread in D) stay in the file.
std::string with_evidence_note(const std::string& reason, const EvidenceOutcome& outcome);

/// Takes the evidence in the calling process, until `deadline`:
///  1. lists the task's processes and threads and reads, before anything changes them, what
///     the kernel says of each: stat (state, CPU), comm, cmdline, wchan, syscall, and the
///     kernel stack (/proc/TID/stack needs CAP_SYS_ADMIN; otherwise noted as missing);
///  2. freezes the task: cgroup.freeze, waiting (up to a quarter of the time left) until
///     cgroup.events says frozen; in subreaper mode SIGSTOP to every member until none is
///     left running (ProcTree::stop_members). Threads in uninterruptible sleep do not freeze;
///     the evidence then says it is not `frozen`;
///  3. lists the processes again (ones forked meanwhile get their kernel view read frozen) and
///     unwinds every thread's user stack (unwind_process), the signature's process first;
///  4. computes the signature.
/// It does not thaw the task: the caller decides what happens next (thaw_target). Never
/// throws for the task's sake (a process that vanishes is left out); the `missing` list says
/// what could not be read.
Evidence capture_evidence(const EvidenceRequest& request,
                          std::chrono::steady_clock::time_point deadline);

/// Writes `<dir>/<stem>.evidence.json` and `.txt` (each to a temporary name first, then
/// renamed, so that a reader never sees half a file); `file_stem` empty: "<id>.<attempt>".
/// Returns the .json path. Throws SystemError.
std::string write_evidence(const Evidence& evidence, const std::filesystem::path& dir,
                           const std::string& file_stem = {});

/// Lets the task run again after a capture: cgroup.freeze 0, or SIGCONT to every member of
/// the tree but `keep_stopped`. Idempotent; errors on a task that is already gone are ignored.
void thaw_target(const EvidenceTarget& target);

/// A capture running in a process of its own (a fork of pollkill, which runs capture_evidence
/// and write_evidence and reports the outcome through a pipe). Move-only; the destructor of a
/// capture that is still running kills and reaps it (abandon).
///
/// The capture process: PR_SET_PDEATHSIG(SIGKILL) (it dies with pollkill; its tracees are then
/// detached by the kernel and stay frozen until the guard kills the task), every descriptor
/// closed but the cgroup's and the pipe's, DEBUGINFOD_URLS unset (no network), SIGCHLD default
/// (it waits for ptrace stops). It allocates freely: pollkill is single-threaded when it forks.
/// Its own soft deadline is the budget minus a tenth, so that it can still write what it has.
class EvidenceCapture {
 public:
  /// Forks the capture process and returns at once. Throws SystemError when it cannot fork.
  static EvidenceCapture start(const EvidenceRequest& request);

  EvidenceCapture(EvidenceCapture&&) noexcept = default;
  EvidenceCapture& operator=(EvidenceCapture&&) noexcept = default;
  ~EvidenceCapture();

  /// Readable (EPOLLIN) when the capture process has ended: its pidfd.
  int fd() const noexcept { return process_.pidfd(); }
  /// When the engine stops waiting: start + budget.
  std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }
  bool running() const noexcept { return process_.process_running(); }

  /// After fd() became readable: reaps the capture process and reads its outcome.
  EvidenceOutcome finish();
  /// At the deadline (or to cancel): kills and reaps the capture process. Files it had not
  /// renamed into place are not there; the outcome says the budget ran out.
  EvidenceOutcome abandon();

 private:
  EvidenceCapture(Child process, UniqueFd report, std::chrono::steady_clock::time_point deadline,
                  Duration budget);
  EvidenceOutcome read_outcome(const Child::Exit& exit);

  Child process_;
  UniqueFd report_;  ///< the read end of the pipe the capture process writes its outcome to
  std::chrono::steady_clock::time_point deadline_;
  Duration budget_;
};

}  // namespace pollkill
