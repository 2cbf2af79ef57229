// On a systemd host: asking systemd for a transient scope with Delegate=yes that holds pollkill
// itself, so that pollkill owns a cgroup subtree systemd leaves alone (the route runc, crun and
// Slurm take). Talks to the manager with libsystemd's sd-bus; a build without libsystemd
// (POLLKILL_SYSTEMD=OFF) keeps the decision logic and reports that it cannot ask.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pollkill/cgroup.h"
#include "pollkill/policy.h"

namespace pollkill {

/// Whether this pollkill was built with libsystemd (the POLLKILL_SYSTEMD CMake option).
bool systemd_support_built() noexcept;

/// Which systemd instance pollkill asks: the system manager (PID 1) when it runs as root,
/// the calling user's own manager (user@UID.service) otherwise.
enum class SystemdManager { system, user };
const char* to_string(SystemdManager manager) noexcept;

/// Should this invocation ask for a scope? Pure: a function of the facts below.
struct ScopeDecision {
  bool request = false;
  std::string why;  ///< a phrase for doctor and messages: "its own cgroup is not delegated"
};

/// `explicit_root`: --cgroup-root, runner.cgroup_root or POLLKILL_CGROUP_ROOT was given (then
/// pollkill never asks). `own_usable`: its own cgroup qualifies as a run root already (the
/// hierarchy root, or writable and delegated). With "auto" a scope is requested on a systemd
/// host when the own cgroup is not usable; "always" requests one on a systemd host whatever
/// the own cgroup is (and is an error elsewhere, reported by `enter_delegated_scope`);
/// "never" never asks.
ScopeDecision decide_scope(SystemdScopeMode mode, bool systemd_pid1, bool explicit_root,
                           bool own_usable);

/// A transient scope pollkill started for itself and now lives in.
struct SystemdScope {
  std::string unit;  ///< "pollkill-123-0a1b2c3d.scope"
  SystemdManager manager = SystemdManager::system;
  std::string bus;      ///< how the manager was reached: "/run/systemd/private", "system bus", ...
  std::string version;  ///< the manager's Version property, e.g. "252.38-1~deb12u1"
};

/// The systemd version number at the start of a Version property ("252.38-1" -> 252); 0 when
/// there is none.
int systemd_major_version(const std::string& version);

/// The oldest systemd whose transient scopes take Delegate= (systemd 218).
inline constexpr int kMinimumSystemdForDelegation = 218;

/// Asks `manager` to start a transient scope named `unit` holding this process, with
/// Delegate=yes (all controllers the manager has) and CollectMode=inactive-or-failed, then
/// waits (up to `timeout`) for the start job's JobRemoved signal. Connects to the manager's
/// private socket (/run/systemd/private, or $XDG_RUNTIME_DIR/systemd/private for the user
/// manager; /run/user/UID when XDG_RUNTIME_DIR is unset) and falls back to the system or
/// user D-Bus. Throws Error naming the fix: no bus (linger, log in), permission denied,
/// systemd too old, a failed job; or, without libsystemd, that this build cannot ask.
SystemdScope start_delegated_scope(SystemdManager manager, const std::string& unit,
                                   Duration timeout = Duration(30000));

/// The decision and, when it says so, the scope: run, batch and doctor call this before
/// `resolve_run_root`. On success `host` is re-probed (its own cgroup is now the scope's,
/// `own_delegated` set) and the scope is returned. When the scope cannot be had: with
/// "always", or as a user with nowhere else to go, throws the scope's Error; as root with
/// "auto" it warns on stderr and returns nothing (the `<mount>/pollkill` fallback follows).
/// A build without libsystemd returns nothing in "auto" mode (the run-root error that follows
/// names `systemd-run --scope -p Delegate=yes`) and throws in "always" mode.
std::optional<SystemdScope> enter_delegated_scope(HostCgroups& host,
                                                  const std::optional<std::string>& flag,
                                                  const Policy& policy, const char* env_value);

/// The fix for a controller the user manager does not delegate: a user@.service drop-in.
std::string user_manager_delegate_fix(const std::vector<std::string>& missing);

}  // namespace pollkill
