#include "pollkill/stack_unwind.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "pollkill/dynlib.h"
#include "pollkill/error.h"

namespace pollkill {
namespace {

using SteadyClock = std::chrono::steady_clock;

// libdw is opened when the first stacks are taken (in the evidence capture process), not at
// pollkill's start: POLLKILL_LIBDW_SONAME is the soname of the library the headers came from
// (CMakeLists.txt).
constexpr DynlibSpec kLibdw = {POLLKILL_LIBDW_SONAME,
                               "to unwind the stacks of a stuck task (evidence capture)",
                               "Debian: libdw1; Fedora: elfutils-libs"};

int find_elf(Dwfl_Module* mod, void** userdata, const char* module_name, Dwarf_Addr base,
             char** file_name, Elf** elfp);

char* g_debuginfo_path = nullptr;  // libdwfl's default search path

// The libdwfl functions stack_unwind calls.
struct Libdw {
  Dynlib lib = Dynlib::open(kLibdw);
  POLLKILL_DYNLIB_SYMBOL(dwfl_begin);
  POLLKILL_DYNLIB_SYMBOL(dwfl_end);
  POLLKILL_DYNLIB_SYMBOL(dwfl_errmsg);
  POLLKILL_DYNLIB_SYMBOL(dwfl_linux_proc_find_elf);
  POLLKILL_DYNLIB_SYMBOL(dwfl_standard_find_debuginfo);
  POLLKILL_DYNLIB_SYMBOL(dwfl_linux_proc_report);
  POLLKILL_DYNLIB_SYMBOL(dwfl_report_end);
  POLLKILL_DYNLIB_SYMBOL(dwfl_linux_proc_attach);
  POLLKILL_DYNLIB_SYMBOL(dwfl_getthread_frames);
  POLLKILL_DYNLIB_SYMBOL(dwfl_frame_pc);
  POLLKILL_DYNLIB_SYMBOL(dwfl_addrmodule);
  POLLKILL_DYNLIB_SYMBOL(dwfl_module_info);
  POLLKILL_DYNLIB_SYMBOL(dwfl_module_addrinfo);
  POLLKILL_DYNLIB_SYMBOL(dwfl_module_getsrc);
  POLLKILL_DYNLIB_SYMBOL(dwfl_lineinfo);
  const Dwfl_Callbacks callbacks = {
      find_elf,
      dwfl_standard_find_debuginfo,
      nullptr,  // section_address: only for ET_REL files
      &g_debuginfo_path,
  };
};

const Libdw& libdw() {
  return cached<Libdw>();
}

// The dependency, for packagers: the DT_NEEDED entry it replaces. Evidence is taken by default
// (a batch's hung, spinning and thrashing tasks), hence "required".
POLLKILL_DLOPEN_NOTE(kLibdwNote, "evidence-stacks",
                     "unwind and symbolize the stacks of a stuck task (evidence capture)",
                     "required", POLLKILL_LIBDW_SONAME);

// The process whose modules find_elf opens: libdwfl's callback gets no argument that could
// carry it, and unwinding is single-threaded.
thread_local pid_t g_find_elf_pid = 0;

// Opens a module through /proc/PID/root first, so that a task in a mount namespace of its own
// (pollkill's sandbox) is read as it sees its files; everything else (the vDSO, deleted files)
// is libdwfl's own lookup.
int find_elf(Dwfl_Module* mod, void** userdata, const char* module_name, Dwarf_Addr base,
             char** file_name, Elf** elfp) {
  if (module_name[0] == '/' && g_find_elf_pid > 0) {
    const std::string path = "/proc/" + std::to_string(g_find_elf_pid) + "/root" + module_name;
    struct stat st;
    // Only regular files: a mapped device could block on open or read.
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        *file_name = ::strdup(path.c_str());
        if (*file_name) return fd;
        ::close(fd);
      }
    }
  }
  return libdw().dwfl_linux_proc_find_elf(mod, userdata, module_name, base, file_name, elfp);
}

std::string dwfl_error() {
  const char* message = libdw().dwfl_errmsg(-1);
  return message ? message : "unknown libdwfl error";
}

// What a thread's stop said, for the detach: a signal-delivery stop must get its signal back.
struct Stopped {
  int resume_signal = 0;
};

struct FrameWalk {
  Dwfl* dwfl;
  std::vector<Frame>* frames;
  std::size_t max_frames;
  SteadyClock::time_point deadline;
  bool out_of_time = false;
};

Frame symbolize(Dwfl* dwfl, Dwarf_Addr pc, bool activation) {
  Frame frame;
  frame.pc = pc;
  // A return address points after the call: look up the call itself (as eu-stack does).
  const Dwarf_Addr lookup = activation ? pc : pc - 1;
  Dwfl_Module* module = libdw().dwfl_addrmodule(dwfl, lookup);
  if (!module) return frame;
  Dwarf_Addr start = 0;
  const char* name = libdw().dwfl_module_info(module, nullptr, &start, nullptr, nullptr, nullptr,
                                              nullptr, nullptr);
  if (name) frame.module = name;
  frame.module_offset = pc - start;
  GElf_Off offset = 0;
  GElf_Sym sym;
  if (const char* symbol =
          libdw().dwfl_module_addrinfo(module, lookup, &offset, &sym, nullptr, nullptr, nullptr)) {
    frame.symbol = symbol;
    frame.function = demangle(symbol);
    frame.offset = pc - (lookup - offset);
  }
  if (Dwfl_Line* line = libdw().dwfl_module_getsrc(module, lookup)) {
    int lineno = 0;
    if (const char* file =
            libdw().dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
      frame.file = file;
      frame.line = lineno;
    }
  }
  return frame;
}

