#include "pollkill/systemd.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "pollkill/diag.h"
#include "pollkill/dynlib.h"
#include "pollkill/error.h"

#ifdef POLLKILL_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

namespace pollkill {

const char* to_string(SystemdManager manager) noexcept {
  return manager == SystemdManager::system ? "system manager" : "user manager";
}

ScopeDecision decide_scope(SystemdScopeMode mode, bool systemd_pid1, bool explicit_root,
                           bool own_usable) {
  if (mode == SystemdScopeMode::never) return {false, "runner.systemd_scope is \"never\""};
  if (explicit_root) return {false, "a run root was given (--cgroup-root or the like)"};
  if (!systemd_pid1) return {false, "PID 1 is not systemd"};
  if (mode == SystemdScopeMode::always) return {true, "runner.systemd_scope is \"always\""};
  if (own_usable) return {false, "its own cgroup is usable already (delegated or the root)"};
  return {true, "its own cgroup is not delegated"};
}

int systemd_major_version(const std::string& version) {
  int major = 0;
  for (char c : version) {
    if (c < '0' || c > '9') break;
    major = major * 10 + (c - '0');
    if (major > 100000) break;
  }
  return major;
}

std::string user_manager_delegate_fix(const std::vector<std::string>& missing) {
  std::string list;
  for (const auto& c : missing) list += (list.empty() ? "" : " ") + c;
  return "your systemd user manager does not delegate " + list +
         ": as root, write a drop-in /etc/systemd/system/user@.service.d/delegate.conf with "
         "`[Service]` and `Delegate=cpu cpuset io memory pids`, run `systemctl daemon-reload`, "
         "then log out and in again (or `systemctl restart user@$(id -u).service`)";
}

#ifdef POLLKILL_HAVE_SYSTEMD
bool systemd_support_built() noexcept {
  return true;
}

namespace {

// libsystemd is opened when a scope is asked for, not at pollkill's start:
// POLLKILL_LIBSYSTEMD_SONAME is the soname of the library the headers came from (CMakeLists.txt).
constexpr DynlibSpec kLibsystemd = {POLLKILL_LIBSYSTEMD_SONAME,
                                    "to ask systemd for a delegated scope (sd-bus)",
                                    "Debian: libsystemd0; Fedora: systemd-libs"};

// The sd-bus functions systemd.cpp calls.
struct Libsystemd {
  Dynlib lib = Dynlib::open(kLibsystemd);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_call);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_call_method);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_error_free);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_error_has_name);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_error_is_set);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_flush_close_unref);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_get_property_string);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_match_signal);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_message_append);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_message_close_container);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_message_new_method_call);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_message_open_container);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_message_read);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_message_unref);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_new);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_open_system);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_open_user);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_process);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_set_address);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_set_bus_client);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_slot_unref);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_start);
  POLLKILL_DYNLIB_SYMBOL(sd_bus_wait);
};

const Libsystemd& sd() {
  return cached<Libsystemd>();
}

// The dependency, for packagers: the DT_NEEDED entry it replaces. Without it pollkill still
// runs where its own cgroup is delegated or --cgroup-root is given, hence "recommended".
POLLKILL_DLOPEN_NOTE(kLibsystemdNote, "systemd-scope", "ask systemd for a delegated scope (sd-bus)",
                     "recommended", POLLKILL_LIBSYSTEMD_SONAME);

constexpr const char* kDestination = "org.freedesktop.systemd1";
constexpr const char* kPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";

struct BusUnref {
  void operator()(sd_bus* bus) const { sd().sd_bus_flush_close_unref(bus); }
};
struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd().sd_bus_message_unref(m); }
};
struct SlotUnref {
  void operator()(sd_bus_slot* s) const { sd().sd_bus_slot_unref(s); }
};
using Bus = std::unique_ptr<sd_bus, BusUnref>;
using Message = std::unique_ptr<sd_bus_message, MessageUnref>;
using Slot = std::unique_ptr<sd_bus_slot, SlotUnref>;

// sd_bus_error, freed on every path.
struct BusError {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd().sd_bus_error_free(&e); }
  std::string text(int r) const {
    if (sd().sd_bus_error_is_set(&e)) {
      return std::string(e.message ? e.message : "") + " (" + (e.name ? e.name : "") + ")";
    }
    return std::string(std::strerror(-r)) + " (" + errno_name(-r) + ")";
  }
};

