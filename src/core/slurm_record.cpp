// Records on storage that every node of a cluster writes: whole files, and names that are
// never replaced, so that a task ends with one final record however many runs of it end.
// Why links: rename(2) replaces its target, so "write beside, rename into place" lets the
// last run to end win, which is the straggler from a node Slurm declared dead. link(2)
// fails with EEXIST instead, atomically, also on NFS, which is what lock files rely on.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "pollkill/error.h"
#include "pollkill/fd.h"
#include "pollkill/slurm.h"

namespace pollkill {

namespace fs = std::filesystem;

namespace {

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

// A name beside `path` that no other process on any node uses: nodes share the directory,
// not their process ids.
fs::path temp_beside(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + "." + this_host() + "." +
                               std::to_string(::getpid()) + ".tmp");
}

// Creates `path` holding `text`, fsynced; removes it again on failure.
void write_synced(const fs::path& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw_errno("create '" + path.string() + "'");
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd.get(), p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::unlink(path.c_str());
      throw SystemError(err, "write '" + path.string() + "'");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    throw SystemError(err, "fsync '" + path.string() + "'");
  }
}

// Makes `to` a second name of `from` unless `to` exists. True when linked, false when the
// name was taken; throws for other errors. On NFS a LINK whose reply is lost is retried and
// fails with EEXIST though it was made: the link count of `from` (a name only this process
// knows) says whether it was.
bool link_no_clobber(const fs::path& from, const fs::path& to) {
  struct stat before;
  if (::stat(from.c_str(), &before) != 0) throw_errno("stat '" + from.string() + "'");
  if (::link(from.c_str(), to.c_str()) == 0) return true;
  int err = errno;
  struct stat after;
  if (::stat(from.c_str(), &after) == 0 && after.st_nlink > before.st_nlink) return true;
  if (err == EEXIST) return false;
  throw SystemError(err, "link '" + from.string() + "' to '" + to.string() + "'");
}

// The names a directory holds survive a crash of this machine only once the directory is
// synced (a network filesystem's server makes LINK durable before it answers).
void sync_directory(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open the directory '" + dir.string() + "'");
  if (::fsync(fd.get()) != 0 && errno != EINVAL) throw_errno("fsync '" + dir.string() + "'");
}

bool same_file(const fs::path& a, const fs::path& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::optional<int> attempt_in(const fs::path& record) {
  UniqueFd fd(::open(record.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("open '" + record.string() + "'");
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read '" + record.string() + "'");
    text.append(buf, static_cast<std::size_t>(n));
  }
  auto record_json = nlohmann::json::parse(text, nullptr, false);
  if (record_json.is_object() && record_json.contains("attempt") &&
      record_json["attempt"].is_number_integer() && record_json["attempt"].get<int>() >= 1) {
    return record_json["attempt"].get<int>();
  }
  throw Error("'" + record.string() + "' is not a result record",
              "it marks its task as decided; remove it to run the task again");
}

fs::path set_aside(const SlurmDir& dir, std::uint64_t seq, int attempt, const fs::path& tmp) {
  std::error_code ec;
  fs::create_directories(dir.superseded(), ec);
  if (ec) {
    ::unlink(tmp.c_str());
    throw Error("create the directory '" + dir.superseded().string() + "': " + ec.message());
  }
  fs::path to = dir.superseded() / (std::to_string(seq) + "." + std::to_string(attempt) + "." +
                                    this_host() + "." + std::to_string(::getpid()) + ".json");
  if (::rename(tmp.c_str(), to.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw SystemError(err, "rename '" + tmp.string() + "' to '" + to.string() + "'");
  }
  return to;
}

}  // namespace

void write_file_atomic(const fs::path& path, const std::string& text) {
  fs::path tmp = temp_beside(path);
  write_synced(tmp, text);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw SystemError(err, "rename '" + tmp.string() + "' to '" + path.string() + "'");
  }
}

std::optional<int> decided_attempt(const SlurmDir& dir, std::uint64_t seq) {
  const fs::path marker = dir.final_marker(seq);
  auto attempt = attempt_in(marker);
  if (!attempt) return std::nullopt;
  const fs::path name = dir.record(seq, *attempt);
  // A run that claimed the task and died before its record got its name: finish its work.
  if (link_no_clobber(marker, name) || same_file(marker, name)) return attempt;
  // The name belongs to another run's record of that attempt: the claim failed, and the run
  // that made it died before giving it up. Give it up for it (unless it changed meanwhile).
  struct stat st;
  if (::stat(marker.c_str(), &st) == 0 && !same_file(marker, name)) ::unlink(marker.c_str());
  return std::nullopt;
}

int highest_started_attempt(const SlurmDir& dir, std::uint64_t seq) {
  int highest = 0;
  while (fs::exists(dir.record(seq, highest + 1)) || fs::exists(dir.log(seq, highest + 1, "out")))
    ++highest;
  return highest;
}

PlacedRecord place_record(const SlurmDir& dir, std::uint64_t seq, int attempt,
                          const std::string& text, bool decides) {
  const fs::path name = dir.record(seq, attempt);
  const fs::path marker = dir.final_marker(seq);
  const fs::path tmp = temp_beside(name);
  write_synced(tmp, text);
  bool placed = false;
  try {
    if (decides) {
      if (link_no_clobber(tmp, marker)) {
        // Taken, unless a run that found the claim already gave the record its name.
        placed = link_no_clobber(tmp, name) || same_file(tmp, name);
        // The attempt's name is another run's: this record decides nothing after all.
        if (!placed) ::unlink(marker.c_str());
      } else {
        decided_attempt(dir, seq);  // completes a claim left half done
      }
    } else if (!fs::exists(marker)) {
      placed = link_no_clobber(tmp, name);
    }
    if (placed) sync_directory(dir.records());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (!placed) return {Placement::superseded, set_aside(dir, seq, attempt, tmp)};
  ::unlink(tmp.c_str());
  return {Placement::placed, name};
}

}  // namespace pollkill
