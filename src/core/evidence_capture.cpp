#include "pollkill/evidence_capture.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "pollkill/error.h"
#include "pollkill/proctree.h"
#include "pollkill/result.h"
#include "pollkill/stack_unwind.h"

namespace pollkill {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A /proc file read whole; on failure nullopt and `err` set to errno.
std::optional<std::string> read_proc(const std::string& path, int* err = nullptr) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  UniqueFd file(fd);
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(file.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (err) *err = errno;
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (" + errno_name(err) + ")";
}

std::vector<pid_t> list_ids(const std::string& dir) {
  std::vector<pid_t> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long id = std::strtol(e->d_name, &end, 10);
    if (end && *end == '\0' && id > 0) out.push_back(static_cast<pid_t>(id));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// The task's processes now: the cgroup and every cgroup below it, or the tree under the init.
std::vector<pid_t> task_processes(const EvidenceTarget& target) {
  std::vector<pid_t> pids;
  if (target.cgroup) {
    // cgroup.procs of the task cgroup, then of any cgroup the task made below it.
    std::vector<std::string> dirs{"."};
    for (size_t i = 0; i < dirs.size() && i < 1000; ++i) {
      const std::string procs = dirs[i] + "/cgroup.procs";
      const int fd = ::openat(target.cgroup->fd(), procs.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        UniqueFd file(fd);
        std::string text;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(file.get(), buf, sizeof buf)) > 0)
          text.append(buf, static_cast<size_t>(n));
        for (int pid : parse_pids(text)) pids.push_back(pid);
      }
      const int dfd =
          ::openat(target.cgroup->fd(), dirs[i].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd < 0) continue;
      DIR* d = ::fdopendir(dfd);
      if (!d) {
        ::close(dfd);
        continue;
      }
      while (const dirent* e = ::readdir(d)) {
        if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 &&
            std::strcmp(e->d_name, "..") != 0) {
          dirs.push_back(dirs[i] + "/" + e->d_name);
        }
      }
      ::closedir(d);
    }
  } else if (target.tree_root > 0) {
    ProcTree tree(target.tree_root);
    for (const auto& p : tree.scan()) {
      if (p.pid != target.tree_root && p.state != 'Z' && p.state != 'X') pids.push_back(p.pid);
    }
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

// A process's or thread's stat and name from its /proc directory ("/proc/PID/" or
// "/proc/PID/task/TID/"); nullopt when it is gone.
std::optional<std::pair<ProcStat, std::string>> read_stat_and_comm(const std::string& dir) {
  auto stat_text = read_proc(dir + "stat");
  if (!stat_text) return std::nullopt;
  auto stat = parse_proc_stat(*stat_text);
  if (!stat) return std::nullopt;
  std::string comm = read_proc(dir + "comm").value_or("");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return std::make_pair(*stat, std::move(comm));
}

// What the kernel says about a thread. Read before the freeze: a frozen or stopped thread's
// wait channel and kernel stack show only the freezer or the signal stop.
std::optional<ThreadEvidence> read_thread(pid_t pid, pid_t tid) {
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  const std::string dir = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/";
  auto stat = read_stat_and_comm(dir);
  if (!stat) return std::nullopt;
  ThreadEvidence t;
  t.tid = tid;
  t.comm = std::move(stat->second);
  t.state = stat->first.state;
  t.cpu_s = ticks > 0 ? static_cast<double>(stat->first.utime + stat->first.stime) /
                            static_cast<double>(ticks)
                      : 0.0;
  if (auto wchan = read_proc(dir + "wchan"); wchan && *wchan != "0") t.wchan = *wchan;
  if (auto syscall = read_proc(dir + "syscall")) t.syscall = parse_proc_syscall(*syscall);
  int err = 0;
  if (auto stack = read_proc(dir + "stack", &err)) {
    t.kernel_stack = parse_kernel_stack(*stack);
  } else {
    t.kernel_stack_missing = "/proc/TID/stack: " + errno_text(err);
    if (err == EACCES || err == EPERM) t.kernel_stack_missing += ": needs root (CAP_SYS_ADMIN)";
  }
  return t;
}

std::optional<ProcessEvidence> read_process(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  auto stat = read_stat_and_comm(dir);
  if (!stat) return std::nullopt;
  ProcessEvidence p;
  p.pid = pid;
  p.ppid = stat->first.ppid;
  p.comm = std::move(stat->second);
  if (auto cmdline = read_proc(dir + "cmdline")) p.cmdline = parse_cmdline(*cmdline);
  for (pid_t tid : list_ids(dir + "task")) {
    if (auto t = read_thread(pid, tid)) p.threads.push_back(std::move(*t));
  }
  // The thread group leader first.
  std::stable_partition(p.threads.begin(), p.threads.end(),
                        [&](const ThreadEvidence& t) { return t.tid == pid; });
  return p;
}

bool cgroup_frozen(const CgroupDir& dir) {
  try {
    auto events = parse_keyed(dir.read("cgroup.events"));
    auto it = events.find("frozen");
    return it != events.end() && it->second == 1;
  } catch (const Error&) {
    return false;
  }
}

bool all_stopped(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    for (pid_t tid : list_ids("/proc/" + std::to_string(pid) + "/task")) {
      auto text =
          read_proc("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
      if (!text) continue;  // gone
      auto stat = parse_proc_stat(*text);
      if (stat && stat->state != 'T' && stat->state != 't' && stat->state != 'Z' &&
          stat->state != 'X') {
        return false;
      }
    }
  }
  return true;
}

// Freezes (cgroup) or stops (tree) the task, waiting until `until` for it to take; returns
// whether every thread is frozen or stopped.
bool freeze_target(const EvidenceTarget& target, SteadyClock::time_point until,
                   std::vector<std::string>& missing) {
  auto wait = [&](auto done) {
    while (!done()) {
      if (SteadyClock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  if (target.cgroup) {
    try {
      target.cgroup->write("cgroup.freeze", "1");
    } catch (const Error& e) {
      missing.push_back(std::string("not frozen: ") + e.what());
      return false;
    }
    if (wait([&] { return cgroup_frozen(*target.cgroup); })) return true;
    missing.push_back(
        "not every thread froze in time (cgroup.events frozen 0): a thread in uninterruptible "
        "sleep (state D) freezes only when it wakes");
    return false;
  }
  ProcTree tree(target.tree_root);
  std::vector<pid_t> pids;
  for (const auto& p : tree.stop_members()) pids.push_back(p.pid);
  if (wait([&] { return all_stopped(pids); })) return true;
  missing.push_back(
      "not every process stopped in time after SIGSTOP (a thread in "
      "uninterruptible sleep, state D, stops only when it wakes)");
  return false;
}

// The outcome's one-line summary of what is missing: empty while there is evidence with a
// signature; the details stay in the evidence file.
std::string outcome_missing(const Evidence& evidence) {
  if (!evidence.stack_signature.empty()) return {};
  if (evidence.processes.empty()) return "no process of the task was left to capture";
  std::string why = "no stack signature";
  for (const auto& p : evidence.processes) {
    for (const auto& t : p.threads) {
      if (t.tid == evidence.signature_tid && !t.user_stack_missing.empty()) {
        return why + ": " + t.user_stack_missing;
      }
    }
  }
  if (!evidence.missing.empty()) why += ": " + evidence.missing.front();
  return why;
}

void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::string tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("create '" + tmp + "'");
  UniqueFd file(fd);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(file.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::unlink(tmp.c_str());
      throw SystemError(err, "write '" + tmp + "'");
    }
    done += static_cast<size_t>(n);
  }
  file.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw SystemError(err, "rename '" + tmp + "' to '" + path.string() + "'");
  }
}

// Closes every descriptor of the capture process but stdio and `keep`.
void close_other_fds(std::vector<int> keep) {
  keep.push_back(0);
  keep.push_back(1);
  keep.push_back(2);
  std::sort(keep.begin(), keep.end());
  std::vector<int> open_fds = list_ids("/proc/self/fd");
  for (int fd : open_fds) {
    if (!std::binary_search(keep.begin(), keep.end(), fd)) ::close(fd);
  }
}

nlohmann::json outcome_to_json(const EvidenceOutcome& o) {
  nlohmann::json j;
  j["path"] = o.path ? nlohmann::json(*o.path) : nlohmann::json(nullptr);
  j["stack_signature"] =
      o.stack_signature ? nlohmann::json(*o.stack_signature) : nlohmann::json(nullptr);
  j["missing"] = o.missing;
  return j;
}

std::string budget_text(Duration budget) {
  return format_duration(budget);
}

}  // namespace