bool is_socket(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// A direct connection to the manager's private socket: no D-Bus daemon needed (systemctl
// does the same). Returns null and sets `why` when it cannot connect.
Bus connect_private(const std::string& socket, std::string& why) {
  sd_bus* raw = nullptr;
  int r = sd().sd_bus_new(&raw);
  if (r < 0) {
    why = std::string("sd_bus_new: ") + std::strerror(-r);
    return nullptr;
  }
  Bus bus(raw);
  std::string address = "unix:path=" + socket;
  if ((r = sd().sd_bus_set_address(bus.get(), address.c_str())) < 0 ||
      (r = sd().sd_bus_start(bus.get())) < 0) {
    why = "connect to '" + socket + "': " + std::strerror(-r) + " (" + errno_name(-r) + ")";
    return nullptr;
  }
  return bus;
}

struct Connection {
  Bus bus;
  std::string description;  // "/run/systemd/private", "system bus", "user bus"
  bool bus_client = false;  // through a D-Bus daemon (signals carry a sender)
};

std::string user_runtime_dir() {
  const char* xdg = ::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) return xdg;
  // su and runuser do not set it; the user manager's directory is still there.
  return "/run/user/" + std::to_string(::getuid());
}

Connection connect_manager(SystemdManager manager) {
  std::string why_private;
  std::string socket = manager == SystemdManager::system ? std::string("/run/systemd/private")
                                                         : user_runtime_dir() + "/systemd/private";
  if (is_socket(socket)) {
    if (Bus bus = connect_private(socket, why_private)) return {std::move(bus), socket, false};
  } else {
    why_private = "no socket '" + socket + "'";
  }
  sd_bus* raw = nullptr;
  int r;
  if (manager == SystemdManager::system) {
    r = sd().sd_bus_open_system(&raw);
  } else if (::getenv("XDG_RUNTIME_DIR") || ::getenv("DBUS_SESSION_BUS_ADDRESS")) {
    r = sd().sd_bus_open_user(&raw);
  } else {
    // sd_bus_open_user needs XDG_RUNTIME_DIR; rather than set it in pollkill's environment
    // (which the tasks inherit), dial the user bus found above.
    r = sd().sd_bus_new(&raw);
    if (r >= 0) {
      Bus owned(raw);
      const std::string address = "unix:path=" + user_runtime_dir() + "/bus";
      if ((r = sd().sd_bus_set_address(owned.get(), address.c_str())) >= 0 &&
          (r = sd().sd_bus_set_bus_client(owned.get(), 1)) >= 0 &&
          (r = sd().sd_bus_start(owned.get())) >= 0) {
        raw = owned.release();
      }
    }
  }
  std::string bus_why = std::string(std::strerror(-r)) + " (" + errno_name(-r) + ")";
  if (manager == SystemdManager::system) {
    throw Error(
        "cannot reach the systemd system manager: " + why_private + "; system bus: " + bus_why,
        "is systemd running as PID 1 here? Pass --cgroup-root, or --systemd-scope never "
        "to use <mount>/pollkill instead");
  }
  throw Error("cannot reach your systemd user manager: " + why_private + "; user bus: " + bus_why,
              "the user manager (user@" + std::to_string(::getuid()) +
                  ".service) runs while you are logged in; for jobs without a login session "
                  "run `loginctl enable-linger " +
                  std::to_string(::getuid()) +
                  "` once (as root or yourself), and make sure XDG_RUNTIME_DIR is /run/user/" +
                  std::to_string(::getuid()));
}

struct JobWait {
  std::string job;     // the job's object path, once StartTransientUnit returned it
  std::string result;  // its JobRemoved result, once seen
  bool done = false;
};

int on_job_removed(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* wait = static_cast<JobWait*>(userdata);
  std::uint32_t id = 0;
  const char* path = nullptr;
  const char* unit = nullptr;
  const char* result = nullptr;
  if (sd().sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0) return 0;
  if (!wait->job.empty() && wait->job == path) {
    wait->result = result;
    wait->done = true;
  }
  return 0;
}

// Is this process in a cgroup whose last component is `unit`?
bool in_unit_cgroup(const std::string& unit) {
  std::string own = probe_own_cgroup();
  return own.size() >= unit.size() + 1 &&
         own.compare(own.size() - unit.size(), unit.size(), unit) == 0 &&
         own[own.size() - unit.size() - 1] == '/';
}

std::string property_string(sd_bus* bus, const char* name, std::string& why) {
  BusError error;
  char* value = nullptr;
  int r =
      sd().sd_bus_get_property_string(bus, kDestination, kPath, kManager, name, &error.e, &value);
  if (r < 0) {
    why = error.text(r);
    return {};
  }
  std::string out = value;
  std::free(value);
  return out;
}

}  // namespace

