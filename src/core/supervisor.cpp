#include "pollkill/supervisor.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "pollkill/cgroup.h"
#include "pollkill/error.h"
#include "pollkill/guard.h"
#include "pollkill/output.h"
#include "pollkill/progress.h"
#include "pollkill/sandbox.h"
#include "pollkill/spawn.h"
#include "pollkill/watchdog.h"

extern char** environ;

namespace pollkill {
namespace {

// How long to wait for a cgroup to empty after cgroup.kill before reporting what is left.
constexpr Duration kKillWait{5000};

UniqueFd make_timerfd() {
  UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!fd) throw_errno("timerfd_create");
  return fd;
}

void arm_timer(int fd, Duration first, Duration interval) {
  itimerspec spec{};
  auto to_ts = [](Duration d) {
    timespec ts{};
    ts.tv_sec = d.count() / 1000;
    ts.tv_nsec = (d.count() % 1000) * 1000000;
    return ts;
  };
  spec.it_value = to_ts(first);
  if (first.count() == 0 && interval.count() == 0) spec.it_value.tv_nsec = 0;  // disarm
  spec.it_interval = to_ts(interval);
  if (::timerfd_settime(fd, 0, &spec, nullptr) != 0) throw_errno("timerfd_settime");
}

void drain(int fd) {
  char buf[4096];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

void epoll_add(int epfd, int fd, std::uint64_t tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl ADD");
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return env;
}

UnkillableProcess describe_process(int pid) {
  UnkillableProcess p;
  p.pid = pid;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open != std::string::npos && close != std::string::npos && close + 2 < text.size()) {
    p.comm = text.substr(open + 1, close - open - 1);
    char state = text[close + 2];
    static const std::pair<char, const char*> kNames[] = {
        {'R', "running"}, {'S', "sleeping"},     {'D', "disk sleep"}, {'Z', "zombie"},
        {'T', "stopped"}, {'t', "tracing stop"}, {'X', "dead"},       {'I', "idle"}};
    p.state = std::string(1, state);
    for (auto [c, name] : kNames) {
      if (c == state) p.state += std::string(" (") + name + ")";
    }
  }
  return p;
}

enum Tag : std::uint64_t {
  kSignal = 1,
  kPidfd,
  kEvents,
  kSampleTimer,
  kDeadlineTimer,
  kWallTimer,
  kStdout,
  kStderr
};

// Blocks the signals pollkill handles through its signalfd for the lifetime of a run, and
// restores the previous mask afterwards.
class BlockedSignals {
 public:
  BlockedSignals() {
    sigemptyset(&set_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, sig);
    ::sigprocmask(SIG_BLOCK, &set_, &old_);
  }
  ~BlockedSignals() {
    // Signals that arrived after the run ended are pollkill's own business: it exits with
    // the task's status anyway, so drop them rather than die of them here.
    timespec zero{};
    while (::sigtimedwait(&set_, nullptr, &zero) > 0) {
    }
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_;
  sigset_t old_;
};

// The state of one running task, driven by the epoll loop in run_task.
class TaskWatch {
 public:
  TaskWatch(const Policy& policy, CgroupDir dir, Child child, Clock::time_point start,
            std::uint64_t start_cpu)
      : policy_(policy),
        dir_(std::move(dir)),
        child_(std::move(child)),
        watchdog_(WatchdogConfig::from(policy), start, start_cpu),
        probe_(policy.watchdog.heartbeat),
        watch_progress_(policy.watchdog.hang_after || policy.watchdog.spin_after),
        kill_method_(choose_kill_method(dir_)) {}

  bool finished() const { return done_; }
  bool main_running() const { return child_.running(); }
  int pidfd() const { return child_.pidfd(); }
  const CgroupDir& dir() const { return dir_; }

  void on_main_exit() {
    auto exit = child_.try_reap();
    if (!exit) return;
    main_exit_ = *exit;
    if (phase_ == Phase::running) {
      refresh_populated();
      if (populated_ && policy_.watchdog.orphans == OrphanPolicy::kill) {
        // The task is over; whatever it left behind (daemons, setsid children) goes now.
        for (int pid : kill_cgroup(dir_, kill_method_)) reaped_.insert(pid);
        enter_killed();
      }
    }
    check_done();
  }

  void on_events() {
    refresh_populated();
    check_done();
  }

  void on_sample(Clock::time_point now) {
    if (phase_ != Phase::running) return;
    auto cpu = read_cpu_usage();
    Sample sample{now, cpu, false};
    if (watch_progress_) {
      std::vector<int> pids;
      try {
        pids = dir_.procs();
      } catch (const SystemError&) {
      }
      sample.progress = probe_.observe(pids);
    }
    track_memory();
    if (auto verdict = watchdog_.observe(sample)) {
      verdict_ = *verdict;
      begin_termination(policy_.watchdog.kill_grace);
    }
  }

