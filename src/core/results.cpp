#include "pollkill/results.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <fstream>

#include "pollkill/error.h"
#include "pollkill/policy.h"

namespace pollkill {
namespace {

// Writes all of `text`; false (errno set) when a write fails.
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

constexpr const char* kCorrupt =
    "the results file was changed by something other than pollkill: fix or remove that line, "
    "or write the results to a new file";

// A record's "attempt": an integer from 1 to kMaxAttempts (absent: 1), so that the next
// attempt's number cannot overflow.
int recorded_attempt(const nlohmann::json& record, const std::string& where) {
  auto it = record.find("attempt");
  if (it == record.end()) return 1;
  if (!it->is_number_integer() || it->get<std::int64_t>() < 1 ||
      it->get<std::int64_t>() > kMaxAttempts) {
    throw Error(where + "attempt: expected an integer from 1 to " + std::to_string(kMaxAttempts) +
                    ", got " + it->dump(),
                kCorrupt);
  }
  return static_cast<int>(it->get<std::int64_t>());
}

std::string_view file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
  }
  return "not a regular file";
}

[[noreturn]] void refuse_kind(const std::string& path, mode_t mode) {
  throw Error("'" + path + "' is " + std::string(file_kind(mode)) +
                  ": pollkill writes results and logs only to regular files, and never through "
                  "a symbolic link (one planted there could point anywhere)",
              "name a regular file; `--results -` writes a batch's records to standard output");
}

}  // namespace

OutputFile open_output_file(const std::string& path, int flags) {
  struct stat st {};
  // Refused before open(2), which has effects of its own on devices and FIFOs.
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) refuse_kind(path, st.st_mode);
  OutputFile file;
  file.fd.reset(::open(path.c_str(), flags | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644));
  if (!file.fd && errno == ELOOP) refuse_kind(path, S_IFLNK);  // planted since the lstat
  if (!file.fd) throw_errno("open '" + path + "' for writing");
  if (::fstat(file.fd.get(), &st) != 0) throw_errno("stat '" + path + "'");
  if (!S_ISREG(st.st_mode)) refuse_kind(path, st.st_mode);
  if (::fcntl(file.fd.get(), F_SETFL, flags & O_APPEND) != 0)  // O_NONBLOCK off again
    throw_errno("fcntl '" + path + "'");
  file.st = st;
  return file;
}

void check_logs_dir(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw_errno("stat the log directory '" + path + "'");
  if (!S_ISDIR(st.st_mode)) {
    throw Error("the log directory '" + path + "' is " + std::string(file_kind(st.st_mode)),
                "name a directory of your own with --logs");
  }
  if (st.st_uid != ::geteuid()) {
    throw Error("the log directory '" + path + "' belongs to uid " + std::to_string(st.st_uid) +
                    ", not to pollkill's user (uid " + std::to_string(::geteuid()) +
                    "): its owner could plant links there that pollkill's writes would follow",
                "use a directory of your own with --logs");
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    throw Error("the log directory '" + path + "' is writable by " +
                    ((st.st_mode & S_IWOTH) ? "every user" : "its group") +
                    ": they could plant links there that pollkill's writes would follow",
                "chmod go-w '" + path + "', or use another directory with --logs");
  }
}

UniqueFd open_log_file(const std::string& path) {
  OutputFile out = open_output_file(path, O_WRONLY);
  if (out.st.st_uid != ::geteuid()) {
    throw Error("refusing to overwrite the log file '" + path + "': it belongs to uid " +
                std::to_string(out.st.st_uid) + ", not to pollkill's user");
  }
  if (::ftruncate(out.fd.get(), 0) != 0) throw_errno("truncate the log file '" + path + "'");
  return std::move(out.fd);
}

