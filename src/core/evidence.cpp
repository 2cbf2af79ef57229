#include "pollkill/evidence.h"

#include <cxxabi.h>
#include <sys/syscall.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "pollkill/results.h"

namespace pollkill {
namespace {

// The pieces of `text` between separators; a final separator ends the last piece.
std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(separator, pos);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::string_view basename_of(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string hex(std::uint64_t value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

bool starts_with_any(std::string_view text, std::initializer_list<std::string_view> prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](std::string_view p) { return text.starts_with(p); });
}

bool is_wait_syscall(long nr) {
  // The numbers of the build's own architecture: pollkill only captures tasks of its own kind.
  return nr == SYS_wait4 || nr == SYS_waitid;
}

// Names of the system calls a stuck thread is most often found in, for the human form.
std::string syscall_name(long nr) {
  struct Name {
    long nr;
    const char* name;
  };
  static const Name kNames[] = {
      {SYS_read, "read"},
      {SYS_write, "write"},
      {SYS_openat, "openat"},
      {SYS_futex, "futex"},
      {SYS_wait4, "wait4"},
      {SYS_waitid, "waitid"},
      {SYS_nanosleep, "nanosleep"},
      {SYS_clock_nanosleep, "clock_nanosleep"},
      {SYS_ppoll, "ppoll"},
      {SYS_pselect6, "pselect6"},
      {SYS_epoll_pwait, "epoll_pwait"},
      {SYS_recvfrom, "recvfrom"},
      {SYS_recvmsg, "recvmsg"},
      {SYS_sendto, "sendto"},
      {SYS_connect, "connect"},
      {SYS_accept4, "accept4"},
      {SYS_flock, "flock"},
      {SYS_fcntl, "fcntl"},
      {SYS_fsync, "fsync"},
      {SYS_ioctl, "ioctl"},
      {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
#ifdef SYS_poll
      {SYS_poll, "poll"},
      {SYS_select, "select"},
      {SYS_epoll_wait, "epoll_wait"},
      {SYS_pause, "pause"},
      {SYS_accept, "accept"},
      {SYS_open, "open"},
#endif
  };
  for (const auto& n : kNames) {
    if (n.nr == nr) return n.name;
  }
  return "syscall " + std::to_string(nr);
}

// The name a frame goes by in a signature.
std::string frame_name(const Frame& frame) {
  if (!frame.function.empty()) return short_function_name(frame.function);
  if (frame.module.empty()) return "??";
  return std::string(basename_of(frame.module)) + "+" + hex(frame.module_offset);
}

const ProcessEvidence* find_process(const Evidence& evidence, pid_t pid) {
  for (const auto& p : evidence.processes) {
    if (p.pid == pid) return &p;
  }
  return nullptr;
}

const ProcessEvidence* process_of(const Evidence& evidence, const ThreadEvidence* thread) {
  for (const auto& p : evidence.processes) {
    for (const auto& t : p.threads) {
      if (&t == thread) return &p;
    }
  }
  return nullptr;
}

double process_cpu(const ProcessEvidence& p) {
  double cpu = 0;
  for (const auto& t : p.threads) cpu += t.cpu_s;
  return cpu;
}

const ThreadEvidence* main_thread(const ProcessEvidence& p) {
  for (const auto& t : p.threads) {
    if (t.tid == p.pid) return &t;
  }
  return p.threads.empty() ? nullptr : &p.threads.front();
}

nlohmann::ordered_json string_or_null(const std::string& text) {
  if (text.empty()) return nullptr;
  return text;
}

nlohmann::ordered_json frame_json(const Frame& f) {
  nlohmann::ordered_json j;
  j["pc"] = hex(f.pc);
  j["function"] = string_or_null(f.function);
  j["symbol"] = string_or_null(f.symbol);
  j["offset"] =
      f.function.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(f.offset);
  j["module"] = string_or_null(f.module);
  j["module_offset"] = hex(f.module_offset);
  j["file"] = string_or_null(f.file);
  j["line"] = f.line > 0 ? nlohmann::ordered_json(f.line) : nlohmann::ordered_json(nullptr);
  return j;
}

// "stuck_in_read+0x20 in pk_stuck (stuck.c:37)"
std::string frame_text(const Frame& f) {
  std::string out = f.function.empty() ? "??" : short_function_name(f.function);
  if (!f.function.empty()) out += "+" + hex(f.offset);
  out += " in " + std::string(f.module.empty() ? "??" : basename_of(f.module));
  if (f.function.empty()) out += "+" + hex(f.module_offset);
  if (!f.file.empty()) out += " (" + f.file + ":" + std::to_string(f.line) + ")";
  return out;
}

// What makes two threads' stories the same in the human form: state, where they sleep, and
// the frames.
std::string thread_key(const ThreadEvidence& t) {
  std::string key(1, t.state);
  key += "|" + t.wchan + "|" + std::to_string(t.syscall.value_or(-2)) + "|" + t.user_stack_missing;
  for (const auto& f : t.user_stack) key += "|" + f.function + "@" + f.module;
  return key;
}

std::string describe_thread_state(const ThreadEvidence& t) {
  std::string out(1, t.state);
  if (t.syscall && *t.syscall >= 0) out += " in " + syscall_name(*t.syscall);
  if (!t.wchan.empty() && t.wchan != "0") out += ", wchan " + t.wchan;
  return out;
}

}  // namespace

std::string demangle(std::string_view symbol) {
  if (!symbol.starts_with("_Z")) return std::string(symbol);
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(std::string(symbol).c_str(), nullptr, nullptr, &status), &std::free);
  if (status != 0 || !out) return std::string(symbol);
  return out.get();
}

std::string short_function_name(std::string_view name) {
  // A symbol version ("__libc_start_main@@GLIBC_2.34") is not part of the name.
  if (const size_t at = name.find('@'); at != std::string_view::npos && at > 0) {
    name = name.substr(0, at);
  }
  std::string s(name);
  // Trailing qualifiers of a member function: "... const", "... &&", "... noexcept".
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view q : {" const", " volatile", " &&", " &", " noexcept"}) {
      if (s.size() > q.size() && s.ends_with(q)) {
        s.resize(s.size() - q.size());
        stripped = true;
      }
    }
  }
  // The parameter list: the parenthesis matching the final ')'.
  if (!s.empty() && s.back() == ')') {
    int depth = 0;
    for (size_t i = s.size(); i-- > 0;) {
      if (s[i] == ')') ++depth;
      if (s[i] == '(' && --depth == 0) {
        // "operator()" keeps its own pair when it is followed by the parameters.
        s.resize(i);
        break;
      }
    }
  }
  // Template arguments: balanced <...>, except the '<' of an operator's own name.
  std::string out;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (depth == 0 && (c == '<' || c == '>') && out.ends_with("operator")) {
      out += c;
      continue;
    }
    if (depth == 0 && (c == '<' || c == '>' || c == '=') &&
        (out.ends_with("operator<") || out.ends_with("operator>"))) {
      out += c;
      continue;
    }
    if (c == '<') {
      ++depth;
      continue;
    }
    if (c == '>' && depth > 0) {
      --depth;
      continue;
    }
    if (depth == 0) out += c;
  }
  return out.empty() ? std::string(name) : out;
}

