// Evidence of where a stuck task was when pollkill stopped it: every process and thread, what
// the kernel says about each (state, wait channel, system call, kernel stack) and its
// user-space stack, symbolized. This header is the data, the stack signature, and the two
// files it is written to; evidence_capture.h takes it from a live task.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pollkill/status.h"

namespace pollkill {

/// One frame of a user-space stack, innermost first.
struct Frame {
  std::uint64_t pc = 0;      ///< the frame's program counter (a return address below the top)
  std::string symbol;        ///< the ELF symbol as found (mangled); empty when unknown
  std::string function;      ///< `symbol` demangled; empty when unknown
  std::uint64_t offset = 0;  ///< pc minus the symbol's address (meaningful with a symbol)
  std::string module;        ///< the mapped file ("/usr/lib/.../libc.so.6", "[vdso: 12]")
  std::uint64_t module_offset = 0;  ///< pc minus the module's load address: stable across runs
  std::string file;                 ///< source file, where debug information has it
  int line = 0;                     ///< source line (0: unknown)
};

/// One thread. The kernel-side fields are read just before the task is frozen (a frozen or
/// stopped thread's wait channel and kernel stack only show the freezer); the user stack is
/// unwound while it is frozen.
struct ThreadEvidence {
  pid_t tid = 0;
  std::string comm;   ///< the thread's name (/proc/TID/comm)
  char state = '?';   ///< R S D Z T t X I, from /proc/TID/stat
  std::string wchan;  ///< where in the kernel it sleeps ("anon_pipe_read"); empty: running
  /// The system call it is blocked in (/proc/TID/syscall), -1 when blocked outside one,
  /// nullopt when running or unknown.
  std::optional<long> syscall;
  double cpu_s = 0;  ///< CPU time of the thread (utime + stime)
  /// /proc/TID/stack lines, innermost first ("anon_pipe_read+0x366/0x410").
  std::vector<std::string> kernel_stack;
  std::string kernel_stack_missing;  ///< why kernel_stack is empty (e.g. needs CAP_SYS_ADMIN)
  std::vector<Frame> user_stack;
  std::string user_stack_missing;  ///< why user_stack is empty
};

struct ProcessEvidence {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;
  std::vector<std::string> cmdline;
  std::vector<ThreadEvidence> threads;  ///< the thread group leader first
};

/// Everything captured about one stuck task attempt. JSON schema: docs/ARCHITECTURE.md,
/// "Evidence".
struct Evidence {
  std::string id = "run";
  int attempt = 1;
  Status status = Status::hung;  ///< the verdict that asked for the evidence
  std::string reason;
  std::string captured_at;      ///< RFC 3339 UTC with milliseconds
  double capture_s = 0;         ///< how long the capture took
  std::string mode = "cgroup";  ///< "cgroup" (frozen with cgroup.freeze) or "subreaper" (SIGSTOP)
  bool frozen = false;          ///< every process was frozen (stopped) while unwinding
  pid_t main_pid = 0;           ///< the task's main process
  std::vector<ProcessEvidence> processes;  ///< by pid
  std::string stack_signature;             ///< see stack_signature(); empty when none
  pid_t signature_tid = 0;                 ///< the thread it was taken from
  /// What could not be captured and why, one sentence each ("user stacks: ...").
  std::vector<std::string> missing;
};

/// How many frames a signature names.
inline constexpr std::size_t kSignatureFrames = 3;

/// The thread a signature is taken from, or nullptr when there is no thread at all:
///  - for CPU verdicts (spinning, cpu_limit): the busiest thread, i.e. among the threads that
///    were running or runnable (state R) the one with the most CPU time, else the one with the
///    most CPU time of all;
///  - otherwise (hung, thrashing, timeout, ...): the main thread of the process the task was
///    waiting on: starting at the main process (the lowest pid when it is gone), while that
///    process's main thread is blocked in wait4 or waitid and it has children in the evidence,
///    move to its child with the most CPU time. So a shell script or wrapper waiting for the
///    program that hangs yields the program's stack.
const ThreadEvidence* signature_thread(const Evidence& evidence);

/// The signature: "<process comm>: f0 < f1 < f2", the thread's innermost frames after skipping
/// the leading runtime frames (is_runtime_frame; all kept when every frame is one), at most
/// kSignatureFrames of them. A frame names its function without parameters or template arguments
/// (short_function_name), or "<module file name>+0x<module_offset>" without a symbol: stable
/// across runs, since neither depends on where the module was loaded. Without a user stack
/// the kernel's view stands in: "<comm>: [kernel] <wchan>". Empty when there is neither.
/// Example: "gmsh: List_Nbr < gmsh_yyparse < ParseFile".
std::string stack_signature(const Evidence& evidence);

/// A demangled name without its parameter list, trailing qualifiers, template arguments and
/// symbol version ("@@GLIBC_2.34"):
/// "GModel::readGEO(std::string const&) const" -> "GModel::readGEO",
/// "std::vector<int>::push_back(int&&)" -> "std::vector::push_back", "operator<" kept.
std::string short_function_name(std::string_view demangled);

/// The C++ demangling of an ELF symbol ("_ZN6GModel7readGEO..."), or the symbol itself.
std::string demangle(std::string_view symbol);

/// Whether a module belongs to the system runtime: the C library and dynamic loader,
/// libpthread, the vDSO, libstdc++, libgcc_s, and the sanitizer runtimes that interpose them.
bool is_runtime_module(std::string_view module);
/// Whether a signature skips this frame when it leads the stack: a runtime module's, or a
/// standard library template instantiated into the program (std::, __gnu_cxx::), whose helper
/// a loop happened to be caught in says nothing about the program.
bool is_runtime_frame(const Frame& frame);

/// The evidence as JSON (schema version 1, keys in a fixed order).
nlohmann::ordered_json to_json(const Evidence& evidence);
/// A short human form: the verdict, the signature, and per thread its state and top frames.
std::string format_text(const Evidence& evidence);

/// The file names for an attempt's evidence: "<id>.<attempt>.evidence.json" and ".txt".
std::string evidence_json_name(const std::string& id, int attempt);
std::string evidence_text_name(const std::string& id, int attempt);

/// Parsers for the /proc files read per thread (pure).
/// /proc/TID/syscall: "0 0x3 ..." -> 0; "-1 0x... 0x..." -> -1; "running" -> nullopt.
std::optional<long> parse_proc_syscall(std::string_view text);
/// /proc/TID/stack: "[<0>] anon_pipe_read+0x366/0x410\n" lines -> "anon_pipe_read+0x366/0x410".
std::vector<std::string> parse_kernel_stack(std::string_view text);
/// /proc/PID/cmdline: NUL-separated arguments.
std::vector<std::string> parse_cmdline(std::string_view text);

}  // namespace pollkill
