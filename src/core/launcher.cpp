#include "pollkill/launcher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "pollkill/cgroup.h"
#include "pollkill/container.h"
#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/limits.h"
#include "pollkill/mode.h"
#include "pollkill/proctree.h"
#include "pollkill/results.h"
#include "pollkill/spawn.h"

namespace pollkill {
namespace {

// After the task's end, how many pumps of a stream may still find output in its pipe: every
// writer is gone, so it empties, unless one escaped the kill (given up on as unkillable).
constexpr int kPumpsAfterTheEnd = 64;

}  // namespace

Slot::Slot(EventLoop& loop) : loop_(loop) {
  deadline_id_ = loop_.add_deadline([this] {
    if (current_) current_->on_deadline();
  });
  wall_id_ = loop_.add_deadline([this] {
    if (current_) current_->on_sample(Clock::now());
  });
}

Slot::~Slot() {
  current_.reset();
  loop_.remove(deadline_id_);
  loop_.remove(wall_id_);
}

void Slot::watch_capture(int fd) {
  if (capture_id_) loop_.remove(*capture_id_);
  capture_id_.reset();
  if (fd >= 0) {
    capture_id_ = loop_.add(fd, [this] {
      if (current_) current_->on_capture_end();
    });
  }
}

void Slot::disarm() {
  loop_.disarm_deadline(deadline_id_);
  loop_.disarm_deadline(wall_id_);
}

RunningAttempt::RunningAttempt(Session& session, EventLoop& loop, Slot& slot, AttemptSpec spec)
    : session_(session), loop_(loop), slot_(slot), spec_(std::move(spec)) {
  result_.id = spec_.id;
  result_.attempt = spec_.attempt;
  result_.command = spec_.command;
  result_.started_at = std::chrono::system_clock::now();
  result_.mode = session_.mode_name();
  if (!spec_.stdout_path.empty()) {
    result_.stdout_path = spec_.stdout_path;
    result_.stderr_path = spec_.stderr_path;
  }
}

RunningAttempt::~RunningAttempt() {
  unregister();
}

void RunningAttempt::unregister() noexcept {
  // Registrations go before the descriptors they name are closed.
  for (EventLoop::Id id : registrations_) loop_.remove(id);
  registrations_.clear();
  for (EventLoop::Id& id : relay_ids_) {
    if (id) loop_.remove(id);
    id = 0;
  }
  if (pidfd_id_) loop_.remove(*pidfd_id_);
  pidfd_id_.reset();
  slot_.watch_capture(-1);  // a capture still running ends with the watch
}

void RunningAttempt::start() {
  const Policy& policy = spec_.policy;
  LimitSplit limits;
  if (session_.subreaper()) {
    result_.limits_not_enforced = cgroup_only_limits(policy.limits);
  } else {
    result_.cgroup = session_.run_cgroup().relative_path() + "/" + spec_.cgroup_name;
    limits = session_.split(policy.limits);
    result_.limits_not_enforced = limits.not_enforced;
    result_.limits_cgroup_v1 = limits.v1_keys;
  }
  for (const std::string& key : session_.watch_not_enforced()) {
    // Only thrash_after can be left out (missing_controllers = "warn"): its rule is off.
    if (key == "thrash_after") spec_.policy.watchdog.thrash_after.reset();
    result_.limits_not_enforced.push_back(key);
  }
  if (!spec_.stdout_path.empty()) {
    stdout_ = open_log_file(spec_.stdout_path);
    stderr_ = open_log_file(spec_.stderr_path);
  }
  if (policy.limits.output) {
    // With an output limit the task writes into pipes that pollkill copies and counts, so
    // that no more than the limit reaches a log or a reader; otherwise the task writes to its
    // logs, or pollkill's own stdout and stderr, itself.
    relay_.emplace(stdout_ ? stdout_.get() : STDOUT_FILENO, stderr_ ? stderr_.get() : STDERR_FILENO,
                   policy.limits.output);
  }
  if (session_.subreaper()) return;
  task_dir_ = session_.run_cgroup().create_child(spec_.cgroup_name);
  cgroup_path_ = task_dir_->path();
  v1_ = V1TaskCgroups::create(session_.run_cgroup(), spec_.cgroup_name);
  apply_limits(*task_dir_, v1_, limits, policy.runner.missing_controllers,
               result_.limits_not_enforced, result_.limits_cgroup_v1);
}

void RunningAttempt::spawn_task() {
  const Policy& policy = spec_.policy;
  const bool subreaper = session_.subreaper();
  std::vector<UniqueFd> v1_join = v1_.open_join_fds();
  SpawnRequest request{spec_.command, spec_.env, task_dir_ ? task_dir_->fd() : -1,
                       default_spawn_method()};
  request.subreaper_init = subreaper;
  if (subreaper) {
    // The guard knows of the task's init before the init may start the task: a SIGKILL of
    // pollkill at any moment leaves no tree the guard cannot find.
    request.before_start = [this](pid_t init) {
      auto st = ProcDir().stat(init);
      if (!st) throw Error("read the start time of process " + std::to_string(init));
      session_.guard().watch_tree(init, st->starttime);
      init_pid_ = init;
    };
  }
  request.sandbox = spec_.sandbox;
  request.cwd = spec_.cwd;
  for (const auto& fd : v1_join) request.join_v1_fds.push_back(fd.get());
  // The task's stdin, open only while it is spawned: the task has its own copy, and a batch
  // of thousands of tasks holds no descriptor for it.
  UniqueFd null_input;
  if (stdout_) {
    null_input.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_input) throw_errno("open /dev/null");
    request.stdio[0] = null_input.get();
    request.stdio[1] = stdout_.get();
    request.stdio[2] = stderr_.get();
  }
  if (relay_) {
    request.stdio[1] = relay_->child_end(0);
    request.stdio[2] = relay_->child_end(1);
  }
  start_ = Clock::now();
  Spawned spawned = spawn(request);
  if (relay_) relay_->close_child_ends();
  if (!relay_) {
    // The task writes to its own copies of the logs (spawn returns once it has exec'd or
    // failed); nothing here reads or writes them again, so they are not held while it runs.
    stdout_.reset();
    stderr_.reset();
  }
  if (spawned.failure) {
    spawned.child.reap();
    Outcome base;
    base.exec_errno = spawned.failure->error;
    base.exec_step = spawned.failure->step;
    auto cls = classify(base, result_.command);
    result_.status = cls.status;
    result_.reason = cls.reason;
    result_.exit_code =
        spawned.failure->error == ENOENT ? exit_code::kNotFound : exit_code::kNotExecutable;
    result_.wall_s = std::chrono::duration<double>(Clock::now() - start_).count();
    remove_cgroup();
    return;
  }
  ContainerFactory container;
  if (subreaper) {
    container = [](Child& init) { return std::make_unique<ProcTreeContainer>(init); };
  } else {
    container = [this](Child&) {
      return std::make_unique<CgroupContainer>(std::move(*task_dir_), std::move(v1_));
    };
  }
  EvidenceDestination evidence;
  if (!spec_.evidence_dir.empty()) {
    evidence = {spec_.evidence_dir, spec_.id, spec_.attempt, spec_.evidence_stem};
  }
  watch_ = std::make_unique<TaskWatch>(policy, std::move(spawned.child), container, slot_, start_,
                                       std::move(evidence));
  pidfd_id_ = loop_.add(watch_->pidfd(), [this] {
    // Level-triggered and readable for good once the process exited: watched once.
    loop_.remove(*pidfd_id_);
    pidfd_id_.reset();
    watch_->on_main_exit();
  });
  if (int fd = watch_->container().populated_notify_fd(); fd >= 0) {
    // cgroup.events is the only way the task's end is seen: samples never poll it. on_events
    // reads it through this descriptor (populated()), which re-arms the notification.
    registrations_.push_back(loop_.add_kernfs_notify(fd, [this] { watch_->on_events(); }));
  }
  if (watch_->tree_fd() >= 0) {
    // The task's lingering init exited: its tree is empty (reaped in on_events).
    registrations_.push_back(loop_.add(watch_->tree_fd(), [this] { watch_->on_events(); }));
  }
  if (relay_) {
    for (int stream : {0, 1}) relay_wait(stream);
  }
  if (policy.limits.wall_time) {
    // The wall time is exact, not rounded up to the next sample.
    slot_.arm_wall(std::max(
        *policy.limits.wall_time - std::chrono::duration_cast<Duration>(Clock::now() - start_),
        Duration(1)));
  }
  watch_->on_events();  // the task may already be gone
}

