// [seccomp] and [sandbox] enforced for real: filters, namespaces, ids, rlimits, environment,
// and the shipped policies each running a real program. Namespaces and user changes need root;
// without it these tests skip with the reason.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;

const std::string kProbe = POLLKILL_SANDBOX_PROBE;
const std::string kPolicies = std::string(POLLKILL_SOURCE_DIR) + "/policies/";

#define PK_REQUIRE_ROOT()                                                          \
  do {                                                                             \
    PK_REQUIRE_CGROUP2();                                                          \
    if (::geteuid() != 0) GTEST_SKIP() << "namespaces and user changes need root"; \
  } while (0)

class Sandbox : public ::testing::Test {
 protected:
  std::string policy(const std::string& name, const std::string& body) {
    const fs::path path = dir_ / (name + ".toml");
    std::ofstream(path) << "version = 1\n" << body;
    return path.string();
  }
  RunOutput run(const std::string& policy_path, const std::vector<std::string>& command,
                LaunchOptions options = {}) {
    RunOutput r = run_task_cli({"--policy", policy_path}, command, Seconds(60), options);
    expect_nothing_left(r, "");
    return r;
  }
  // Whether a foreign ABI's getpid reaches the kernel's dispatch at all is a property of the host,
  // not of pollkill: a kernel built or booted without IA32 emulation (ia32_emulation=0,
  // CONFIG_IA32_EMULATION_DEFAULT_DISABLED) raises SIGSEGV at `int 0x80` before any seccomp
  // filter runs, and one without CONFIG_X86_X32_ABI answers x32 calls with ENOSYS. So the test
  // first runs the probe without a filter (the control) and decides from what it saw:
  // - the call returned (a pid, or ENOSYS): seccomp sees the call before the kernel looks it up
  //   in a table, so with any filter the task must end `blocked`;
  // - the call was refused by the CPU or the kernel (the task was killed): no filter can be
  //   observed there, so this ABI is skipped with the reason on the host. The VM's stock Debian
  //   kernel runs i386 calls, and there (POLLKILL_IN_VM) a refused control fails the test, so
  //   some stage always proves the blocking.
  void expect_foreign_abi_blocked(const char* abi) {
    const auto deny = policy("deny", "[seccomp]\ndeny = [\"socket\"]\n");
    RunOutput unfiltered = run(policy("none", ""), {kProbe, abi});
    ASSERT_TRUE(unfiltered.json) << abi << unfiltered.describe();
    ASSERT_TRUE((*unfiltered.json)["status"] == "ok" || (*unfiltered.json)["status"] == "crashed")
        << abi << ": the control must return or be killed by the kernel" << unfiltered.describe();
    if ((*unfiltered.json)["status"] == "crashed") {
      const std::string why = std::string("this kernel does not run ") + abi +
                              " system calls (the unfiltered control ended " +
                              (*unfiltered.json)["status"].get<std::string>() + ": " +
                              (*unfiltered.json)["reason"].get<std::string>() +
                              "), so a filter cannot be seen blocking them";
      if (std::getenv("POLLKILL_IN_VM")) FAIL() << "the VM's kernel must run them: " << why;
      GTEST_SKIP() << why << "; the VM stage (tests/vm/run) proves it";
    }
    EXPECT_EQ(unfiltered.out.rfind(std::string(abi) + ": returned ", 0), 0u)
        << abi << unfiltered.describe();
    RunOutput r = run(deny, {kProbe, abi});
    ASSERT_TRUE(r.json) << r.describe();
    EXPECT_EQ((*r.json)["status"], "blocked") << abi << r.describe();
    EXPECT_EQ(r.out, "") << abi << ": the call must not return under a filter" << r.describe();
  }

  TempDir dir_;
};

