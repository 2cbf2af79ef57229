// pollkill on a host whose PID 1 is systemd: the delegated scope it asks for (as root from the
// system manager, as a user from the user manager), limits inside it, stopping it, and the
// missing-controller error when the user manager does not delegate memory.
//
// These need systemd as PID 1, root, and a user they may create: they run in
// `tests/vm/run --systemd` (scripts/test vm-systemd), which sets POLLKILL_VM_SYSTEMD=1 and runs
// them from a plain oneshot service (no Delegate=). Anywhere else they skip; in that VM a missing
// prerequisite is a failure.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "harness.h"
#include "pollkill/systemd.h"

namespace pollkill::testing {
namespace {

const std::string kPollkill = POLLKILL_BINARY;
const std::string kMemhog = POLLKILL_MEMHOG;
constexpr const char* kTestUser = "pktest";

struct Shell {
  int status = -1;
  std::string out;
};

// Runs `command` with /bin/sh, stdout and stderr captured together.
Shell sh(const std::string& command) {
  Shell result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.out.append(buffer.data(), n);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool in_systemd_vm() {
  const char* v = std::getenv("POLLKILL_VM_SYSTEMD");
  return v && std::string(v) == "1";
}

bool systemd_is_pid1() {
  struct stat st;
  return ::lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

// The scope named in a result's cgroup ("/system.slice/pollkill-1-ab.scope/pollkill-1-cd/task-run"
// -> "pollkill-1-ab.scope"); empty when it has none.
std::string scope_of(const std::string& cgroup) {
  std::smatch m;
  static const std::regex re("/(pollkill-[0-9]+-[0-9a-f]+\\.scope)/");
  return std::regex_search(cgroup, m, re) ? m[1].str() : std::string();
}

// The pollkill scopes systemd knows for pollkill process `pid` (systemctl list-units).
std::string scopes_of_pid(pid_t pid, bool user = false, const std::string& as_user = {}) {
  std::string cmd = "systemctl " + std::string(user ? "--user -M " + as_user + "@ " : "") +
                    "list-units --all --no-legend --plain --type=scope 'pollkill-" +
                    std::to_string(pid) + "-*'";
  return sh(cmd).out;
}

bool unit_gone(const std::string& unit) {
  Shell s = sh("systemctl show -p LoadState,ActiveState " + unit);
  return s.out.find("LoadState=not-found") != std::string::npos ||
         s.out.find("ActiveState=inactive") != std::string::npos;
}

// The scope's own cgroup directory, from a result's cgroup path, under the cgroup2 mount.
std::filesystem::path scope_dir(const std::string& cgroup) {
  const std::string unit = scope_of(cgroup);
  return *cgroup2_mount() / cgroup.substr(1, cgroup.find(unit) + unit.size() - 1);
}

// The pollkill pid in a scope's name ("pollkill-123-0a1b2c3d.scope" -> 123).
pid_t pid_of_scope(const std::string& unit) {
  return static_cast<pid_t>(std::stol(unit.substr(std::string("pollkill-").size())));
}

class SystemdHost : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!in_systemd_vm()) {
      GTEST_SKIP() << "needs systemd as PID 1, root and a throw-away user: runs in "
                      "`tests/vm/run --systemd` (scripts/test vm-systemd), which sets "
                      "POLLKILL_VM_SYSTEMD=1";
    }
    ASSERT_TRUE(systemd_is_pid1()) << "POLLKILL_VM_SYSTEMD=1 but PID 1 is not systemd";
    ASSERT_EQ(::geteuid(), 0u) << "the systemd VM runs the tests as root";
    ASSERT_TRUE(systemd_support_built())
        << "this pollkill was built without libsystemd (POLLKILL_SYSTEMD=OFF)";
    // The premise: the test runs in a plain service, whose cgroup is not delegated.
    std::ifstream self("/proc/self/cgroup");
    std::string text((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
    ASSERT_NE(text.find("/system.slice/"), std::string::npos) << text;
  }
};

// As root in a service without Delegate=: pollkill asks the system manager for a scope,
// the memory limit holds there (oom), systemd shows the scope while it runs with Delegate=yes,
// and the scope is gone afterwards.
TEST_F(SystemdHost, RootGetsADelegatedScopeAndTheMemoryLimit) {
  TempDir dir;
  const std::string go = (dir / "go").string();
  auto run = start_run(
      {"--memory", "64M"},
      {"/bin/sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.1; done; exec " + kMemhog + " 512"});
  std::string listed;
  ASSERT_TRUE(wait_until(
      [&] {
        listed = scopes_of_pid(run->pid());
        return listed.find(".scope") != std::string::npos;
      },
      Seconds(60), Seconds(0.2)))
      << "no pollkill scope for pid " << run->pid();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(listed, m, std::regex("(pollkill-[0-9]+-[0-9a-f]+\\.scope)")));
  const std::string unit = m[1].str();
  Shell show = sh("systemctl show -p ActiveState,Delegate,ControlGroup " + unit);
  EXPECT_NE(show.out.find("ActiveState=active"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("Delegate=yes"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("ControlGroup=/system.slice/" + unit), std::string::npos) << show.out;
  std::ofstream(go).put('\n');

  RunOutput out = finish_run(*run, Seconds(180));
  ASSERT_TRUE(out.json) << out.describe();
  EXPECT_EQ((*out.json)["status"], "oom") << out.describe();
  EXPECT_EQ(out.exit_code, 137) << out.describe();
  const std::string cgroup = (*out.json)["cgroup"];
  EXPECT_EQ(cgroup.rfind("/system.slice/" + unit + "/pollkill-", 0), 0u) << cgroup;
  EXPECT_TRUE((*out.json)["limits_not_enforced"].empty()) << out.describe();
  EXPECT_TRUE(wait_until([&] { return unit_gone(unit); }, Seconds(30), Seconds(0.2)))
      << sh("systemctl status " + unit).out;
  EXPECT_FALSE(std::filesystem::exists(scope_dir(cgroup)));
  expect_nothing_left(out, "");
}

// `systemctl stop` on pollkill's scope ends pollkill and every process it started, including a
// setsid'd grandchild that ignores SIGTERM.
TEST_F(SystemdHost, StoppingTheScopeKillsTheWholeTree) {
  const std::string marker = unique_marker();
  const std::string sleeper = long_sleep_arg(marker);
  auto run = start_run(
      {"--kill-grace", "1s"},
      {"/bin/sh", "-c", "setsid sh -c 'trap \"\" TERM; sleep " + sleeper + "' & sleep " + sleeper});
  ASSERT_TRUE(wait_until([&] { return processes_matching(marker, "sleep").size() == 2; },
                         Seconds(60), Seconds(0.1)))
      << "the task's two sleeps did not start";
  std::string listed = scopes_of_pid(run->pid());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(listed, m, std::regex("(pollkill-[0-9]+-[0-9a-f]+\\.scope)")))
      << listed;
  const std::string unit = m[1].str();

  Shell stop = sh("timeout 120 systemctl stop " + unit);
  EXPECT_EQ(stop.status, 0) << stop.out;
  RunOutput out = run->wait(Seconds(60));
  EXPECT_FALSE(out.timed_out) << out.describe();
  EXPECT_TRUE(processes_matching(marker).empty()) << "processes survived the scope's stop";
  EXPECT_TRUE(wait_until([&] { return unit_gone(unit); }, Seconds(30), Seconds(0.2)));
  expect_nothing_left(out, marker);
}

// With runner.systemd_scope = "never", root keeps the old fallback: <mount>/pollkill.
TEST_F(SystemdHost, NeverKeepsTheRootFallback) {
  RunOutput out = run_task_cli({"--systemd-scope", "never"}, {"/bin/true"}, Seconds(60));
  ASSERT_TRUE(out.json) << out.describe();
  EXPECT_EQ((*out.json)["status"], "ok");
  const std::string cgroup = (*out.json)["cgroup"];
  EXPECT_EQ(cgroup.rfind("/pollkill/pollkill-", 0), 0u) << cgroup;
  EXPECT_TRUE(scope_of(cgroup).empty()) << cgroup;
  expect_nothing_left(out, "");
}

// A batch asks for the scope once and runs every task inside it.
TEST_F(SystemdHost, BatchRunsItsTasksInOneScope) {
  TempDir dir;
  std::ofstream(dir / "tasks") << kMemhog << " 512\n/bin/true\n";
  const std::string results = (dir / "r.jsonl").string();
  RunOutput out = run_pollkill(
      {"batch", "-j", "2", "--memory", "64M", "--results", results, (dir / "tasks").string()},
      Seconds(180));
  EXPECT_EQ(out.exit_code, 1) << out.describe();  // one task ends oom
  std::ifstream in(results);
  std::string line, unit;
  std::map<std::string, std::string> status;
  while (std::getline(in, line)) {
    auto record = nlohmann::json::parse(line);
    const std::string cgroup = record["cgroup"];
    EXPECT_EQ(cgroup.rfind("/system.slice/pollkill-", 0), 0u) << cgroup;
    if (unit.empty()) unit = scope_of(cgroup);
    EXPECT_EQ(scope_of(cgroup), unit) << cgroup;
    status[record["id"]] = record["status"];
  }
  EXPECT_EQ(status["1"], "oom");
  EXPECT_EQ(status["2"], "ok");
  ASSERT_FALSE(unit.empty());
  EXPECT_TRUE(wait_until([&] { return unit_gone(unit); }, Seconds(30), Seconds(0.2)));
}

TEST_F(SystemdHost, DoctorReportsTheScopeBusAndControllers) {
  RunOutput out = run_pollkill({"doctor"}, Seconds(60));
  EXPECT_EQ(out.exit_code, 0) << out.describe();
  EXPECT_NE(out.out.find("[ok] systemd scope: requested (its own cgroup is not delegated): "
                         "started pollkill-"),
            std::string::npos)
      << out.out;
  EXPECT_NE(out.out.find("from the system manager over /run/systemd/private"), std::string::npos)
      << out.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out.out, m, std::regex("delegated controllers: ([a-z ]+)")))
      << out.out;
  EXPECT_NE(m[1].str().find("memory"), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("(own cgroup (a delegated systemd scope)"), std::string::npos) << out.out;
}

// The unprivileged part: a user whose manager runs through `loginctl enable-linger`.
class SystemdUser : public SystemdHost {
 protected:
  void SetUp() override {
    SystemdHost::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (::getpwnam(kTestUser) == nullptr) {
      Shell add = sh(std::string("useradd --create-home --shell /bin/sh ") + kTestUser);
      ASSERT_EQ(add.status, 0) << "useradd (the VM's root is an overlay): " << add.out;
    }
    passwd* pw = ::getpwnam(kTestUser);
    ASSERT_NE(pw, nullptr);
    uid_ = pw->pw_uid;
    Shell linger = sh(std::string("loginctl enable-linger ") + kTestUser);
    ASSERT_EQ(linger.status, 0) << linger.out;
    const std::string socket = "/run/user/" + std::to_string(uid_) + "/systemd/private";
    ASSERT_TRUE(wait_until(
        [&] {
          struct stat st;
          return ::stat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
        },
        Seconds(120), Seconds(0.25)))
        << "the user manager did not start: "
        << sh("systemctl status user@" + std::to_string(uid_)).out;
  }

