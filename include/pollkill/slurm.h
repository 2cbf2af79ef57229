// Batches on a Slurm cluster: `pollkill batch --slurm` (a job array), `--launcher srun` (job
// steps inside an allocation), the element that runs one task on a node, and `collect`.
//
// A Slurm results directory (on storage every node sees) holds everything a submission needs
// and everything it produced, so that an element depends on nothing but the directory:
//
//   DIR/tasks               the task file, copied at submission (elements read task SEQ here)
//   DIR/policy.toml         the batch's effective policy (to_toml), flags included
//   DIR/records/SEQ.ATTEMPT.json   one result record per element and attempt (linked into
//                           place whole and never replaced, so no reader sees half a record,
//                           no two nodes ever append to one file, and no late run overwrites)
//   DIR/records/SEQ.final   a second name of task SEQ's final record: the claim that makes it
//                           the only one (place_record)
//   DIR/superseded/         records of runs that ended after their task was decided elsewhere
//                           (a straggler from a node Slurm declared dead); collect ignores them
//   DIR/logs/SEQ.ATTEMPT.out|.err  the attempt's stdout and stderr
//   DIR/slurm/              Slurm's own output of each element, and the submitted scripts
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pollkill/policy.h"
#include "pollkill/result.h"

namespace pollkill {

/// Exit codes of an element (`pollkill slurm-element`), which are what Slurm sees.
namespace element_exit {
inline constexpr int kOk = 0;     ///< final record written, status ok
inline constexpr int kNotOk = 1;  ///< final record written, any other status
inline constexpr int kSetup = 2;  ///< no record: the directory or the task could not be read
/// A retryable verdict (the status is in retry.on) with attempts left: EX_TEMPFAIL, which
/// slurm.conf's `RequeueExit=75` turns into a requeue; the next run's SLURM_RESTART_COUNT
/// makes it the next attempt.
inline constexpr int kRequeue = 75;
/// No record added: the task already had a final record when this run started or ended.
/// Another run decided it: Slurm ran the element again after declaring this run's node
/// dead (this run is the straggler), or the task was submitted twice. The record of this
/// run, if it got that far, is in DIR/superseded/.
inline constexpr int kSuperseded = 3;
}  // namespace element_exit

/// The element's exit code for the record it wrote.
int element_exit_code(const Result& result);

/// The paths of a Slurm results directory (see the file comment).
struct SlurmDir {
  std::filesystem::path root;

