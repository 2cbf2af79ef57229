#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

extern char** environ;

namespace pollkill::testing {
namespace fs = std::filesystem;

namespace {

// "\040" and friends in mountinfo mount points.
std::string unescape_octal(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 2])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 3]))) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool is_number(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The pid in "pollkill-<pid>-<hex>" or "pollkill-runner.<pid>"; nullopt for other names.
std::optional<pid_t> pollkill_dir_owner(const std::string& name) {
  static const std::string kRun = "pollkill-";
  static const std::string kLeaf = "pollkill-runner.";
  if (name.rfind(kLeaf, 0) == 0) {
    std::string pid = name.substr(kLeaf.size());
    if (is_number(pid)) return static_cast<pid_t>(std::stol(pid));
    return std::nullopt;
  }
  if (name.rfind(kRun, 0) == 0) {
    auto dash = name.find('-', kRun.size());
    if (dash == std::string::npos) return std::nullopt;
    std::string pid = name.substr(kRun.size(), dash - kRun.size());
    if (is_number(pid)) return static_cast<pid_t>(std::stol(pid));
  }
  return std::nullopt;
}

// Visits every directory under `root` (not `root` itself), depth-first, tolerating
// directories that vanish meanwhile. `visit` returns false to skip a subtree.
template <typename Visit>
void walk_dirs(const fs::path& root, int depth, Visit&& visit) {
  if (depth > 8) return;
  std::error_code ec;
  fs::directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_directory(type_ec) || it->is_symlink(type_ec)) continue;
    if (visit(it->path())) walk_dirs(it->path(), depth + 1, visit);
  }
}

std::vector<std::string> split_cmdline(const std::string& raw) {
  std::vector<std::string> argv;
  std::string current;
  for (char c : raw) {
    if (c == '\0') {
      argv.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) argv.push_back(current);
  return argv;
}

// Result files of start_run live here; the directory goes when the test binary exits.
TempDir& results_dir() {
  static TempDir dir;
  return dir;
}

std::string describe_wait_status(const RunOutput& r) {
  std::ostringstream s;
  if (r.timed_out) s << "TIMED OUT (group killed) ";
  if (r.exit_code) s << "exit=" << *r.exit_code << " ";
  if (r.term_signal) s << "killed by signal " << *r.term_signal << " ";
  return s.str();
}

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// Kills every process in a cgroup directory tree and removes it (leaves first).
void kill_and_remove_cgroup(const fs::path& dir) {
  std::ofstream kill_file(dir / "cgroup.kill");
  if (kill_file << "1" << std::flush) {
    kill_file.close();
  } else {
    // No cgroup.kill (before Linux 5.14): SIGKILL what is listed; good enough for cleanup.
    std::ifstream procs(dir / "cgroup.procs");
    pid_t pid;
    while (procs >> pid) ::kill(pid, SIGKILL);
  }
  std::vector<fs::path> dirs;
  walk_dirs(dir, 0, [&](const fs::path& p) {
    dirs.push_back(p);
    return true;
  });
  dirs.push_back(dir);
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  for (const auto& d : dirs) {
    wait_until([&] { return ::rmdir(d.c_str()) == 0 || errno == ENOENT; }, Seconds(2));
  }
}

}  // namespace

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::vector<nlohmann::json> read_records(const fs::path& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
    }
  }
  return records;
}

std::string to_string(Via via) {
  return via == Via::run ? "run" : "batch";
}

std::string via_name(const ::testing::TestParamInfo<Via>& param_info) {
  return to_string(param_info.param);
}

int exit_via(Via via, int run_exit) {
  if (via == Via::run) return run_exit;
  return run_exit == 0 ? 0 : 1;
}

const std::vector<std::string>& result_contract_keys() {
  static const std::vector<std::string> keys = {"id",
                                                "attempt",
                                                "final",
                                                "command",
                                                "status",
                                                "reason",
                                                "exit_code",
                                                "signal",
                                                "started_at",
                                                "wall_s",
                                                "cpu_user_s",
                                                "cpu_system_s",
                                                "memory_peak_bytes",
                                                "oom_kills",
                                                "pids_peak",
                                                "processes_reaped",
                                                "unkillable",
                                                "limits_not_enforced",
                                                "limits_cgroup_v1",
                                                "mode",
                                                "cgroup",
                                                "stdout",
                                                "stderr",
                                                "evidence",
                                                "stack_signature",
                                                "memory_limit_bytes",
                                                "wall_time_limit_s"};
  return keys;
}

