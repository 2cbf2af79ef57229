#include "pollkill/task.h"

#include <fcntl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/hostcase.h"
#include "pollkill/systemd.h"

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
    if (w.key == "swap" && !dir.has(w.attr)) {
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

EnforceablePlan check_controllers(const HostCgroups& host, RunRoot& root,
                                  const std::vector<LimitWrite>& plan, const RunnerPolicy& runner) {
  std::vector<std::string> wanted = controllers_for(plan);
  std::vector<std::string> available = CgroupDir::open(root.path).controllers();
  EnforceablePlan out;
  std::vector<std::string> missing;
  for (const auto& c : wanted) {
    if (std::find(available.begin(), available.end(), c) == available.end()) missing.push_back(c);
  }
  // The v1 backend, for the controllers the unified hierarchy lacks.
  std::vector<std::string> v1_notes;
  if (runner.cgroup_v1 == CgroupV1::automatic && !missing.empty()) {
    for (const auto& c : missing) {
      if (std::find(std::begin(kV1LimitControllers), std::end(kV1LimitControllers), c) ==
          std::end(kV1LimitControllers)) {
        continue;
      }
      V1Placement place = place_v1(c, host.mounts, host.own_v1_cgroups, runner.cgroup_v1_root);
      if (place.usable) {
        out.v1_controllers.push_back(c);
        out.v1_bases.emplace_back(c, place.base);
      } else {
        v1_notes.push_back(place.why_not);
      }
    }
  }
  // The same keys v1_can_enforce accepts, judged from the plan (a batch's plan is the union of
  // its tasks'): swap only next to a memory limit, never memory_high.
  const bool plan_limits_memory = std::any_of(
      plan.begin(), plan.end(), [](const LimitWrite& w) { return w.attr == "memory.max"; });
  for (const auto& w : plan) {
    bool on_v2 = std::find(available.begin(), available.end(), w.controller) != available.end();
    bool on_v1 = std::find(out.v1_controllers.begin(), out.v1_controllers.end(), w.controller) !=
                 out.v1_controllers.end();
    auto add = [](std::vector<std::string>& keys, const std::string& key) {
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    };
    if (on_v2) {
      out.enforceable.push_back(w);
    } else if (on_v1 && w.key != "memory_high" && (w.key != "swap" || plan_limits_memory)) {
      if (!w.implied) add(out.v1_keys, w.key);
    } else if (!w.implied) {
      add(out.not_enforced, w.key);
      if (on_v1 && w.key == "memory_high") {
        v1_notes.push_back(
            "cgroup v1 has no equivalent of memory.high (memory.soft_limit_in_bytes only acts "
            "under global memory pressure)");
      } else if (on_v1) {
        v1_notes.push_back("cgroup v1 limits swap only together with memory (memsw)");
      }
    }
  }
  // Controllers of the keys still not enforced, for the message.
  std::vector<std::string> unmet;
  for (const auto& w : plan) {
    if (w.implied ||
        std::find(out.not_enforced.begin(), out.not_enforced.end(), w.key) ==
            out.not_enforced.end() ||
        std::find(unmet.begin(), unmet.end(), w.controller) != unmet.end()) {
      continue;
    }
    unmet.push_back(w.controller);
  }
  if (!out.not_enforced.empty()) {
    std::string message = missing_controller_message(out.not_enforced, unmet, root.path, available);
    for (const auto& note : v1_notes) message += "; " + note;
    if (runner.missing_controllers == MissingControllers::error) {
      throw Error(
          message,
          host.mounts.layout == CgroupLayout::hybrid
              ? (runner.cgroup_v1 == CgroupV1::off
                     ? "this host mounts cgroup v2 beside v1 (hybrid) and keeps the controller in "
                       "v1: set runner.cgroup_v1 = \"auto\" (--cgroup-v1 auto) to enforce it "
                       "through the v1 hierarchy, boot with systemd.unified_cgroup_hierarchy=1 "
                       "for a pure cgroup v2 host, or set runner.missing_controllers = \"warn\" "
                       "to run without the limit"
                     : "this hybrid host's v1 hierarchy cannot take it (see above): set "
                       "runner.cgroup_v1_root to a v1 cgroup you may write to, boot with "
                       "systemd.unified_cgroup_hierarchy=1, or set runner.missing_controllers "
                       "= \"warn\" to run without the limit")
          : host.scope_from_user_manager
              ? user_manager_delegate_fix(unmet) +
                    "; or set runner.missing_controllers = \"warn\" to run without the limit"
              : controller_fix(host, root, kernel_controllers(host), unmet));
    }
    diag::warning(message + "; running without " +
                  (out.not_enforced.size() > 1 ? "these limits" : "this limit"));
  }
  // The controllers are there, but a cgroup other than the hierarchy root cannot enable them
  // for its children while processes live in it. pollkill moves itself out into a leaf; other
  // processes it did not start it leaves where they are, so that case is told apart here,
  // naming them, before anything is created. (cgroup v1 has no such rule.)
  if (!controllers_for(out.enforceable).empty()) {
    const std::vector<pid_t> others = other_processes_in(root);
    if (!others.empty()) {
      const std::vector<std::string> keys = split_enforceable(out.enforceable, {}).second;
      std::string limits;
      for (const auto& k : keys) limits += (limits.empty() ? "" : ", ") + k;
      const std::string message = "the " + limits + " limit" +
                                  (keys.size() > 1 ? "s need" : " needs") +
                                  " controllers enabled for pollkill's task cgroups, but " +
                                  sharing_message(root.path, describe_pids(others));
      if (runner.missing_controllers == MissingControllers::error) {
        throw Error(message, sharing_fix(root.path));
      }
      diag::warning(message + "; running without " +
                    (keys.size() > 1 ? "these limits" : "this limit"));
      out.not_enforced.insert(out.not_enforced.end(), keys.begin(), keys.end());
      out.enforceable.clear();
    }
  }
  // No cgroup v2 controller to enable: no reason to leave the cgroup pollkill was started in.
  if (controllers_for(out.enforceable).empty()) root.move_self_to_leaf = false;
  return out;
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
      watch_progress_(policy.watchdog.hang_after || policy.watchdog.spin_after),
      // Without a CPU rule the watchdog only checks the wall time, which needs no reading.
      sample_cpu_(watch_progress_ || policy.limits.cpu_time) {}

TaskWatch::TaskWatch(const Policy& policy, Child child, Clock::time_point start)
    : policy_(policy),
      child_(std::move(child)),
      container_(std::make_unique<ProcTreeContainer>(child_)),
      watchdog_(WatchdogConfig::from(policy), start, 0),
      probe_(policy.watchdog.heartbeat),
      watch_progress_(policy.watchdog.hang_after || policy.watchdog.spin_after),
      // The tree scan behind the CPU figure also keeps the orphan attribution current.
      sample_cpu_(true) {}

void TaskWatch::set_v1(V1TaskCgroups v1) {
  if (auto* cgroup = dynamic_cast<CgroupContainer*>(container_.get())) {
    cgroup->set_v1(std::move(v1));
  }
}

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
  auto cpu = sample_cpu_ ? container_->cpu_usage_usec() : 0;
  Sample sample{now, cpu, false};
  if (watch_progress_) sample.progress = probe_.observe(container_->pids());
  container_->sample();
  if (container_->partial_oom_kill()) {
    // cgroup v1 has no memory.oom.group: the OOM killer took one process. End the whole task
    // as v2's group kill would; the status is still oom (classify: oom_kill rose). Like that
    // kernel-side kill, it does not count in processes_reaped.
    container_->kill_all();
    enter_killed();
    return;
  }
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
