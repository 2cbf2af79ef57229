// Evidence capture cost for bench/evidence: starts a workload in a fresh cgroup under
// CGROUP_PARENT, then runs pollkill's EvidenceCapture on it ROUNDS times (freeze, read every
// thread, unwind with libdwfl, write the two files; thawed between rounds) and prints one line
// per round:
//   WALL_MS CPU_MS JSON_BYTES THREADS SIGNATURE
// WALL_MS is from EvidenceCapture::start to the capture process reaped (what the engine waits);
// CPU_MS is the capture process's own CPU (user + system, from its rusage once reaped).
//
//   evidencetime CGROUP_PARENT OUTDIR ROUNDS PROGRAM [ARG...]
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "pollkill/evidence_capture.h"

namespace {

double cpu_ms(const rusage& u) {
  return (static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3) +
         (static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: evidencetime CGROUP_PARENT OUTDIR ROUNDS PROGRAM [ARG...]\n");
    return 2;
  }
  const std::string cg = std::string(argv[1]) + "/evidence";
  const std::filesystem::path out = argv[2];
  const long rounds = std::strtol(argv[3], nullptr, 10);
  if (mkdir(cg.c_str(), 0755) != 0) {
    std::perror(cg.c_str());
    return 1;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    std::ofstream(cg + "/cgroup.procs") << "0" << std::flush;
    if (!freopen("/dev/null", "w", stdout)) _exit(126);
    execv(argv[4], argv + 4);
    _exit(127);
  }
  // Let it settle into its loop or its sleep (libraries loaded, threads started).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const auto dir = pollkill::CgroupDir::open(cg);
  pollkill::EvidenceRequest request;
  request.target.cgroup = &dir;
  request.target.main_pid = pid;
  request.dir = out;
  request.status = pollkill::Status::hung;
  request.budget = std::chrono::seconds(60);
  int status = 0;
  for (long round = 0; round < rounds; ++round) {
    rusage before{}, after{};
    getrusage(RUSAGE_CHILDREN, &before);
    const auto t0 = std::chrono::steady_clock::now();
    auto capture = pollkill::EvidenceCapture::start(request);
    pollfd p{capture.fd(), POLLIN, 0};
    poll(&p, 1, -1);
    const auto outcome = capture.finish();
    const double wall =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    getrusage(RUSAGE_CHILDREN, &after);
    pollkill::thaw_target(request.target);
    std::size_t threads = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
      (void)entry;
      ++threads;
    }
    const auto bytes = outcome.path ? std::filesystem::file_size(*outcome.path) : 0;
    std::printf("%.1f %.1f %zu %zu %s\n", wall, cpu_ms(after) - cpu_ms(before),
                static_cast<std::size_t>(bytes), threads,
                outcome.stack_signature.value_or("(" + outcome.missing + ")").c_str());
    std::fflush(stdout);
  }
  std::ofstream(cg + "/cgroup.kill") << "1" << std::flush;
  waitpid(pid, &status, 0);
  for (int i = 0; i < 100 && rmdir(cg.c_str()) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}
