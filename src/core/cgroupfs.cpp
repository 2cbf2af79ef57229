#include "pollkill/cgroupfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

#include "pollkill/error.h"

namespace pollkill {
namespace {

std::vector<std::string_view> split_ws(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t')) ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\n' && text[j] != '\t') ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
std::string unescape_octal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() &&
        std::all_of(text.begin() + i + 1, text.begin() + i + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out.push_back(static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 +
                                      (text[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::string read_small_file(const char* path) {
  std::ifstream in(path);
  if (!in) throw_errno(std::string("read '") + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string join(const std::filesystem::path& dir, std::string_view attr) {
  return (dir / std::string(attr)).string();
}

}  // namespace

std::string_view to_string(CgroupLayout layout) {
  switch (layout) {
    case CgroupLayout::pure: return "pure";
    case CgroupLayout::hybrid: return "hybrid";
    case CgroupLayout::v1_only: return "v1-only";
  }
  return "unknown";
}

CgroupMounts parse_mountinfo(std::string_view mountinfo) {
  CgroupMounts mounts;
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t end = mountinfo.find('\n', pos);
    if (end == std::string_view::npos) end = mountinfo.size();
    std::string_view line = mountinfo.substr(pos, end - pos);
    pos = end + 1;
    // Fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
    size_t sep = line.find(" - ");
    if (sep == std::string_view::npos) continue;
    auto left = split_ws(line.substr(0, sep));
    auto right = split_ws(line.substr(sep + 3));
    if (left.size() < 5 || right.size() < 3) continue;
    std::string_view fstype = right[0];
    if (fstype == "cgroup2") {
      std::string point = unescape_octal(left[4]);
      if (!mounts.cgroup2 || *mounts.cgroup2 == point) {
        mounts.cgroup2 = point;
        mounts.cgroup2_root = unescape_octal(left[3]);
        const std::string options = "," + std::string(left[5]) + ",";
        mounts.cgroup2_read_only = options.find(",ro,") != std::string::npos;
      }
    } else if (fstype == "cgroup") {
      std::string_view opts = right[2];
      V1Mount v1{unescape_octal(left[4]), unescape_octal(left[3]), {}};
      size_t o = 0;
      while (o <= opts.size()) {
        size_t comma = opts.find(',', o);
        if (comma == std::string_view::npos) comma = opts.size();
        std::string_view opt = opts.substr(o, comma - o);
        static constexpr std::string_view kKnown[] = {
            "cpu",  "cpuacct", "cpuset",  "memory",   "devices",    "freezer", "blkio",
            "pids", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma",    "misc"};
        if (std::find(std::begin(kKnown), std::end(kKnown), opt) != std::end(kKnown) &&
            std::find(mounts.v1_controllers.begin(), mounts.v1_controllers.end(), opt) ==
                mounts.v1_controllers.end()) {
          mounts.v1_controllers.emplace_back(opt);
          v1.controllers.emplace_back(opt);
        }
        o = comma + 1;
      }
      // A hierarchy mounted twice (a bind mount) is listed once: its first mount point.
      if (!v1.controllers.empty()) mounts.v1_mounts.push_back(std::move(v1));
    }
  }
  if (mounts.cgroup2) {
    mounts.layout = mounts.v1_controllers.empty() ? CgroupLayout::pure : CgroupLayout::hybrid;
  }
  return mounts;
}

CgroupMounts probe_cgroup_mounts() {
  return parse_mountinfo(read_small_file("/proc/self/mountinfo"));
}

std::string parse_own_cgroup(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.substr(0, 3) == "0::") return std::string(line.substr(3));
    pos = end + 1;
  }
  return {};
}

std::string probe_own_cgroup() {
  return parse_own_cgroup(read_small_file("/proc/self/cgroup"));
}

std::map<std::string, std::string, std::less<>> parse_own_v1_cgroups(std::string_view text) {
  std::map<std::string, std::string, std::less<>> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    // "ID:CONTROLLERS:PATH"; the path may itself contain ':'.
    size_t first = line.find(':');
    if (first == std::string_view::npos) continue;
    size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string_view path = line.substr(second + 1);
    size_t o = 0;
    while (o < controllers.size()) {
      size_t comma = controllers.find(',', o);
      if (comma == std::string_view::npos) comma = controllers.size();
      std::string_view c = controllers.substr(o, comma - o);
      if (!c.empty() && c.substr(0, 5) != "name=") out.emplace(std::string(c), std::string(path));
      o = comma + 1;
    }
  }
  return out;
}

std::map<std::string, std::string, std::less<>> probe_own_v1_cgroups() {
  return parse_own_v1_cgroups(read_small_file("/proc/self/cgroup"));
}

std::map<std::string, std::uint64_t, std::less<>> parse_keyed(std::string_view text) {
  std::map<std::string, std::uint64_t, std::less<>> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    auto words = split_ws(text.substr(pos, end - pos));
    pos = end + 1;
    if (words.size() != 2) continue;
    std::uint64_t value = 0;
    if (words[1] == "max") {
      value = UINT64_MAX;
    } else {
      auto [p, ec] = std::from_chars(words[1].data(), words[1].data() + words[1].size(), value);
      if (ec != std::errc() || p != words[1].data() + words[1].size()) continue;
    }
    out.emplace(std::string(words[0]), value);
  }
  return out;
}

std::vector<int> parse_pids(std::string_view text) {
  std::vector<int> pids;
  for (auto word : split_ws(text)) {
    int pid = 0;
    auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), pid);
    if (ec == std::errc() && p == word.data() + word.size() && pid > 0) pids.push_back(pid);
  }
  return pids;
}

CgroupDir CgroupDir::open(const std::filesystem::path& path) {
  CgroupDir dir;
  dir.path_ = path;
  dir.fd_.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.fd_) throw_errno("open cgroup '" + path.string() + "'");
  return dir;
}