AppendFile AppendFile::open(const std::string& path) {
  AppendFile file;
  file.path_ = path;
  OutputFile out = open_output_file(path, O_RDWR | O_APPEND);
  file.fd_ = std::move(out.fd);
  // One writer at a time: a POSIX record lock, which names its holder (F_GETLK) and works on
  // NFS. It is dropped when this process closes any descriptor of the file, so nothing else in
  // pollkill opens a file while an AppendFile holds it (read_results runs before).
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(file.fd_.get(), F_SETLK, &lock) != 0) {
    if (errno != EACCES && errno != EAGAIN) throw_errno("lock '" + path + "'");
    struct flock holder = lock;
    std::string who = "another process";
    if (::fcntl(file.fd_.get(), F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK) {
      who = holder.l_pid > 0 ? "process " + std::to_string(holder.l_pid)
                             : "a process this host's PID namespace cannot see (another host or "
                               "container)";
    }
    throw Error("'" + path + "' is in use: " + who + " holds its lock",
                "two writers would mix their records and logs: wait for it to finish, or "
                "write the results to another file");
  }
  file.initial_size_ = static_cast<std::uint64_t>(out.st.st_size);
  if (out.st.st_size > 0) {
    char last = '\n';
    if (::pread(file.fd_.get(), &last, 1, out.st.st_size - 1) != 1)
      throw_errno("read '" + path + "'");
    if (last != '\n' && ::write(file.fd_.get(), "\n", 1) != 1)
      throw_errno("append to '" + path + "'");
  }
  return file;
}

void AppendFile::append(const std::string& line) {
  if (!write_all(fd_.get(), line + "\n")) throw_errno("append a record to '" + path_ + "'");
  dirty_ = true;
}

void AppendFile::sync() {
  if (!dirty_) return;
  if (::fdatasync(fd_.get()) != 0) throw_errno("fdatasync '" + path_ + "'");
  dirty_ = false;
}

// run --result: the file opened (created if need be) before the task starts, so that an
// unusable path is found out then; written when the record is. A file this process created
// and never wrote is removed again.
struct RecordWriter::ReplaceTarget {
  std::string path;
  UniqueFd fd;
  bool created = false;
  bool written = false;
  ~ReplaceTarget() {
    if (created && !written) ::unlink(path.c_str());
  }
};

RecordWriter::RecordWriter() = default;
RecordWriter::RecordWriter(RecordWriter&&) noexcept = default;
RecordWriter& RecordWriter::operator=(RecordWriter&&) noexcept = default;
RecordWriter::~RecordWriter() = default;

RecordWriter RecordWriter::append_to(const std::string& path) {
  RecordWriter writer;
  if (path == "-") {
    writer.to_stdout_ = true;
    writer.stdout_errors_fatal_ = true;
    return writer;
  }
  writer.file_ = AppendFile::open(path);
  return writer;
}

RecordWriter RecordWriter::replace(const std::string& path) {
  RecordWriter writer;
  if (path == "-") {
    writer.to_stdout_ = true;
    return writer;
  }
  auto target = std::make_unique<ReplaceTarget>();
  target->path = path;
  const bool existed = ::access(path.c_str(), F_OK) == 0 || errno != ENOENT;
  OutputFile out = open_output_file(path, O_WRONLY);
  target->fd = std::move(out.fd);
  target->created = !existed;
  writer.replace_ = std::move(target);
  return writer;
}

void RecordWriter::write(const Result& result) {
  const std::string line = dump_result_line(result);
  if (file_) {
    file_->append(line);
    return;
  }
  const std::string text = line + "\n";
  if (to_stdout_) {
    if (!write_all(STDOUT_FILENO, text) && stdout_errors_fatal_)
      throw_errno("write a record to standard output");
    return;
  }
  ReplaceTarget& target = *replace_;
  const int fd = target.fd.get();
  if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0 || !write_all(fd, text) ||
      ::fsync(fd) != 0) {
    throw_errno("write the result to '" + target.path + "'");
  }
  target.written = true;
}

void RecordWriter::sync() {
  if (file_) file_->sync();
}