  void on_deadline() {
    if (phase_ == Phase::terminating) {
      kill_now();
    } else if (phase_ == Phase::killed) {
      // cgroup.kill was written kKillWait ago and the cgroup is still populated: report the
      // survivors (usually uninterruptible sleep) instead of waiting forever.
      try {
        for (int pid : dir_.procs()) unkillable_.push_back(describe_process(pid));
      } catch (const SystemError&) {
      }
      gave_up_ = true;
      check_done();
    }
  }

  void cancel(int sig) {
    if (!cancel_signal_) {
      cancel_signal_ = sig;
      if (phase_ == Phase::running) begin_termination(policy_.watchdog.kill_grace);
    } else if (phase_ == Phase::terminating) {
      kill_now();  // a second signal skips the grace period
    }
  }

  void set_deadline_fd(int fd) { deadline_fd_ = fd; }

  /// Counts relayed output against the `output` limit.
  void on_output(std::uint64_t total) {
    if (phase_ != Phase::running || !policy_.limits.output || total <= *policy_.limits.output)
      return;
    verdict_ = Verdict{Status::output_limit,
                       "output exceeded the " + format_size(*policy_.limits.output) + " limit"};
    begin_termination(policy_.watchdog.kill_grace);
  }

  void fill(Result& result, const Outcome& base, Clock::time_point started) {
    Outcome outcome = base;
    if (verdict_) {
      outcome.verdict = verdict_->status;
      outcome.verdict_reason = verdict_->reason;
    }
    outcome.cancel_signal = cancel_signal_;
    if (main_exit_) {
      outcome.exit_code = main_exit_->exit_code;
      outcome.signal = main_exit_->signal;
    }
    outcome.signal_sent_by_pollkill = !reaped_.empty();
    auto stat = dir_.read_keyed("cpu.stat");
    if (stat) {
      result.cpu_user_s = static_cast<double>((*stat)["user_usec"]) / 1e6;
      result.cpu_system_s = static_cast<double>((*stat)["system_usec"]) / 1e6;
    }
    if (auto peak = dir_.read_u64("memory.peak")) {
      result.memory_peak_bytes = *peak;
    } else {
      result.memory_peak_bytes = memory_peak_sampled_;
    }
    if (auto events = dir_.read_keyed("memory.events")) {
      result.oom_kills = (*events)["oom_kill"];
      outcome.oom_kills_delta = *result.oom_kills;
    }
    if (auto peak = dir_.read_u64("pids.peak")) result.pids_peak = *peak;
    auto cls = classify(outcome, result.command);
    result.status = cls.status;
    result.reason = cls.reason;
    result.exit_code = outcome.exit_code;
    result.signal = outcome.signal;
    result.cancel_signal = cancel_signal_;
    result.processes_reaped = reaped_.size();
    result.unkillable = unkillable_;
    result.wall_s = std::chrono::duration<double>(Clock::now() - started).count();
  }

 private:
  enum class Phase { running, terminating, killed };

  std::uint64_t read_cpu_usage() const {
    try {
      auto stat = dir_.read_keyed("cpu.stat");
      if (stat) return (*stat)["usage_usec"];
    } catch (const SystemError&) {
    }
    return 0;
  }

  void track_memory() {
    if (auto current = dir_.read_u64("memory.current")) {
      memory_peak_sampled_ = std::max(memory_peak_sampled_.value_or(0), *current);
    }
  }

  void refresh_populated() {
    try {
      populated_ = dir_.populated();
    } catch (const SystemError&) {
      populated_ = false;
    }
  }

  void begin_termination(Duration grace) {
    if (grace.count() == 0) {
      kill_now();
      return;
    }
    for (int pid : signal_cgroup(dir_, SIGTERM)) reaped_.insert(pid);
    phase_ = Phase::terminating;
    arm_timer(deadline_fd_, grace, Duration(0));
  }

  void kill_now() {
    for (int pid : kill_cgroup(dir_, kill_method_)) reaped_.insert(pid);
    enter_killed();
  }

  void enter_killed() {
    phase_ = Phase::killed;
    arm_timer(deadline_fd_, kKillWait, Duration(0));
  }

  void check_done() {
    if (child_.running()) return;
    if (!populated_ || gave_up_) done_ = true;
  }

