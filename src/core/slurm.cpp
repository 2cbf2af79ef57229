// The pure half of the Slurm modes: names, specs, scripts, command lines, attempt numbers and
// merge order. The files, processes and Slurm commands are in slurm_run.cpp.
#include "pollkill/slurm.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "pollkill/error.h"
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

std::uint64_t element_memory(std::uint64_t largest, int tasks_at_once) {
  return largest * static_cast<std::uint64_t>(std::max(1, tasks_at_once)) + kElementOverheadBytes;
}

namespace {

// "4G", "4096", "512M": Slurm's --mem value in bytes (a number alone is MiB).
std::uint64_t slurm_mem_bytes(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  auto number = parse_u64(std::string_view(text).substr(0, digits));
  std::string unit = text.substr(digits);
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "M" || unit == "m") scale = 1ull << 20;
  if (unit == "K" || unit == "k") scale = 1ull << 10;
  if (unit == "G" || unit == "g") scale = 1ull << 30;
  if (unit == "T" || unit == "t") scale = 1ull << 40;
  if (!number || scale == 0 || *number > (UINT64_MAX >> 41)) {
    throw Error("--sbatch-arg: invalid memory size '" + text + "'",
                "Slurm takes a number of MiB or one with a K, M, G or T suffix: --mem=4G");
  }
  return *number * scale;
}

}  // namespace

std::optional<std::uint64_t> sbatch_memory(const std::vector<std::string>& user_args, int cpus) {
  std::optional<std::uint64_t> out;
  for (std::size_t i = 0; i < user_args.size(); ++i) {
    const std::string& arg = user_args[i];
    for (std::string_view option : {"--mem", "--mem-per-cpu"}) {
      std::string value;
      if (arg == option && i + 1 < user_args.size()) {
        value = user_args[i + 1];
      } else if (arg.starts_with(std::string(option) + "=")) {
        value = arg.substr(option.size() + 1);
      } else {
        continue;
      }
      std::uint64_t bytes = slurm_mem_bytes(value);
      out = option == "--mem" ? bytes : bytes * static_cast<std::uint64_t>(std::max(1, cpus));
    }
  }
  return out;
}

std::string slurm_size(std::uint64_t bytes) {
  return std::to_string((bytes + (1ull << 20) - 1) >> 20) + "M";
}

std::uint64_t chunk_size(std::uint64_t tasks, std::uint64_t chunk) {
  if (chunk > 0) return chunk;
  return std::max<std::uint64_t>(1, (tasks + kAutoChunkElements - 1) / kAutoChunkElements);
}

std::vector<std::vector<std::uint64_t>> split_chunks(const std::vector<std::uint64_t>& seqs,
                                                     std::uint64_t size) {
  std::vector<std::vector<std::uint64_t>> out;
  size = std::max<std::uint64_t>(size, 1);
  for (std::size_t i = 0; i < seqs.size(); i += size) {
    std::size_t end = std::min<std::size_t>(seqs.size(), i + size);
    out.emplace_back(seqs.begin() + static_cast<std::ptrdiff_t>(i),
                     seqs.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return out;
}

std::vector<std::uint64_t> parse_task_list(const std::string& spec) {
  std::vector<std::uint64_t> out;
  std::string_view rest(spec);
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    auto dash = part.find('-');
    auto first = parse_u64(part.substr(0, dash));
    auto last = dash == std::string_view::npos ? first : parse_u64(part.substr(dash + 1));
    if (!first || !last || *first == 0 || *last < *first || *last - *first > 100'000'000 ||
        (!out.empty() && *first <= out.back()) || (comma != std::string_view::npos && rest.empty()))
      throw Error("invalid task list '" + spec + "'",
                  "a chunk file line lists task numbers as 1-3,5 in increasing order");
    for (std::uint64_t seq = *first; seq <= *last; ++seq) out.push_back(seq);
  }
  if (out.empty()) throw Error("empty task list", "a chunk file line lists task numbers");
  return out;
}

int chunk_jobs(std::optional<std::uint64_t> cpus_on_node, int task_cpus) {
  std::uint64_t cpus = cpus_on_node.value_or(1);
  return static_cast<int>(std::clamp<std::uint64_t>(
      cpus / static_cast<std::uint64_t>(std::max(1, task_cpus)), 1, 100'000));
}

std::optional<int> sbatch_cpus(const std::vector<std::string>& user_args) {
  std::optional<int> out;
  for (std::size_t i = 0; i < user_args.size(); ++i) {
    const std::string& arg = user_args[i];
    std::string value;
    if ((arg == "--cpus-per-task" || arg == "-c") && i + 1 < user_args.size()) {
      value = user_args[i + 1];
    } else if (arg.starts_with("--cpus-per-task=")) {
      value = arg.substr(16);
    } else if (arg.starts_with("-c") && arg.size() > 2 && arg[2] != '-') {
      value = arg.substr(2);
    } else {
      continue;
    }
    auto n = parse_u64(value);
    if (!n || *n == 0 || *n > 100'000)
      throw Error("--sbatch-arg: invalid CPU count '" + value + "'", "--cpus-per-task=N");
    out = static_cast<int>(*n);
  }
  return out;
}

std::string sbatch_script(const std::string& pollkill, const fs::path& dir,
                          const fs::path& chunks) {
  if (!chunks.empty()) {
    return "#!/bin/sh\n"
           "# Submitted by `pollkill batch --slurm --chunk`: array element N runs the tasks on\n"
           "# line N of " +
           shell_join({chunks.string()}) +
           " as a local batch, each writing its record into\n"
           "# " +
           shell_join({(dir / "records").string()}) +
           ". Exit 0: every task ended ok; 1: not.\n"
           "exec " +
           shell_join({pollkill, "slurm-element", dir.string(), "--chunks", chunks.string()}) +
           "\n";
  }
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