std::string with_evidence_note(const std::string& reason, const EvidenceOutcome& outcome) {
  if (outcome.missing.empty()) return reason;
  return reason + " (evidence: " + outcome.missing + ")";
}

Evidence capture_evidence(const EvidenceRequest& request, SteadyClock::time_point deadline) {
  const auto t0 = SteadyClock::now();
  Evidence ev;
  ev.id = request.id;
  ev.attempt = request.attempt;
  ev.status = request.status;
  ev.reason = request.reason;
  ev.captured_at = format_rfc3339_ms(std::chrono::system_clock::now());
  ev.mode = request.target.cgroup ? "cgroup" : "subreaper";
  ev.main_pid = request.target.main_pid;
  if (!request.target.cgroup && request.target.tree_root <= 0) {
    ev.missing.push_back("no target: neither a cgroup nor a process tree");
    return ev;
  }

  // 1. What the kernel says, before the freeze changes it.
  std::map<pid_t, ProcessEvidence> seen;
  for (pid_t pid : task_processes(request.target)) {
    if (SteadyClock::now() >= deadline) break;
    if (auto p = read_process(pid)) seen.emplace(pid, std::move(*p));
  }
  // 2. Freeze, giving it at most a quarter of the time left.
  const auto until = SteadyClock::now() + (deadline - SteadyClock::now()) / 4;
  ev.frozen = freeze_target(request.target, until, ev.missing);
  // 3. Who is there now; processes forked meanwhile are read frozen.
  bool read_late = false;
  for (pid_t pid : task_processes(request.target)) {
    auto it = seen.find(pid);
    if (it == seen.end()) {
      if (auto p = read_process(pid)) {
        ev.processes.push_back(std::move(*p));
        read_late = true;
      }
      continue;
    }
    // Threads started between the two listings.
    for (pid_t tid : list_ids("/proc/" + std::to_string(pid) + "/task")) {
      auto& threads = it->second.threads;
      if (std::none_of(threads.begin(), threads.end(),
                       [&](const ThreadEvidence& t) { return t.tid == tid; })) {
        if (auto t = read_thread(pid, tid)) threads.push_back(std::move(*t));
        read_late = true;
      }
    }
    ev.processes.push_back(std::move(it->second));
  }
  if (read_late) {
    ev.missing.push_back(
        "processes or threads that started during the capture were read frozen: their wait "
        "channel and kernel stack show the freezer");
  }
  std::sort(ev.processes.begin(), ev.processes.end(),
            [](const ProcessEvidence& a, const ProcessEvidence& b) { return a.pid < b.pid; });

  // 4. User stacks, the signature's process first (it matters most if time runs out).
  std::vector<ProcessEvidence*> order;
  for (auto& p : ev.processes) order.push_back(&p);
  if (const ThreadEvidence* t = signature_thread(ev)) {
    for (size_t i = 0; i < order.size(); ++i) {
      const auto& threads = order[i]->threads;
      if (std::any_of(threads.begin(), threads.end(),
                      [&](const ThreadEvidence& x) { return &x == t; })) {
        std::rotate(order.begin(), order.begin() + static_cast<long>(i),
                    order.begin() + static_cast<long>(i) + 1);
        break;
      }
    }
  }
  size_t without_stack = 0;
  std::set<std::string> reasons;
  for (ProcessEvidence* p : order) {
    std::vector<pid_t> tids;
    for (const auto& t : p->threads) tids.push_back(t.tid);
    UnwoundStacks stacks;
    if (SteadyClock::now() < deadline) {
      stacks = unwind_process(p->pid, tids, deadline);
    } else {
      for (pid_t tid : tids) stacks.missing[tid] = "the capture budget ran out";
    }
    for (auto& t : p->threads) {
      if (auto it = stacks.frames.find(t.tid); it != stacks.frames.end()) {
        t.user_stack = std::move(it->second);
      } else {
        auto why = stacks.missing.find(t.tid);
        t.user_stack_missing = why != stacks.missing.end() ? why->second : "not unwound";
        ++without_stack;
        reasons.insert(t.user_stack_missing);
      }
    }
  }
  if (without_stack > 0) {
    ev.missing.push_back("user stacks of " + std::to_string(without_stack) + " thread" +
                         (without_stack == 1 ? "" : "s") + ": " + *reasons.begin());
  }
  std::set<std::string> kernel_reasons;
  for (const auto& p : ev.processes) {
    for (const auto& t : p.threads) {
      if (!t.kernel_stack_missing.empty()) kernel_reasons.insert(t.kernel_stack_missing);
    }
  }
  if (!kernel_reasons.empty()) ev.missing.push_back("kernel stacks: " + *kernel_reasons.begin());

  if (const ThreadEvidence* t = signature_thread(ev)) ev.signature_tid = t->tid;
  ev.stack_signature = stack_signature(ev);
  ev.capture_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  return ev;
}

