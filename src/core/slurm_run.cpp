// The edge of the Slurm modes: the results directory, sbatch, the element, collect and the
// srun launcher. The pure decisions they make are in slurm.cpp.
#include "pollkill/slurm.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/event_loop.h"
#include "pollkill/fd.h"
#include "pollkill/report.h"
#include "pollkill/results.h"
#include "pollkill/retry.h"
#include "pollkill/supervisor.h"
#include "pollkill/task_queue.h"
#include "pollkill/taskfile.h"
#include "pollkill/units.h"

extern char** environ;

namespace pollkill {

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_errno("read '" + path.string() + "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string self_exe() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error("find pollkill's own path (/proc/self/exe): " + ec.message());
  return exe.string();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

std::string env_or(const char* name, const std::string& fallback = {}) {
  const char* v = ::getenv(name);
  return v && *v ? v : fallback;
}

// The job id a record names: ARRAYJOB_TASK for an array element, JOB.STEP for a step.
std::string slurm_job_id() {
  std::string array = env_or("SLURM_ARRAY_JOB_ID");
  if (!array.empty()) return array + "_" + env_or("SLURM_ARRAY_TASK_ID", "?");
  std::string job = env_or("SLURM_JOB_ID");
  std::string step = env_or("SLURM_STEP_ID");
  if (!job.empty() && !step.empty()) return job + "." + step;
  return job;
}

std::optional<std::uint64_t> env_number(const char* name) {
  std::string v = env_or(name);
  if (v.empty()) return std::nullopt;
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size())
    throw Error(std::string(name) + "='" + v + "' is not a number");
  return n;
}

std::optional<nlohmann::ordered_json> read_record(const fs::path& path, std::string* warning) {
  std::ifstream in(path);
  if (!in) {
    if (warning) *warning = path.string() + ": cannot read (" + std::strerror(errno) + ")";
    return std::nullopt;
  }
  try {
    auto record = nlohmann::ordered_json::parse(in);
    if (!record.is_object() || !record.contains("id")) throw std::runtime_error("not a record");
    return record;
  } catch (const std::exception&) {
    if (warning) *warning = path.string() + ": not a result record; ignored";
    return std::nullopt;
  }
}

// What task `seq`'s recorded attempts before `attempt` ended with (an attempt lost with its
// node has no record and escalates nothing).
EscalationSteps recorded_escalation(const SlurmDir& dir, std::uint64_t seq, int attempt) {
  EscalationSteps steps;
  for (int earlier = 1; earlier < attempt; ++earlier) {
    std::error_code ec;
    if (!fs::exists(dir.record(seq, earlier), ec)) continue;
    auto record = read_record(dir.record(seq, earlier), nullptr);
    if (!record) continue;
    if (auto status = status_from_string(record->value("status", std::string())))
      steps.after(*status);
  }
  return steps;
}

bool record_is_final(const nlohmann::ordered_json& record) {
  return record.value("final", false) && record.value("status", std::string()) != "cancelled";
}

// The directory's records: (name, record) for each parseable one.
std::vector<std::pair<RecordName, nlohmann::ordered_json>> read_records(
    const SlurmDir& dir, std::vector<std::string>* warnings) {
  std::vector<std::pair<RecordName, nlohmann::ordered_json>> out;
  std::error_code ec;
  fs::directory_iterator it(dir.records(), ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    throw Error("list '" + dir.records().string() + "': " + ec.message());
  }
  for (const auto& entry : it) {
    auto name = parse_record_name(entry.path().filename().string());
    if (!name) continue;
    std::string warning;
    auto record = read_record(entry.path(), &warning);
    if (!record) {
      if (warnings) warnings->push_back(warning);
      continue;
    }
    out.emplace_back(*name, std::move(*record));
  }
  return out;
}

}  // namespace

std::map<std::uint64_t, RecordedAttempts> scan_records(const SlurmDir& dir,
                                                       std::vector<std::string>* warnings) {
  std::map<std::uint64_t, RecordedAttempts> out;
  for (const auto& [name, record] : read_records(dir, warnings)) {
    RecordedAttempts& r = out[name.seq];
    r.highest = std::max(r.highest, name.attempt);
    if (record_is_final(record)) {
      r.final = true;
      r.final_status =
          status_from_string(record.value("status", std::string())).value_or(Status::error);
    }
  }
  return out;
}