bool is_runtime_module(std::string_view module) {
  const std::string_view file = basename_of(module);
  return starts_with_any(
             file, {"libc.so", "libc-", "ld-linux", "ld-", "ld64.so", "libpthread", "libstdc++.so",
                    "libgcc_s", "linux-vdso", "linux-gate",
                    // Sanitizer runtimes interpose the C library's calls.
                    "libasan.so", "libtsan.so", "libubsan.so", "liblsan.so", "libhwasan.so"}) ||
         module.starts_with("[vdso");
}

bool is_runtime_frame(const Frame& frame) {
  // Standard library templates are instantiated (and inlined) into the program's own modules:
  // which of their helpers a loop was caught in says nothing about the program.
  return is_runtime_module(frame.module) || frame.function.starts_with("std::") ||
         frame.function.starts_with("__gnu_cxx::") || frame.function.starts_with("__cxxabiv1::");
}

const ThreadEvidence* signature_thread(const Evidence& evidence) {
  const ThreadEvidence* best = nullptr;
  if (evidence.status == Status::spinning || evidence.status == Status::cpu_limit) {
    bool best_running = false;
    for (const auto& p : evidence.processes) {
      for (const auto& t : p.threads) {
        const bool running = t.state == 'R';
        if (!best || (running && !best_running) ||
            (running == best_running && t.cpu_s > best->cpu_s)) {
          best = &t;
          best_running = running;
        }
      }
    }
    return best;
  }
  if (evidence.processes.empty()) return nullptr;
  const ProcessEvidence* process = find_process(evidence, evidence.main_pid);
  if (!process) process = &evidence.processes.front();
  // Follow waiting parents down to the child they wait for; a visited set is not needed
  // because the walk only goes from parent to child, and a pid appears once.
  for (size_t hops = 0; hops < evidence.processes.size(); ++hops) {
    const ThreadEvidence* main = main_thread(*process);
    if (!main || !main->syscall || !is_wait_syscall(*main->syscall)) break;
    const ProcessEvidence* child = nullptr;
    for (const auto& p : evidence.processes) {
      if (p.ppid == process->pid && p.pid != process->pid &&
          (!child || process_cpu(p) > process_cpu(*child))) {
        child = &p;
      }
    }
    if (!child) break;
    process = child;
  }
  return main_thread(*process);
}