std::string id_file_name(std::string_view id) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(id.size());
  for (std::size_t i = 0; i < id.size(); ++i) {
    const auto c = static_cast<unsigned char>(id[i]);
    // ASCII only, whatever the locale: the mapping must not change with the environment.
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_' || (c == '.' && i > 0);
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

std::string command_json(const std::vector<std::string>& command) {
  return nlohmann::json(command).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// One line of a results file into `state`.
void read_record_line(const std::string& path, std::uint64_t number, const std::string& line,
                      ResumeState& state) {
  if (line.empty()) return;
  nlohmann::json record;
  try {
    record = nlohmann::json::parse(line);
    if (!record.is_object() || !record.contains("id") || !record["id"].is_string())
      throw std::runtime_error("not a record");
  } catch (const std::exception&) {
    state.warnings.push_back(path + ":" + std::to_string(number) +
                             ": ignoring a line that is not a complete record (torn by a "
                             "crash?)");
    return;
  }
  const std::string where = path + ":" + std::to_string(number) + ": ";
  const int attempt = recorded_attempt(record, where);
  bool final = false;
  if (auto it = record.find("final"); it != record.end()) {
    if (!it->is_boolean())
      throw Error(where + "final: expected true or false, got " + it->dump(), kCorrupt);
    final = it->get<bool>();
  }
  std::optional<Status> status;
  if (auto it = record.find("status"); it != record.end()) {
    if (!it->is_string())
      throw Error(where + "status: expected a string, got " + it->dump(), kCorrupt);
    status = status_from_string(it->get<std::string>());
  }
  std::string command;
  if (auto it = record.find("command"); it != record.end()) {
    if (!it->is_array() ||
        !std::all_of(it->begin(), it->end(), [](const auto& w) { return w.is_string(); }))
      throw Error(where + "command: expected an array of strings", kCorrupt);
    command = command_json(it->get<std::vector<std::string>>());
  }
  RecordedTask& task = state.tasks[record["id"].get<std::string>()];
  if (attempt > task.attempts) task.attempts = attempt;
  if (!command.empty()) task.command = std::move(command);
  if (status) task.escalation.after(*status);
  if (final && status != Status::cancelled) {
    task.final = true;
    task.final_status = status.value_or(Status::error);
  }
}

}  // namespace

ResumeState read_results(const std::string& path) {
  ResumeState state;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return state;
    throw_errno("read the results file '" + path + "'");
  }
  std::string line;
  std::uint64_t number = 0;
  while (std::getline(in, line)) read_record_line(path, ++number, line, state);
  return state;
}

ResumeState read_results(const AppendFile& file) {
  ResumeState state;
  std::string pending;
  std::uint64_t number = 0;
  char buffer[65536];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(file.fd(), buffer, sizeof buffer, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read the results file '" + file.path() + "'");
    if (n == 0) break;
    at += n;
    pending.append(buffer, static_cast<std::size_t>(n));
    std::size_t from = 0;
    for (std::size_t nl; (nl = pending.find('\n', from)) != std::string::npos; from = nl + 1)
      read_record_line(file.path(), ++number, pending.substr(from, nl - from), state);
    pending.erase(0, from);
  }
  if (!pending.empty()) read_record_line(file.path(), ++number, pending, state);
  return state;
}

std::string shell_join(const std::vector<std::string>& command) {
  std::string out;
  for (const auto& word : command) {
    if (!out.empty()) out += ' ';
    bool plain = !word.empty();
    for (char c : word) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) ||
            std::string_view("-_./=:,+@%").find(c) != std::string_view::npos)) {
        plain = false;
      }
    }
    if (plain) {
      out += word;
      continue;
    }
    out += '\'';
    for (char c : word) {
      if (c == '\'') {
        out += "'\\''";
      } else if (c == '\n' || c == '\t') {
        out += ' ';  // the joblog is one line per job, TAB-separated
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

std::string joblog_header() {
  return "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";
}

std::string format_joblog_line(const JoblogEntry& e) {
  char head[160];
  // GNU parallel: "%s\t%s\t%.3f\t% 8.3f\t%s\t%s\t%s\t%s\t%s"
  std::snprintf(head, sizeof head, "%" PRIu64 "\t:\t%.3f\t% 8.3f\t0\t0\t%d\t%d\t", e.seq,
                e.start_time, e.runtime, e.exitval, e.signal);
  return head + e.command;
}

JoblogEntry joblog_entry(const Result& result, std::uint64_t seq) {
  JoblogEntry e;
  e.seq = seq;
  e.start_time = std::chrono::duration<double>(result.started_at.time_since_epoch()).count();
  e.runtime = result.wall_s;
  e.signal = result.signal.value_or(0);
  if (result.status == Status::ok || result.status == Status::failed) {
    e.exitval = result.exit_code.value_or(0);
  } else {
    e.exitval = exit_code_for(result);
  }
  if (result.status != Status::ok && e.exitval == 0) e.exitval = 1;
  e.command = shell_join(result.command);
  return e;
}

}  // namespace pollkill
