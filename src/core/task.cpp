#include "pollkill/task.h"

#include <signal.h>

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
      sample_cpu_(watch_progress_ || policy.limits.cpu_time || container_->scans()) {}

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
  if (phase_ != Phase::running || done_) return;
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
    if (ended_already()) return;
    verdict_ = *verdict;
    begin_termination(policy_.watchdog.kill_grace);
  }
}

void TaskWatch::on_deadline() {
  if (done_) return;
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
  if (ended_already()) return;
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
  result.wall_s = std::chrono::duration<double>(ended_at_.value_or(clock_.now()) - started).count();
}

void TaskWatch::stop_with(Status status, std::string reason) {
  if (phase_ != Phase::running || ended_already()) return;
  verdict_ = Verdict{status, std::move(reason)};
  begin_termination(policy_.watchdog.kill_grace);
}

bool TaskWatch::ended_already() {
  // One wait of the loop may report a timer and the task's end together (pollkill was
  // stopped or starved across the deadline), the timer first: the end happened before the
  // verdict, so the task keeps its own status. Checked only when a verdict is due.
  if (child_.running()) {
    on_main_exit();
  } else {
    refresh_populated();
    check_done();
  }
  return done_ || phase_ != Phase::running;
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
  if (done_ || (populated_ && !gave_up_)) return;
  done_ = true;
  ended_at_ = clock_.now();
}

}  // namespace pollkill
