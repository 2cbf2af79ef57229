// The pollkill command line: parses arguments with CLI11 and calls the core.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "policy_flags.h"
#include "pollkill/arguments.h"
#include "pollkill/batch.h"
#include "pollkill/cgroup.h"
#include "pollkill/cgroup_v1.h"
#include "pollkill/diag.h"
#include "pollkill/doctor.h"
#include "pollkill/error.h"
#include "pollkill/event_loop.h"
#include "pollkill/gc.h"
#include "pollkill/live_view.h"
#include "pollkill/policy.h"
#include "pollkill/policy_path.h"
#include "pollkill/policy_schema.h"
#include "pollkill/report.h"
#include "pollkill/report_html.h"
#include "pollkill/report_trace.h"
#include "pollkill/result.h"
#include "pollkill/slurm.h"
#include "pollkill/supervisor.h"
#include "pollkill/units.h"
#include "usage.h"

namespace {

using namespace pollkill;

template <typename F>
auto with_flag(const std::string& flag, F parse) {
  try {
    return parse();
  } catch (const PolicyError&) {
    throw;
  } catch (const Error& e) {
    throw PolicyError(flag, 0, 0, e.what());
  }
}

// `--policy ARG`: a bare name is looked up in /etc/pollkill, then the shipped policies
// (or POLLKILL_POLICY_PATH); anything else is a path.
// The most tasks at once `--jobs` takes; the open-file limit usually allows far fewer.
constexpr std::int64_t kMaxJobs = 100000;

Policy load_policy(const std::string& arg) {
  return load_policy_file(
      resolve_policy(arg, policy_search_path(::getenv("POLLKILL_POLICY_PATH"))));
}

}  // namespace

