#include "pollkill/report.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>

#include "pollkill/diag.h"
#include "pollkill/error.h"

namespace pollkill {

SummaryRecord SummaryRecord::from(const Result& r) {
  SummaryRecord s;
  s.id = r.id;
  s.attempt = r.attempt;
  s.final = r.final;
  s.status = r.status;
  s.reason = r.reason;
  s.wall_s = r.wall_s;
  s.processes_reaped = r.processes_reaped;
  s.stdout_path = r.stdout_path.value_or("");
  s.stderr_path = r.stderr_path.value_or("");
  s.stack_signature = r.stack_signature.value_or("");
  return s;
}

std::optional<SummaryRecord> SummaryRecord::from(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("status") ||
      !j["status"].is_string())
    return std::nullopt;
  auto status = status_from_string(j["status"].get<std::string>());
  if (!status) return std::nullopt;
  SummaryRecord s;
  s.id = j["id"].get<std::string>();
  s.status = *status;
  s.attempt = j.value("attempt", 1);
  s.final = j.value("final", true);
  if (j.contains("reason") && j["reason"].is_string()) s.reason = j["reason"].get<std::string>();
  if (j.contains("wall_s") && j["wall_s"].is_number()) s.wall_s = j["wall_s"].get<double>();
  if (j.contains("processes_reaped") && j["processes_reaped"].is_number_unsigned())
    s.processes_reaped = j["processes_reaped"].get<std::uint64_t>();
  if (j.contains("stdout") && j["stdout"].is_string()) s.stdout_path = j["stdout"];
  if (j.contains("stderr") && j["stderr"].is_string()) s.stderr_path = j["stderr"];
  if (j.contains("stack_signature") && j["stack_signature"].is_string())
    s.stack_signature = j["stack_signature"];
  return s;
}

namespace {

bool is_stuck(Status status) {
  return status == Status::hung || status == Status::spinning || status == Status::thrashing;
}

// A stuck task with a signature is told by its group's line, not one by one in "not ok".
bool listed_one_by_one(const SummaryRecord& r) {
  return r.status != Status::ok && !(is_stuck(r.status) && !r.stack_signature.empty());
}

}  // namespace

void Summary::group_stuck(const SummaryRecord& r, int sign) {
  if (!is_stuck(r.status)) return;
  if (r.stack_signature.empty()) {
    unsigned_stuck_ += static_cast<std::uint64_t>(sign);
    return;
  }
  const auto key = std::make_pair(r.status, r.stack_signature);
  auto it = groups_.find(key);
  if (sign < 0) {
    if (it == groups_.end()) {
      if (ungrouped_stuck_ > 0) --ungrouped_stuck_;
      return;
    }
    std::erase(it->second.ids, r.id);
    if (--it->second.count == 0) groups_.erase(it);
    return;
  }
  if (it == groups_.end()) {
    if (groups_.size() >= kGroups) {
      ++ungrouped_stuck_;
      return;
    }
    it = groups_.emplace(key, SignatureGroup{r.status, r.stack_signature, 0, {}}).first;
  }
  ++it->second.count;
  if (it->second.ids.size() < kGroupIds) it->second.ids.push_back(r.id);
}

void Summary::count_final(const SummaryRecord& r, int sign) {
  counts_[r.status] += static_cast<std::uint64_t>(sign);
  group_stuck(r, sign);
  if (sign < 0) {
    std::erase_if(listed_, [&](const SummaryRecord& l) { return l.id == r.id; });
    std::erase_if(slowest_, [&](const SummaryRecord& l) { return l.id == r.id; });
    if (listed_one_by_one(r) && not_ok_seen_ > 0) --not_ok_seen_;
    return;
  }
  if (listed_one_by_one(r)) {
    ++not_ok_seen_;
    if (listed_.size() < kListed) listed_.push_back(r);
  }
  slowest_.push_back(r);
  std::sort(slowest_.begin(), slowest_.end(),
            [](const SummaryRecord& a, const SummaryRecord& b) { return a.wall_s > b.wall_s; });
  if (slowest_.size() > kSlowest) slowest_.pop_back();
}

