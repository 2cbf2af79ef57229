#include "cgroup_fixtures.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

namespace pollkill::testing {
namespace fs = std::filesystem;

bool own_cgroup_is_root() {
  std::ifstream in("/proc/self/cgroup");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return cgroup_v2_path(text) == "/";
}

std::vector<std::string> root_controllers() {
  auto mount = cgroup2_mount();
  if (!mount) return {};
  std::ifstream in(*mount /
                   (own_cgroup_is_root() ? "cgroup.controllers" : "cgroup.subtree_control"));
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

std::vector<std::string> print_own_attr(const std::string& attr) {
  return {"sh", "-c",
          "cat \"$(sed -n 's/^0:://p' /proc/self/cgroup | sed 's|^|" + cgroup2_mount()->string() +
              "|')/" + attr + "\""};
}

void JobCgroup::make_job(const std::vector<std::string>& delegated) {
  const std::string marker = unique_marker();
  fs::path parent = *cgroup2_mount();
  if (!delegated.empty()) {
    outer_ = parent / ("pk-outer-" + marker);
    ASSERT_EQ(::mkdir(outer_.c_str(), 0755), 0) << outer_;
    std::string enable;
    for (const auto& c : delegated) enable += (enable.empty() ? "+" : " +") + c;
    std::ofstream(outer_ / "cgroup.subtree_control") << enable;
    parent = outer_;
  }
  job_ = parent / ("pk-job-" + marker);
  ASSERT_EQ(::mkdir(job_.c_str(), 0755), 0) << job_;
}

void JobCgroup::TearDown() {
  if (job_.empty()) return;
  std::vector<fs::path> children;
  for (const auto& e : fs::directory_iterator(job_)) {
    if (e.is_directory()) children.push_back(e.path());
  }
  EXPECT_TRUE(children.empty()) << "left in " << job_ << ": " << children.size() << " cgroups";
  std::ifstream sc(job_ / "cgroup.subtree_control");
  std::string enabled;
  sc >> enabled;  // the first word, if any
  EXPECT_EQ(enabled, "") << "controllers pollkill enabled were not turned off";
  for (const auto& c : children) ::rmdir(c.c_str());
  // Whatever the test left in the job (a sibling it did not stop) goes before the rmdir.
  for (pid_t pid : job_procs()) ::kill(pid, SIGKILL);
  wait_until([&] { return ::rmdir(job_.c_str()) == 0 || errno == ENOENT; }, Seconds(5));
  if (!outer_.empty()) ::rmdir(outer_.c_str());
}

std::unique_ptr<Pollkill> JobCgroup::start_in_job(const std::string& extra,
                                                  const std::vector<std::string>& args) {
  std::vector<std::string> cmd = {"-c", "echo $$ > \"$0\" || exit 1; " + extra + " exec \"$@\"",
                                  (job_ / "cgroup.procs").string(), POLLKILL_BINARY};
  cmd.insert(cmd.end(), args.begin(), args.end());
  LaunchOptions options;
  options.program = "/bin/sh";
  return std::make_unique<Pollkill>(cmd, options);
}

std::unique_ptr<Pollkill> JobCgroup::start_sibling(const std::string& marker) {
  LaunchOptions options;
  options.program = "/bin/sh";
  auto sibling = std::make_unique<Pollkill>(
      std::vector<std::string>{"-c", "echo $$ > \"$0\" && exec sleep \"$1\"",
                               (job_ / "cgroup.procs").string(), long_sleep_arg(marker)},
      options);
  const pid_t pid = sibling->pid();
  EXPECT_TRUE(wait_until(
      [&] {
        auto procs = job_procs();
        return std::find(procs.begin(), procs.end(), pid) != procs.end() &&
               !processes_matching(marker, "sleep").empty();
      },
      Seconds(30)))
      << "the sibling did not reach " << job_;
  return sibling;
}

std::vector<pid_t> JobCgroup::job_procs() const {
  std::ifstream in(job_ / "cgroup.procs");
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

TestCgroup::TestCgroup() {
  path_ = *cgroup2_mount() / ("pk-test-" + unique_marker());
  if (::mkdir(path_.c_str(), 0755) != 0) {
    ADD_FAILURE() << "mkdir " << path_ << ": " << std::strerror(errno);
  }
}

TestCgroup::~TestCgroup() {
  std::ofstream(path_ / "cgroup.freeze") << "0";
  std::ofstream(path_ / "cgroup.kill") << "1";
  for (pid_t pid : procs()) ::kill(pid, SIGKILL);  // kernels without cgroup.kill
  for (pid_t pid : started_) ::waitpid(pid, nullptr, 0);
  // Processes it started reaped, the rest (their children) may take a moment to go.
  wait_until([&] { return ::rmdir(path_.c_str()) == 0 || errno == ENOENT; }, Seconds(10));
}

pid_t TestCgroup::start(const std::vector<std::string>& argv, bool wait_ready) {
  // Everything the child touches is built before the fork.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string procs_file = (path_ / "cgroup.procs").string();
  const fs::path out_file = outputs_ / (std::to_string(started_.size()) + ".out");
  const int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) ADD_FAILURE() << "open " << out_file << ": " << std::strerror(errno);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::open(procs_file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(126);
    ::dup2(out, 1);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out);
  started_.push_back(pid);
  if (wait_ready) {
    std::string seen;
    const bool ready = wait_until(
        [&] {
          std::ifstream in(out_file);
          seen.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
          return seen.find("ready\n") != std::string::npos;
        },
        Seconds(30));
    EXPECT_TRUE(ready) << argv[0] << " did not print 'ready' (saw '" << seen << "')";
  }
  return pid;
}

std::string TestCgroup::output(std::size_t index) const {
  std::ifstream in(outputs_ / (std::to_string(index) + ".out"));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void TestCgroup::freeze(bool frozen) {
  std::ofstream(path_ / "cgroup.freeze") << (frozen ? "1" : "0");
  const std::string want = frozen ? "frozen 1" : "frozen 0";
  EXPECT_TRUE(wait_until(
      [&] {
        std::ifstream in(path_ / "cgroup.events");
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return text.find(want) != std::string::npos;
      },
      Seconds(10)))
      << path_ << " did not become " << want;
}

std::vector<pid_t> TestCgroup::procs() const {
  std::ifstream in(path_ / "cgroup.procs");
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

CpuHogs::CpuHogs(int per_cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  for (int i = 0; i < per_cpu * cpus; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      volatile unsigned long n = 0;
      for (;;) n = n + 1;
    }
    if (pid > 0) pids_.push_back(pid);
  }
}

CpuHogs::~CpuHogs() {
  for (pid_t pid : pids_) ::kill(pid, SIGKILL);
  for (pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
}

}  // namespace pollkill::testing