  // pollkill ARGS... as the test user, through runuser (no login session, no XDG_RUNTIME_DIR:
  // pollkill finds /run/user/UID itself).
  RunOutput run_as_user(const std::vector<std::string>& args, Seconds timeout = Seconds(180)) {
    LaunchOptions options;
    options.program = "/usr/sbin/runuser";
    std::vector<std::string> full = {"-u", kTestUser, "--", kPollkill};
    full.insert(full.end(), args.begin(), args.end());
    RunOutput out = run_pollkill(full, timeout, options);
    // run_pollkill stops looking for "--result -" at runuser's "--": parse it here.
    if (!out.json && !out.out.empty()) {
      std::string last = out.out.substr(0, out.out.find_last_not_of('\n') + 1);
      last = last.substr(last.find_last_of('\n') + 1);
      try {
        out.json = nlohmann::ordered_json::parse(last);
      } catch (const std::exception& e) {
        out.json_error = e.what();
      }
    }
    return out;
  }

  uid_t uid_ = 0;
};

// systemd 252's user@.service has Delegate=pids memory cpu: the user's scope gets memory, and
// `--memory 64M` holds without sudo.
TEST_F(SystemdUser, RootlessMemoryLimitInAUserScope) {
  RunOutput out = run_as_user({"run", "--memory", "64M", "--result", "-", "--", kMemhog, "512"});
  ASSERT_TRUE(out.json) << out.describe();
  EXPECT_EQ((*out.json)["status"], "oom") << out.describe();
  const std::string cgroup = (*out.json)["cgroup"];
  const std::string manager = "/user.slice/user-" + std::to_string(uid_) + ".slice/user@" +
                              std::to_string(uid_) + ".service/";
  EXPECT_EQ(cgroup.rfind(manager, 0), 0u) << cgroup;
  const std::string unit = scope_of(cgroup);
  EXPECT_FALSE(unit.empty()) << cgroup;
  ASSERT_FALSE(unit.empty());
  const auto dir = scope_dir(cgroup);
  EXPECT_TRUE(wait_until([&] { return !std::filesystem::exists(dir); }, Seconds(30), Seconds(0.2)))
      << "the user scope's cgroup " << dir << " is still there";
  EXPECT_TRUE(find_leftover_cgroups(pid_of_scope(unit)).empty());

  RunOutput doctor = run_as_user({"doctor"}, Seconds(60));
  EXPECT_NE(doctor.out.find("from the user manager over /run/user/" + std::to_string(uid_) +
                            "/systemd/private"),
            std::string::npos)
      << doctor.out;
  EXPECT_NE(doctor.out.find("delegated controllers: cpu memory pids"), std::string::npos)
      << doctor.out;
}

// When the user manager does not delegate cpu (a drop-in narrows Delegate= to pids memory), a
// CPU limit is refused with the missing-controller error naming the user@.service drop-in fix.
// cpu, not memory: systemd 252 keeps memory enabled for user@UID.service for its memory
// accounting (DefaultMemoryAccounting=yes) even when Delegate= leaves it out, and the user
// manager owns its subtree, so memory stays usable; cpu is enabled only when delegated.
TEST_F(SystemdUser, UndelegatedControllerNamesTheUserManagerFix) {
  const std::string unit = "user@" + std::to_string(uid_) + ".service";
  const std::string dropin_dir = "/run/systemd/system/" + unit + ".d";
  ASSERT_EQ(sh("mkdir -p " + dropin_dir +
               " && printf '[Service]\\nDelegate=\\nDelegate=pids memory\\n' > " + dropin_dir +
               "/pollkill-test.conf && systemctl daemon-reload && systemctl restart " + unit)
                .status,
            0);
  const std::string socket = "/run/user/" + std::to_string(uid_) + "/systemd/private";
  auto socket_ready = [&] {
    struct stat st;
    return ::stat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  };
  ASSERT_TRUE(wait_until(socket_ready, Seconds(120), Seconds(0.25)));

  const std::string delegated = sh("cat /sys/fs/cgroup/user.slice/user-" + std::to_string(uid_) +
                                   ".slice/" + unit + "/cgroup.controllers")
                                    .out;
  EXPECT_EQ(delegated.find("cpu"), std::string::npos) << delegated;
  RunOutput out = run_as_user({"run", "--cpus", "0.5", "--", "/bin/true"});
  EXPECT_EQ(out.exit_code, 125) << out.describe() << "; the user manager has: " << delegated;
  EXPECT_NE(out.err.find("cpus"), std::string::npos) << out.err;
  EXPECT_NE(out.err.find("user manager does not delegate cpu"), std::string::npos) << out.err;
  EXPECT_NE(out.err.find("/etc/systemd/system/user@.service.d/delegate.conf"), std::string::npos)
      << out.err;

  // Put the default back for whatever runs next.
  sh("rm -rf " + dropin_dir + " && systemctl daemon-reload && systemctl restart " + unit);
  EXPECT_TRUE(wait_until(socket_ready, Seconds(120), Seconds(0.25)));
}

// Without a running user manager (no login, no linger) there is nobody to ask: the error says
// so and names `loginctl enable-linger`.
TEST_F(SystemdUser, NoUserManagerNamesLinger) {
  const std::string unit = "user@" + std::to_string(uid_) + ".service";
  ASSERT_EQ(
      sh(std::string("loginctl disable-linger ") + kTestUser + " && systemctl stop " + unit).status,
      0);
  const std::string socket = "/run/user/" + std::to_string(uid_) + "/systemd/private";
  ASSERT_TRUE(
      wait_until([&] { return !std::filesystem::exists(socket); }, Seconds(60), Seconds(0.25)));

  RunOutput out = run_as_user({"run", "--memory", "64M", "--", "/bin/true"}, Seconds(60));
  EXPECT_EQ(out.exit_code, 125) << out.describe();
  EXPECT_NE(out.err.find("cannot reach your systemd user manager"), std::string::npos) << out.err;
  EXPECT_NE(out.err.find("loginctl enable-linger " + std::to_string(uid_)), std::string::npos)
      << out.err;

  EXPECT_EQ(sh(std::string("loginctl enable-linger ") + kTestUser).status, 0);
}

}  // namespace
}  // namespace pollkill::testing
