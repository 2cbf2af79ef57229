#include "pollkill/task.h"

#include <signal.h>

#include <algorithm>

#include "pollkill/diag.h"
#include "pollkill/error.h"

namespace pollkill {

SampleReads SampleReads::for_policy(const Policy& policy, bool scans) {
  SampleReads reads;
  const bool stuck_rules = policy.watchdog.hang_after || policy.watchdog.spin_after;
  reads.progress = stuck_rules;
  // The hang and spin rules compare the CPU wanted (received + waited for); cpu_time and the
  // wall time need no wait.
  reads.cpu_wait = stuck_rules;
  reads.memory_full = policy.watchdog.thrash_after.has_value();
  // Without a CPU rule the watchdog only checks the wall time, which needs no reading; a
  // container that scans for its members samples anyway (it keeps the tree current).
  reads.cpu = stuck_rules || policy.limits.cpu_time || scans;
  return reads;
}

TaskWatch::TaskWatch(const Policy& policy, Child child, const ContainerFactory& make_container,
                     WatchClock& clock, Clock::time_point start, EvidenceDestination evidence)
    : policy_(policy),
      clock_(clock),
      child_(std::move(child)),
      container_(make_container(child_)),
      reads_(SampleReads::for_policy(policy, container_->scans())),
      watchdog_(WatchdogConfig::from(policy), start_sample(start)),
      probe_(policy.watchdog.heartbeat),
      evidence_dest_(std::move(evidence)) {
  const auto& rules = policy.watchdog;
  if (reads_.progress && !policy.limits.cpu_time && !rules.heartbeat && !container_->scans()) {
    const Duration shortest = std::min(rules.hang_after.value_or(Duration::max()),
                                       rules.spin_after.value_or(Duration::max()));
    const auto stride = (shortest / 16) / std::max(rules.poll_interval, Duration(1));
    if (stride >= 2) quiet_stride_ = static_cast<int>(std::min<decltype(stride)>(stride, 1 << 30));
  }
}

// The counters at the start: the CPU wait meter's baseline, and the first thrash checkpoint.
// The CPU starts at 0 (the cgroup is new; the tree is just the init).
Sample TaskWatch::start_sample(Clock::time_point start) {
  Sample sample{start, 0, false};
  if (reads_.cpu_wait) {
    wait_meter_.observe(start, container_->cpu_pressure_some_usec(),
                        read_schedstats(container_->threads()));
  }
  if (reads_.memory_full) sample.memory_full_usec = container_->memory_full_usec();
  return sample;
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

std::uint64_t TaskWatch::cpu_usage_usec() {
  if (sampled_cpu_usec_ && phase_ == Phase::running) return *sampled_cpu_usec_;
  return container_->cpu_usage_usec();
}

void TaskWatch::on_events() {
  refresh_populated();
  check_done();
}

void TaskWatch::on_sample(Clock::time_point now) {
  if (phase_ != Phase::running || done_) return;
  const bool read = ++skipped_ >= stride_;  // a quiet task is read every stride_ samples
  if (read) skipped_ = 0;
  auto cpu = reads_.cpu && read ? container_->cpu_usage_usec() : 0;
  if (reads_.cpu && read) sampled_cpu_usec_ = cpu;
  Sample sample{now, cpu, false};
  if (read) {
    if (reads_.progress) sample.progress = probe_.observe(container_->pids());
    if (reads_.cpu_wait) {
      sample.cpu_wait_usec = wait_meter_.observe(now, container_->cpu_pressure_some_usec(),
                                                 read_schedstats(container_->threads()));
    }
    if (reads_.memory_full) sample.memory_full_usec = container_->memory_full_usec();
  }
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
    if (ended_already()) return;
    verdict_ = *verdict;
    begin_termination(policy_.watchdog.kill_grace);
  }
}

void TaskWatch::on_deadline() {
  if (done_) return;
  if (phase_ == Phase::capturing) {
    // The budget ran out: the capture process is killed (the kernel detaches its tracees).
    end_capture(capture_->abandon());
  } else if (phase_ == Phase::terminating) {
    kill_now();
  } else if (phase_ == Phase::killed) {
    // cgroup.kill was written kKillWait ago and the cgroup is still populated: report the
    // survivors (usually uninterruptible sleep) instead of waiting forever.
    unkillable_ = container_->survivors();
    gave_up_ = true;
    check_done();
  }
}

void TaskWatch::on_capture_end() {
  if (phase_ == Phase::capturing) end_capture(capture_->finish());
}

void TaskWatch::cancel(int sig) {
  if (!cancel_signal_) {
    cancel_signal_ = sig;
    // A capture under way goes on (it is bounded by its budget), then the termination.
    if (phase_ == Phase::running) begin_termination(policy_.watchdog.kill_grace);
  } else if (phase_ == Phase::capturing) {
    grace_after_capture_ = Duration(0);  // a second signal: no more waiting
    end_capture(capture_->abandon());
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
  if (evidence_) {
    result.evidence = evidence_->path;
    result.stack_signature = evidence_->stack_signature;
    if (verdict_ && result.status == verdict_->status) {
      result.reason = with_evidence_note(result.reason, *evidence_);
    }
  }
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
  if (start_capture()) {
    grace_after_capture_ = grace;
    return;
  }
  terminate(grace);
}

// Starts the evidence capture for the verdict when the policy asks for it and there is a
// place for it; false when there is none to wait for (then the termination goes on at once).
bool TaskWatch::start_capture() {
  if (!verdict_ || evidence_dest_.dir.empty() || phase_ != Phase::running) return false;
  const auto& on = policy_.evidence.on;
  if (std::find(on.begin(), on.end(), to_string(verdict_->status)) == on.end()) return false;
  EvidenceRequest request;
  capture_target_ = container_->evidence_target(child_.pid());
  request.target = capture_target_;
  request.dir = evidence_dest_.dir;
  request.id = evidence_dest_.id;
  request.attempt = evidence_dest_.attempt;
  request.file_stem = evidence_dest_.file_stem;
  request.status = verdict_->status;
  request.reason = verdict_->reason;
  request.budget = policy_.evidence.budget;
  try {
    capture_ = EvidenceCapture::start(request);
  } catch (const Error& e) {
    evidence_ = EvidenceOutcome{std::nullopt, std::nullopt, e.what()};
    return false;
  }
  phase_ = Phase::capturing;
  clock_.watch_capture(capture_->fd());
  clock_.arm_deadline(
      std::max(std::chrono::ceil<Duration>(capture_->deadline() - std::chrono::steady_clock::now()),
               Duration(1)));
  return true;
}

// The capture is over (finished, or abandoned at its deadline): the task runs again (a
// frozen task can neither handle SIGTERM nor, while traced, be reaped) and is terminated.
void TaskWatch::end_capture(EvidenceOutcome outcome) {
  clock_.watch_capture(-1);
  capture_.reset();
  thaw_target(capture_target_);
  if (outcome.path) {
    diag::detail("evidence of " + evidence_dest_.id + " (attempt " +
                 std::to_string(evidence_dest_.attempt) + "): " + *outcome.path +
                 (outcome.stack_signature ? " (at " + *outcome.stack_signature + ")" : ""));
  }
  evidence_ = std::move(outcome);
  phase_ = Phase::running;
  terminate(grace_after_capture_);
  // The task may have ended meanwhile (killed from outside): no event would say so again.
  refresh_populated();
  check_done();
}

void TaskWatch::terminate(Duration grace) {
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
  if (phase_ == Phase::capturing || child_.running()) return;
  if (done_ || (populated_ && !gave_up_)) return;
  done_ = true;
  ended_at_ = clock_.now();
}

}  // namespace pollkill
