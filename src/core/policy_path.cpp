#include "pollkill/policy_path.h"

#include <algorithm>
#include <system_error>

#include "pollkill/policy.h"

#ifndef POLLKILL_SYSCONFDIR
#error "POLLKILL_SYSCONFDIR must name the configuration directory (CMake defines it)"
#endif
#ifndef POLLKILL_DATADIR
#error "POLLKILL_DATADIR must name the data directory (CMake defines it)"
#endif

namespace pollkill {

namespace fs = std::filesystem;

bool is_policy_name(std::string_view arg) {
  constexpr std::string_view suffix = ".toml";
  if (arg.empty() || arg == "." || arg == "..") return false;
  if (arg.find('/') != std::string_view::npos) return false;
  return !(arg.size() >= suffix.size() && arg.substr(arg.size() - suffix.size()) == suffix);
}

std::vector<fs::path> policy_search_path(const char* env) {
  if (env == nullptr) {
    return {fs::path(POLLKILL_SYSCONFDIR) / "pollkill",
            fs::path(POLLKILL_DATADIR) / "pollkill" / "policies"};
  }
  std::vector<fs::path> dirs;
  std::string_view rest(env);
  while (true) {
    auto colon = rest.find(':');
    auto entry = rest.substr(0, colon);
    if (!entry.empty()) dirs.emplace_back(entry);
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return dirs;
}

std::vector<std::string> available_policies(const std::vector<fs::path>& search) {
  std::vector<std::string> names;
  for (const auto& dir : search) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& file = it->path();
      if (file.extension() == ".toml") names.push_back(file.stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

fs::path resolve_policy(std::string_view arg, const std::vector<fs::path>& search) {
  if (!is_policy_name(arg)) return fs::path(arg);
  const std::string file = std::string(arg) + ".toml";
  std::string looked;
  for (const auto& dir : search) {
    fs::path candidate = dir / file;
    std::error_code ec;
    // A file that exists but cannot be read is still the one meant: reading it says why.
    if (fs::exists(candidate, ec)) return candidate;
    looked += (looked.empty() ? "" : ", ") + candidate.string();
  }
  std::string message = "no such policy";
  message += search.empty() ? " (POLLKILL_POLICY_PATH lists no directory)"
                            : " (looked for " + looked + ")";
  const auto names = available_policies(search);
  const std::vector<std::string_view> candidates(names.begin(), names.end());
  if (auto near = did_you_mean(arg, candidates); !near.empty()) {
    message += "; did you mean '" + near + "'?";
  } else {
    message += "; give a path (./" + file + ") for a file in the current directory";
  }
  throw PolicyError(std::string(arg), 0, 0, message);
}

}  // namespace pollkill
