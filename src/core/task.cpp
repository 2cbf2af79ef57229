#include "pollkill/task.h"

#include <fcntl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>

#include "pollkill/error.h"

extern char** environ;

namespace pollkill {
namespace {

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

void drain_fd(int fd) {
  char buf[4096];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
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

EnforceablePlan check_controllers(const HostCgroups& host, const RunRoot& root,
                                  const std::vector<LimitWrite>& plan,
                                  MissingControllers missing_policy) {
  std::vector<std::string> wanted = controllers_for(plan);
  std::vector<std::string> available = CgroupDir::open(root.path).controllers();
  auto [enforceable, not_enforced] = split_enforceable(plan, available);
  if (!not_enforced.empty()) {
    std::vector<std::string> missing;
    for (const auto& c : wanted) {
      if (std::find(available.begin(), available.end(), c) == available.end()) missing.push_back(c);
    }
    std::string message = missing_controller_message(not_enforced, missing, root.path, available);
    if (missing_policy == MissingControllers::error) {
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
  return {enforceable, not_enforced};
}

BlockedSignals::BlockedSignals() {
  sigemptyset(&set_);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, sig);
  ::sigprocmask(SIG_BLOCK, &set_, &old_);
}

BlockedSignals::~BlockedSignals() {
  // Signals that arrived after the run ended are pollkill's own business: it exits with
  // the task's status anyway, so drop them rather than die of them here.
  timespec zero{};
  while (::sigtimedwait(&set_, nullptr, &zero) > 0) {
  }
  ::sigprocmask(SIG_SETMASK, &old_, nullptr);
}

TaskWatch::TaskWatch(const Policy& policy, CgroupDir dir, Child child, Clock::time_point start,
                     std::uint64_t start_cpu)
    : policy_(policy),
      child_(std::move(child)),
      container_(std::make_unique<CgroupContainer>(std::move(dir))),
      watchdog_(WatchdogConfig::from(policy), start, start_cpu),
      probe_(policy.watchdog.heartbeat),
      watch_progress_(policy.watchdog.hang_after || policy.watchdog.spin_after) {}

TaskWatch::TaskWatch(const Policy& policy, Child child, Clock::time_point start)
    : policy_(policy),
      child_(std::move(child)),
      container_(std::make_unique<ProcTreeContainer>(child_)),
      watchdog_(WatchdogConfig::from(policy), start, 0),
      probe_(policy.watchdog.heartbeat),
      watch_progress_(policy.watchdog.hang_after || policy.watchdog.spin_after) {}

void TaskWatch::on_main_exit() {
  auto exit = child_.try_reap();
  if (!exit) return;
  main_exit_ = *exit;
  if (phase_ == Phase::running) {
    refresh_populated();
    if (populated_ && policy_.watchdog.orphans == OrphanPolicy::kill) {
      // The task is over; whatever it left behind (daemons, setsid children) goes now.
      for (int pid : container_->kill_all()) reaped_.insert(pid);
      enter_killed();
    }
  }
  check_done();
}

void TaskWatch::on_events() {
  refresh_populated();
  check_done();
}

void TaskWatch::on_sample(Clock::time_point now) {
  if (phase_ != Phase::running) return;
  auto cpu = container_->cpu_usage_usec();
  Sample sample{now, cpu, false};
  if (watch_progress_) sample.progress = probe_.observe(container_->pids());
  container_->sample();
  if (auto verdict = watchdog_.observe(sample)) {
    verdict_ = *verdict;
    begin_termination(policy_.watchdog.kill_grace);
  }
}

void TaskWatch::on_deadline() {
  if (phase_ == Phase::terminating) {
    kill_now();
  } else if (phase_ == Phase::killed) {
    // cgroup.kill was written kKillWait ago and the cgroup is still populated: report the
    // survivors (usually uninterruptible sleep) instead of waiting forever.
    for (int pid : container_->pids()) unkillable_.push_back(describe_process(pid));
    gave_up_ = true;
    check_done();
  }
}

void TaskWatch::cancel(int sig) {
  if (!cancel_signal_) {
    cancel_signal_ = sig;
    if (phase_ == Phase::running) begin_termination(policy_.watchdog.kill_grace);
  } else if (phase_ == Phase::terminating) {
    kill_now();  // a second signal skips the grace period
  }
}

void TaskWatch::on_output(std::uint64_t total) {
  if (phase_ != Phase::running || !policy_.limits.output || total <= *policy_.limits.output) return;
  verdict_ = Verdict{Status::output_limit,
                     "output exceeded the " + format_size(*policy_.limits.output) + " limit"};
  begin_termination(policy_.watchdog.kill_grace);
}

void TaskWatch::fill(Result& result, const Outcome& base, Clock::time_point started) {
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
  container_->fill_usage(result);
  if (result.oom_kills) outcome.oom_kills_delta = *result.oom_kills;
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

void TaskWatch::stop_with(Status status, std::string reason) {
  if (phase_ != Phase::running) return;
  verdict_ = Verdict{status, std::move(reason)};
  begin_termination(policy_.watchdog.kill_grace);
}

void TaskWatch::refresh_populated() {
  populated_ = container_->populated();
}

void TaskWatch::begin_termination(Duration grace) {
  if (grace.count() == 0) {
    kill_now();
    return;
  }
  for (int pid : container_->signal_all(SIGTERM)) reaped_.insert(pid);
  phase_ = Phase::terminating;
  arm_timer(deadline_fd_, grace, Duration(0));
}

void TaskWatch::kill_now() {
  for (int pid : container_->kill_all()) reaped_.insert(pid);
  enter_killed();
}

void TaskWatch::enter_killed() {
  phase_ = Phase::killed;
  arm_timer(deadline_fd_, kKillWait, Duration(0));
}

void TaskWatch::check_done() {
  if (child_.running()) return;
  if (!populated_ || gave_up_) done_ = true;
}

}  // namespace pollkill