namespace {

struct Prepared {
  SlurmDir dir;
  std::uint64_t tasks = 0;
  std::map<std::uint64_t, RecordedAttempts> recorded;
};

// Creates or checks DIR for a submission: the task file copied in (refused on --resume when
// it differs from the one there), the policy written, the task file validated whole.
Prepared prepare_dir(const SlurmBatchRequest& request) {
  Prepared p;
  p.dir.root = fs::absolute(request.dir).lexically_normal();
  if (p.dir.root.filename().empty()) p.dir.root = p.dir.root.parent_path();
  for (const fs::path& d : {p.dir.root, p.dir.records(), p.dir.logs(), p.dir.slurm()}) {
    std::error_code ec;
    fs::create_directories(d, ec);
    if (ec) throw Error("create the directory '" + d.string() + "': " + ec.message());
  }
  std::string text;
  if (request.taskfile == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    text = read_file(request.taskfile);
  }
  std::vector<std::string> warnings;
  p.recorded = scan_records(p.dir, &warnings);
  for (const auto& w : warnings) diag::warning(w);
  bool have_tasks = fs::exists(p.dir.tasks());
  if (have_tasks && request.resume) {
    if (read_file(p.dir.tasks()) != text) {
      throw Error(request.taskfile + " is not the task file of the submission in '" +
                      p.dir.root.string() + "' (" + p.dir.tasks().string() + " differs)",
                  "resume with the task file the results came from, or use a new --results-dir");
    }
  } else if (!p.recorded.empty() && !request.resume) {
    throw Error("'" + p.dir.root.string() + "' already holds the records of a submission",
                "add --resume to submit only the tasks without a final record, or use a new "
                "--results-dir");
  }
  // Validate a copy before it replaces anything: a bad line stops the batch here.
  fs::path candidate = p.dir.root / ".tasks.new";
  write_file_atomic(candidate, text);
  try {
    TaskFile file = TaskFile::open(candidate.string());
    p.tasks = file.validate(request.policy).tasks;
  } catch (const Error& e) {
    fs::remove(candidate);
    std::string message = e.what();
    // Errors name the file the user gave, not the copy.
    std::string from = candidate.string();
    if (message.compare(0, from.size(), from) == 0)
      message.replace(0, from.size(), request.taskfile);
    throw Error(message, e.hint());
  }
  std::error_code ec;
  fs::rename(candidate, p.dir.tasks(), ec);
  if (ec) throw Error("rename '" + candidate.string() + "': " + ec.message());
  write_file_atomic(p.dir.policy(), to_toml(request.policy));
  return p;
}

// Runs argv (PATH lookup) and returns its exit status and standard output; standard error
// goes to `err_text`.
int run_capture(const std::vector<std::string>& argv, std::string& out_text,
                std::string& err_text) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw SystemError(rc, "run '" + argv[0] + "'",
                      rc == ENOENT ? "is Slurm installed here (sbatch, srun on the PATH)?" : "");
  }
  out_write.reset();
  err_write.reset();
  char buffer[4096];
  for (int fd : {out_read.get(), err_read.get()}) {
    std::string& text = fd == out_read.get() ? out_text : err_text;
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buffer, static_cast<std::size_t>(n));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid '" + argv[0] + "'");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

namespace {

// The largest memory limit any attempt of any task in DIR/tasks can run with, when some
// task's policy escalates memory (retry.escalate.memory); nullopt otherwise.
std::optional<std::uint64_t> largest_escalated_memory_of(const SlurmDir& dir, const Policy& base) {
  std::optional<std::uint64_t> largest;
  TaskFile file = TaskFile::open(dir.tasks().string());
  while (auto task = file.next(base)) {
    Policy policy = task_policy(*task, base);
    if (!policy.retry.escalate.memory) continue;
    if (auto memory = largest_escalated_memory(policy.limits, policy.retry))
      largest = std::max(largest.value_or(0), *memory);
  }
  return largest;
}

}  // namespace