TEST_F(Sandbox, DeniedSocketGivesEpermToAPythonProgram) {
  PK_REQUIRE_CGROUP2();
  const auto p = policy("errno", "[seccomp]\ndeny = [\"socket\"]\n");
  RunOutput r = run(p, {"/usr/bin/python3", "-c",
                        "import socket\ntry:\n  socket.socket()\n  print('allowed')\n"
                        "except PermissionError as e:\n  print('denied', e.errno)\n"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.describe();
  EXPECT_EQ(r.out, "denied 1\n") << r.describe();
}

TEST_F(Sandbox, DenyActionErrnoNameGivesThatErrno) {
  PK_REQUIRE_CGROUP2();
  const auto p =
      policy("enosys", "[seccomp]\ndeny = [\"socket\"]\ndeny_action = \"errno:ENOSYS\"\n");
  RunOutput r = run(p, {kProbe, "socket"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "failed") << r.describe();
  EXPECT_EQ(r.out, "socket: ENOSYS\n") << r.describe();
}

TEST_F(Sandbox, DeniedSocketUnderKillIsBlocked) {
  PK_REQUIRE_CGROUP2();
  const auto p = policy("kill", "[seccomp]\ndeny = [\"socket\"]\ndeny_action = \"kill\"\n");
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{kProbe, "socket"},
        std::vector<std::string>{"/usr/bin/python3", "-c", "import socket; socket.socket()"}}) {
    RunOutput r = run(p, command);
    ASSERT_TRUE(r.json) << r.describe();
    EXPECT_EQ((*r.json)["status"], "blocked") << r.describe();
    EXPECT_EQ((*r.json)["signal"], 31) << r.describe();
    EXPECT_EQ(r.exit_code, 159) << r.describe();
    EXPECT_NE((*r.json)["reason"].get<std::string>().find("seccomp"), std::string::npos);
  }
}

TEST_F(Sandbox, ForeignArchitectureI386CallsAreBlocked) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the i386 table only exists on x86_64";
#endif
  PK_REQUIRE_CGROUP2();
  expect_foreign_abi_blocked("i386");
}

TEST_F(Sandbox, ForeignArchitectureX32CallsAreBlocked) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the x32 table only exists on x86_64";
#endif
  PK_REQUIRE_CGROUP2();
  expect_foreign_abi_blocked("x32");
}

TEST_F(Sandbox, UnknownSyscallIsRejectedWithItsLine) {
  const auto p = policy("typo", "[seccomp]\ndeny = [\n  \"socket\",\n  \"sockett\",\n]\n");
  RunOutput r = run_pollkill({"policy", "check", p});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find(p + ":5:3: seccomp.deny: unknown system call 'sockett'"), std::string::npos)
      << r.describe();
  // And `run` refuses it before anything runs.
  RunOutput run = run_pollkill({"run", "--policy", p, "--", "/bin/true"});
  EXPECT_EQ(run.exit_code, 125) << run.describe();
}

TEST_F(Sandbox, UserChangeWithoutRootIsAClearErrorBeforeAnythingRuns) {
  if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root and setpriv to run pollkill as another user";
  }
  const auto p = policy("user", "[sandbox]\nuser = \"nobody\"\n");
  fs::permissions(dir_.path(), fs::perms::others_read | fs::perms::others_exec,
                  fs::perm_options::add);
  LaunchOptions options;
  options.program = "/usr/bin/setpriv";
  RunOutput r =
      run_pollkill({"--reuid=65534", "--regid=65534", "--clear-groups",
                    world_readable_copy(POLLKILL_BINARY), "run", "--policy", p, "--", "/bin/true"},
                   Seconds(30), options);
  EXPECT_EQ(r.exit_code, 125) << r.describe();
  EXPECT_NE(r.err.find("needs root"), std::string::npos) << r.describe();
}