std::optional<fs::path> cgroup2_mount() {
  std::istringstream in(slurp("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream after(line.substr(sep + 3));
    std::string fstype;
    after >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream before(line.substr(0, sep));
    std::string id, parent, devno, root, mount_point;
    before >> id >> parent >> devno >> root >> mount_point;
    if (!mount_point.empty()) return fs::path(unescape_octal(mount_point));
  }
  return std::nullopt;
}

std::optional<std::string> cgroup2_unavailable_reason() {
  if (::geteuid() != 0)
    return "needs root to create cgroups (running as uid " + std::to_string(::geteuid()) + ")";
  auto mount = cgroup2_mount();
  if (!mount) return std::string("no cgroup2 mount in /proc/self/mountinfo");
  struct statvfs st {};
  if (::statvfs(mount->c_str(), &st) == 0 && (st.f_flag & ST_RDONLY)) {
    return "the cgroup2 mount " + mount->string() + " is read-only";
  }
  if (::access(mount->c_str(), W_OK) != 0) {
    return "the cgroup2 mount " + mount->string() + " is not writable: " + std::strerror(errno);
  }
  return std::nullopt;
}

std::string unique_marker() {
  static std::atomic<unsigned> counter{0};
  static const unsigned salt = std::random_device{}() % 100000;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%d%05u%04u", static_cast<int>(::getpid()), salt,
                counter.fetch_add(1) % 10000);
  return buf;
}

std::string long_sleep_arg(const std::string& marker) {
  return "1000." + marker;
}

std::vector<ProcessInfo> processes_matching(const std::string& marker) {
  std::vector<ProcessInfo> found;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename();
    if (!is_number(name)) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == self) continue;
    std::string raw = slurp(it->path() / "cmdline");
    if (raw.empty()) continue;  // kernel thread, zombie, or gone
    ProcessInfo info;
    info.pid = pid;
    info.argv = split_cmdline(raw);
    for (const auto& a : info.argv) info.cmdline += (info.cmdline.empty() ? "" : " ") + a;
    if (info.cmdline.find(marker) == std::string::npos) continue;
    found.push_back(std::move(info));
  }
  return found;
}

std::vector<ProcessInfo> processes_matching(const std::string& marker, const std::string& program) {
  std::vector<ProcessInfo> all = processes_matching(marker);
  std::vector<ProcessInfo> out;
  for (auto& p : all) {
    if (!p.argv.empty() && fs::path(p.argv[0]).filename() == program) out.push_back(std::move(p));
  }
  return out;
}

std::vector<fs::path> find_leftover_cgroups(const std::vector<pid_t>& pids) {
  std::vector<fs::path> found;
  auto mount = cgroup2_mount();
  if (!mount) return found;
  std::set<pid_t> wanted(pids.begin(), pids.end());
  walk_dirs(*mount, 0, [&](const fs::path& p) {
    auto owner = pollkill_dir_owner(p.filename());
    if (owner && wanted.count(*owner)) {
      found.push_back(p);
      return false;
    }
    return true;
  });
  return found;
}

std::vector<fs::path> find_leftover_cgroups(pid_t pollkill_pid) {
  return find_leftover_cgroups(std::vector<pid_t>{pollkill_pid});
}

std::size_t count_cgroup_dirs_excluding_others(pid_t own_pid) {
  auto mount = cgroup2_mount();
  if (!mount) return 0;
  std::size_t count = 0;
  walk_dirs(*mount, 0, [&](const fs::path& p) {
    auto owner = pollkill_dir_owner(p.filename());
    if (owner && *owner != own_pid) return false;
    ++count;
    return true;
  });
  return count;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n > 0 ? n - 1 : 0;  // the iterator's own descriptor
}

int cleanup(const std::string& marker, const std::vector<pid_t>& pollkill_pids) {
  int cleaned = 0;
  for (const auto& dir : find_leftover_cgroups(pollkill_pids)) {
    kill_and_remove_cgroup(dir);
    ++cleaned;
  }
  if (!marker.empty()) {
    for (const auto& p : processes_matching(marker)) {
      ::kill(p.pid, SIGKILL);
      ++cleaned;
    }
  }
  return cleaned;
}

std::string cgroup_v2_path(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return "";
}