SystemdScope start_delegated_scope(SystemdManager manager, const std::string& unit,
                                   Duration timeout) {
  try {
    sd();
  } catch (const Error& e) {
    throw Error("cannot ask the systemd " + std::string(to_string(manager)) + " for the scope " +
                    unit + ": " + e.what(),
                e.hint() + "; or run pollkill in a delegated scope yourself: `systemd-run " +
                    (manager == SystemdManager::user ? "--user " : "") +
                    "--scope -p Delegate=yes pollkill ...`");
  }
  Connection conn = connect_manager(manager);
  sd_bus* bus = conn.bus.get();
  SystemdScope scope{unit, manager, conn.description, {}};
  const std::string who =
      std::string("the systemd ") + to_string(manager) + " (" + conn.description + ")";

  std::string why;
  scope.version = property_string(bus, "Version", why);
  if (scope.version.empty()) {
    throw Error("ask " + who + " for its version: " + why,
                "pass --cgroup-root with a delegated cgroup, or --systemd-scope never");
  }
  if (int major = systemd_major_version(scope.version);
      major > 0 && major < kMinimumSystemdForDelegation) {
    throw Error("systemd " + scope.version +
                    " is too old to delegate a scope (Delegate= needs "
                    "systemd " +
                    std::to_string(kMinimumSystemdForDelegation) + " or newer)",
                "pass --cgroup-root with a cgroup you may write to, or run as root with "
                "--systemd-scope never");
  }

  // Subscribe to JobRemoved before the call, so the job cannot finish unseen. Through a
  // D-Bus daemon the signal's sender is systemd's bus name; on the private socket there is
  // none, so match without one.
  JobWait wait;
  sd_bus_slot* raw_slot = nullptr;
  int r = sd().sd_bus_match_signal(bus, &raw_slot, conn.bus_client ? kDestination : nullptr, kPath,
                                   kManager, "JobRemoved", on_job_removed, &wait);
  if (r < 0) {
    throw Error("subscribe to JobRemoved on " + who + ": " + std::strerror(-r));
  }
  Slot slot(raw_slot);
  {
    // Most manager signals are only sent once some client subscribed; already subscribed
    // is fine.
    BusError error;
    sd().sd_bus_call_method(bus, kDestination, kPath, kManager, "Subscribe", &error.e, nullptr, "");
  }

  sd_bus_message* raw_call = nullptr;
  r = sd().sd_bus_message_new_method_call(bus, &raw_call, kDestination, kPath, kManager,
                                          "StartTransientUnit");
  if (r < 0) throw Error(std::string("build StartTransientUnit: ") + std::strerror(-r));
  Message call(raw_call);
  const std::string description = "pollkill (pid " + std::to_string(::getpid()) + ")";
  r = sd().sd_bus_message_append(call.get(), "ss", unit.c_str(), "fail");
  if (r >= 0) r = sd().sd_bus_message_open_container(call.get(), 'a', "(sv)");
  if (r >= 0)
    r = sd().sd_bus_message_append(call.get(), "(sv)", "Description", "s", description.c_str());
  if (r >= 0) {
    r = sd().sd_bus_message_append(call.get(), "(sv)", "PIDs", "au", 1,
                                   static_cast<std::uint32_t>(::getpid()));
  }
  if (r >= 0) r = sd().sd_bus_message_append(call.get(), "(sv)", "Delegate", "b", 1);
  // A scope whose tasks were OOM-killed may end "failed"; collect it all the same.
  if (r >= 0) {
    r = sd().sd_bus_message_append(call.get(), "(sv)", "CollectMode", "s", "inactive-or-failed");
  }
  if (r >= 0) r = sd().sd_bus_message_close_container(call.get());
  if (r >= 0) r = sd().sd_bus_message_append(call.get(), "a(sa(sv))", 0);
  if (r < 0) throw Error(std::string("build StartTransientUnit: ") + std::strerror(-r));

  BusError error;
  sd_bus_message* raw_reply = nullptr;
  r = sd().sd_bus_call(bus, call.get(), 0, &error.e, &raw_reply);
  Message reply(raw_reply);
  if (r < 0) {
    std::string message =
        "start the delegated scope " + unit + " through " + who + ": " + error.text(r);
    if (sd().sd_bus_error_has_name(&error.e, SD_BUS_ERROR_ACCESS_DENIED) || r == -EACCES ||
        r == -EPERM) {
      throw Error(message + " (permission denied)",
                  manager == SystemdManager::system
                      ? "only root may start scopes in the system manager; run pollkill as "
                        "root, or as a user (it then asks your own user manager)"
                      : "the user manager only moves your own processes; run pollkill as the "
                        "user whose manager it is");
    }
    if (sd().sd_bus_error_has_name(&error.e, SD_BUS_ERROR_UNKNOWN_METHOD) ||
        sd().sd_bus_error_has_name(&error.e, SD_BUS_ERROR_PROPERTY_READ_ONLY) ||
        sd().sd_bus_error_has_name(&error.e, SD_BUS_ERROR_INVALID_ARGS)) {
      throw Error(message + " (systemd " + scope.version + " may be too old)",
                  "transient scopes with Delegate= need systemd " +
                      std::to_string(kMinimumSystemdForDelegation) +
                      " or newer; pass --cgroup-root with a cgroup you may write to");
    }
    throw Error(message, "pass --cgroup-root with a delegated cgroup, or --systemd-scope never");
  }
  const char* job = nullptr;
  if ((r = sd().sd_bus_message_read(reply.get(), "o", &job)) < 0) {
    throw Error(std::string("read the StartTransientUnit reply: ") + std::strerror(-r));
  }
  wait.job = job;

  // The signal may already have been read while sd_bus_call waited for the reply; it is then
  // queued and dispatched by sd_bus_process below.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!wait.done) {
    r = sd().sd_bus_process(bus, nullptr);
    if (r < 0) {
      throw Error("wait for the start of " + unit + " on " + who + ": " + std::strerror(-r));
    }
    if (r > 0) continue;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    r = sd().sd_bus_wait(bus, static_cast<std::uint64_t>(left.count()));
    if (r < 0 && r != -EINTR) {
      throw Error("wait for the start of " + unit + " on " + who + ": " + std::strerror(-r));
    }
  }
  if (!wait.done && !in_unit_cgroup(unit)) {
    throw Error("the systemd " + std::string(to_string(manager)) + " did not start " + unit +
                    " within " + std::to_string(timeout.count() / 1000) + " s",
                "check `journalctl` for " + unit +
                    "; pass --cgroup-root with a delegated cgroup to go without systemd");
  }
  if (wait.done && wait.result != "done") {
    throw Error("the systemd " + std::string(to_string(manager)) + " could not start " + unit +
                    ": its start job ended '" + wait.result + "'",
                "see `journalctl " + std::string(manager == SystemdManager::user ? "--user " : "") +
                    "-u " + unit + "`");
  }
  if (!in_unit_cgroup(unit)) {
    throw Error("systemd started " + unit + " but pollkill is not in it (its cgroup is '" +
                    probe_own_cgroup() + "')",
                "pass --cgroup-root with a delegated cgroup");
  }
  return scope;
}