std::string stack_signature(const Evidence& evidence) {
  const ThreadEvidence* thread = signature_thread(evidence);
  if (!thread) return {};
  const ProcessEvidence* process = process_of(evidence, thread);
  const std::string comm = process ? process->comm : thread->comm;
  const auto& stack = thread->user_stack;
  if (stack.empty()) {
    if (thread->wchan.empty() || thread->wchan == "0") return {};
    return comm + ": [kernel] " + thread->wchan;
  }
  size_t first = 0;
  while (first < stack.size() && is_runtime_frame(stack[first])) ++first;
  if (first == stack.size()) first = 0;
  std::string signature = comm + ": ";
  for (size_t i = first; i < stack.size() && i < first + kSignatureFrames; ++i) {
    if (i > first) signature += " < ";
    signature += frame_name(stack[i]);
  }
  return signature;
}

nlohmann::ordered_json to_json(const Evidence& e) {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["id"] = e.id;
  j["attempt"] = e.attempt;
  j["status"] = to_string(e.status);
  j["reason"] = e.reason;
  j["captured_at"] = e.captured_at;
  j["capture_s"] = std::round(e.capture_s * 1000.0) / 1000.0;
  j["mode"] = e.mode;
  j["frozen"] = e.frozen;
  j["main_pid"] = e.main_pid;
  j["stack_signature"] = string_or_null(e.stack_signature);
  j["signature_tid"] = e.signature_tid > 0 ? nlohmann::ordered_json(e.signature_tid)
                                           : nlohmann::ordered_json(nullptr);
  j["missing"] = e.missing;
  nlohmann::ordered_json processes = nlohmann::ordered_json::array();
  for (const auto& p : e.processes) {
    nlohmann::ordered_json pj;
    pj["pid"] = p.pid;
    pj["ppid"] = p.ppid;
    pj["comm"] = p.comm;
    pj["cmdline"] = p.cmdline;
    nlohmann::ordered_json threads = nlohmann::ordered_json::array();
    for (const auto& t : p.threads) {
      nlohmann::ordered_json tj;
      tj["tid"] = t.tid;
      tj["comm"] = t.comm;
      tj["state"] = std::string(1, t.state);
      tj["wchan"] = string_or_null(t.wchan == "0" ? std::string() : t.wchan);
      tj["syscall"] =
          t.syscall ? nlohmann::ordered_json(*t.syscall) : nlohmann::ordered_json(nullptr);
      tj["cpu_s"] = std::round(t.cpu_s * 1000.0) / 1000.0;
      if (t.kernel_stack.empty()) {
        tj["kernel_stack"] = nullptr;
      } else {
        tj["kernel_stack"] = t.kernel_stack;
      }
      tj["kernel_stack_missing"] = string_or_null(t.kernel_stack_missing);
      if (t.user_stack.empty()) {
        tj["user_stack"] = nullptr;
      } else {
        nlohmann::ordered_json frames = nlohmann::ordered_json::array();
        for (const auto& f : t.user_stack) frames.push_back(frame_json(f));
        tj["user_stack"] = std::move(frames);
      }
      tj["user_stack_missing"] = string_or_null(t.user_stack_missing);
      threads.push_back(std::move(tj));
    }
    pj["threads"] = std::move(threads);
    processes.push_back(std::move(pj));
  }
  j["processes"] = std::move(processes);
  return j;
}