void RunningAttempt::relay_wait(int stream) {
  using State = OutputRelay::State;
  if (relay_ids_[stream]) loop_.remove(relay_ids_[stream]);  // a closed read end included
  relay_ids_[stream] = 0;
  const State state = relay_->state(stream);
  if (state == State::closed) return;
  auto step = [this, stream] {
    const State was = relay_->state(stream);
    const State now = was == State::open ? relay_->pump(stream) : relay_->flush(stream);
    if (watch_) watch_->on_output(relay_->total());
    if (now != was) relay_wait(stream);
  };
  // Never both: a stream whose destination took no more is not read (the task's writes wait
  // in its pipe) until the destination is writable again.
  relay_ids_[stream] = state == State::open ? loop_.add(relay_->read_end(stream), step)
                                            : loop_.add_writable(relay_->dest_fd(stream), step);
}

bool RunningAttempt::finished() {
  using State = OutputRelay::State;
  if (watch_ && !watch_->finished()) return false;
  if (!watch_ || !relay_) return true;
  // The task is over: what is left in its pipes is still delivered, unless pollkill was
  // asked to stop.
  bool waiting = false;
  for (int stream : {0, 1}) {
    const State was = relay_->state(stream);
    State now = was;
    // Each pump reads afresh: output written after the last one is not lost.
    for (int i = 0; i < kPumpsAfterTheEnd && now == State::open; ++i) {
      now = relay_->pump(stream);
      if (relay_->drained(stream)) break;
    }
    if (now != was) relay_wait(stream);
    waiting = waiting || now == State::blocked;
  }
  if (waiting && !cancelled_) return false;
  if (std::uint64_t dropped = relay_->abandon()) {
    diag::notice("dropped " + std::to_string(dropped) +
                 " bytes of the task's output that the reader did not take before pollkill "
                 "was asked to stop");
  }
  for (int stream : {0, 1}) relay_wait(stream);  // both closed: unregistered
  return true;
}