void Summary::add(const SummaryRecord& r) {
  reaped_ += r.processes_reaped;
  if (r.attempt > 1) ++retries_;
  if (!r.final) return;
  if (by_id_) {
    auto [it, inserted] = finals_by_id_.try_emplace(r.id, r);
    if (!inserted) {
      count_final(it->second, -1);
      it->second = r;
    }
  }
  count_final(r, +1);
}

void Summary::add_skipped(Status final_status) {
  ++counts_[final_status];
  ++skipped_;
  if (final_status != Status::ok) ++not_ok_seen_;
}

std::uint64_t Summary::finals() const {
  std::uint64_t n = 0;
  for (const auto& [status, count] : counts_) n += count;
  return n;
}

std::uint64_t Summary::count(Status status) const {
  auto it = counts_.find(status);
  return it == counts_.end() ? 0 : it->second;
}

std::vector<SignatureGroup> Summary::signature_groups() const {
  std::vector<SignatureGroup> out;
  out.reserve(groups_.size());
  for (const auto& [key, group] : groups_) out.push_back(group);
  // groups_ is ordered by (status, signature): a stable sort by count keeps that for ties.
  std::stable_sort(out.begin(), out.end(), [](const SignatureGroup& a, const SignatureGroup& b) {
    return a.count > b.count;
  });
  return out;
}

std::string Summary::format_text(std::string_view heading) const {
  std::string out;
  if (!heading.empty()) out += std::string(heading) + "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%llu tasks: ", static_cast<unsigned long long>(finals()));
  out += line;
  bool first = true;
  for (const auto& [status, count] : counts_) {
    if (count == 0) continue;
    out += (first ? "" : ", ") + std::to_string(count) + " " + std::string(to_string(status));
    first = false;
  }
  if (first) out += "none";
  out += "\n";
  std::snprintf(line, sizeof line, "retries: %llu, processes reaped: %llu",
                static_cast<unsigned long long>(retries_),
                static_cast<unsigned long long>(reaped_));
  out += line;
  if (skipped_ > 0) out += ", already done (resumed): " + std::to_string(skipped_);
  out += "\n";
  if (!slowest_.empty()) {
    out += "slowest:\n";
    for (const auto& r : slowest_) {
      std::snprintf(line, sizeof line, "  %-12s %8.3fs  %s\n", r.id.c_str(), r.wall_s,
                    std::string(to_string(r.status)).c_str());
      out += line;
    }
  }
  if (!listed_.empty()) {
    out += "not ok:\n";
    for (const auto& r : listed_) {
      out += "  " + r.id + ": " + std::string(to_string(r.status)) + ": " + r.reason + "\n";
      if (!r.stack_signature.empty()) out += "      at: " + r.stack_signature + "\n";
      if (!r.stderr_path.empty())
        out += "      logs: " + r.stdout_path + " " + r.stderr_path + "\n";
    }
    if (not_ok_seen_ > listed_.size())
      out += "  ... and " + std::to_string(not_ok_seen_ - listed_.size()) + " more\n";
  }
  const auto groups = signature_groups();
  if (!groups.empty()) {
    out += "stuck, by stack signature:\n";
    for (size_t i = 0; i < groups.size() && i < kGroupsShown; ++i) {
      const auto& g = groups[i];
      out += "  " + std::to_string(g.count) + " " + std::string(to_string(g.status)) + " at `" +
             g.stack_signature + "` (" + (g.count == 1 ? "task " : "tasks ");
      for (size_t k = 0; k < g.ids.size(); ++k) out += (k ? ", " : "") + g.ids[k];
      if (g.count > g.ids.size()) out += ", ...";
      out += ")\n";
    }
    if (groups.size() > kGroupsShown) {
      std::uint64_t tasks = 0;
      for (size_t i = kGroupsShown; i < groups.size(); ++i) tasks += groups[i].count;
      out += "  ... and " + std::to_string(tasks) + " more in " +
             std::to_string(groups.size() - kGroupsShown) + " other signatures\n";
    }
    if (ungrouped_stuck_ > 0) {
      out += "  ... and " + std::to_string(ungrouped_stuck_) + " more beyond " +
             std::to_string(kGroups) + " signatures\n";
    }
    if (unsigned_stuck_ > 0) {
      out += "  " + std::to_string(unsigned_stuck_) + " without a stack signature\n";
    }
  }
  return out;
}