  const Policy& policy_;
  CgroupDir dir_;
  Child child_;
  Watchdog watchdog_;
  ProgressProbe probe_;
  bool watch_progress_;
  KillMethod kill_method_;
  int deadline_fd_ = -1;
  Phase phase_ = Phase::running;
  bool populated_ = true;
  bool done_ = false;
  bool gave_up_ = false;
  std::optional<Child::Exit> main_exit_;
  std::optional<Verdict> verdict_;
  std::optional<int> cancel_signal_;
  std::set<int> reaped_;
  std::vector<UnkillableProcess> unkillable_;
  std::optional<std::uint64_t> memory_peak_sampled_;
};

// Applies the limit writes to a fresh task cgroup. memory.swap.max is absent when the kernel
// does not account swap; then an implicit swap limit of 0 cannot matter and is skipped.
void apply_limits(const CgroupDir& dir, const std::vector<LimitWrite>& plan,
                  std::vector<std::string>& not_enforced, MissingControllers missing) {
  for (const auto& w : plan) {
    if (w.attr == "memory.swap.max" && !dir.has(w.attr)) {
      if (w.implied) continue;
      if (missing == MissingControllers::error) {
        throw Error("the swap limit cannot be enforced: '" + (dir.path() / w.attr).string() +
                        "' does not exist (swap accounting is off)",
                    "boot with swapaccount=1, remove the swap limit, or set "
                    "runner.missing_controllers = \"warn\"");
      }
      not_enforced.push_back("swap");
      continue;
    }
    dir.write(w.attr, w.value);
  }
}

std::string missing_controller_message(const std::vector<std::string>& keys,
                                       const std::vector<std::string>& missing,
                                       const std::filesystem::path& root,
                                       const std::vector<std::string>& available) {
  std::string limits;
  for (const auto& k : keys) limits += (limits.empty() ? "" : ", ") + k;
  std::string controllers;
  for (const auto& c : missing) controllers += (controllers.empty() ? "'" : ", '") + c + "'";
  std::string avail;
  for (const auto& a : available) avail += (avail.empty() ? "" : " ") + a;
  return "the " + limits + " limit" + (keys.size() > 1 ? "s need" : " needs") + " the cgroup v2 " +
         controllers + " controller" + (missing.size() > 1 ? "s" : "") + ", which '" +
         root.string() +
         "' does not offer (cgroup.controllers: " + (avail.empty() ? "none" : avail) + ")";
}

}  // namespace

Result run_task(const RunRequest& request) {
  const Policy& policy = request.policy;
  Result result;
  result.id = request.id;
  result.command = request.command;
  result.started_at = std::chrono::system_clock::now();
  // First, so that a policy this process cannot enforce fails before anything is created.
  const SandboxPlan sandbox = prepare_sandbox(policy, current_environment());

  HostCgroups host = probe_host_cgroups();
  std::vector<LimitWrite> plan = plan_limits(policy.limits);
  std::vector<std::string> wanted = controllers_for(plan);
  RunRoot root = resolve_run_root(host, request.cgroup_root, policy,
                                  ::getenv("POLLKILL_CGROUP_ROOT"), !wanted.empty());
  std::vector<std::string> available = CgroupDir::open(root.path).controllers();
  auto [enforceable, not_enforced] = split_enforceable(plan, available);
  if (!not_enforced.empty()) {
    std::vector<std::string> missing;
    for (const auto& c : wanted) {
      if (std::find(available.begin(), available.end(), c) == available.end()) missing.push_back(c);
    }
    std::string message = missing_controller_message(not_enforced, missing, root.path, available);
    if (policy.runner.missing_controllers == MissingControllers::error) {
      throw Error(
          message,
          host.mounts.layout == CgroupLayout::hybrid
              ? "this host mounts cgroup v2 beside v1 (hybrid) and keeps the controller in "
                "v1; boot with systemd.unified_cgroup_hierarchy=1 for a pure cgroup v2 "
                "host, or set runner.missing_controllers = \"warn\" to run without the limit"
              : "enable it in the parent's cgroup.subtree_control, run pollkill under "
                "`systemd-run --scope -p Delegate=yes`, or set runner.missing_controllers "
                "= \"warn\" to run without the limit");
    }
    std::fprintf(stderr, "pollkill: warning: %s; running without %s\n", message.c_str(),
                 not_enforced.size() > 1 ? "these limits" : "this limit");
  }
  result.limits_not_enforced = not_enforced;

  BlockedSignals blocked;
  // The guard exists before anything is created, so a SIGKILL at any moment leaves nothing.
  RunCgroup run = RunCgroup::prepare(root, *host.mounts.cgroup2, controllers_for(enforceable));
  Guard guard = Guard::start(run);
  run.realize(guard.pid());
  CgroupDir task_dir = run.create_child("task-" + request.id);
  result.cgroup = run.relative_path() + "/task-" + request.id;
  apply_limits(task_dir, enforceable, result.limits_not_enforced,
               policy.runner.missing_controllers);

  UniqueFd sigfd(::signalfd(-1, &blocked.set(), SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd) throw_errno("signalfd");
  UniqueFd epfd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epfd) throw_errno("epoll_create1");
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify) throw_errno("inotify_init1");
  if (::inotify_add_watch(inotify.get(), (task_dir.path() / "cgroup.events").c_str(), IN_MODIFY) <
      0) {
    throw_errno("watch '" + (task_dir.path() / "cgroup.events").string() + "'");
  }
  UniqueFd sample_timer = make_timerfd();
  UniqueFd deadline_timer = make_timerfd();
  UniqueFd wall_timer = make_timerfd();