int submit_slurm_batch(const SlurmBatchRequest& request) {
  Prepared p = prepare_dir(request);
  std::vector<std::uint64_t> todo = missing_tasks(p.tasks, p.recorded);
  if (todo.empty()) {
    if (request.verbosity > 0)
      diag::notice("every task in '" + p.dir.root.string() +
                   "' has a final record; nothing to submit");
    return 0;
  }
  fs::path script = p.dir.slurm() / "element.sh";
  const int cpus = slurm_cpus(request.policy.limits);
  std::string array = array_spec(todo, request.jobs);
  int tasks_at_once = 1;
  std::size_t elements = todo.size();
  if (request.chunk) {
    // Line K of the chunk file lists element K's tasks; a file per submission, since a
    // resumed one chunks what is left.
    auto chunks = split_chunks(todo, chunk_size(todo.size(), *request.chunk));
    std::string text;
    for (const auto& chunk : chunks) text += array_spec(chunk, 0) + "\n";
    auto stamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    fs::path file =
        p.dir.slurm() / ("chunks." + std::to_string(stamp) + "." + std::to_string(::getpid()));
    write_file_atomic(file, text);
    script = file.string() + ".sh";
    write_file_atomic(script, sbatch_script(self_exe(), p.dir.root, file));
    elements = chunks.size();
    array = "1-" + std::to_string(elements);
    if (request.jobs > 0) array += "%" + std::to_string(request.jobs);
    tasks_at_once = chunk_jobs(sbatch_cpus(request.launcher_args).value_or(cpus), cpus);
  } else {
    write_file_atomic(script, sbatch_script(self_exe(), p.dir.root));
  }
  std::vector<std::string> args = request.launcher_args;
  if (auto largest = largest_escalated_memory_of(p.dir, request.policy)) {
    // Escalated attempts must fit the allocation: Slurm's --mem covers the largest (times
    // the tasks a chunk element runs at once).
    std::uint64_t need = element_memory(*largest, tasks_at_once);
    auto asked = sbatch_memory(request.launcher_args, cpus);
    if (!asked) {
      args.insert(args.begin(), "--mem=" + slurm_size(need));
    } else if (*asked < need) {
      throw Error("--sbatch-arg asks Slurm for " + format_size(*asked) +
                      " per element, but a retry escalates a task's memory limit to " +
                      format_size(*largest) + " (retry.escalate; pollkill needs " +
                      format_size(kElementOverheadBytes) + " beside it)",
                  "ask for --sbatch-arg=--mem=" + slurm_size(need) +
                      " (or leave --mem out and pollkill asks for it), or lower "
                      "retry.escalate.memory_max");
    }
  }
  auto argv = sbatch_command(p.dir.root, array, cpus, args, script);
  std::string out, err;
  int rc = run_capture(argv, out, err);
  if (rc != 0) {
    throw Error("sbatch failed (exit " + std::to_string(rc) + "): " + trim(err),
                "run '" + shell_join(argv) + "' by hand to see what Slurm says");
  }
  std::string job = trim(out);
  if (auto semicolon = job.find(';'); semicolon != std::string::npos) job.resize(semicolon);
  std::printf("%s\n", job.c_str());
  std::fflush(stdout);
  if (request.verbosity > 0) {
    diag::notice("submitted " + std::to_string(todo.size()) + " of " + std::to_string(p.tasks) +
                 " tasks as job array " + job + " (--array=" + array + ")" +
                 (request.chunk
                      ? ", " + std::to_string(elements) + " elements of up to " +
                            std::to_string(chunk_size(todo.size(), *request.chunk)) + " tasks"
                      : std::string()));
    diag::notice("when it has ended: pollkill collect " + shell_join({p.dir.root.string()}) +
                 " --results RESULTS.jsonl");
  }
  return 0;
}