void RunningAttempt::give_up(const Error& error) {
  unregister();
  watch_.reset();  // kills what was spawned (in subreaper mode the init, and its task with it)
  if (init_pid_ > 0) session_.guard().forget_tree(init_pid_);
  init_pid_ = -1;
  result_.status = Status::error;
  result_.reason = error.what();
  remove_cgroup();
}

void RunningAttempt::remove_cgroup() noexcept {
  task_dir_.reset();
  v1_.remove();
  if (cgroup_path_.empty()) return;
  try {
    pollkill::remove_cgroup(cgroup_path_);
  } catch (const std::exception& e) {
    diag::warning(e.what());
  }
  cgroup_path_.clear();
}

void RunningAttempt::on_sample(Clock::time_point now) {
  if (!watch_) return;
  watch_->on_sample(now);
}

void RunningAttempt::on_deadline() {
  if (watch_) watch_->on_deadline();
}

void RunningAttempt::on_capture_end() {
  if (watch_) watch_->on_capture_end();
}

LiveTask RunningAttempt::live(Clock::time_point now, bool figures) {
  LiveTask task;
  task.id = spec_.id;
  task.attempt = spec_.attempt;
  task.elapsed_s = std::chrono::duration<double>(now - start_).count();
  if (!watch_) return task;
  if (watch_->finished()) {
    task.state = LiveState::ending;  // its output is still being delivered
  } else {
    switch (watch_->phase()) {
      case TaskWatch::Phase::running: task.state = LiveState::running; break;
      case TaskWatch::Phase::capturing: task.state = LiveState::capturing; break;
      case TaskWatch::Phase::terminating: task.state = LiveState::grace; break;
      case TaskWatch::Phase::killed: task.state = LiveState::killing; break;
    }
  }
  if (!figures || watch_->finished()) return task;
  try {
    task.cpu_s = static_cast<double>(watch_->cpu_usage_usec()) / 1e6;
    task.memory_bytes = watch_->container().memory_current();
  } catch (const Error&) {
    // A cgroup going away while it is read: the row shows what it has.
  }
  return task;
}

void RunningAttempt::cancel(int sig) {
  cancelled_ = true;
  if (watch_) watch_->cancel(sig);
}

Result RunningAttempt::finish() {
  slot_.disarm();  // neither deadline may fire for the next attempt in this slot
  if (watch_) watch_->fill(result_, Outcome{}, start_);
  if (relay_) relay_->abandon();  // nothing is left unless the task never started
  unregister();
  watch_.reset();  // the task's v1 cgroups go with its container
  if (init_pid_ > 0) session_.guard().forget_tree(init_pid_);
  init_pid_ = -1;
  remove_cgroup();  // the directory goes last
  return std::move(result_);
}

std::unique_ptr<RunningAttempt> launch(Session& session, EventLoop& loop, Slot& slot,
                                       AttemptSpec spec, bool setup_errors_fatal) {
  auto attempt = std::make_unique<RunningAttempt>(session, loop, slot, std::move(spec));
  try {
    attempt->start();
    attempt->spawn_task();
  } catch (const Error& e) {
    // A task that cannot be started (a cgroup or log that cannot be made, no memory for the
    // watch, clone3 failing under pressure) is recorded as `error`; a batch goes on.
    if (setup_errors_fatal) throw;
    attempt->give_up(e);
  }
  return attempt;
}

}  // namespace pollkill
