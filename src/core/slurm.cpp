// The pure half of the Slurm modes: names, specs, scripts, command lines, attempt numbers and
// merge order. The files, processes and Slurm commands are in slurm_run.cpp.
#include "pollkill/slurm.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "pollkill/results.h"

namespace pollkill {

namespace fs = std::filesystem;

int element_exit_code(const Result& result) {
  if (!result.final) return element_exit::kRequeue;
  return result.status == Status::ok ? element_exit::kOk : element_exit::kNotOk;
}

fs::path SlurmDir::record(std::uint64_t seq, int attempt) const {
  return records() / (std::to_string(seq) + "." + std::to_string(attempt) + ".json");
}

fs::path SlurmDir::final_marker(std::uint64_t seq) const {
  return records() / (std::to_string(seq) + ".final");
}

fs::path SlurmDir::log(std::uint64_t seq, int attempt, const char* stream) const {
  return logs() / (std::to_string(seq) + "." + std::to_string(attempt) + "." + stream);
}

namespace {

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

std::optional<RecordName> parse_record_name(const std::string& file_name) {
  std::string_view name(file_name);
  if (!name.ends_with(".json")) return std::nullopt;
  name.remove_suffix(5);
  auto dot = name.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  auto seq = parse_u64(name.substr(0, dot));
  auto attempt = parse_u64(name.substr(dot + 1));
  if (!seq || !attempt || *seq == 0 || *attempt == 0 || *attempt > 1000000) return std::nullopt;
  return RecordName{*seq, static_cast<int>(*attempt)};
}

std::string array_spec(const std::vector<std::uint64_t>& seqs, int max_parallel) {
  std::string out;
  for (std::size_t i = 0; i < seqs.size();) {
    std::size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(seqs[i]);
    if (j > i) out += "-" + std::to_string(seqs[j]);
    i = j + 1;
  }
  if (max_parallel > 0) out += "%" + std::to_string(max_parallel);
  return out;
}

int slurm_cpus(const Limits& limits) {
  if (!limits.cpus || *limits.cpus <= 0) return 1;
  return std::max(1, static_cast<int>(std::ceil(*limits.cpus - 1e-9)));
}

std::string sbatch_script(const std::string& pollkill, const fs::path& dir) {
  return "#!/bin/sh\n"
         "# Submitted by `pollkill batch --slurm`: array element N runs task N of\n"
         "# " +
         shell_join({(dir / "tasks").string()}) +
         " under pollkill and writes its record into\n"
         "# " +
         shell_join({(dir / "records").string()}) +
         ". Exit 75 asks for a requeue (RequeueExit=75).\n"
         "exec " +
         shell_join({pollkill, "slurm-element", dir.string()}) + "\n";
}

std::vector<std::string> sbatch_command(const fs::path& dir, const std::string& array, int cpus,
                                        const std::vector<std::string>& user_args,
                                        const fs::path& script) {
  // --requeue: an element whose node dies runs again elsewhere, whatever the site's
  // JobRequeue (docs/SLURM.md, "When a node dies").
  std::vector<std::string> argv{"sbatch",
                                "--parsable",
                                "--job-name=pollkill",
                                "--array=" + array,
                                "--cpus-per-task=" + std::to_string(cpus),
                                "--output=" + (dir / "slurm" / "%A_%a.out").string(),
                                "--error=" + (dir / "slurm" / "%A_%a.out").string(),
                                "--requeue"};
  argv.insert(argv.end(), user_args.begin(), user_args.end());
  argv.push_back(script.string());
  return argv;
}

std::vector<std::string> srun_command(const std::string& pollkill, const fs::path& dir,
                                      std::uint64_t seq, int attempt, int cpus,
                                      const std::vector<std::string>& user_args) {
  // --exclusive: the step gets CPUs of its own within the allocation, so that at most as
  // many steps run as there are CPUs for them (later ones wait for a free one).
  std::vector<std::string> argv{"srun",
                                "--exclusive",
                                "--ntasks=1",
                                "--nodes=1",
                                "--cpus-per-task=" + std::to_string(cpus),
                                "--job-name=pollkill-" + std::to_string(seq),
                                "--quiet"};
  argv.insert(argv.end(), user_args.begin(), user_args.end());
  for (std::string word :
       {pollkill, std::string("slurm-element"), dir.string(), std::string("--seq"),
        std::to_string(seq), std::string("--attempt"), std::to_string(attempt)}) {
    argv.push_back(std::move(word));
  }
  return argv;
}

int element_attempt(std::optional<int> restart_count, int highest_recorded) {
  return std::max(restart_count.value_or(0), highest_recorded) + 1;
}

nlohmann::ordered_json element_record(const Result& result, const std::string& host,
                                      const std::string& slurm_job_id) {
  nlohmann::ordered_json record = to_json(result);
  record["host"] = host;
  record["slurm_job_id"] =
      slurm_job_id.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(slurm_job_id);
  return record;
}

std::vector<std::uint64_t> missing_tasks(std::uint64_t tasks,
                                         const std::map<std::uint64_t, RecordedAttempts>& done) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t seq = 1; seq <= tasks; ++seq) {
    auto it = done.find(seq);
    if (it == done.end() || !it->second.final) out.push_back(seq);
  }
  return out;
}

std::string record_key(const std::string& id, int attempt) {
  return id + "\n" + std::to_string(attempt);
}

std::vector<const nlohmann::ordered_json*> records_to_append(
    const std::vector<std::pair<RecordName, nlohmann::ordered_json>>& records,
    const std::vector<std::string>& present) {
  std::unordered_set<std::string> have(present.begin(), present.end());
  std::vector<const std::pair<RecordName, nlohmann::ordered_json>*> sorted;
  for (const auto& r : records) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::vector<const nlohmann::ordered_json*> out;
  for (const auto* r : sorted) {
    const auto& record = r->second;
    std::string id = record.value("id", std::string());
    if (have.insert(record_key(id, record.value("attempt", r->first.attempt))).second)
      out.push_back(&record);
  }
  return out;
}

}  // namespace pollkill