int on_frame(Dwfl_Frame* state, void* arg) {
  auto* walk = static_cast<FrameWalk*>(arg);
  if (SteadyClock::now() >= walk->deadline) {
    walk->out_of_time = true;
    return DWARF_CB_ABORT;
  }
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!libdw().dwfl_frame_pc(state, &pc, &activation)) return DWARF_CB_ABORT;
  walk->frames->push_back(symbolize(walk->dwfl, pc, activation));
  return walk->frames->size() >= walk->max_frames ? DWARF_CB_ABORT : DWARF_CB_OK;
}

std::string seize_error(int err, pid_t tid) {
  std::string why = "ptrace(PTRACE_SEIZE) of thread " + std::to_string(tid) + ": " +
                    std::strerror(err) + " (" + errno_name(err) + ")";
  if (err == EPERM) {
    std::ifstream yama("/proc/sys/kernel/yama/ptrace_scope");
    int scope = 0;
    if (yama >> scope && scope > 0) {
      why += "; kernel.yama.ptrace_scope is " + std::to_string(scope) +
             ": run pollkill as root (CAP_SYS_PTRACE) or set it to 0";
    } else {
      why +=
          ": another tracer (a debugger), or a task that is not dumpable and pollkill "
          "without CAP_SYS_PTRACE";
    }
  }
  return why;
}

}  // namespace

UnwoundStacks unwind_process(pid_t pid, const std::vector<pid_t>& tids,
                             SteadyClock::time_point deadline, std::size_t max_frames) {
  UnwoundStacks out;
  // Without libdw there is nothing to unwind with: no thread is stopped for nothing, and each
  // says why it has no stack (the evidence's "missing"), as for any other unwind failure.
  const Libdw* dw = nullptr;
  try {
    dw = &libdw();
  } catch (const Error& e) {
    for (pid_t tid : tids) out.missing[tid] = std::string(e.what()) + "; " + e.hint();
    return out;
  }
  // Attach and interrupt every thread first, then wait: the stops happen in parallel.
  std::vector<pid_t> seized;
  for (pid_t tid : tids) {
    if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
      out.missing[tid] = seize_error(errno, tid);
      continue;
    }
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
      out.missing[tid] = std::string("ptrace(PTRACE_INTERRUPT): ") + std::strerror(errno);
    }
    seized.push_back(tid);
  }
  std::map<pid_t, Stopped> stopped;
  std::vector<pid_t> waiting = seized;
  while (!waiting.empty()) {
    std::vector<pid_t> still;
    for (pid_t tid : waiting) {
      int status = 0;
      const pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
      if (r == tid && WIFSTOPPED(status)) {
        // An event stop (status >> 16 != 0: the interrupt, or a group stop under SEIZE) keeps no
        // signal; a signal-delivery stop must have its signal delivered on the detach.
        stopped[tid] = Stopped{(status >> 16) == 0 ? WSTOPSIG(status) : 0};
      } else if (r == tid) {
        out.missing[tid] = "the thread ended during the capture";
      } else if (r < 0) {
        out.missing[tid] = std::string("waitpid: ") + std::strerror(errno);
      } else {
        still.push_back(tid);
      }
    }
    waiting.swap(still);
    if (waiting.empty()) break;
    if (SteadyClock::now() >= deadline) {
      for (pid_t tid : waiting) {
        out.missing[tid] =
            "did not stop within the capture budget (in uninterruptible sleep, state D?)";
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }

  if (!stopped.empty()) {
    std::unique_ptr<Dwfl, decltype(&dwfl_end)> dwfl(dw->dwfl_begin(&dw->callbacks), dw->dwfl_end);
    g_find_elf_pid = pid;
    std::string failure;
    if (!dwfl) {
      failure = "dwfl_begin: " + dwfl_error();
    } else if (dw->dwfl_linux_proc_report(dwfl.get(), pid) != 0 ||
               dw->dwfl_report_end(dwfl.get(), nullptr, nullptr) != 0) {
      failure =
          "reading the process's modules (/proc/" + std::to_string(pid) + "/maps): " + dwfl_error();
    } else if (const int err = dw->dwfl_linux_proc_attach(dwfl.get(), pid, true); err != 0) {
      failure =
          "dwfl_linux_proc_attach: " + (err > 0 ? std::string(std::strerror(err)) : dwfl_error());
    }
    for (const auto& [tid, stop] : stopped) {
      if (!failure.empty()) {
        out.missing[tid] = failure;
        continue;
      }
      std::vector<Frame> frames;
      FrameWalk walk{dwfl.get(), &frames, max_frames, deadline};
      if (dw->dwfl_getthread_frames(dwfl.get(), tid, on_frame, &walk) != 0 && frames.empty()) {
        out.missing[tid] = walk.out_of_time ? "the capture budget ran out"
                                            : "dwfl_getthread_frames: " + dwfl_error();
      }
      // Unwinding usually ends with an error at the outermost frame (no caller's CFI): the
      // frames found so far are the stack.
      if (!frames.empty()) {
        out.frames[tid] = std::move(frames);
        out.missing.erase(tid);
      }
    }
    g_find_elf_pid = 0;
  }
  for (const auto& [tid, stop] : stopped) {
    ::ptrace(PTRACE_DETACH, tid, nullptr,
             reinterpret_cast<void*>(static_cast<std::intptr_t>(stop.resume_signal)));
  }
  return out;
}

}  // namespace pollkill