std::string write_evidence(const Evidence& evidence, const std::filesystem::path& dir,
                           const std::string& file_stem) {
  const auto json_path =
      dir / (file_stem.empty() ? evidence_json_name(evidence.id, evidence.attempt)
                               : file_stem + ".evidence.json");
  // Commands and names are bytes from the task, not necessarily UTF-8.
  write_file_atomically(
      json_path,
      to_json(evidence).dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) +
          "\n");
  write_file_atomically(dir / (file_stem.empty() ? evidence_text_name(evidence.id, evidence.attempt)
                                                 : file_stem + ".evidence.txt"),
                        format_text(evidence));
  return json_path.string();
}

void thaw_target(const EvidenceTarget& target) {
  if (target.cgroup) {
    try {
      target.cgroup->write("cgroup.freeze", "0");
    } catch (const Error&) {
      // The cgroup is gone with its task: nothing to thaw.
    }
  } else if (target.tree_root > 0) {
    // SIGCONT to every member but those that had stopped before the capture: a task that
    // stopped itself stays stopped, as cgroup.freeze 0 leaves it.
    ProcDir proc;
    for (const ProcStat& member : ProcTree(target.tree_root, proc).scan()) {
      const auto& kept = target.keep_stopped;
      if (member.pid == target.tree_root ||
          std::find(kept.begin(), kept.end(), member.pid) != kept.end()) {
        continue;
      }
      signal_process(proc, member.pid, member.starttime, SIGCONT);
    }
  }
}