  std::filesystem::path tasks() const { return root / "tasks"; }
  std::filesystem::path policy() const { return root / "policy.toml"; }
  std::filesystem::path records() const { return root / "records"; }
  std::filesystem::path logs() const { return root / "logs"; }
  std::filesystem::path slurm() const { return root / "slurm"; }
  std::filesystem::path superseded() const { return root / "superseded"; }
  std::filesystem::path record(std::uint64_t seq, int attempt) const;
  /// records/SEQ.final: exists once task SEQ has its final record (see place_record).
  std::filesystem::path final_marker(std::uint64_t seq) const;
  std::filesystem::path log(std::uint64_t seq, int attempt, const char* stream) const;
};

/// "SEQ.ATTEMPT.json" parsed; nullopt for any other name (temporary files, strays).
struct RecordName {
  std::uint64_t seq = 0;
  int attempt = 0;
  auto operator<=>(const RecordName&) const = default;
};
std::optional<RecordName> parse_record_name(const std::string& file_name);

/// Slurm's --array value for the task numbers `seqs` (sorted, unique), runs of consecutive
/// numbers as ranges: {1,2,3,5,7,8} and 2 -> "1-3,5,7-8%2". `max_parallel` 0: no "%M".
std::string array_spec(const std::vector<std::uint64_t>& seqs, int max_parallel);

/// The CPUs to ask Slurm for per task: ceil of the policy's cpus limit, else 1.
int slurm_cpus(const Limits& limits);

/// What pollkill itself needs on the node beside its tasks, added to the memory an element
/// asks Slurm for (`element_memory`).
inline constexpr std::uint64_t kElementOverheadBytes = 64ull << 20;

/// The memory an array element needs from Slurm when tasks escalate their memory limit
/// (`retry.escalate`): `tasks_at_once` times `largest` (the largest memory limit any attempt
/// can run with, largest_escalated_memory) plus kElementOverheadBytes.
std::uint64_t element_memory(std::uint64_t largest, int tasks_at_once);

/// The memory the user's sbatch arguments ask for per node: the last `--mem` (with or
/// without `=`), or `--mem-per-cpu` times `cpus`; nullopt when they name neither. Slurm's
/// units: a number of MiB, or with a K, M, G or T suffix. Throws Error for a value Slurm
/// would not take either.
std::optional<std::uint64_t> sbatch_memory(const std::vector<std::string>& user_args, int cpus);

/// A size as sbatch's --mem takes it: whole MiB, rounded up ("130M").
std::string slurm_size(std::uint64_t bytes);

/// `--chunk auto`: as many tasks per element as keep the array at this many elements or
/// fewer (docs/SLURM.md, "Chunks").
inline constexpr std::uint64_t kAutoChunkElements = 100;

/// Tasks per element for `tasks` tasks: `chunk` itself, or for `--chunk auto` (0) the
/// fewest that keep the array at kAutoChunkElements elements or fewer (at least 1).
std::uint64_t chunk_size(std::uint64_t tasks, std::uint64_t chunk);

/// `seqs` in runs of `size` (the last one may be shorter): element K runs the K-th.
std::vector<std::vector<std::uint64_t>> split_chunks(const std::vector<std::uint64_t>& seqs,
                                                     std::uint64_t size);

/// The task numbers of an array_spec without "%M" ("1-3,5" -> {1,2,3,5}); throws Error for
/// anything else.
std::vector<std::uint64_t> parse_task_list(const std::string& spec);

/// The tasks a chunk element runs at once: its CPUs on the node (SLURM_CPUS_ON_NODE; 1
/// when unset) divided by each task's (slurm_cpus), at least 1.
int chunk_jobs(std::optional<std::uint64_t> cpus_on_node, int task_cpus);

/// The CPUs per element the user's sbatch arguments ask for (the last `--cpus-per-task` or
/// `-c`); nullopt when they do not. Throws Error for a value that is not a number.
std::optional<int> sbatch_cpus(const std::vector<std::string>& user_args);

/// The job script `batch --slurm` submits: runs `pollkill slurm-element` for the element's
/// task, or with `chunks` (a chunk file: line K lists element K's tasks) for its chunk;
/// everything else (array, CPUs, output, the user's arguments) is on sbatch's command line
/// (`sbatch_command`).
std::string sbatch_script(const std::string& pollkill, const std::filesystem::path& dir,
                          const std::filesystem::path& chunks = {});

/// sbatch's arguments for a submission: --parsable, the job name, --array, -c, --output and
/// --error into DIR/slurm, --requeue (an element lost with its node runs again), then the
/// user's --sbatch-arg values (which therefore win: --no-requeue), then the script.
std::vector<std::string> sbatch_command(const std::filesystem::path& dir, const std::string& array,
                                        int cpus, const std::vector<std::string>& user_args,
                                        const std::filesystem::path& script);

/// The job step for one task inside an allocation: srun --exclusive -n1 -N1 -cCPUS ...
/// pollkill slurm-element DIR --seq SEQ --attempt ATTEMPT, after the user's --srun-arg values.
std::vector<std::string> srun_command(const std::string& pollkill, const std::filesystem::path& dir,
                                      std::uint64_t seq, int attempt, int cpus,
                                      const std::vector<std::string>& user_args);

/// The attempt an element runs: one past the highest of SLURM_RESTART_COUNT (Slurm's requeue
/// count, 0 on the first run) and the attempts already recorded for the task (a resumed
/// submission starts counting at 0 again, the records do not).
int element_attempt(std::optional<int> restart_count, int highest_recorded);

/// A record as an element writes it: the result's JSON (the results contract) with `host`
/// and `slurm_job_id` added.
nlohmann::ordered_json element_record(const Result& result, const std::string& host,
                                      const std::string& slurm_job_id);

/// What a directory's records say, per task number: the highest attempt recorded and whether
/// a final record exists (a cancelled record is not final for resuming, as in `batch`).
struct RecordedAttempts {
  int highest = 0;
  bool final = false;
  Status final_status = Status::error;  ///< the status of the final record, when there is one
};
/// Reads every record of DIR/records (records that cannot be parsed are skipped, each
/// named in `warnings`).
std::map<std::uint64_t, RecordedAttempts> scan_records(const SlurmDir& dir,
                                                       std::vector<std::string>* warnings);

/// The task numbers 1..`tasks` still without a final record: what `--resume` submits.
std::vector<std::uint64_t> missing_tasks(std::uint64_t tasks,
                                         const std::map<std::uint64_t, RecordedAttempts>& done);

/// The records to append to a results file, in task then attempt order, leaving out those
/// whose (id, attempt) the results file already holds (so collecting twice adds nothing).
/// `records` are (name, parsed record) pairs; `present` holds "ID\nATTEMPT" keys.
std::vector<const nlohmann::ordered_json*> records_to_append(
    const std::vector<std::pair<RecordName, nlohmann::ordered_json>>& records,
    const std::vector<std::string>& present);
/// The key `records_to_append` compares: "ID\nATTEMPT".
std::string record_key(const std::string& id, int attempt);

// ---- the edge: files, processes, Slurm's commands ----

/// Writes `text` to `path` whole: a temporary file beside it (named after this host and
/// process, so that nodes sharing the directory never write one temporary file), fsync,
/// rename. A reader on any node sees the old file or the new one, never a part.
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

/// Where place_record put a record.
enum class Placement {
  placed,      ///< DIR/records/SEQ.ATTEMPT.json
  superseded,  ///< DIR/superseded/SEQ.ATTEMPT.HOST.PID.json: the task was decided elsewhere
};
struct PlacedRecord {
  Placement placement = Placement::placed;
  std::filesystem::path path;  ///< the record's name now
};

/// Puts the record `text` of task `seq`, attempt `attempt` into DIR/records without ever
/// replacing a record, so that every task ends with exactly one final record however many
/// runs of it end (a straggler on a node Slurm declared dead and the rerun Slurm started
/// elsewhere; one task submitted twice):
/// - the record is written whole and fsynced under a temporary name, then link(2)ed to
///   SEQ.ATTEMPT.json, which fails rather than replace an existing file (rename would
///   replace it): of two runs of one attempt, the first to end keeps the name;
/// - a record that decides the task (`decides`: final and not cancelled) first claims
///   records/SEQ.final the same way: the first run to decide the task wins, and a later
///   one's record goes aside;
/// - a record that does not decide the task is added only while the task has no final
///   record (a non-final record that races a final one may still land beside it; it is
///   not final, so the task still has one final record).
/// A record that is not placed is moved into DIR/superseded/, which collect and --resume
/// do not read. A claim whose record never got its name (the node died between the two
/// links) is completed by the next run that finds it. The links work on NFS too: a link
/// whose reply was lost is recognised by the temporary file's link count, as open(2)
/// advises for lock files. Throws SystemError for anything but a name that is taken.
PlacedRecord place_record(const SlurmDir& dir, std::uint64_t seq, int attempt,
                          const std::string& text, bool decides);

/// The attempt of task `seq`'s final record when it has one (records/SEQ.final); nullopt
/// when it has none. Completes a claim whose record lacks its name, as place_record does.
std::optional<int> decided_attempt(const SlurmDir& dir, std::uint64_t seq);

/// The highest attempt of task `seq` that started: one with a record or a stdout log (an
/// element creates its logs before it runs the task, so an attempt lost with its node
/// still counts and a rerun never takes its number, its logs or a straggler's name).
int highest_started_attempt(const SlurmDir& dir, std::uint64_t seq);

/// `pollkill batch --slurm` and `--launcher srun`.
struct SlurmBatchRequest {
  std::string taskfile;  ///< path, or "-"
  Policy policy;
  std::filesystem::path dir;  ///< --results-dir
  int jobs = 0;  ///< the array's %M (0: none), or the steps at once (0: SLURM_NTASKS, else 1)
  bool resume = false;
  std::vector<std::string> launcher_args;  ///< --sbatch-arg or --srun-arg values
  std::string results;                     ///< --launcher srun: the merged results file
  /// --slurm --chunk: tasks per element (0: auto); not set: one task per element.
  std::optional<std::uint64_t> chunk;
  int verbosity = 1;
};

/// Prepares DIR (or checks it on --resume), submits the tasks without a final record as one
/// job array and prints the job id on stdout. Returns 0, or 0 with a note when nothing is
/// left to submit. Throws Error (exit 2) for an unusable directory or task file, a resume
/// whose task file differs from DIR/tasks, or sbatch failing (its message quoted).
int submit_slurm_batch(const SlurmBatchRequest& request);

/// Inside an allocation: runs each task as `srun ... pollkill slurm-element`, at most `jobs`
/// at once, requeues attempts that exit kRequeue, appends each record to `results` as it
/// arrives, and returns the batch's exit code (0 all ok, 1 some not, 128+N interrupted).
int run_srun_batch(const SlurmBatchRequest& request);

/// `pollkill slurm-element DIR`: runs task `seq` (SLURM_ARRAY_TASK_ID when unset) as attempt
/// `attempt` (element_attempt with highest_started_attempt when unset) and places its record
/// (place_record); returns the element exit code. A task that already has a final record is
/// not run (kSuperseded), nor is a record placed for one that got it meanwhile. Its own
/// errors are reported on stderr with kSetup.
int run_slurm_element(const std::filesystem::path& dir, std::optional<std::uint64_t> seq,
                      std::optional<int> attempt);

/// `pollkill slurm-element DIR --chunks FILE`: array element K (SLURM_ARRAY_TASK_ID) runs
/// the tasks of line K of FILE as a local batch on its node: each task's next attempt as
/// `pollkill slurm-element DIR --seq SEQ --attempt N` (so records, logs and escalation are an
/// element's), chunk_jobs at once, a retryable verdict run again at once; a task with a final
/// record is skipped. SIGTERM is passed on (the tasks are recorded cancelled). Returns 0 when
/// every task of the chunk ended ok, 1 otherwise, 128+N when interrupted.
int run_slurm_chunk(const std::filesystem::path& dir, const std::filesystem::path& chunks);

/// `pollkill collect DIR --results FILE`: appends DIR's records FILE lacks, in task order;
/// prints what it did. Returns 0 when every task has a final record, 1 when some have none
/// yet (named, up to 20), 2 for errors (thrown as Error).
int collect_slurm_results(const std::filesystem::path& dir, const std::string& results);

}  // namespace pollkill