  // With an output limit the task writes into pipes that pollkill copies and counts;
  // otherwise it inherits pollkill's stdin, stdout and stderr.
  std::optional<OutputRelay> relay;
  SpawnRequest spawn_request{request.command, sandbox.env, task_dir.fd(), default_spawn_method()};
  spawn_request.sandbox = &sandbox;
  if (policy.limits.output) {
    relay = OutputRelay::create(STDOUT_FILENO, STDERR_FILENO);
    spawn_request.stdio[1] = relay->child_end(0);
    spawn_request.stdio[2] = relay->child_end(1);
  }
  const Clock::time_point start = Clock::now();
  Spawned spawned = spawn(spawn_request);
  if (relay) relay->close_child_ends();
  Outcome base;
  if (spawned.failure) {
    spawned.child.reap();
    base.exec_errno = spawned.failure->error;
    base.exec_step = spawned.failure->step;
    auto cls = classify(base, result.command);
    result.status = cls.status;
    result.reason = cls.reason;
    result.exit_code =
        spawned.failure->error == ENOENT ? exit_code::kNotFound : exit_code::kNotExecutable;
    result.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
    run.destroy();
    guard.stop();
    return result;
  }

  TaskWatch watch(policy, std::move(task_dir), std::move(spawned.child), start, 0);
  watch.set_deadline_fd(deadline_timer.get());
  epoll_add(epfd.get(), sigfd.get(), kSignal);
  epoll_add(epfd.get(), watch.pidfd(), kPidfd);
  epoll_add(epfd.get(), inotify.get(), kEvents);
  epoll_add(epfd.get(), sample_timer.get(), kSampleTimer);
  epoll_add(epfd.get(), deadline_timer.get(), kDeadlineTimer);
  if (relay) {
    epoll_add(epfd.get(), relay->read_end(0), kStdout);
    epoll_add(epfd.get(), relay->read_end(1), kStderr);
  }
  arm_timer(sample_timer.get(), policy.watchdog.poll_interval, policy.watchdog.poll_interval);
  if (policy.limits.wall_time) {
    // The wall time is exact, not rounded up to the next sample.
    epoll_add(epfd.get(), wall_timer.get(), kWallTimer);
    arm_timer(wall_timer.get(),
              std::max(*policy.limits.wall_time -
                           std::chrono::duration_cast<Duration>(Clock::now() - start),
                       Duration(1)),
              Duration(0));
  }
  watch.on_events();  // the task may already be gone

  bool pidfd_registered = true;
  while (!watch.finished()) {
    epoll_event events[8];
    int n = ::epoll_wait(epfd.get(), events, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      switch (events[i].data.u64) {
        case kSignal: {
          signalfd_siginfo info;
          while (::read(sigfd.get(), &info, sizeof info) == sizeof info) {
            watch.cancel(static_cast<int>(info.ssi_signo));
          }
          break;
        }
        case kPidfd:
          if (pidfd_registered) {
            ::epoll_ctl(epfd.get(), EPOLL_CTL_DEL, watch.pidfd(), nullptr);
            pidfd_registered = false;
          }
          watch.on_main_exit();
          break;
        case kEvents:
          drain(inotify.get());
          watch.on_events();
          break;
        case kWallTimer:
        case kSampleTimer:
          drain(events[i].data.u64 == kWallTimer ? wall_timer.get() : sample_timer.get());
          watch.on_sample(Clock::now());
          watch.on_events();
          break;
        case kDeadlineTimer:
          drain(deadline_timer.get());
          watch.on_deadline();
          break;
        case kStdout:
        case kStderr:
          // At EOF pump closes the read end, which also takes it out of the epoll set.
          relay->pump(events[i].data.u64 == kStdout ? 0 : 1);
          watch.on_output(relay->total());
          break;
      }
    }
  }
  if (relay) relay->drain();
  watch.fill(result, base, start);
  run.destroy();
  guard.stop();
  run.leave_leaf();
  return result;
}

}  // namespace pollkill
