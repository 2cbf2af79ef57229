#include "pollkill/results.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <fstream>

#include "pollkill/error.h"

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

}  // namespace

AppendFile AppendFile::open(const std::string& path) {
  AppendFile file;
  file.path_ = path;
  file.fd_.reset(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!file.fd_) throw_errno("open '" + path + "' for appending");
  struct stat st {};
  if (::fstat(file.fd_.get(), &st) != 0) throw_errno("stat '" + path + "'");
  file.initial_size_ = static_cast<std::uint64_t>(st.st_size);
  if (st.st_size > 0) {
    char last = '\n';
    if (::pread(file.fd_.get(), &last, 1, st.st_size - 1) != 1) throw_errno("read '" + path + "'");
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

RecordWriter RecordWriter::append_to(const std::string& path) {
  RecordWriter writer;
  writer.file_ = AppendFile::open(path);
  return writer;
}

RecordWriter RecordWriter::replace(const std::string& path) {
  RecordWriter writer;
  writer.replace_ = path;
  return writer;
}

void RecordWriter::write(const Result& result) {
  const std::string line = dump_result_line(result);
  if (file_) {
    file_->append(line);
    return;
  }
  const std::string text = line + "\n";
  if (replace_ == "-") {
    write_all(STDOUT_FILENO, text);  // errors ignored: see the header
    return;
  }
  UniqueFd fd(::open(replace_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  if (!fd || !write_all(fd.get(), text)) throw_errno("write the result to '" + replace_ + "'");
  // A pipe or a terminal named as the file cannot be synced, and needs not be.
  if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != EROFS) {
    throw_errno("write the result to '" + replace_ + "'");
  }
}

void RecordWriter::sync() {
  if (file_) file_->sync();
}

std::string command_json(const std::vector<std::string>& command) {
  return nlohmann::json(command).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ResumeState read_results(const std::string& path) {
  ResumeState state;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return state;
    throw_errno("read the results file '" + path + "'");
  }
  std::string line;
  std::uint64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
      if (!record.is_object() || !record.contains("id") || !record["id"].is_string())
        throw std::runtime_error("not a record");
    } catch (const std::exception&) {
      state.warnings.push_back(path + ":" + std::to_string(number) +
                               ": ignoring a line that is not a complete record (torn by a "
                               "crash?)");
      continue;
    }
    RecordedTask& task = state.tasks[record["id"].get<std::string>()];
    int attempt = record.value("attempt", 1);
    if (attempt > task.attempts) task.attempts = attempt;
    if (record.contains("command")) task.command = command_json(record["command"]);
    auto status = status_from_string(record.value("status", std::string("error")));
    if (status) task.escalation.after(*status);
    if (record.value("final", false) && status != Status::cancelled) {
      task.final = true;
      task.final_status = status.value_or(Status::error);
    }
  }
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