namespace {
class SharedCopies {
 public:
  ~SharedCopies() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string copy(const std::string& path) {
    constexpr auto kOpen = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec;
    if (dir_.empty()) {
      // Not under /tmp, /var/tmp, /dev/shm or /run, which a strict task sees as empty areas of
      // its own. /var/lib on a host; /dev in the VM, whose root is a read-only share.
      for (const char* parent : {"/var/lib", "/dev"}) {
        const fs::path dir = fs::path(parent) / ("pollkill-it-" + std::to_string(::getpid()));
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) continue;
        dir_ = dir;
        break;
      }
      if (dir_.empty()) throw std::runtime_error("no writable place for world-readable copies");
      fs::permissions(dir_, kOpen);
    }
    fs::path target = dir_ / fs::path(path).filename();
    if (!fs::exists(target)) {
      fs::copy_file(path, target);
      fs::permissions(target, kOpen);
    }
    return target.string();
  }

 private:
  fs::path dir_;
};
SharedCopies shared_copies;
}  // namespace

std::string world_readable_copy(const std::string& path) {
  return shared_copies.copy(path);
}

TempDir::TempDir() {
  std::string templ = (fs::temp_directory_path() / "pollkill-it-XXXXXX").string();
  if (!::mkdtemp(templ.data()))
    throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string RunOutput::describe() const {
  std::ostringstream s;
  s << "pollkill pid " << pid << ": " << describe_wait_status(*this) << "after " << elapsed.count()
    << " s\n  stderr: " << tail(err, 2000) << "\n  stdout: " << tail(out, 2000);
  if (json) {
    s << "\n  json: " << json->dump();
  } else if (!json_error.empty()) {
    s << "\n  json: (none) " << json_error;
  }
  return s.str();
}

Pollkill::Pollkill(std::vector<std::string> args, LaunchOptions options) {
  std::vector<std::string> argv_store;
  argv_store.push_back(options.program.value_or(POLLKILL_BINARY));
  for (auto& a : args) argv_store.push_back(std::move(a));
  std::vector<std::string> env_store;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    if (entry.rfind("POLLKILL_", 0) == 0) continue;
    std::string name = entry.substr(0, entry.find('='));
    if (options.env.count(name)) continue;
    env_store.push_back(entry);
  }
  for (const auto& [k, v] : options.env) env_store.push_back(k + "=" + v);

  std::vector<char*> argv, envp;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2: " + std::string(std::strerror(errno)));
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  started_ = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls from here to execve.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    // Nothing but 0, 1 and 2 from this process (or whatever ran it): what the task sees
    // beyond them came from pollkill.
    ::close_range(3, ~0U, 0);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before we might kill it
  ::close(devnull);
  ::close(out[1]);
  ::close(err[1]);
  pid_ = pid;
  out_fd_ = out[0];
  err_fd_ = err[0];
}

Pollkill::~Pollkill() {
  if (!reaped_ && pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

void Pollkill::signal(int sig) const {
  if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

void Pollkill::signal_group(int sig) const {
  if (pid_ > 0 && !reaped_) ::kill(-pid_, sig);
}

RunOutput Pollkill::wait(Seconds timeout) {
  RunOutput r;
  r.pid = pid_;
  const auto deadline =
      started_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  auto finish_status = [&](int status) {
    reaped_ = true;
    r.elapsed = std::chrono::steady_clock::now() - started_;
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.term_signal = WTERMSIG(status);
  };
  while (!reaped_ || out_fd_ >= 0 || err_fd_ >= 0) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      r.timed_out = true;
      if (!reaped_) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        finish_status(status);
      }
      break;
    }
    pollfd fds[2];
    int n = 0;
    if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
    if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
    int wait_ms = static_cast<int>(std::min<long long>(
        20, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1));
    if (n > 0) {
      ::poll(fds, n, wait_ms);
      for (int i = 0; i < n; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[65536];
        ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        if (got > 0) {
          (fds[i].fd == out_fd_ ? r.out : r.err).append(buf, static_cast<size_t>(got));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          int& fd = fds[i].fd == out_fd_ ? out_fd_ : err_fd_;
          ::close(fd);
          fd = -1;
        }
      }
    } else {
      struct timespec ts {
        0, 5 * 1000000
      };
      ::nanosleep(&ts, nullptr);
    }
    if (!reaped_) {
      int status = 0;
      pid_t got = ::waitpid(pid_, &status, WNOHANG);
      if (got == pid_) finish_status(status);
    }
  }
  if (r.timed_out && (out_fd_ >= 0 || err_fd_ >= 0)) {
    r.err +=
        "\n[harness: stdout/stderr still open at the safety timeout: a process outlived pollkill]";
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
  out_fd_ = err_fd_ = -1;
  return r;
}

RunOutput run_pollkill(const std::vector<std::string>& args, Seconds timeout,
                       LaunchOptions options) {
  Pollkill p(args, std::move(options));
  RunOutput r = p.wait(timeout);
  bool stdout_result = false;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--") break;
    if (args[i] == "--result" && args[i + 1] == "-") stdout_result = true;
  }
  if (stdout_result) {
    std::string last;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
    }
    try {
      r.json = nlohmann::ordered_json::parse(last);
    } catch (const std::exception& e) {
      r.json_error = std::string("cannot parse the last stdout line: ") + e.what();
    }
  }
  return r;
}