std::string format_text(const Evidence& e) {
  constexpr size_t kFramesShown = 12;
  std::string out = std::string(to_string(e.status)) + ": " + e.reason + "\n";
  char line[160];
  std::snprintf(line, sizeof line, "task %s, attempt %d; captured %s in %.2fs; %s mode, %s\n",
                e.id.c_str(), e.attempt, e.captured_at.c_str(), e.capture_s, e.mode.c_str(),
                e.frozen ? "frozen" : "not frozen");
  out += line;
  out += "stuck at: " +
         (e.stack_signature.empty() ? std::string("(no signature)") : e.stack_signature) + "\n";
  for (const auto& m : e.missing) out += "missing: " + m + "\n";
  for (const auto& p : e.processes) {
    out += "\nprocess " + std::to_string(p.pid) + " (" + p.comm + "), parent " +
           std::to_string(p.ppid) + ":";
    for (const auto& arg : p.cmdline) out += " " + arg;
    out += "\n";
    // Threads with the same story are told once: a pool of 64 idle workers is one entry.
    std::map<std::string, std::vector<const ThreadEvidence*>> groups;
    std::vector<std::string> order;
    for (const auto& t : p.threads) {
      auto key = thread_key(t);
      if (!groups.count(key)) order.push_back(key);
      groups[key].push_back(&t);
    }
    for (const auto& key : order) {
      const auto& members = groups[key];
      const ThreadEvidence& t = *members.front();
      if (members.size() == 1) {
        out += "  thread " + std::to_string(t.tid) + " (" + t.comm + ")";
      } else {
        out += "  " + std::to_string(members.size()) + " threads (";
        for (size_t i = 0; i < members.size() && i < 4; ++i) {
          out += (i ? ", " : "") + std::to_string(members[i]->tid) + " " + members[i]->comm;
        }
        if (members.size() > 4) out += ", ...";
        out += ")";
      }
      std::snprintf(line, sizeof line, ": %s, %.2fs CPU\n", describe_thread_state(t).c_str(),
                    t.cpu_s);
      out += line;
      for (size_t i = 0; i < t.user_stack.size() && i < kFramesShown; ++i) {
        out += "    #" + std::to_string(i) + " " + frame_text(t.user_stack[i]) + "\n";
      }
      if (t.user_stack.size() > kFramesShown) {
        out += "    ... " + std::to_string(t.user_stack.size() - kFramesShown) + " more frames\n";
      }
      if (!t.user_stack_missing.empty()) out += "    no user stack: " + t.user_stack_missing + "\n";
      if (!t.kernel_stack.empty()) {
        out += "    kernel:";
        for (size_t i = 0; i < t.kernel_stack.size(); ++i) {
          const std::string& k = t.kernel_stack[i];
          out += (i ? " < " : " ") + k.substr(0, k.find('+'));
        }
        out += "\n";
      }
    }
  }
  return out;
}

std::string evidence_json_name(const std::string& id, int attempt) {
  return id_file_name(id) + "." + std::to_string(attempt) + ".evidence.json";
}

std::string evidence_text_name(const std::string& id, int attempt) {
  return id_file_name(id) + "." + std::to_string(attempt) + ".evidence.txt";
}

std::optional<long> parse_proc_syscall(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty() || text == "running") return std::nullopt;
  long nr = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), nr);
  if (ec != std::errc() || (end != text.data() + text.size() && *end != ' ')) return std::nullopt;
  return nr;
}

std::vector<std::string> parse_kernel_stack(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view line : split(text, '\n')) {
    // "[<0>] function+0xoff/0xsize"; the address in brackets is hidden (0) without kptr access.
    if (const size_t bracket = line.find("] "); line.starts_with("[<") && bracket != line.npos) {
      line.remove_prefix(bracket + 2);
    }
    if (!line.empty()) out.emplace_back(line);
  }
  return out;
}

std::vector<std::string> parse_cmdline(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view arg : split(text, '\0')) out.emplace_back(arg);
  return out;
}

}  // namespace pollkill