int main(int argc, char** argv) {
  // A closed stdout must not kill pollkill before it has cleaned up its tasks.
  ::signal(SIGPIPE, SIG_IGN);
  // A cancel during start-up must not kill pollkill without a record (event_loop.h).
  hold_cancel_signals();

  CLI::App app{"pollkill: run unreliable work in cgroups, watch it, and reap whole process trees",
               "pollkill"};
  app.set_version_flag("--version", std::string("pollkill ") + POLLKILL_VERSION);
  app.require_subcommand(1);

  // pollkill run
  CLI::App* run = app.add_subcommand("run", "run one command in its own cgroup, watched");
  LimitFlags flags;
  std::string policy_file, cgroup_root, result_path, evidence_dir;
  bool quiet = false, verbose = false;
  add_limit_flags(run, flags);
  run->add_option("--policy", policy_file,
                  "policy file (TOML), or a policy name such as 'strict' (see pollkill-policy(5))")
      ->type_name("FILE");
  run->add_option("--cgroup-root", cgroup_root, "cgroup under which to create task cgroups")
      ->type_name("DIR")
      ->group("Runner");
  run->add_option("--result", result_path, "write the JSON result to FILE ('-' for stdout)")
      ->type_name("FILE");
  run->add_option("--evidence-dir", evidence_dir,
                  "write the evidence of a stuck task ([evidence] on) into this directory")
      ->type_name("DIR");
  run->add_flag("-q,--quiet", quiet, "print nothing about the outcome");
  run->add_flag("-v,--verbose", verbose, "print the outcome even when the task succeeded");
  std::vector<std::string> command;
  run->add_option("COMMAND", command, "the command and its arguments (after --)")->type_name("");
  run->positionals_at_end();
  run->footer(
      "Usage: pollkill run [OPTIONS] -- COMMAND [ARG...]\n"
      "Exit status: the command's own; 128+N if it died of signal N (137 for oom); 124 for "
      "timeout, cpu_limit, hung, spinning, output_limit; 125 pollkill's own errors; "
      "126/127 cannot execute / not found; 129/130/143 cancelled.");

  // pollkill batch
  CLI::App* batch = app.add_subcommand("batch", "run the tasks of a task file in parallel");
  LimitFlags batch_flags;
  BatchRequest batch_request;
  std::string batch_policy, batch_root, sync_interval, retries_text;
  int jobs = 0;
  std::string progress_mode;
  bool progress_off = false, batch_quiet = false, batch_verbose = false;
  add_limit_flags(batch, batch_flags);
  std::vector<std::string> batch_words;
  batch
      ->add_option("TASKFILE", batch_words,
                   "one task per line ('-': standard input); or, after --, COMMAND {} ::: ARG... "
                   "or :::: FILE, as GNU parallel takes them")
      ->type_name("")
      ->required();
  batch->add_flag("--dry-run", batch_request.dry_run,
                  "print each task's command and limits, and what --resume skips; run nothing");
  batch
      ->add_option("-j,--jobs", jobs,
                   "tasks at once, 1 to " + std::to_string(kMaxJobs) +
                       " (default: the CPUs this process may use)")
      ->type_name("N")
      ->check(integer_range(1, kMaxJobs));
  batch->add_option("--policy", batch_policy, "policy file (TOML), or a policy name")
      ->type_name("FILE");
  batch->add_option("--cgroup-root", batch_root, "cgroup under which to create task cgroups")
      ->type_name("DIR")
      ->group("Runner");
  batch
      ->add_option(
          "--results", batch_request.results,
          "results file, JSON Lines (default pollkill-results.jsonl; '-': standard output)")
      ->type_name("FILE");
  batch
      ->add_option("--logs", batch_request.logs,
                   "directory for per-attempt stdout/stderr logs (default: RESULTS.logs)")
      ->type_name("DIR");
  batch->add_option("--joblog", batch_request.joblog, "also write a GNU parallel joblog")
      ->type_name("FILE");
  batch
      ->add_option("--retries", retries_text,
                   "retry a task up to N times, 0 to 999 (retry.attempts = N+1)")
      ->type_name("N");
  batch->add_flag("--resume", batch_request.resume,
                  "skip tasks with a final record in the results file");
  batch
      ->add_option("--sync-interval", sync_interval,
                   "most time between a record and its fdatasync (default 100ms)")
      ->type_name("DURATION");
  // A flag with an optional `=MODE`, never the next word: `--progress tasks.txt` keeps its
  // task file. CLI11 gives a bare flag the value "true".
  batch
      ->add_flag("--progress", progress_mode,
                 "show progress even when not on a terminal: --progress or --progress=line the "
                 "progress line, --progress=full the running tasks (top-like), "
                 "--progress=off none (default: line on a terminal)")
      ->type_name("[=MODE]")
      ->transform(CLI::Validator(
          [](std::string& value) {
            if (value == "true") value = "line";
            return std::string();
          },
          "", "bare flag"))
      ->check(one_of(progress_mode_words()));
  batch->add_flag("--no-progress", progress_off, "no progress (--progress=off)");
  batch->add_flag("-q,--quiet", batch_quiet, "print no summary");
  batch->add_flag("-v,--verbose", batch_verbose, "print every attempt as it ends");
  bool batch_slurm = false;
  std::string launcher = "local", results_dir;
  std::vector<std::string> sbatch_args, srun_args;
  batch
      ->add_flag("--slurm", batch_slurm,
                 "submit the tasks as a Slurm job array instead of running them (prints the "
                 "job id; then pollkill collect)")
      ->group("Slurm");
  batch
      ->add_option("--launcher", launcher,
                   "local (default), or srun: each task as a job step of the current allocation")
      ->type_name("LAUNCHER")
      ->check(one_of({"local", "srun"}))
      ->group("Slurm");
  batch
      ->add_option("--results-dir", results_dir,
                   "with --slurm (required) or --launcher srun: the directory, on storage every "
                   "node sees, for the task file copy, the policy, per-attempt records and logs")
      ->type_name("DIR")
      ->group("Slurm");
  std::string chunk_arg;
  batch
      ->add_option("--chunk", chunk_arg,
                   "with --slurm: N tasks per array element (or auto), run there as a local "
                   "batch with -j from the element's CPUs")
      ->type_name("N|auto")
      ->group("Slurm");
  batch->add_option("--sbatch-arg", sbatch_args, "an argument for sbatch (repeatable)")
      ->type_name("ARG")
      ->allow_extra_args(false)
      ->group("Slurm");
  batch->add_option("--srun-arg", srun_args, "an argument for each srun (repeatable)")
      ->type_name("ARG")
      ->allow_extra_args(false)
      ->group("Slurm");
  batch->footer(
      "Exit status: 0 every task ended ok; 1 some did not; 2 usage, policy or task file errors "
      "(or the batch could not start); 130/143 interrupted. With --slurm: 0 submitted.");

  // pollkill collect
  CLI::App* collect =
      app.add_subcommand("collect", "merge the records of a Slurm submission into a results file");
  std::string collect_dir, collect_results = "pollkill-results.jsonl";
  collect->add_option("RESULTS_DIR", collect_dir, "the --results-dir of pollkill batch --slurm")
      ->type_name("")
      ->required();
  collect
      ->add_option("--results", collect_results,
                   "results file to append to, JSON Lines (default pollkill-results.jsonl)")
      ->type_name("FILE");
  collect->footer("Exit status: 0 every task has a final record; 1 some have none yet; 2 errors.");

  // pollkill slurm-element (hidden): what each array element or job step runs.
  CLI::App* element = app.add_subcommand("slurm-element", "");
  element->group("");
  std::string element_dir;
  std::uint64_t element_seq = 0;
  int element_attempt_arg = 0;
  element->add_option("RESULTS_DIR", element_dir)->required();
  element->add_option("--seq", element_seq);
  element->add_option("--attempt", element_attempt_arg)->check(CLI::PositiveNumber);
  std::string element_chunks;
  element->add_option("--chunks", element_chunks);

  // pollkill report
  CLI::App* report = app.add_subcommand("report", "summarize a batch's results file");
  std::string report_file, report_html, report_trace, report_memory, report_wall_time;
  bool report_json = false;
  report->add_option("RESULTS", report_file, "results file (JSON Lines)")
      ->type_name("")
      ->required();
  report->add_flag("--json", report_json, "print the summary as JSON");
  auto* html_option =
      report
          ->add_option("--html", report_html,
                       "also write a self-contained HTML page of the batch (timeline, statuses, "
                       "histograms, failures) to FILE")
          ->type_name("FILE");
  report
      ->add_option("--trace", report_trace,
                   "also write the batch as Chrome/Perfetto trace-event JSON to FILE")
      ->type_name("FILE");
  report->add_option("--memory", report_memory, "the memory limit to draw on the HTML page")
      ->type_name("SIZE")
      ->needs(html_option);
  report
      ->add_option("--wall-time", report_wall_time, "the wall-time limit to draw on the HTML page")
      ->type_name("DURATION")
      ->needs(html_option);

  // pollkill gc
  CLI::App* gc = app.add_subcommand("gc", "remove run cgroups of pollkill processes that are gone");
  std::string gc_root;
  gc->add_option("--cgroup-root", gc_root, "the run root to clean")->type_name("DIR");
  std::string gc_v1;
  gc->add_option("--cgroup-v1", gc_v1,
                 "hybrid hosts: with auto, also clean pollkill's v1 cgroups beside its own")
      ->type_name("MODE")
      ->check(enum_choice<CgroupV1>());

  // pollkill policy check
  CLI::App* policy = app.add_subcommand("policy", "work with policy files");
  policy->require_subcommand(1);
  CLI::App* check =
      policy->add_subcommand("check", "validate policy files (exit 0 valid, 1 invalid)");
  std::vector<std::string> check_files;
  bool print = false;
  check->add_option("FILE", check_files, "policy files or policy names")->type_name("")->required();
  check->add_flag("--print", print, "print the effective policy");

  // pollkill doctor
  CLI::App* doctor = app.add_subcommand("doctor", "check what this host offers pollkill");
  std::string doctor_policy, doctor_root;
  doctor
      ->add_option("--policy", doctor_policy,
                   "also check whether this policy (file or name) can be enforced")
      ->type_name("FILE");
  doctor->add_option("--cgroup-root", doctor_root, "the run root to check")->type_name("DIR");
  std::string doctor_v1;
  doctor
      ->add_option("--cgroup-v1", doctor_v1,
                   "hybrid hosts: check with runner.cgroup_v1 set to this (auto or off)")
      ->type_name("MODE")
      ->check(enum_choice<CgroupV1>());
  bool doctor_json_out = false;
  doctor->add_flag("--json", doctor_json_out, "print the checks as JSON");
  std::string doctor_scope;
  doctor
      ->add_option("--systemd-scope", doctor_scope,
                   "on systemd: auto (ask for a delegated scope when needed), never, always")
      ->type_name("MODE")
      ->check(enum_choice<SystemdScopeMode>());

  // A command line pollkill cannot read: 125 for `run` (whose other codes are the
  // command's) and when no command is known, 2 for the other commands.
  const auto usage_exit = [&](const UsageError& e) {
    diag::error(e);
    if (e.command() == "pollkill slurm-element") return element_exit::kSetup;
    return e.command() == "pollkill" || e.command() == "pollkill run" ? exit_code::kInternal : 2;
  };
  try {
    check_arguments(app, std::vector<std::string>(argv + 1, argv + argc));
    app.parse(argc, argv);
  } catch (const UsageError& e) {
    return usage_exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    return usage_exit(usage_error(app, e));
  }

  // Only the commands that drive the event loop take cancels over; the others die of them.
  // A dry run of batch starts no loop either.
  if (!run->parsed() && !(batch->parsed() && !batch_request.dry_run) && !element->parsed())
    release_cancel_signals();

  if (run->parsed()) {
    if (command.empty()) {
      diag::error(Error("no command given", "pollkill run [OPTIONS] -- COMMAND [ARG...]"));
      return exit_code::kInternal;
    }
    diag::set_level(quiet     ? diag::Level::quiet
                    : verbose ? diag::Level::verbose
                              : diag::Level::normal);
    Result result;
    try {
      RunRequest request;
      request.command = command;
      request.policy = policy_file.empty() ? default_policy() : load_policy(policy_file);
      apply_flags(flags, request.policy);
      if (!cgroup_root.empty()) request.cgroup_root = cgroup_root;
      if (!result_path.empty()) request.result = result_path;
      request.evidence_dir = evidence_dir;
      result = run_task(request);
    } catch (const Error& e) {
      diag::error(e);
      return exit_code::kInternal;
    } catch (const std::exception& e) {
      diag::error(e.what());
      return exit_code::kInternal;
    }
    int code = exit_code_for(result);
    if (announce_end(result, verbose)) {
      diag::notice(std::string(to_string(result.status)) + ": " + result.reason + " (exit " +
                   std::to_string(code) + ")");
    }
    if (result.evidence) diag::notice("evidence: " + *result.evidence);
    return code;
  }

  if (batch->parsed()) {
    try {
      if (has_argument_sources(batch_words)) {
        batch_request.taskfile = "::: arguments";
        batch_request.generated_tasks = argument_task_lines(parse_argument_sources(batch_words));
      } else if (batch_words.size() > 1) {
        return usage_exit(
            UsageError("unexpected argument '" + batch_words[1] + "'", "pollkill batch"));
      } else {
        batch_request.taskfile = batch_words.front();
      }
      batch_request.policy = batch_policy.empty() ? default_policy() : load_policy(batch_policy);
      apply_flags(batch_flags, batch_request.policy);
      if (!retries_text.empty()) {
        batch_request.policy.retry.attempts =
            static_cast<int>(parse_flag_integer("--retries", retries_text, 0, 999)) + 1;
      }
      if (!sync_interval.empty())
        batch_request.sync_interval =
            with_flag("--sync-interval", [&] { return parse_duration(sync_interval); });
      if (!batch_root.empty()) batch_request.cgroup_root = batch_root;
      batch_request.jobs = jobs;
      if (!progress_mode.empty()) batch_request.progress = progress_mode_from_string(progress_mode);
      if (progress_off) batch_request.progress = ProgressMode::off;
      batch_request.verbosity = batch_quiet ? 0 : batch_verbose ? 2 : 1;
      diag::set_level(batch_quiet     ? diag::Level::quiet
                      : batch_verbose ? diag::Level::verbose
                                      : diag::Level::normal);
      if (batch_slurm || launcher == "srun") {
        if (batch_slurm && launcher == "srun")
          throw Error("--slurm and --launcher srun are two different modes",
                      "--slurm submits a job array from a login node; --launcher srun runs "
                      "inside an allocation (salloc, sbatch)");
        if (!batch_root.empty() || !batch_request.logs.empty() || !batch_request.joblog.empty() ||
            !sync_interval.empty())
          throw Error("--cgroup-root, --logs, --joblog and --sync-interval are for local batches",
                      "records and logs go into --results-dir; set POLLKILL_CGROUP_ROOT in the "
                      "job's environment for the nodes' run root");
        if (batch_request.generated_tasks)
          throw Error("::: arguments are for local batches",
                      "write the tasks to a file for --slurm and --launcher srun (--dry-run "
                      "prints them)");
        if (batch_request.dry_run) throw Error("--dry-run is for local batches");
        SlurmBatchRequest slurm;
        slurm.taskfile = batch_request.taskfile;
        slurm.policy = batch_request.policy;
        slurm.jobs = jobs;
        slurm.resume = batch_request.resume;
        slurm.verbosity = batch_request.verbosity;
        slurm.results = batch_request.results;
        if (batch_slurm) {
          if (results_dir.empty())
            throw Error("--slurm needs --results-dir DIR",
                        "a directory on storage every node sees (it gets the records and logs)");
          if (!srun_args.empty()) throw Error("--srun-arg is for --launcher srun");
          slurm.dir = results_dir;
          slurm.launcher_args = sbatch_args;
          if (chunk_arg == "auto") {
            slurm.chunk = 0;
          } else if (!chunk_arg.empty()) {
            slurm.chunk = static_cast<std::uint64_t>(
                parse_flag_integer("--chunk", chunk_arg, 1, 1'000'000'000));
          }
          release_cancel_signals();  // no event loop: sbatch must not inherit them blocked
          return submit_slurm_batch(slurm);
        }
        if (!sbatch_args.empty()) throw Error("--sbatch-arg is for --slurm");
        if (!chunk_arg.empty()) throw Error("--chunk is for --slurm");
        if (results_dir.empty()) {
          std::string base = batch_request.results;
          if (base.size() > 6 && base.ends_with(".jsonl")) base.resize(base.size() - 6);
          results_dir = base + ".d";
        }
        slurm.dir = results_dir;
        slurm.launcher_args = srun_args;
        return run_srun_batch(slurm);
      }
      if (!chunk_arg.empty()) throw Error("--chunk is for --slurm");
      if (!results_dir.empty() || !sbatch_args.empty() || !srun_args.empty())
        throw Error("--results-dir, --sbatch-arg and --srun-arg need --slurm or --launcher srun");
      return run_batch(batch_request);
    } catch (const Error& e) {
      diag::error(e);
      return 2;
    } catch (const std::exception& e) {
      diag::error(e.what());
      return 2;
    }
  }

  if (report->parsed()) {
    try {
      BatchRecords records = read_batch_records(report_file);
      const Summary& summary = records.summary;
      if (!report_html.empty()) {
        HtmlOptions html;
        html.source = report_file;
        html.generated_at = format_rfc3339_ms(std::chrono::system_clock::now());
        if (!report_memory.empty())
          html.limits.memory_bytes =
              with_flag("--memory", [&] { return parse_size(report_memory); });
        if (!report_wall_time.empty())
          html.limits.wall_time_s = std::chrono::duration<double>(with_flag("--wall-time", [&] {
                                      return parse_duration(report_wall_time);
                                    })).count();
        write_report_file(report_html, render_html(records, html));
        diag::notice("wrote " + report_html);
      }
      if (!report_trace.empty()) {
        write_report_file(report_trace, render_trace(records, report_file));
        diag::notice("wrote " + report_trace);
      }
      if (report_json) {
        // What the counts count comes first, as the text's heading says it.
        nlohmann::ordered_json out;
        out["scope"] = file_summary_heading(report_file);
        const nlohmann::ordered_json counts = summary.to_json();
        for (const auto& [key, value] : counts.items()) out[key] = value;
        std::printf("%s\n", out.dump(2).c_str());
      } else {
        std::fputs(summary.format_text(file_summary_heading(report_file)).c_str(), stdout);
      }
      return summary.exit_code();
    } catch (const Error& e) {
      diag::error(e);
      return 2;
    }
  }

  if (collect->parsed()) {
    try {
      return collect_slurm_results(collect_dir, collect_results);
    } catch (const Error& e) {
      diag::error(e);
      return 2;
    }
  }

  if (element->parsed()) {
    try {
      if (!element_chunks.empty()) return run_slurm_chunk(element_dir, element_chunks);
      return run_slurm_element(
          element_dir, element_seq > 0 ? std::optional(element_seq) : std::nullopt,
          element_attempt_arg > 0 ? std::optional(element_attempt_arg) : std::nullopt);
    } catch (const Error& e) {
      diag::error(e);
      return element_exit::kSetup;
    } catch (const std::exception& e) {
      diag::error(e.what());
      return element_exit::kSetup;
    }
  }

  if (gc->parsed()) {
    try {
      HostCgroups host = probe_host_cgroups();
      RunRoot root = resolve_run_root(host, gc_root.empty() ? std::nullopt : std::optional(gc_root),
                                      default_policy(), cgroup_root_env(), false);
      auto removed = gc_run_cgroups(root.path);
      if (enum_value<CgroupV1>(gc_v1) == CgroupV1::automatic) {
        for (const char* controller : {"memory", "cpu", "pids"}) {
          V1Placement v1 = place_v1(controller, host.mounts, host.own_v1_cgroups, std::nullopt);
          if (!v1.usable) continue;
          for (auto& r : gc_v1_run_cgroups(v1.base, root.path)) removed.push_back(std::move(r));
        }
      }
      for (const auto& r : removed) {
        std::printf("removed %s (pollkill %d is gone; %zu processes killed)\n", r.path.c_str(),
                    r.owner, r.processes_killed);
      }
      if (removed.empty()) std::printf("nothing to remove under %s\n", root.path.c_str());
      return 0;
    } catch (const Error& e) {
      diag::error(e);
      return 2;
    }
  }

  if (check->parsed()) {
    int status = 0;
    for (const auto& file : check_files) {
      try {
        Policy p = load_policy(file);
        if (print) {
          std::printf("# %s\n%s", file.c_str(), to_toml(p).c_str());
        } else {
          std::printf("%s: ok\n", file.c_str());
        }
      } catch (const Error& e) {
        diag::text(std::string(e.what()) + "\n");
        status = 1;
      }
    }
    return status;
  }

  if (doctor->parsed()) {
    std::optional<Policy> p;
    try {
      if (!doctor_policy.empty()) p = load_policy(doctor_policy);
      if (!doctor_v1.empty()) {
        if (!p) p = default_policy();
        p->runner.cgroup_v1 = *enum_value<CgroupV1>(doctor_v1);
      }
    } catch (const Error& e) {
      diag::error(e);
      return 2;
    }
    DoctorReport doctor_report = run_doctor(
        p, doctor_root.empty() ? std::nullopt : std::optional(doctor_root),
        doctor_scope.empty() ? std::nullopt : std::optional(parse_systemd_scope(doctor_scope)));
    if (doctor_json_out) {
      std::printf("%s\n", doctor_json(doctor_report).dump(2).c_str());
    } else {
      std::fputs(format_doctor(doctor_report).c_str(), stdout);
    }
    return doctor_report.ready() ? 0 : 1;
  }
  return exit_code::kInternal;
}
