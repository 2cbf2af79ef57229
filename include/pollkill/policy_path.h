// Where `--policy NAME` finds a policy: the admin's directory, then the shipped policies.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace pollkill {

/// True when `arg` names a policy rather than a file: no '/' anywhere and no ".toml" suffix
/// ("strict", "gmsh"). Anything else ("./strict", "job.toml", "/etc/x.toml") is a path.
bool is_policy_name(std::string_view arg);

/// The directories a policy name is looked up in, first match wins. `env` is the value of
/// POLLKILL_POLICY_PATH (nullptr when unset): colon-separated directories that replace the
/// built-in list (empty entries are skipped). The built-in list is
/// `<sysconfdir>/pollkill` (the admin's overrides, /etc/pollkill) and then
/// `<datadir>/pollkill/policies` (the shipped policies), both compiled in from CMake's
/// GNUInstallDirs.
std::vector<std::filesystem::path> policy_search_path(const char* env);

/// The file `--policy ARG` means. A path is returned as is, unchecked (reading it reports
/// a missing file). A name is `DIR/NAME.toml` for the first DIR of `search` where that exists;
/// when none has it, throws PolicyError (source: the name) listing every file looked for and,
/// when a policy of a close name exists, suggesting it.
std::filesystem::path resolve_policy(std::string_view arg,
                                     const std::vector<std::filesystem::path>& search);

/// The names of the policies found in `search` (files `*.toml`), sorted, without duplicates.
std::vector<std::string> available_policies(const std::vector<std::filesystem::path>& search);

}  // namespace pollkill
