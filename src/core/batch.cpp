#include "pollkill/batch.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "pollkill/cgroup_v1.h"
#include "pollkill/diag.h"
#include "pollkill/engine.h"
#include "pollkill/error.h"
#include "pollkill/fdlimit.h"
#include "pollkill/hostcase.h"
#include "pollkill/limits.h"
#include "pollkill/policy_schema.h"
#include "pollkill/results.h"
#include "pollkill/sandbox.h"
#include "pollkill/task_queue.h"
#include "pollkill/taskfile.h"
#include "pollkill/terminal.h"

namespace pollkill {

namespace fs = std::filesystem;

void prepare_logs_dir(const std::string& logs) {
  std::error_code ec;
  const fs::path dir = fs::path(logs).lexically_normal();
  if (dir.has_parent_path() && !dir.parent_path().empty()) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec) throw Error("create the log directory '" + logs + "': " + ec.message());
  }
  // 0755 whatever the umask: a directory others can write into is refused below.
  if (::mkdir(logs.c_str(), 0755) != 0 && errno != EEXIST)
    throw_errno("create the log directory '" + logs + "'");
  check_logs_dir(logs);
}

namespace {

// Checks that --resume's results came from this task file: the recorded tasks by task
// number (seq). Throws Error on a command mismatch, before anything runs.
std::unordered_map<std::uint64_t, RecordedTask> match_resumed(TaskFile& file,
                                                              const BatchRequest& request,
                                                              ResumeState state) {
  std::unordered_map<std::uint64_t, RecordedTask> resumed;
  for (const auto& w : state.warnings) diag::warning(w);
  while (auto task = file.next(request.policy)) {
    auto it = state.tasks.find(task->id);
    if (it == state.tasks.end()) continue;
    std::string now = command_json(task->command);
    if (!it->second.command.empty() && it->second.command != now) {
      throw Error(file.name() + ":" + std::to_string(task->line) + ": task '" + task->id +
                      "' runs " + now + " but " + request.results + " recorded " +
                      it->second.command + " for it",
                  "resume with the task file the results came from, or write the results to a "
                  "new file");
    }
    resumed.emplace(task->seq, std::move(it->second));
    state.tasks.erase(it);
  }
  file.rewind();  // not reopened: standard input was spooled once
  return resumed;
}

// "memory=2GiB wall_time=30s": the [limits] keys that are set for this task.
std::string limits_text(const Policy& policy) {
  std::string out;
  for (const KeySpec& key : policy_keys()) {
    if (key.section != "limits") continue;
    std::optional<std::string> value = toml_value(key, policy);
    if (!value) continue;
    if (value->size() >= 2 && value->front() == '"') *value = value->substr(1, value->size() - 2);
    out += (out.empty() ? "" : " ") + std::string(key.name) + "=" + *value;
  }
  return out.empty() ? "no limits" : out;
}

int dry_run(TaskFile& file, const BatchRequest& request) {
  // A dry run reads the results without taking their lock: it writes nothing.
  std::unordered_map<std::uint64_t, RecordedTask> resumed;
  if (request.resume) resumed = match_resumed(file, request, read_results(request.results));
  std::uint64_t tasks = 0, skipped = 0;
  while (auto task = file.next(request.policy)) {
    ++tasks;
    std::string line = task->id + "\t" + shell_join(task->command) + "\t" +
                       limits_text(task_policy(*task, request.policy));
    if (auto it = resumed.find(task->seq); it != resumed.end()) {
      if (it->second.final) {
        ++skipped;
        line += "\tskipped by --resume (final record: " +
                std::string(to_string(it->second.final_status)) + ")";
      } else {
        line += "\tresumed at attempt " + std::to_string(it->second.attempts + 1);
      }
    }
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
  diag::notice("dry run: " + std::to_string(tasks) + " tasks, " + std::to_string(tasks - skipped) +
               " would run" +
               (request.resume ? ", " + std::to_string(skipped) + " skipped by --resume" : "") +
               "; nothing was run");
  return 0;
}

}  // namespace

int run_batch(const BatchRequest& request) {
  const Policy& policy = request.policy;
  TaskFile file = request.generated_tasks
                      ? TaskFile::from_text(request.taskfile, *request.generated_tasks)
                      : TaskFile::open(request.taskfile);
  if (request.resume && request.results == "-")
    throw Error("--resume reads the results file: it cannot be standard output ('-')");
  TaskFile::Validation validation = file.validate(policy);
  if (request.dry_run) return dry_run(file, request);

  EngineRequest engine;
  engine.policy = policy;
  engine.cgroup_root = request.cgroup_root;
  engine.plan = std::move(validation.plan);
  // Before anything is created: a [sandbox] this process cannot set up fails the batch here.
  engine.sandbox = prepare_sandbox(policy, current_environment());
  engine.jobs = request.jobs > 0 ? request.jobs : default_jobs();
  // Each running task holds up to fds_per_task(needs) descriptors, 4 to 15 by what the batch
  // may use (include/pollkill/fdlimit.h): raise the soft open-file limit now (or refuse --jobs
  // the hard limit cannot cover), and give the tasks the limit pollkill had, so a program that
  // uses select() does not meet descriptors above 1024. A task's own sandbox.rlimits.nofile
  // wins. Restored after the engine has closed every descriptor.
  TaskFdNeeds needs;
  needs.output_relay = validation.output_limit;
  needs.evidence = validation.evidence;
  // v1 directories only for the v1-capable controllers the limits use (the session places v1
  // cgroups for the plan's controllers that the unified hierarchy lacks, and no others).
  const std::vector<std::string> controllers = controllers_for(engine.plan);
  needs.v1_dirs = static_cast<std::uint64_t>(std::count_if(
      std::begin(kV1LimitControllers), std::end(kV1LimitControllers), [&](std::string_view c) {
        return std::find(controllers.begin(), controllers.end(), c) != controllers.end();
      }));
  needs.lingering_init = policy.runner.mode != RunMode::cgroup || engine.sandbox.pid_init;
  needs.dynamic_uid = engine.sandbox.dynamic_uids.has_value();
  NofileRaise nofile =
      NofileRaise::for_jobs(static_cast<std::uint64_t>(engine.jobs), fds_per_task(needs));
  if (const auto& original = nofile.original()) {
    auto& rlimits = engine.sandbox.rlimits;
    bool set_by_policy = std::any_of(rlimits.begin(), rlimits.end(),
                                     [](const auto& r) { return r.first == RLIMIT_NOFILE; });
    if (!set_by_policy) rlimits.push_back({RLIMIT_NOFILE, *original});
  }
  engine.retries = true;
  engine.gc_dead_runs = true;
  engine.verbosity = request.verbosity;
  engine.progress = request.verbosity == 0       ? ProgressMode::off
                    : request.progress           ? *request.progress
                    : is_terminal(STDERR_FILENO) ? ProgressMode::line
                                                 : ProgressMode::off;
  engine.total = validation.tasks;
  engine.sync_interval = request.sync_interval;

  // The results file is opened (and locked: one batch per results file) before the resume
  // state is read from it, so that no other batch can append in between.
  RecordWriter results = RecordWriter::append_to(request.results);

  // --resume: what the results file holds, by task number. Refused before anything runs when
  // the task file is not the one the results came from.
  std::unordered_map<std::uint64_t, RecordedTask> resumed;
  if (request.resume) resumed = match_resumed(file, request, read_results(*results.file()));

  std::string logs = request.logs;
  if (logs.empty()) {
    std::string base = request.results == "-" ? BatchRequest{}.results : request.results;
    if (base.size() > 6 && base.ends_with(".jsonl")) base.resize(base.size() - 6);
    logs = base + ".logs";
  }
  prepare_logs_dir(logs);
  // Records name log files by absolute path, so `report` and people find them from anywhere.
  engine.logs_dir = fs::absolute(logs).lexically_normal().string();
  if (!engine.logs_dir.empty() && engine.logs_dir.back() == '/') engine.logs_dir.pop_back();

  Engine batch(std::move(engine));
  if (!request.resume && results.initial_size() > 0 && request.verbosity > 0) {
    diag::warning("appending to the existing results in '" + request.results +
                  "'; --resume would skip the tasks already done");
  }
  std::optional<AppendFile> joblog;
  if (!request.joblog.empty()) {
    joblog = AppendFile::open(request.joblog);
    if (joblog->initial_size() == 0) joblog->append(joblog_header());
  }
  TaskQueue queue(file, policy, std::move(resumed));
  EngineOutcome outcome = batch.run(queue, &results, joblog ? &*joblog : nullptr);
  if (request.verbosity > 0)
    diag::text(outcome.summary.format_text(run_summary_heading(file.name())));
  if (outcome.cancel_signal) return 128 + *outcome.cancel_signal;
  return outcome.summary.exit_code();
}

}  // namespace pollkill