#else  // !POLLKILL_HAVE_SYSTEMD

bool systemd_support_built() noexcept {
  return false;
}

SystemdScope start_delegated_scope(SystemdManager manager, const std::string& unit, Duration) {
  throw Error("cannot ask the systemd " + std::string(to_string(manager)) + " for the scope " +
                  unit + ": this pollkill was built without libsystemd (POLLKILL_SYSTEMD=OFF)",
              "run it in a delegated scope yourself: `systemd-run " +
                  std::string(manager == SystemdManager::user ? "--user " : "") +
                  "--scope -p Delegate=yes pollkill ...`, or rebuild with libsystemd-dev");
}

#endif  // POLLKILL_HAVE_SYSTEMD

std::optional<SystemdScope> enter_delegated_scope(HostCgroups& host,
                                                  const std::optional<std::string>& flag,
                                                  const Policy& policy, const char* env_value) {
  const bool explicit_root =
      flag.has_value() || policy.runner.cgroup_root.has_value() || (env_value && *env_value);
  const SystemdScopeMode mode = policy.runner.systemd_scope;
  if (mode == SystemdScopeMode::always && !host.systemd_pid1 && !explicit_root) {
    throw Error("runner.systemd_scope is \"always\" but PID 1 is not systemd",
                "use --systemd-scope auto (or never) on hosts without systemd");
  }
  if (!host.mounts.cgroup2) return std::nullopt;  // resolve_run_root reports it
  ScopeDecision decision =
      decide_scope(mode, host.systemd_pid1, explicit_root, own_cgroup_usable(host));
  if (!decision.request) return std::nullopt;
  if (!systemd_support_built() && mode == SystemdScopeMode::automatic) return std::nullopt;

  const SystemdManager manager = host.root_user ? SystemdManager::system : SystemdManager::user;
  // The scope's name shares the run cgroups' "pollkill-<pid>-<random>" form.
  const std::string unit = RunCgroup::make_name() + ".scope";
  SystemdScope scope;
  try {
    scope = start_delegated_scope(manager, unit);
  } catch (const Error& e) {
    if (mode == SystemdScopeMode::automatic && host.root_user) {
      diag::warning(std::string(e.what()) + "; using <mount>/pollkill instead");
      return std::nullopt;
    }
    throw;
  }
  host.own_cgroup = probe_own_cgroup();
  host.own_delegated = true;
  host.scope_from_user_manager = manager == SystemdManager::user;
  return scope;
}

}  // namespace pollkill
