// The results file of a batch (JSON Lines, append-only) and the GNU parallel joblog.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pollkill/fd.h"
#include "pollkill/result.h"
#include "pollkill/retry.h"

namespace pollkill {

/// Appends records to a results file, never rewriting it. Each record is one write(2) of one
/// line, so a crash cannot interleave records; `sync` makes what was appended durable
/// (fdatasync), which batch calls in groups, at most --sync-interval after a record.
class AppendFile {
 public:
  /// Opens (creating) for appending. When the file does not end with a newline (a torn last
  /// line from a crash) a newline is appended first, so the torn line stays a line of its own.
  static AppendFile open(const std::string& path);
  void append(const std::string& line);  ///< `line` without its newline
  bool dirty() const { return dirty_; }
  /// fdatasync when something was appended since the last sync.
  void sync();
  /// Bytes in the file before this process appended anything.
  std::uint64_t initial_size() const { return initial_size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
  bool dirty_ = false;
  std::uint64_t initial_size_ = 0;
};

/// The one writer of result records, for `run` and `batch` alike: a record is the result as
/// one line of JSON (dump_result_line) and a newline, written with one write(2).
class RecordWriter {
 public:
  /// batch: appended to a results file (see AppendFile), made durable in groups by sync().
  static RecordWriter append_to(const std::string& path);
  /// run --result: `path` is replaced by the record when it is written (created or truncated
  /// then, written, fsync'd); "-" writes it to standard output.
  static RecordWriter replace(const std::string& path);

  /// Throws SystemError when the record cannot be written (standard output excepted: a
  /// reader that went away must not turn the task's outcome into pollkill's error).
  void write(const Result& result);
  /// fdatasync what was appended since the last sync (append_to); nothing otherwise.
  void sync();
  /// Bytes the results file held before this process appended anything (append_to).
  std::uint64_t initial_size() const { return file_ ? file_->initial_size() : 0; }

 private:
  std::optional<AppendFile> file_;
  std::string replace_;  ///< the path for replace(), "-" for standard output
};

/// What a results file says about one task id.
struct RecordedTask {
  int attempts = 0;    ///< the highest attempt number recorded
  bool final = false;  ///< a final record exists (cancelled ones do not count)
  Status final_status = Status::error;
  std::string command;         ///< the recorded command as JSON text, for the mismatch check
  EscalationSteps escalation;  ///< what the recorded attempts ended with (retry.escalate)
};

/// A results file read for --resume. Lines that are not JSON objects (a torn last line
/// after a crash) are skipped, each with a warning naming its line.
struct ResumeState {
  std::unordered_map<std::string, RecordedTask> tasks;
  std::vector<std::string> warnings;
};
ResumeState read_results(const std::string& path);

/// The command as the results file records it (a JSON array), for comparisons.
std::string command_json(const std::vector<std::string>& command);

/// Words joined for a shell: plain words as they are, others in single quotes.
std::string shell_join(const std::vector<std::string>& command);

/// One line of GNU parallel's --joblog format.
struct JoblogEntry {
  std::uint64_t seq = 0;
  double start_time = 0;  ///< seconds since the epoch
  double runtime = 0;     ///< seconds
  int exitval = 0;
  int signal = 0;
  std::string command;  ///< one line
};
/// "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
std::string joblog_header();
/// The entry TAB-separated as GNU parallel writes it (Host ":", Send and Receive 0).
std::string format_joblog_line(const JoblogEntry& entry);
/// The joblog entry for a final result: Exitval is the task's exit code, or pollkill's exit
/// code for the status when the task was stopped; Signal the signal that ended it.
JoblogEntry joblog_entry(const Result& result, std::uint64_t seq);

}  // namespace pollkill
