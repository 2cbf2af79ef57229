#include "cgroup_fixtures.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
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

}  // namespace pollkill::testing