std::vector<std::string> task_args(Via via, const std::vector<std::string>& flags,
                                   const std::vector<std::string>& command, fs::path* record) {
  static std::atomic<unsigned> counter{0};
  const std::string n = std::to_string(counter.fetch_add(1));
  std::vector<std::string> args;
  if (via == Via::run) {
    *record = results_dir() / ("result-" + n + ".json");
    args = {"run", "--result", record->string()};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("--");
    args.insert(args.end(), command.begin(), command.end());
    return args;
  }
  *record = results_dir() / ("results-" + n + ".jsonl");
  const fs::path tasks = results_dir() / ("tasks-" + n);
  write_file(tasks, nlohmann::json{{"id", "task"}, {"cmd", command}}.dump() + "\n");
  args = {"batch", "-j", "1", "--results", record->string()};
  args.insert(args.end(), flags.begin(), flags.end());
  args.push_back(tasks.string());
  return args;
}

std::unique_ptr<Pollkill> start_task(Via via, const std::vector<std::string>& flags,
                                     const std::vector<std::string>& command,
                                     LaunchOptions options) {
  fs::path record;
  auto p = std::make_unique<Pollkill>(task_args(via, flags, command, &record), std::move(options));
  p->result_file = record;
  p->via = via;
  return p;
}

RunOutput finish_task(Pollkill& run, Seconds timeout) {
  RunOutput r = run.wait(timeout);
  if (!run.result_file) return r;
  std::error_code ec;
  if (!fs::exists(*run.result_file, ec)) {
    r.json_error = "no result file was written";
    return r;
  }
  std::string text = slurp(*run.result_file);
  fs::remove(*run.result_file, ec);
  if (run.via == Via::batch) {
    // The last record: a batch of one task without retries writes one.
    std::string last;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) last = line;
    }
    text = last;
  }
  try {
    r.json = nlohmann::ordered_json::parse(text);
  } catch (const std::exception& e) {
    r.json_error = std::string("cannot parse the result file: ") + e.what() + ": '" + text + "'";
    return r;
  }
  if (run.via == Via::batch) {
    for (const char* stream : {"stdout", "stderr"}) {
      if (!(*r.json)[stream].is_string()) continue;
      const fs::path log = (*r.json)[stream].get<std::string>();
      (std::string(stream) == "stdout" ? r.out : r.err) += slurp(log);
      fs::remove(log, ec);
    }
  }
  return r;
}

RunOutput run_task_via(Via via, const std::vector<std::string>& flags,
                       const std::vector<std::string>& command, Seconds timeout,
                       LaunchOptions options) {
  auto p = start_task(via, flags, command, std::move(options));
  return finish_task(*p, timeout);
}

std::unique_ptr<Pollkill> start_run(const std::vector<std::string>& flags,
                                    const std::vector<std::string>& command,
                                    LaunchOptions options) {
  return start_task(Via::run, flags, command, std::move(options));
}

RunOutput finish_run(Pollkill& run, Seconds timeout) {
  return finish_task(run, timeout);
}

RunOutput run_task_cli(const std::vector<std::string>& flags,
                       const std::vector<std::string>& command, Seconds timeout,
                       LaunchOptions options) {
  return run_task_via(Via::run, flags, command, timeout, std::move(options));
}

std::optional<std::string> find_program(const std::string& name) {
  const char* path = ::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    fs::path candidate = fs::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

void expect_nothing_left(const RunOutput& run, const std::string& marker) {
  if (!marker.empty()) {
    auto procs = processes_matching(marker);
    std::string list;
    for (const auto& p : procs) list += "\n  " + std::to_string(p.pid) + ": " + p.cmdline;
    EXPECT_TRUE(procs.empty()) << "processes with marker " << marker
                               << " outlived pollkill:" << list;
  }
  auto dirs = find_leftover_cgroups(run.pid);
  std::string list;
  for (const auto& d : dirs) list += "\n  " + d.string();
  EXPECT_TRUE(dirs.empty()) << "cgroups of pollkill pid " << run.pid << " left behind:" << list;
  cleanup(marker, {run.pid});
}

}  // namespace pollkill::testing
