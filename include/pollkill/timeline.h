// The attempts of a batch as a timeline: every record of a results file with its start, its
// end and the lane it ran on, for `pollkill report --html` and `--trace`. Pure: the reading
// of the file is the only I/O (read_batch_records), the rest are functions of the records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pollkill/report.h"
#include "pollkill/status.h"

namespace pollkill {

/// One record (one attempt of one task) with what the views draw.
struct Attempt {
  std::string id;
  int attempt = 1;
  bool final = true;
  Status status = Status::error;
  std::string reason;
  std::string command;  ///< the recorded command, joined for a shell
  std::optional<int> exit_code;
  std::optional<int> signal;
  /// Seconds since the epoch; nullopt when the record has no usable `started_at` (such an
  /// attempt is counted but not drawn).
  std::optional<double> start_s;
  double wall_s = 0;
  double cpu_s = 0;  ///< cpu_user_s + cpu_system_s
  std::optional<std::uint64_t> memory_peak_bytes;
  std::uint64_t processes_reaped = 0;
  std::string host;             ///< `host` (records collected from Slurm); empty for a local batch
  std::optional<int> slot;      ///< `slot`, when the record names the slot it ran in
  std::string stdout_path;      ///< `stdout`
  std::string stderr_path;      ///< `stderr`
  std::string stack_signature;  ///< `stack_signature`, when the record has one
  std::uint64_t line = 0;       ///< the record's line in the results file
};

/// Builds an attempt from a parsed record; nullopt when it lacks an id or a known status.
std::optional<Attempt> attempt_from_record(const nlohmann::json& record);

/// "2026-11-26T01:43:05.123Z" (what format_rfc3339_ms writes; any fraction, a `Z` or a
/// `+HH:MM` offset) as seconds since the epoch; nullopt when it is not such a time or is
/// the epoch itself (a record whose start was never set).
std::optional<double> parse_rfc3339(const std::string& text);

/// Seconds since the epoch as format_rfc3339_ms writes a time.
std::string utc_rfc3339(double epoch_s);

/// A results file read once for the views: every attempt in file order, and the summary
/// `pollkill report` prints for the same file (so the counts agree by construction).
struct BatchRecords {
  std::vector<Attempt> attempts;
  Summary summary{true};
};

/// Reads a results file (lines that are not records are skipped with a warning, as
/// `pollkill report` does). Throws Error when the file cannot be read.
BatchRecords read_batch_records(const std::string& path);

/// Where the lanes came from, said on the page.
enum class LaneSource {
  recorded_slots,  ///< every record (of a host) names its slot
  packed,          ///< interval packing of [start, start + wall]
};

/// The lane of every attempt. Attempts are grouped by host (one group for a local batch);
/// within a group, lanes are the recorded slots when every attempt has one, else the
/// fewest lanes that hold the attempts without overlap: attempts in start order, each on
/// the lowest-numbered lane free at its start (greedy interval colouring, which is optimal,
/// so a local `-j N` batch gets at most N lanes). `tolerance_s` lets an attempt start that
/// much before the previous one on its lane ended: starts are recorded to the millisecond
/// and walls rounded to it, so back-to-back attempts of one slot may seem to overlap by a
/// millisecond or two.
struct Lanes {
  struct Lane {
    std::string host;  ///< the group
    int number = 0;    ///< 1-based within the group (the slot as recorded, when recorded)
    std::string label;
  };
  std::vector<Lane> lanes;   ///< groups in host order, lanes in number order within a group
  std::vector<int> lane_of;  ///< per attempt: index into `lanes`, -1 without a start
  LaneSource source = LaneSource::packed;  ///< packed when any group was packed
  std::size_t hosts = 0;                   ///< groups with a non-empty host
};
Lanes assign_lanes(const std::vector<Attempt>& attempts, double tolerance_s = 0.005);

/// The time span of the attempts that have a start: [begin, end], seconds since the epoch.
struct Span {
  double begin = 0;
  double end = 0;
  double length() const { return end - begin; }
};
/// nullopt when no attempt has a start.
std::optional<Span> time_span(const std::vector<Attempt>& attempts);

/// A lane cut into equal time bins, for batches too large to draw bar by bar: per bin, the
/// seconds each status kept the lane busy (overlap of [start, start + wall] with the bin).
struct TimelineBins {
  std::size_t bins = 0;
  double bin_s = 0;  ///< width of a bin in seconds
  /// busy[lane][bin * kStatuses + status]; a lane's vector is empty when nothing ran on it.
  std::vector<std::vector<float>> busy;
  static constexpr std::size_t kStatuses = static_cast<std::size_t>(Status::error) + 1;

  double busy_s(std::size_t lane, std::size_t bin) const;
  /// The status that held the bin longest (ties: the less common outcome, later in the enum).
  Status dominant(std::size_t lane, std::size_t bin) const;
};
TimelineBins bin_timeline(const std::vector<Attempt>& attempts, const Lanes& lanes,
                          const Span& span, std::size_t bins);

}  // namespace pollkill