int run_slurm_element(const fs::path& dir_path, std::optional<std::uint64_t> seq_arg,
                      std::optional<int> attempt_arg) {
  SlurmDir dir{fs::absolute(dir_path).lexically_normal()};
  std::uint64_t seq = 0;
  if (seq_arg) {
    seq = *seq_arg;
  } else if (auto from_env = env_number("SLURM_ARRAY_TASK_ID")) {
    seq = *from_env;
  } else {
    throw Error("no task number: neither --seq nor SLURM_ARRAY_TASK_ID is set",
                "slurm-element runs inside a job submitted by pollkill batch --slurm");
  }
  Policy base = load_policy_file(dir.policy());
  TaskFile file = TaskFile::open(dir.tasks().string());
  std::optional<TaskSpec> task;
  while ((task = file.next(base)) && task->seq != seq) {
  }
  if (!task) {
    throw Error(dir.tasks().string() + " has no task number " + std::to_string(seq),
                "the array must match the task file the submission copied");
  }
  // Slurm reran an element whose run had decided the task before its node was declared
  // dead, or the task was submitted twice: running it again would only be set aside.
  if (auto decided = decided_attempt(dir, seq)) {
    diag::notice("task " + task->id + " (#" + std::to_string(seq) +
                 ") already has a final record (" + dir.record(seq, *decided).string() +
                 "): not run again (element exit " + std::to_string(element_exit::kSuperseded) +
                 ")");
    return element_exit::kSuperseded;
  }
  int attempt = 0;
  if (attempt_arg) {
    attempt = *attempt_arg;
  } else {
    int highest = highest_started_attempt(dir, seq);
    auto restarts = env_number("SLURM_RESTART_COUNT");
    attempt = element_attempt(
        restarts ? std::optional<int>(static_cast<int>(*restarts)) : std::nullopt, highest);
  }

  Result result;
  result.id = task->id;
  result.attempt = attempt;
  result.command = task->command;
  result.started_at = std::chrono::system_clock::now();
  result.stdout_path = dir.log(seq, attempt, "out").string();
  result.stderr_path = dir.log(seq, attempt, "err").string();
  Policy policy = base;
  try {
    policy = task_policy(*task, base);
    if (policy.retry.attempts < 1) policy.retry.attempts = 1;
    if (!task->cwd.empty() && ::chdir(task->cwd.c_str()) != 0)
      throw_errno("change to the task's directory '" + task->cwd + "'");
    for (const auto& e : task->env) {
      auto eq = e.find('=');
      ::setenv(e.substr(0, eq).c_str(), e.substr(eq + 1).c_str(), 1);
    }
    // The task's stdout and stderr (and pollkill's warnings about it) go to its logs; this
    // process's own go back to Slurm's output afterwards.
    UniqueFd out(
        ::open(result.stdout_path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out) throw_errno("create the log file '" + *result.stdout_path + "'");
    UniqueFd err(
        ::open(result.stderr_path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!err) throw_errno("create the log file '" + *result.stderr_path + "'");
    std::fflush(stdout);
    std::fflush(stderr);
    UniqueFd saved_out(::fcntl(1, F_DUPFD_CLOEXEC, 3)), saved_err(::fcntl(2, F_DUPFD_CLOEXEC, 3));
    if (!saved_out || !saved_err) throw_errno("duplicate stdout and stderr");
    ::dup2(out.get(), 1);
    ::dup2(err.get(), 2);
    // retry.escalate: the earlier attempts' records say what this one gets more of.
    policy.limits = escalate_limits(policy.limits, policy.retry.escalate,
                                    recorded_escalation(dir, seq, attempt));
    RunRequest request;
    request.command = task->command;
    request.policy = policy;
    request.id = task->id;
    // Named by number like a batch's: an id may hold any character, a directory name not.
    request.cgroup_name = "task-" + std::to_string(seq) + "-" + std::to_string(attempt);
    // Evidence beside the logs, named like them.
    request.evidence_dir = dir.logs().string();
    request.evidence_stem = std::to_string(seq) + "." + std::to_string(attempt);
    try {
      Result ran = run_task(request);
      set_ran_with(ran, policy.limits);
      ran.attempt = attempt;
      ran.stdout_path = result.stdout_path;
      ran.stderr_path = result.stderr_path;
      result = std::move(ran);
    } catch (const Error& e) {
      result.status = Status::error;
      result.reason = e.what();
    }
    std::fflush(stdout);
    std::fflush(stderr);
    ::dup2(saved_out.get(), 1);
    ::dup2(saved_err.get(), 2);
  } catch (const Error& e) {
    result.status = Status::error;
    result.reason = e.what();
  }
  result.final = !should_retry(policy.retry, result.status, attempt);
  auto record = element_record(result, host_name(), slurm_job_id());
  PlacedRecord placed =
      place_record(dir, seq, attempt,
                   record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                   result.final && result.status != Status::cancelled);
  int code =
      placed.placement == Placement::placed ? element_exit_code(result) : element_exit::kSuperseded;
  diag::notice("task " + result.id + " (#" + std::to_string(seq) + ") attempt " +
               std::to_string(attempt) + " on " + host_name() + ": " +
               std::string(to_string(result.status)) + ": " + result.reason + " (element exit " +
               std::to_string(code) + ")");
  if (placed.placement == Placement::superseded) {
    diag::notice(
        "not recorded: another run of the task decided it or recorded this attempt first "
        "(this run's node was probably declared dead and the element run again); this "
        "record is " +
        placed.path.string());
  }
  return code;
}

int collect_slurm_results(const fs::path& dir_path, const std::string& results) {
  SlurmDir dir{fs::absolute(dir_path).lexically_normal()};
  if (!fs::exists(dir.tasks())) {
    throw Error("'" + dir.root.string() + "' is not a Slurm results directory (no tasks file)",
                "give the --results-dir of a pollkill batch --slurm submission");
  }
  std::vector<std::string> warnings;
  auto records = read_records(dir, &warnings);
  for (const auto& w : warnings) diag::warning(w);

  std::vector<std::string> present;
  {
    std::ifstream in(results);
    std::string line;
    while (in && std::getline(in, line)) {
      try {
        auto record = nlohmann::json::parse(line);
        if (record.is_object() && record.contains("id") && record["id"].is_string())
          present.push_back(record_key(record["id"], record.value("attempt", 1)));
      } catch (const std::exception&) {
        // A torn line: read_results warns about it where it matters (--resume).
      }
    }
  }
  auto to_append = records_to_append(records, present);
  AppendFile out = AppendFile::open(results);
  for (const auto* record : to_append)
    out.append(record->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  out.sync();

  std::map<std::uint64_t, RecordedAttempts> recorded;
  for (const auto& [name, record] : records) {
    if (record_is_final(record)) recorded[name.seq].final = true;
  }
  Policy base = load_policy_file(dir.policy());
  TaskFile file = TaskFile::open(dir.tasks().string());
  std::uint64_t tasks = 0;
  std::vector<std::string> missing;
  std::uint64_t missing_count = 0;
  while (auto task = file.next(base)) {
    ++tasks;
    auto it = recorded.find(task->seq);
    if (it != recorded.end() && it->second.final) continue;
    ++missing_count;
    if (missing.size() < 20) missing.push_back(task->id);
  }
  diag::notice("collected " + std::to_string(to_append.size()) + " new records into " + results +
               " (" + std::to_string(records.size() - to_append.size()) + " were there already)");
  if (missing_count == 0) {
    diag::notice("all " + std::to_string(tasks) + " tasks have a final record");
    return 0;
  }
  std::string list;
  for (const auto& id : missing) list += (list.empty() ? "" : ", ") + id;
  if (missing_count > missing.size()) list += ", ...";
  diag::notice(std::to_string(missing_count) + " of " + std::to_string(tasks) +
               " tasks have no final record yet: " + list);
  diag::hint(
      "still queued or running (squeue), or submit them again with pollkill batch --slurm "
      "--resume --results-dir " +
      shell_join({dir.root.string()}));
  return 1;
}

// ---- --launcher srun ----

namespace {

// One srun process: the job step of one attempt, watched through its pidfd.
struct Step {
  QueuedAttempt what;
  UniqueFd pidfd;
  EventLoop::Id registration = 0;
};

// Runs the attempts of a batch as `pollkill slurm-element` processes: through srun as job
// steps (--launcher srun, `chunk` unset), or directly on this node for the tasks of a chunk
// element (`chunk`: their numbers).
class SrunBatch {
 public:
  explicit SrunBatch(const SlurmBatchRequest& request,
                     std::optional<std::vector<std::uint64_t>> chunk = std::nullopt)
      : request_(request), chunk_(std::move(chunk)) {}
  int run();

 private:
  void start_ready();
  void start(QueuedAttempt what);
  void finished(pid_t pid);
  void on_signal(int sig);

  const SlurmBatchRequest& request_;
  std::optional<std::vector<std::uint64_t>> chunk_;
  Prepared prepared_;
  std::string self_;
  int cpus_ = 1;
  std::size_t jobs_ = 1;
  std::optional<AppendFile> results_;
  std::optional<TaskQueue> queue_;
  std::optional<EventLoop> loop_;
  std::map<pid_t, Step> running_;
  Summary summary_;
  std::optional<int> cancel_signal_;
};

fs::path srun_log(const SlurmDir& dir, const QueuedAttempt& what) {
  return dir.slurm() /
         (std::to_string(what.task.seq) + "." + std::to_string(what.attempt) + ".srun");
}

void SrunBatch::start(QueuedAttempt what) {
  std::vector<std::string> argv;
  if (chunk_) {
    argv = {self_,
            "slurm-element",
            prepared_.dir.root.string(),
            "--seq",
            std::to_string(what.task.seq),
            "--attempt",
            std::to_string(what.attempt)};
  } else {
    argv = srun_command(self_, prepared_.dir.root, what.task.seq, what.attempt, cpus_,
                        request_.launcher_args);
  }
  const fs::path log = srun_log(prepared_.dir, what);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // A chunk's elements write their one line into the element's Slurm output, as an
  // element of its own would.
  if (!chunk_) {
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0 && chunk_)
    throw SystemError(rc, "run '" + self_ + "' for task '" + what.task.id + "'");
  if (rc != 0) {
    throw SystemError(rc, "run srun for task '" + what.task.id + "'",
                      "--launcher srun runs inside a Slurm allocation (salloc, sbatch) with "
                      "srun on the PATH");
  }
  // The step's end comes through its pidfd (readable once srun exited, before it is reaped).
  Step step{std::move(what), UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))), 0};
  if (!step.pidfd) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw SystemError(err, "watch srun (pidfd_open, Linux 5.3)");
  }
  step.registration = loop_->add(step.pidfd.get(), [this, pid] { finished(pid); });
  running_.emplace(pid, std::move(step));
}

