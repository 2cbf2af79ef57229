// The end-of-batch summary, built from records as they are written or read back from a
// results file (`pollkill report`).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "pollkill/result.h"

namespace pollkill {

/// The fields of a record the summary uses.
struct SummaryRecord {
  std::string id;
  int attempt = 1;
  bool final = true;
  Status status = Status::error;
  std::string reason;
  double wall_s = 0;
  std::uint64_t processes_reaped = 0;
  std::string stdout_path;
  std::string stderr_path;
  std::string stack_signature;  ///< empty when the record has none (null, or no evidence)

  static SummaryRecord from(const Result& result);
  /// From a parsed record; nullopt when it lacks id or status.
  static std::optional<SummaryRecord> from(const nlohmann::json& record);
};

/// Stuck tasks (final status hung, spinning or thrashing) that share a stack signature: "7 hung
/// at `pk_stuck: stuck_in_read < main` (tasks 3, 17, 41, ...)".
struct SignatureGroup {
  Status status = Status::hung;
  std::string stack_signature;
  std::uint64_t count = 0;
  std::vector<std::string> ids;  ///< the first kGroupIds of them
};

/// Counts by final status, retries, processes reaped, the slowest tasks, the tasks that did
/// not end ok, and the stuck tasks grouped by status and stack signature (a stuck task with a
/// signature is told by its group, not listed one by one with the other not-ok tasks, so 500
/// tasks stuck in three places read as three lines). Memory is bounded:
/// at most kSlowest slowest and kListed not-ok tasks are kept (the rest only counted), at most
/// kGroups signature groups with kGroupIds ids each (stuck tasks beyond that only counted),
/// unless `by_id` asks to let a later final record of an id replace an earlier one (a
/// results file with resumed runs), which keeps one entry per id.
class Summary {
 public:
  static constexpr std::size_t kSlowest = 5;
  static constexpr std::size_t kListed = 20;
  static constexpr std::size_t kGroups = 1000;
  static constexpr std::size_t kGroupIds = 5;
  static constexpr std::size_t kGroupsShown = 10;  ///< lines in the text form

  explicit Summary(bool by_id = false) : by_id_(by_id) {}
  void add(const SummaryRecord& record);
  /// Tasks counted as done without a record in this run (skipped by --resume).
  void add_skipped(Status final_status);
  std::uint64_t skipped() const { return skipped_; }

  std::uint64_t finals() const;
  std::uint64_t count(Status status) const;
  std::uint64_t not_ok() const { return finals() - count(Status::ok); }
  /// 0 when every final status is ok, else 1.
  int exit_code() const { return not_ok() == 0 ? 0 : 1; }

  /// The text summary. `heading`, when given, is its first line: what the counts cover,
  /// which differs between the end of a batch (this run) and `report` (the whole file).
  std::string format_text(std::string_view heading = {}) const;
  nlohmann::ordered_json to_json() const;

  /// The signature groups, largest first (ties: status, then signature).
  std::vector<SignatureGroup> signature_groups() const;
  /// Stuck tasks without a stack signature, and stuck tasks beyond kGroups groups.
  std::uint64_t stuck_without_signature() const { return unsigned_stuck_; }
  std::uint64_t stuck_ungrouped() const { return ungrouped_stuck_; }

 private:
  void count_final(const SummaryRecord& record, int sign);
  void group_stuck(const SummaryRecord& record, int sign);

  bool by_id_;
  std::map<Status, std::uint64_t> counts_;
  std::uint64_t retries_ = 0;
  std::uint64_t reaped_ = 0;
  std::uint64_t skipped_ = 0;
  std::vector<SummaryRecord> slowest_;
  std::vector<SummaryRecord> listed_;
  std::uint64_t not_ok_seen_ = 0;
  std::unordered_map<std::string, SummaryRecord> finals_by_id_;
  std::map<std::pair<Status, std::string>, SignatureGroup> groups_;
  std::uint64_t unsigned_stuck_ = 0;
  std::uint64_t ungrouped_stuck_ = 0;
};

/// Calls `each` with every record of a results file in file order, parsed and as the summary
/// reads it, with its line number; lines that are not records are skipped with a warning.
/// Throws Error when the file cannot be read.
void for_each_record(
    const std::string& path,
    const std::function<void(const nlohmann::json& record, const SummaryRecord& summary_record,
                             std::uint64_t line)>& each);

/// The headings that say what a summary counts. At the end of a batch: the tasks of the task
/// file by final status (those --resume skipped by their recorded one), retries and processes
/// reaped in this run only. For `report`: each id's last final record in the results file,
/// whatever run wrote it, and retries and processes reaped over every record there.
std::string run_summary_heading(std::string_view taskfile);
std::string file_summary_heading(std::string_view results);

/// Reads a results file into a summary (a later final record of an id replaces an earlier
/// one; lines that are not records are skipped with a warning to stderr). Throws Error when
/// the file cannot be read.
Summary summarize_results_file(const std::string& path);

}  // namespace pollkill
