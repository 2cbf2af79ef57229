#include "pollkill/task.h"

#include <signal.h>

#include <algorithm>

namespace pollkill {

TaskWatch::TaskWatch(const Policy& policy, Child child, const ContainerFactory& make_container,
                     WatchClock& clock, Clock::time_point start)
    : policy_(policy),
      clock_(clock),
      child_(std::move(child)),
      container_(make_container(child_)),
      watchdog_(WatchdogConfig::from(policy), start, 0),
      probe_(policy.watchdog.heartbeat),
      watch_progress_(policy.watchdog.hang_after || policy.watchdog.spin_after),
      // Without a CPU rule the watchdog only checks the wall time, which needs no reading;
      // a container that scans for its members samples anyway (it keeps the tree current).
      sample_cpu_(watch_progress_ || policy.limits.cpu_time || container_->scans()) {
  const auto& rules = policy.watchdog;
  if (watch_progress_ && !policy.limits.cpu_time && !rules.heartbeat && !container_->scans()) {
    const Duration shortest = std::min(rules.hang_after.value_or(Duration::max()),
                                       rules.spin_after.value_or(Duration::max()));
    const auto stride = (shortest / 16) / std::max(rules.poll_interval, Duration(1));
    if (stride >= 2) quiet_stride_ = static_cast<int>(std::min<decltype(stride)>(stride, 1 << 30));
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
  const bool read = ++skipped_ >= stride_;  // a quiet task is read every stride_ samples
  if (read) skipped_ = 0;
  auto cpu = sample_cpu_ && read ? container_->cpu_usage_usec() : 0;
  Sample sample{now, cpu, false};
  if (watch_progress_ && read) sample.progress = probe_.observe(container_->pids());
  container_->sample();
  if (container_->partial_oom_kill()) {
    // cgroup v1 has no memory.oom.group: the OOM killer took one process. End the whole task
    // as v2's group kill would; the status is still oom (classify: oom_kill rose). Like that
    // kernel-side kill, it does not count in processes_reaped.
    container_->kill_all();
    enter_killed();
    return;
  }
  if (!read) return;
  if (quiet_stride_ > 1) {
    // Quiet: nothing the rules measure grew since the last reading (a figure no one fills
    // stays 0), and no progress.
    const bool quiet = last_reading_ && !sample.progress &&
                       sample.cpu_usage_usec == last_reading_->cpu_usage_usec &&
                       sample.cpu_wait_usec == last_reading_->cpu_wait_usec &&
                       sample.memory_full_usec == last_reading_->memory_full_usec;
    // Growth somewhere in a stretch of several intervals: no streak may run through it.
    if (stride_ > 1 && !quiet) sample.progress = true;
    stride_ = quiet ? quiet_stride_ : 1;
    last_reading_ = sample;
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
    unkillable_ = container_->survivors();
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
  result.wall_s = std::chrono::duration<double>(clock_.now() - started).count();
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
  clock_.arm_deadline(grace);
}

void TaskWatch::kill_now() {
  for (int pid : container_->kill_all()) reaped_.insert(pid);
  enter_killed();
}

void TaskWatch::enter_killed() {
  phase_ = Phase::killed;
  clock_.arm_deadline(kKillWait);
}

void TaskWatch::check_done() {
  if (child_.running()) return;
  if (!populated_ || gave_up_) done_ = true;
}

}  // namespace pollkill