EvidenceCapture::EvidenceCapture(Child process, UniqueFd report, SteadyClock::time_point deadline,
                                 Duration budget)
    : process_(std::move(process)),
      report_(std::move(report)),
      deadline_(deadline),
      budget_(budget) {}

EvidenceCapture EvidenceCapture::start(const EvidenceRequest& request) {
  const auto started = SteadyClock::now();
  const auto deadline = started + request.budget;
  // The capture process keeps a tenth of the budget to write what it has.
  const auto soft_deadline = deadline - request.budget / 10;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw_errno("create the evidence capture's pipe");
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork the evidence capture process");
  if (pid == 0) {
    // The capture process. It never returns into pollkill's code: _exit, so that no destructor
    // of pollkill's objects (a task's Child, the guard's pipe) runs here.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(0);
    ::signal(SIGCHLD, SIG_DFL);
    ::unsetenv("DEBUGINFOD_URLS");
    std::vector<int> keep{write_end.get()};
    if (request.target.cgroup) keep.push_back(request.target.cgroup->fd());
    close_other_fds(keep);
    EvidenceOutcome outcome;
    try {
      const Evidence ev = capture_evidence(request, soft_deadline);
      outcome.path = write_evidence(ev, request.dir, request.file_stem);
      if (!ev.stack_signature.empty()) outcome.stack_signature = ev.stack_signature;
      outcome.missing = outcome_missing(ev);
    } catch (const std::exception& e) {
      outcome.missing = std::string("capture failed: ") + e.what();
    }
    std::string line =
        outcome_to_json(outcome).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    // One write of less than PIPE_BUF: atomic, and the pipe holds it after this process exits.
    if (line.size() > 4000)
      line =
          outcome_to_json({outcome.path, outcome.stack_signature, outcome.missing.substr(0, 1000)})
              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += "\n";
    (void)!::write(write_end.get(), line.data(), line.size());
    ::_exit(0);
  }
  write_end.reset();
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int err = errno;
    ::kill(pid, SIGKILL);  // our unreaped child: the pid cannot have been reused
    Child(pid, UniqueFd()).reap();
    throw SystemError(err, "pidfd_open for the evidence capture process " + std::to_string(pid));
  }
  return EvidenceCapture(Child(pid, UniqueFd(pidfd)), std::move(read_end), deadline,
                         request.budget);
}

EvidenceCapture::~EvidenceCapture() = default;

EvidenceOutcome EvidenceCapture::read_outcome(const Child::Exit& exit) {
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(report_.get(), buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  report_.reset();
  EvidenceOutcome outcome;
  try {
    const auto j = nlohmann::json::parse(text);
    if (j.at("path").is_string()) outcome.path = j["path"].get<std::string>();
    if (j.at("stack_signature").is_string())
      outcome.stack_signature = j["stack_signature"].get<std::string>();
    outcome.missing = j.at("missing").get<std::string>();
    return outcome;
  } catch (const nlohmann::json::exception&) {
  }
  if (exit.signal) {
    outcome.missing = "the capture process died of signal " + std::to_string(*exit.signal);
  } else {
    outcome.missing = "the capture process ended without a report (exit code " +
                      std::to_string(exit.exit_code.value_or(-1)) + ")";
  }
  return outcome;
}

EvidenceOutcome EvidenceCapture::finish() {
  if (!process_.process_running()) return {std::nullopt, std::nullopt, "already finished"};
  auto exit = process_.try_reap();
  if (!exit) exit = process_.reap();
  return read_outcome(*exit);
}

EvidenceOutcome EvidenceCapture::abandon() {
  if (!process_.process_running()) return {std::nullopt, std::nullopt, "already finished"};
  ::syscall(SYS_pidfd_send_signal, process_.pidfd(), SIGKILL, nullptr, 0);
  const Child::Exit exit = process_.reap();
  // It may have finished at the very deadline: a complete report wins.
  EvidenceOutcome outcome = read_outcome(exit);
  if (outcome.path || outcome.stack_signature) return outcome;
  return {std::nullopt, std::nullopt, "capture ran past its " + budget_text(budget_) + " budget"};
}

}  // namespace pollkill
