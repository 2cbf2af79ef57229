// The results file of a batch (JSON Lines, append-only) and the GNU parallel joblog.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pollkill/fd.h"
#include "pollkill/result.h"
#include "pollkill/retry.h"

namespace pollkill {

/// Appends records to a results file, never rewriting it. Each record is one write(2) of one
/// line, so a crash cannot interleave records; `sync` makes what was appended durable
/// (fdatasync), which batch calls in groups, at most --sync-interval after a record. The file
/// is opened with open_output_file (a regular file, no symbolic link) and write-locked (POSIX
/// record lock) for the AppendFile's lifetime: a second writer, in this host's PID namespace
/// or another host's, is refused with an Error naming the holder's pid where it is visible.
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
  int fd() const { return fd_.get(); }

 private:
  std::string path_;
  UniqueFd fd_;
  bool dirty_ = false;
  std::uint64_t initial_size_ = 0;
};

/// A regular file opened for writing as a careful root tool opens it: never through a
/// symbolic link (O_NOFOLLOW; a link planted at the path is refused, not followed), never a
/// FIFO, device, socket or directory (refused before open(2) when lstat already says so), never
/// truncated here. `flags` are O_WRONLY or O_RDWR, with O_APPEND if wanted; O_CREAT is added
/// (mode 0644). Throws Error naming the path and what it is.
struct OutputFile {
  UniqueFd fd;
  struct stat st {};  ///< fstat of the opened file
};
OutputFile open_output_file(const std::string& path, int flags);

/// Refuses a logs directory pollkill must not write into: not a directory (a symbolic link
/// is refused too), owned by another user than pollkill's effective one, or writable by its
/// group or by others (who could plant links or files there). Throws Error with the fix.
void check_logs_dir(const std::string& path);

/// An attempt's log file, opened with open_output_file and then emptied: an existing file is
/// truncated only when it belongs to pollkill's effective user (a file of another user, a
/// link, a FIFO or a device is refused with an Error).
UniqueFd open_log_file(const std::string& path);

/// The one writer of result records, for `run` and `batch` alike: a record is the result as
/// one line of JSON (dump_result_line) and a newline, written with one write(2).
class RecordWriter {
 public:
  /// batch: appended to a results file (see AppendFile, which also locks it: a second batch
  /// on a file in use is refused), made durable in groups by sync(). "-" writes the records
  /// to standard output as JSON Lines (for `jq`), never synced; a write error there (the
  /// reader went away) throws SystemError, ending the batch.
  static RecordWriter append_to(const std::string& path);
  /// run --result: `path` is opened now (created if missing, through open_output_file), so
  /// that a directory, a device such as /dev/full, a missing folder or a symbolic link is
  /// refused before the task starts; the record replaces its content when written (truncated
  /// then, written, fsync'd). A file created here and never written is removed when the
  /// writer goes. "-" writes the record to standard output (errors ignored: a reader that went
  /// away must not turn the task's outcome into pollkill's error).
  static RecordWriter replace(const std::string& path);

  RecordWriter(RecordWriter&&) noexcept;
  RecordWriter& operator=(RecordWriter&&) noexcept;
  ~RecordWriter();

  /// Throws SystemError when the record cannot be written (see above for standard output).
  void write(const Result& result);
  /// fdatasync what was appended since the last sync (append_to); nothing otherwise.
  void sync();
  /// Bytes the results file held before this process appended anything (append_to).
  std::uint64_t initial_size() const { return file_ ? file_->initial_size() : 0; }
  /// The results file (append_to a path); null for standard output and replace().
  const AppendFile* file() const { return file_ ? &*file_ : nullptr; }

 private:
  RecordWriter();
  struct ReplaceTarget;
  std::optional<AppendFile> file_;
  std::unique_ptr<ReplaceTarget> replace_;
  bool to_stdout_ = false;
  bool stdout_errors_fatal_ = false;
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
/// The same through a results file open for appending (and locked: reading it through another
/// descriptor would drop the lock when that one is closed). Throws Error with FILE:LINE for a
/// complete record whose fields have the wrong type or range (e.g. "attempt": "x").
ResumeState read_results(const AppendFile& file);

/// A task id as the first part of its file names in the logs directory
/// ("<name>.<attempt>.out", ".err", ".evidence.json"). Injective, so that two ids never share
/// a file: letters, digits, '-', '_' and a '.' that does not start the name stay as they are;
/// every other byte (including '%', '/', a leading '.', blanks, and non-ASCII bytes) becomes
/// '%' and two upper-case hex digits. "a/b" -> "a%2Fb", ".hidden" -> "%2Ehidden", "x y" ->
/// "x%20y", "x?y" -> "x%3Fy".
std::string id_file_name(std::string_view id);
/// The longest id_file_name a task may have (bytes): with ".<attempt>.evidence.json" and a
/// temporary suffix it stays within NAME_MAX (255). Longer ids are refused at validation.
constexpr std::size_t kMaxIdFileName = 200;

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
