#include "pollkill/demand.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "pollkill/fd.h"

namespace pollkill {
namespace {

// Reads a small /proc file in one read; nullopt when it cannot be opened or read.
std::optional<std::string> read_small(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buf[128];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

bool parse_u64(std::string_view& text, std::uint64_t& value) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return false;
  text.remove_prefix(static_cast<size_t>(end - text.data()));
  return true;
}

std::optional<pid_t> parse_pid(std::string_view name) {
  int value = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), value);
  if (ec != std::errc() || end != name.data() + name.size() || value <= 0) return std::nullopt;
  return value;
}

}  // namespace

std::optional<SchedStat> parse_schedstat(std::string_view text) {
  SchedStat stat;
  if (!parse_u64(text, stat.run_ns) || !parse_u64(text, stat.wait_ns) ||
      !parse_u64(text, stat.slices)) {
    return std::nullopt;
  }
  if (!text.empty() && text != "\n") return std::nullopt;
  return stat;
}

std::vector<ThreadSchedStat> read_schedstats(const std::vector<pid_t>& tids,
                                             const std::filesystem::path& proc) {
  std::vector<ThreadSchedStat> out;
  out.reserve(tids.size());
  const std::string root = proc.string() + "/";
  for (pid_t tid : tids) {
    auto text = read_small(root + std::to_string(tid) + "/schedstat");
    if (!text) continue;
    if (auto stat = parse_schedstat(*text)) out.push_back({tid, *stat});
  }
  return out;
}

std::vector<pid_t> threads_of(const std::vector<pid_t>& pids, const std::filesystem::path& proc) {
  std::vector<pid_t> out;
  for (pid_t pid : pids) {
    const std::string dir = proc.string() + "/" + std::to_string(pid) + "/task";
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    while (const dirent* entry = ::readdir(d)) {
      if (auto tid = parse_pid(entry->d_name)) out.push_back(*tid);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<pid_t> CgroupThreads::read() const {
  auto text = reader_.read();
  if (!text) return {};
  return parse_pids(*text);
}

std::uint64_t CpuWaitMeter::observe(std::chrono::steady_clock::time_point at,
                                    std::optional<std::uint64_t> psi_some_usec,
                                    const std::vector<ThreadSchedStat>& threads) {
  // A call no later than the previous one adds no interval; the readings are cumulative, so
  // keeping the previous baseline loses nothing.
  if (prev_at_ && at <= *prev_at_) return total_usec_;

  std::unordered_map<pid_t, std::uint64_t> now;
  now.reserve(threads.size());
  for (const auto& t : threads) now[t.tid] = t.stat.wait_ns;

  if (prev_at_) {
    const auto interval_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(at - *prev_at_).count());
    std::uint64_t threads_ns = 0;
    for (const auto& [tid, wait_ns] : now) {
      auto it = prev_wait_ns_.find(tid);
      const std::uint64_t grown =
          it != prev_wait_ns_.end() && wait_ns >= it->second ? wait_ns - it->second : wait_ns;
      threads_ns += std::min(grown, interval_ns);
    }
    std::uint64_t psi_usec = 0;
    if (psi_some_usec && prev_psi_ && *psi_some_usec >= *prev_psi_) {
      psi_usec = *psi_some_usec - *prev_psi_;
    }
    total_usec_ += std::max(psi_usec, threads_ns / 1000);
  }
  prev_at_ = at;
  if (psi_some_usec) prev_psi_ = psi_some_usec;
  // No threads read (or none left): keep the old baseline, so that threads listed again later
  // are not all taken for new ones.
  if (!now.empty()) prev_wait_ns_ = std::move(now);
  return total_usec_;
}

}  // namespace pollkill
