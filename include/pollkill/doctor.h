// `pollkill doctor`: what this host offers pollkill, each fact checked for real.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pollkill/policy.h"

namespace pollkill {

struct DoctorCheck {
  std::string name;  ///< "cgroup2 mount", "cgroup.kill", ...
  bool ok = false;
  bool required = true;  ///< a failed required check makes the host not ready
  std::string detail;    ///< what was found
  std::string fix;       ///< what to do when not ok
};

struct DoctorReport {
  std::vector<DoctorCheck> checks;
  bool ready() const;
};

/// Runs every check: cgroup2 mount and layout, own cgroup, the run root and whether it is
/// writable, controllers there, cgroup.kill, clone3 into a cgroup (tried for real with
/// /bin/true in a scratch cgroup, then removed), memory.peak, pressure files, seccomp,
/// whether PID 1 is systemd and, when a run would ask systemd for a delegated scope, that
/// request for real (doctor then continues inside the scope: which manager, which bus, the
/// delegated controllers); with a policy, whether its limits can be enforced here.
/// `systemd_scope` overrides the policy's runner.systemd_scope (--systemd-scope).
DoctorReport run_doctor(const std::optional<Policy>& policy,
                        const std::optional<std::string>& cgroup_root,
                        std::optional<SystemdScopeMode> systemd_scope = std::nullopt);

/// One line per check ("[ok] name: detail", "[!!] name: detail" + "     fix: ...").
std::string format_doctor(const DoctorReport& report);

/// The same report for programs (`doctor --json`): {"ready": bool, "checks": [{"name",
/// "status": "ok" | "unavailable" ([--]: pollkill runs without it) | "fail" ([!!]),
/// "required", "detail", "fix" (null when ok or none)}]}, checks in the text's order.
nlohmann::json doctor_json(const DoctorReport& report);

}  // namespace pollkill