TEST_F(Sandbox, PidNamespaceShowsOnlyTheTaskAndHidesPollkill) {
  PK_REQUIRE_ROOT();
  const auto p = policy("pid", "[sandbox]\nnamespaces = [\"pid\", \"mount\"]\n");
  const fs::path pid_file = dir_ / "pollkill.pid";
  auto running =
      start_run({"--policy", p}, {"sh", "-c",
                                  "echo procs $(ls /proc | grep -c '^[0-9]*$'); echo self $$; "
                                  "while [ ! -s " +
                                      pid_file.string() + " ]; do sleep 0.05; done; " + kProbe +
                                      " kill $(cat " + pid_file.string() + ")"});
  std::ofstream(pid_file) << running->pid() << "\n";
  RunOutput r = finish_run(*running, Seconds(60));
  ASSERT_TRUE(r.json) << r.describe();
  // sh, ls and grep, and pollkill's init: nothing of the host.
  int procs = -1, self = -1;
  std::sscanf(r.out.c_str(), "procs %d\nself %d", &procs, &self);
  EXPECT_GE(procs, 2) << r.out;
  EXPECT_LE(procs, 5) << r.out;
  EXPECT_EQ(self, 2) << "the task is the first child of pollkill's init (PID 1)\n" << r.out;
  EXPECT_NE(r.out.find("kill: ESRCH"), std::string::npos) << r.describe();
  EXPECT_EQ((*r.json)["status"], "failed") << r.describe();
  expect_nothing_left(r, "");
}

TEST_F(Sandbox, AbortInAPidNamespaceIsStillCrashedWithSigabrt) {
  PK_REQUIRE_ROOT();
  const auto p = policy("pid", "[sandbox]\nnamespaces = [\"pid\", \"mount\"]\n");
  RunOutput r = run(p, {kProbe, "abort"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "crashed") << r.describe();
  EXPECT_EQ((*r.json)["signal"], 6) << r.describe();
  EXPECT_EQ(r.exit_code, 134) << r.describe();
  // And an exit code passes through init unchanged.
  RunOutput exit3 = run(p, {"sh", "-c", "exit 3"});
  ASSERT_TRUE(exit3.json) << exit3.describe();
  EXPECT_EQ((*exit3.json)["exit_code"], 3) << exit3.describe();
  EXPECT_EQ(exit3.exit_code, 3) << exit3.describe();
}

TEST_F(Sandbox, SigtermFromPollkillReachesTheTaskThroughInit) {
  PK_REQUIRE_ROOT();
  const auto p = policy("pid",
                        "[limits]\nwall_time = \"1s\"\n[sandbox]\n"
                        "namespaces = [\"pid\", \"mount\"]\n");
  const std::string marker = unique_marker();
  RunOutput r = run(p, {"sleep", long_sleep_arg(marker)});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "timeout") << r.describe();
  EXPECT_LT(r.elapsed.count(), 3.0) << "SIGTERM must end it within kill_grace" << r.describe();
  expect_nothing_left(r, marker);
}