bool CgroupDir::has(std::string_view attr) const {
  struct stat st;
  return ::fstatat(fd_.get(), std::string(attr).c_str(), &st, 0) == 0;
}

std::optional<std::string> CgroupDir::try_read(std::string_view attr) const {
  UniqueFd file(::openat(fd_.get(), std::string(attr).c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("read '" + join(path_, attr) + "'");
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(file.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      // A cgroup removed under us reads as ENODEV.
      throw_errno("read '" + join(path_, attr) + "'");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string CgroupDir::read(std::string_view attr) const {
  auto text = try_read(attr);
  if (!text) {
    errno = ENOENT;
    throw_errno("read '" + join(path_, attr) + "'");
  }
  return *text;
}

void CgroupDir::write(std::string_view attr, std::string_view value) const {
  UniqueFd file(::openat(fd_.get(), std::string(attr).c_str(), O_WRONLY | O_CLOEXEC));
  if (!file) throw_errno("write '" + std::string(value) + "' to '" + join(path_, attr) + "'");
  ssize_t n;
  do {
    n = ::write(file.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw_errno("write '" + std::string(value) + "' to '" + join(path_, attr) + "'");
}

std::optional<std::uint64_t> CgroupDir::read_u64(std::string_view attr) const {
  auto text = try_read(attr);
  if (!text) return std::nullopt;
  auto words = split_ws(*text);
  if (words.empty()) return std::nullopt;
  if (words[0] == "max") return UINT64_MAX;
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(words[0].data(), words[0].data() + words[0].size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

std::optional<std::map<std::string, std::uint64_t, std::less<>>> CgroupDir::read_keyed(
    std::string_view attr) const {
  auto text = try_read(attr);
  if (!text) return std::nullopt;
  return parse_keyed(*text);
}

std::vector<int> CgroupDir::procs() const {
  return parse_pids(read("cgroup.procs"));
}

bool CgroupDir::populated() const {
  auto events = parse_keyed(read("cgroup.events"));
  auto it = events.find("populated");
  return it != events.end() && it->second != 0;
}

std::vector<std::string> CgroupDir::controllers() const {
  std::vector<std::string> out;
  const std::string text = read("cgroup.controllers");  // the views below point into it
  for (auto word : split_ws(text)) out.emplace_back(word);
  return out;
}

std::vector<std::string> CgroupDir::subtree_control() const {
  std::vector<std::string> out;
  const std::string text = read("cgroup.subtree_control");  // the views below point into it
  for (auto word : split_ws(text)) out.emplace_back(word);
  return out;
}

AttrReader AttrReader::open(const CgroupDir& dir, std::string_view attr) {
  AttrReader reader;
  reader.fd_.reset(::openat(dir.fd(), std::string(attr).c_str(), O_RDONLY | O_CLOEXEC));
  if (!reader.fd_ && errno != ENOENT) throw_errno("open '" + join(dir.path(), attr) + "'");
  return reader;
}

std::optional<std::string> AttrReader::read() const {
  if (!fd_) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::pread(fd_.get(), buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    text.append(buf, static_cast<size_t>(n));
    // A seq_file read fills the buffer unless it reached the end: a short read is the end,
    // which saves a second walk of the file's source just to learn that.
    if (static_cast<size_t>(n) < sizeof buf) break;
  }
  return text;
}

}  // namespace pollkill