nlohmann::ordered_json Summary::to_json() const {
  nlohmann::ordered_json j;
  j["tasks"] = finals();
  nlohmann::ordered_json counts = nlohmann::ordered_json::object();
  for (const auto& [status, count] : counts_)
    if (count > 0) counts[std::string(to_string(status))] = count;
  j["counts"] = counts;
  j["not_ok"] = not_ok();
  j["retries"] = retries_;
  j["processes_reaped"] = reaped_;
  j["resumed"] = skipped_;
  auto entry = [](const SummaryRecord& r) {
    nlohmann::ordered_json e;
    e["id"] = r.id;
    e["attempt"] = r.attempt;
    e["status"] = std::string(to_string(r.status));
    e["reason"] = r.reason;
    e["wall_s"] = r.wall_s;
    e["stdout"] = r.stdout_path;
    e["stderr"] = r.stderr_path;
    e["stack_signature"] = r.stack_signature.empty() ? nlohmann::ordered_json(nullptr)
                                                     : nlohmann::ordered_json(r.stack_signature);
    return e;
  };
  j["slowest"] = nlohmann::ordered_json::array();
  for (const auto& r : slowest_) j["slowest"].push_back(entry(r));
  j["failed"] = nlohmann::ordered_json::array();
  for (const auto& r : listed_) j["failed"].push_back(entry(r));
  nlohmann::ordered_json stuck = nlohmann::ordered_json::array();
  for (const auto& g : signature_groups()) {
    nlohmann::ordered_json e;
    e["status"] = std::string(to_string(g.status));
    e["stack_signature"] = g.stack_signature;
    e["count"] = g.count;
    e["ids"] = g.ids;
    stuck.push_back(std::move(e));
  }
  j["stuck_by_signature"] = std::move(stuck);
  j["stuck_without_signature"] = unsigned_stuck_;
  j["stuck_ungrouped"] = ungrouped_stuck_;
  return j;
}

void for_each_record(
    const std::string& path,
    const std::function<void(const nlohmann::json&, const SummaryRecord&, std::uint64_t)>& each) {
  std::ifstream in(path);
  if (!in) throw SystemError(errno, "read the results file '" + path + "'");
  std::string line;
  std::uint64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json json;
    std::optional<SummaryRecord> record;
    try {
      json = nlohmann::json::parse(line);
      record = SummaryRecord::from(json);
    } catch (const nlohmann::json::exception&) {
    }
    if (!record) {
      diag::warning(path + ":" + std::to_string(number) + ": not a record, skipped");
      continue;
    }
    each(json, *record, number);
  }
}

std::string run_summary_heading(std::string_view taskfile) {
  return "this run of " + std::string(taskfile) +
         ": each task's final status; retries and processes reaped in this run";
}

std::string file_summary_heading(std::string_view results) {
  return std::string(results) +
         ": each task's last final record, from every run written to this file; retries and "
         "processes reaped in all its records";
}

Summary summarize_results_file(const std::string& path) {
  Summary summary(true);
  for_each_record(path, [&](const nlohmann::json&, const SummaryRecord& record, std::uint64_t) {
    summary.add(record);
  });
  return summary;
}

}  // namespace pollkill