TEST_F(Sandbox, RlimitsAreVisibleInProcSelfLimits) {
  PK_REQUIRE_CGROUP2();
  const auto p = policy("rlimits",
                        "[sandbox]\nrlimits = { core = 0, nofile = 64, "
                        "fsize = \"1MiB\", nproc = 1000, stack = \"unlimited\" }\n");
  RunOutput r = run(p, {"cat", "/proc/self/limits"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.describe();
  const auto has = [&r](const std::string& name, const std::string& value) {
    const auto at = r.out.find(name);
    if (at == std::string::npos) return false;
    const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
    return line.find(" " + value + " ") != std::string::npos &&
           line.find(value) != line.rfind(value);  // soft and hard
  };
  EXPECT_TRUE(has("Max core file size", "0")) << r.out;
  EXPECT_TRUE(has("Max open files", "64")) << r.out;
  EXPECT_TRUE(has("Max file size", "1048576")) << r.out;
  EXPECT_TRUE(has("Max processes", "1000")) << r.out;
  EXPECT_TRUE(has("Max stack size", "unlimited")) << r.out;
}

TEST_F(Sandbox, EnvClearEnvAndPassEnvBehaveAsDocumented) {
  PK_REQUIRE_CGROUP2();
  LaunchOptions options;
  options.env = {{"PK_PASS", "passed"}, {"PK_DROP", "dropped"}, {"PK_OVER", "old"}};
  RunOutput inherit = run(policy("inherit",
                                 "[sandbox]\nenv = { PK_SET = \"set\", "
                                 "PK_OVER = \"new\" }\n"),
                          {"/usr/bin/env"}, options);
  ASSERT_TRUE(inherit.json) << inherit.describe();
  for (const char* line : {"\nPK_PASS=passed\n", "\nPK_DROP=dropped\n", "\nPK_SET=set\n",
                           "\nPK_OVER=new\n", "\nPATH="}) {
    EXPECT_NE(("\n" + inherit.out).find(line), std::string::npos) << line << inherit.out;
  }
  EXPECT_EQ(inherit.out.find("PK_OVER=old"), std::string::npos) << inherit.out;

  RunOutput cleared = run(policy("clear",
                                 "[sandbox]\nclear_env = true\npass_env = [\"PK_PASS\"]\n"
                                 "env = { PK_SET = \"set\" }\n"),
                          {"/usr/bin/env"}, options);
  ASSERT_TRUE(cleared.json) << cleared.describe();
  EXPECT_EQ(cleared.out, "PK_PASS=passed\nPK_SET=set\n") << cleared.describe();
}

TEST_F(Sandbox, UserAndCwdAndUmaskApply) {
  PK_REQUIRE_ROOT();
  const auto p = policy("user", "[sandbox]\nuser = \"nobody\"\ncwd = \"/\"\numask = \"027\"\n");
  RunOutput r = run(p, {"sh", "-c", "id -u; id -G; pwd; umask"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ(r.out, "65534\n65534\n/\n0027\n") << r.describe();
}

TEST_F(Sandbox, MountNamespaceHidesAndMakesReadOnly) {
  PK_REQUIRE_ROOT();
  const fs::path ro = dir_ / "ro", hidden_dir = dir_ / "hidden", hidden_file = dir_ / "secret";
  fs::create_directories(ro);
  fs::create_directories(hidden_dir);
  std::ofstream(hidden_dir / "inside") << "x";
  std::ofstream(hidden_file) << "secret";
  const auto p = policy("mounts",
                        "[sandbox]\nnamespaces = [\"mount\", \"uts\"]\n"
                        "hostname = \"pk-box\"\n"
                        "read_only = [\"" +
                            ro.string() +
                            "\"]\n"
                            "hide = [\"" +
                            hidden_dir.string() + "\", \"" + hidden_file.string() + "\"]\n");
  RunOutput r = run(p, {"sh", "-c",
                        "hostname; touch " + (ro / "f").string() +
                            " 2>/dev/null && echo writable || echo read-only; ls -A " +
                            hidden_dir.string() + " | wc -l; wc -c < " + hidden_file.string()});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ(r.out, "pk-box\nread-only\n0\n0\n") << r.describe();
  // Nothing leaked to the host's view.
  EXPECT_TRUE(fs::exists(hidden_dir / "inside"));
  EXPECT_FALSE(fs::exists(ro / "f"));
}

TEST_F(Sandbox, PrivateTmpIsEmptyAndStaysPrivate) {
  PK_REQUIRE_ROOT();
  const auto p = policy("tmp", "[sandbox]\nnamespaces = [\"mount\"]\nprivate_tmp = true\n");
  RunOutput r = run(p, {"sh", "-c", "ls -A /tmp | wc -l; touch /tmp/pk-private-tmp-probe"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.describe();
  EXPECT_EQ(r.out, "0\n") << r.describe();
  EXPECT_FALSE(fs::exists("/tmp/pk-private-tmp-probe"));
}

TEST_F(Sandbox, ShippedPoliciesPassPolicyCheck) {
  for (const char* name : {"default", "strict", "gmsh", "compute"}) {
    RunOutput r = run_pollkill({"policy", "check", kPolicies + name + ".toml"});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.describe();
  }
}

TEST_F(Sandbox, StrictRunsTrue) {
  PK_REQUIRE_ROOT();
  RunOutput r = run(kPolicies + "strict.toml", {"/bin/true"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.describe();
}

TEST_F(Sandbox, StrictContainsTheCgroupEscapeAttempt) {
  PK_REQUIRE_ROOT();
  // The parent cgroups of the task, as the host sees them: the run cgroup and the root.
  const fs::path root = *cgroup2_mount();
  RunOutput r = run(kPolicies + "strict.toml",
                    {"sh", "-c",
                     "cat /proc/self/cgroup | grep '^0::'; " + world_readable_copy(kProbe) +
                         " escape " + (root / "cgroup.procs").string() + " ../cgroup.procs"});
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "failed") << r.describe();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  // The cgroup namespace's root is the task cgroup itself.
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "0::/") << r.out;
  EXPECT_EQ(r.out.find(": ok"), std::string::npos) << r.out;
}

TEST_F(Sandbox, StrictCannotReachAServerOnTheHostsLoopback) {
  PK_REQUIRE_ROOT();
  int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(server, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(server, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(server, 8), 0);
  socklen_t length = sizeof address;
  ::getsockname(server, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string port = std::to_string(ntohs(address.sin_port));
  // The control: without the policy the probe connects.
  RunOutput control = run(policy("none", ""), {kProbe, "connect", port});
  EXPECT_EQ(control.out, "connect: ok\n") << control.describe();
  RunOutput r = run(kPolicies + "strict.toml", {world_readable_copy(kProbe), "connect", port});
  ::close(server);
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "failed") << r.describe();
  EXPECT_EQ(r.out, "connect: ECONNREFUSED\n") << r.describe();
}

TEST_F(Sandbox, ComputeRunsCxxAndPython) {
  PK_REQUIRE_CGROUP2();
  const std::string p = kPolicies + "compute.toml";
  RunOutput cxx = run(p, {POLLKILL_MEMHOG, "8"});
  ASSERT_TRUE(cxx.json) << cxx.describe();
  EXPECT_EQ((*cxx.json)["status"], "ok") << cxx.describe();
  RunOutput py = run(p, {"/usr/bin/python3", "-c", "print(sum(range(10)))"});
  ASSERT_TRUE(py.json) << py.describe();
  EXPECT_EQ((*py.json)["status"], "ok") << py.describe();
  EXPECT_EQ(py.out, "45\n") << py.describe();
  // And nothing else: a socket is blocked.
  RunOutput net = run(p, {kProbe, "socket"});
  ASSERT_TRUE(net.json) << net.describe();
  EXPECT_EQ((*net.json)["status"], "blocked") << net.describe();
}

TEST_F(Sandbox, GmshMeshesUnderGmshPolicy) {
  PK_REQUIRE_CGROUP2();
  std::vector<std::string> have;
  std::ifstream controllers(*cgroup2_mount() / "cgroup.controllers");
  for (std::string word; controllers >> word;) have.push_back(word);
  for (const char* c : {"memory", "cpu", "pids"}) {
    if (std::find(have.begin(), have.end(), c) == have.end()) {
      if (std::getenv("POLLKILL_IN_VM")) FAIL() << "the VM must offer the " << c << " controller";
      GTEST_SKIP() << "gmsh.toml sets memory, cpus and pids limits, and the cgroup v2 '" << c
                   << "' controller is not available here; this test runs in the VM";
    }
  }
  if (::access("/usr/bin/gmsh", X_OK) != 0) {
    if (std::getenv("POLLKILL_IN_VM")) FAIL() << "gmsh must be installed for the VM suite";
    GTEST_SKIP() << "gmsh is not installed (apt-get install gmsh)";
  }
  const std::string geo = std::string(POLLKILL_SOURCE_DIR) + "/tests/tools/box-minus-sphere.geo";
  const fs::path msh = dir_ / "mesh.msh";
  RunOutput r = run_task_cli({"--policy", kPolicies + "gmsh.toml"},
                             {"gmsh", "-3", "-v", "1", "-clmax", "0.2", geo, "-o", msh.string()},
                             Seconds(400));
  ASSERT_TRUE(r.json) << r.describe();
  EXPECT_EQ((*r.json)["status"], "ok") << r.describe();
  EXPECT_TRUE(fs::exists(msh));
  expect_nothing_left(r, "");
}

}  // namespace
}  // namespace pollkill::testing