void SrunBatch::finished(pid_t pid) {
  auto it = running_.find(pid);
  if (it == running_.end()) return;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  loop_->remove(it->second.registration);
  QueuedAttempt what = std::move(it->second.what);
  running_.erase(it);
  const SlurmDir& dir = prepared_.dir;
  fs::path path = dir.record(what.task.seq, what.attempt);
  std::string warning;
  std::optional<nlohmann::ordered_json> record;
  if (fs::exists(path)) record = read_record(path, &warning);
  if (!record) {
    // The step never got to write a record (srun refused it, the node failed): say so in a
    // record of its own, so that the results account for every attempt.
    Result r;
    r.id = what.task.id;
    r.attempt = what.attempt;
    r.command = what.task.command;
    r.started_at = std::chrono::system_clock::now();
    r.status = Status::error;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.reason = chunk_ ? "the task's element exited with " + std::to_string(code) +
                            " and wrote no record; see Slurm's output of this chunk"
                      : "srun exited with " + std::to_string(code) +
                            " and the step wrote no record; see " + srun_log(dir, what).string();
    r.final = true;
    record = element_record(r, "", "");
    PlacedRecord placed = place_record(
        dir, what.task.seq, what.attempt,
        record->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", true);
    // Another run decided the task meanwhile (the step's own element, a straggler, or a run
    // of another submission): its record is the one that counts.
    if (placed.placement == Placement::superseded) {
      auto decided = decided_attempt(dir, what.task.seq);
      fs::path counts = fs::exists(path) || !decided ? path : dir.record(what.task.seq, *decided);
      if (auto placed_record = read_record(counts, &warning)) record = std::move(placed_record);
    }
  }
  if (results_) {
    results_->append(record->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    results_->sync();
  }
  if (auto summary = SummaryRecord::from(nlohmann::json(*record))) summary_.add(*summary);
  if (request_.verbosity > 1) {
    diag::notice(what.task.id + " (attempt " + std::to_string(what.attempt) +
                 "): " + record->value("status", std::string()) + ": " +
                 record->value("reason", std::string()));
  }
  if (!record->value("final", true) && !cancel_signal_) {
    // The element asked to be run again (a retryable verdict): at once, as Slurm's requeue.
    queue_->retry(QueuedAttempt{std::move(what.task), what.attempt + 1}, Clock::now());
  }
}

void SrunBatch::on_signal(int sig) {
  if (!cancel_signal_ && request_.verbosity > 0) {
    diag::text("\n");
    diag::notice("stopping; the running steps are being cancelled");
  }
  cancel_signal_ = sig;
  // srun passes SIGTERM on to its step, where the element's pollkill reaps the task and
  // records it as cancelled.
  for (const auto& [pid, step] : running_) ::kill(pid, SIGTERM);
}

void SrunBatch::start_ready() {
  while (!cancel_signal_ && running_.size() < jobs_) {
    std::optional<QueuedAttempt> next = queue_->next(Clock::now(), summary_);
    if (!next) break;
    // A chunk element runs only its own tasks of the file.
    if (chunk_ && !std::binary_search(chunk_->begin(), chunk_->end(), next->task.seq)) continue;
    start(std::move(*next));
  }
}

int SrunBatch::run() {
  self_ = self_exe();
  cpus_ = slurm_cpus(request_.policy.limits);
  std::unordered_map<std::uint64_t, RecordedTask> resumed;
  if (chunk_) {
    // The chunk's tasks as an element of each would find them: one decided (by an earlier
    // run of this element before its node died, or a straggler) is skipped, any other runs
    // the attempt after the highest that started (its logs count, so a lost one keeps its
    // number).
    prepared_.dir.root = request_.dir;
    for (std::uint64_t seq : *chunk_) {
      RecordedTask& task = resumed[seq];
      if (auto decided = decided_attempt(prepared_.dir, seq)) {
        task.final = true;
        auto record = read_record(prepared_.dir.record(seq, *decided), nullptr);
        task.final_status = status_from_string(record ? record->value("status", std::string()) : "")
                                .value_or(Status::error);
      }
      task.attempts = highest_started_attempt(prepared_.dir, seq);
    }
    jobs_ = static_cast<std::size_t>(chunk_jobs(env_number("SLURM_CPUS_ON_NODE"), cpus_));
  } else {
    if (env_or("SLURM_JOB_ID").empty() && request_.verbosity > 0) {
      diag::warning(
          "not inside a Slurm allocation (no SLURM_JOB_ID): each srun asks for an allocation "
          "of its own; run under salloc or in an sbatch script");
    }
    prepared_ = prepare_dir(request_);
    results_ = AppendFile::open(request_.results);
    // Without -j, as many steps as the allocation has tasks.
    if (request_.jobs > 0) {
      jobs_ = static_cast<std::size_t>(request_.jobs);
    } else if (auto ntasks = env_number("SLURM_NTASKS"); ntasks && *ntasks > 0) {
      jobs_ = static_cast<std::size_t>(*ntasks);
    }
    // What the directory's records say: a task with a final record is skipped (its record
    // is in the results already), any other starts at the attempt after its highest.
    for (const auto& [seq, recorded] : prepared_.recorded) {
      resumed[seq] = RecordedTask{recorded.highest, recorded.final, recorded.final_status, {}, {}};
    }
  }
  TaskFile file = TaskFile::open(prepared_.dir.tasks().string());
  queue_.emplace(file, request_.policy, std::move(resumed));
  loop_.emplace([this](int sig) { on_signal(sig); });
  for (start_ready(); !running_.empty(); start_ready()) loop_->wait();
  loop_.reset();
  if (request_.verbosity > 0)
    diag::text(summary_.format_text(run_summary_heading(request_.taskfile)));
  if (cancel_signal_) return 128 + *cancel_signal_;
  return summary_.exit_code();
}

}  // namespace

int run_srun_batch(const SlurmBatchRequest& request) {
  SrunBatch batch(request);
  return batch.run();
}

int run_slurm_chunk(const fs::path& dir_path, const fs::path& chunks) {
  SlurmBatchRequest request;
  request.dir = fs::absolute(dir_path).lexically_normal();
  SlurmDir dir{request.dir};
  request.policy = load_policy_file(dir.policy());
  auto index = env_number("SLURM_ARRAY_TASK_ID");
  if (!index || *index == 0) {
    throw Error("no chunk number: SLURM_ARRAY_TASK_ID is not set",
                "slurm-element --chunks runs inside a job submitted by pollkill batch --slurm "
                "--chunk");
  }
  std::ifstream in(chunks);
  if (!in) throw_errno("read the chunk file '" + chunks.string() + "'");
  std::string line;
  for (std::uint64_t k = 0; k < *index; ++k) {
    if (!std::getline(in, line))
      throw Error(chunks.string() + " has no chunk number " + std::to_string(*index),
                  "the array must match the chunk file the submission wrote");
  }
  std::vector<std::uint64_t> seqs = parse_task_list(line);
  SrunBatch batch(request, std::move(seqs));
  return batch.run();
}

}  // namespace pollkill
