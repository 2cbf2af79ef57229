#include "pollkill/batch.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>

#include "pollkill/cgroup.h"
#include "pollkill/container.h"
#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/fdlimit.h"
#include "pollkill/gc.h"
#include "pollkill/guard.h"
#include "pollkill/mode.h"
#include "pollkill/report.h"
#include "pollkill/results.h"
#include "pollkill/retry.h"
#include "pollkill/sandbox.h"
#include "pollkill/spawn.h"
#include "pollkill/systemd.h"
#include "pollkill/task.h"
#include "pollkill/taskfile.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;

// epoll tags: global sources below kSlotBase, per-slot sources as kSlotBase + slot * 8 + kind.
enum : std::uint64_t { kSignal = 1, kSample, kSync, kBackoff, kProgress, kEvents, kSlotBase = 16 };
enum SlotKind : std::uint64_t { kPidfd = 0, kDeadline, kWall, kTree };

std::uint64_t slot_tag(std::size_t slot, SlotKind kind) {
  return kSlotBase + slot * 8 + kind;
}

void epoll_add(int epfd, int fd, std::uint64_t tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl ADD");
}

// A log file name part from a task id: ids may hold any character, file names may not.
std::string safe_name(const std::string& id) {
  std::string out;
  for (char c : id) {
    out +=
        (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  }
  if (out.empty() || out[0] == '.') out.insert(0, "t");
  return out;
}

UniqueFd open_log(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw_errno("create the log file '" + path + "'");
  return fd;
}

// One attempt of one task.
struct Attempt {
  TaskSpec task;
  int attempt = 1;
};

struct Running {
  Attempt what;
  Policy policy;
  std::string wall_source;  // where the wall time came from (adaptive limits)
  bool adaptive = false;
  Result result;
  fs::path cgroup_path;
  UniqueFd out, err;
  int events_wd = -1;  // the inotify watch on cgroup.events (removed with the directory)
  std::unique_ptr<TaskWatch> watch;
  Clock::time_point start;
  bool pidfd_watched = false;
  pid_t init_pid = -1;  // subreaper mode: the task's lingering init
};

class Batch {
 public:
  explicit Batch(const BatchRequest& request) : request_(request) {}
  int run();

 private:
  void start_ready();
  bool start_attempt(Attempt what);
  void finish(std::size_t slot);
  void record(Result& result, const Attempt& what);
  void on_signal();
  void on_inotify();
  void arm_backoff();
  void arm_sync();
  void draw_progress(bool force);
  std::size_t running_count() const;

  const BatchRequest& request_;
  NofileRaise nofile_;  ///< declared first: restored after every descriptor below is closed
  std::optional<TaskFile> file_;
  bool file_done_ = false;
  std::uint64_t total_ = 0;
  ResumeState resume_;
  std::optional<AppendFile> results_;
  std::optional<AppendFile> joblog_;
  std::string logs_dir_;
  RunCgroup run_;
  bool subreaper_ = false;  ///< subreaper mode: no cgroups, each task's tree under its init
  Guard guard_;
  std::vector<pid_t> own_children_;  ///< subreaper mode: never reaped as strays (the guard...)
  std::vector<std::string> available_;
  std::vector<std::string> v1_controllers_;  ///< limits through cgroup v1 (hybrid hosts)
  UniqueFd epfd_, sigfd_, sample_timer_, sync_timer_, backoff_timer_, progress_timer_;
  UniqueFd devnull_;
  // One inotify instance for all tasks: closing an inotify descriptor waits for an RCU grace
  // period (about 10 ms here), which per task was most of a short task's cost.
  UniqueFd inotify_;
  std::vector<std::unique_ptr<Running>> slots_;
  // Timers per slot, reused by the tasks that run in it (disarmed between them).
  std::vector<UniqueFd> deadline_timers_, wall_timers_;
  std::multimap<Clock::time_point, Attempt> retries_;
  bool sync_armed_ = false;
  std::optional<int> cancel_signal_;
  std::vector<std::string> env_;  ///< the tasks' environment: pollkill's, shaped by [sandbox]
  SandboxPlan sandbox_;           ///< the same for every task: the policy's [sandbox], [seccomp]
  SpawnMethod spawn_method_ = SpawnMethod::clone3;
  Summary summary_;
  WallTimeStats ok_walls_;
  std::uint64_t done_ = 0;
  bool progress_ = false;
  Clock::time_point started_ = Clock::now();
  Clock::time_point last_draw_{};
};

std::size_t Batch::running_count() const {
  std::size_t n = 0;
  for (const auto& s : slots_) n += s ? 1 : 0;
  return n;
}

int Batch::run() {
  const Policy& policy = request_.policy;
  file_ = TaskFile::open(request_.taskfile);
  TaskFile::Validation validation = file_->validate(policy);
  total_ = validation.tasks;
  // Before anything is created: a [sandbox] this process cannot set up fails the batch here.
  sandbox_ = prepare_sandbox(policy, current_environment());
  const int jobs = request_.jobs > 0 ? request_.jobs : default_jobs();
  // Each running task holds up to about 20 descriptors: raise the soft open-file limit now (or
  // refuse --jobs the hard limit cannot cover), and give the tasks the limit pollkill had, so a
  // program that uses select() does not meet descriptors above 1024. A task's own
  // sandbox.rlimits.nofile wins.
  nofile_ = NofileRaise::for_jobs(static_cast<std::uint64_t>(jobs));
  if (const auto& original = nofile_.original()) {
    bool set_by_policy = std::any_of(sandbox_.rlimits.begin(), sandbox_.rlimits.end(),
                                     [](const auto& r) { return r.first == RLIMIT_NOFILE; });
    if (!set_by_policy) sandbox_.rlimits.push_back({RLIMIT_NOFILE, *original});
  }

  if (request_.resume) {
    resume_ = read_results(request_.results);
    for (const auto& w : resume_.warnings) diag::warning(w);
    // Refuse before anything runs when the task file is not the one the results came from.
    while (auto task = file_->next(policy)) {
      auto it = resume_.tasks.find(task->id);
      if (it == resume_.tasks.end() || it->second.command.empty()) continue;
      std::string now = command_json(task->command);
      if (it->second.command != now) {
        throw Error(file_->name() + ":" + std::to_string(task->line) + ": task '" + task->id +
                        "' runs " + now + " but " + request_.results + " recorded " +
                        it->second.command + " for it",
                    "resume with the task file the results came from, or write the results to a "
                    "new file");
      }
    }
    file_->rewind();  // not reopened: standard input was spooled once
  }

  std::string logs = request_.logs;
  if (logs.empty()) {
    std::string base = request_.results;
    if (base.size() > 6 && base.ends_with(".jsonl")) base.resize(base.size() - 6);
    logs = base + ".logs";
  }
  std::error_code ec;
  fs::create_directories(logs, ec);
  if (ec) throw Error("create the log directory '" + logs + "': " + ec.message());
  // Records name log files by absolute path, so `report` and people find them from anywhere.
  logs_dir_ = fs::absolute(logs).lexically_normal().string();
  if (!logs_dir_.empty() && logs_dir_.back() == '/') logs_dir_.pop_back();

  HostCgroups host;
  std::vector<std::string> wanted = controllers_for(validation.plan);
  // A scope asked for with "always" must be had: its failure is an error, not a reason to fall
  // back to subreaper mode as a failed "auto" request is (decide_mode says why on stderr).
  const bool scope_required = policy.runner.systemd_scope == SystemdScopeMode::always &&
                              policy.runner.mode != RunMode::subreaper;
  if (scope_required) {
    host = probe_host_cgroups();
    enter_delegated_scope(host, request_.cgroup_root, policy, ::getenv("POLLKILL_CGROUP_ROOT"));
  }
  ModeDecision decision = decide_mode(policy.runner.mode, [&] {
    if (!scope_required) {
      host = probe_host_cgroups();
      enter_delegated_scope(host, request_.cgroup_root, policy, ::getenv("POLLKILL_CGROUP_ROOT"));
    }
    return resolve_run_root(host, request_.cgroup_root, policy, ::getenv("POLLKILL_CGROUP_ROOT"),
                            !wanted.empty());
  });
  subreaper_ = decision.mode == RunMode::subreaper;
  std::vector<std::pair<std::string, std::filesystem::path>> v1_bases;
  if (subreaper_) {
    if (policy.runner.mode == RunMode::automatic && request_.verbosity > 0) {
      diag::notice("no usable cgroup (" + decision.why + "): running in subreaper mode");
    }
    check_subreaper_sandbox(sandbox_);
    std::vector<std::string> keys;
    for (const auto& w : validation.plan) {
      if (!w.implied && std::find(keys.begin(), keys.end(), w.key) == keys.end())
        keys.push_back(w.key);
    }
    check_subreaper_limits(keys, policy.runner.missing_controllers, &decision);
  } else {
    EnforceablePlan enforceable =
        check_controllers(host, *decision.root, validation.plan, policy.runner);
    available_ = controllers_for(enforceable.enforceable);
    v1_controllers_ = enforceable.v1_controllers;
    v1_bases = enforceable.v1_bases;
  }

  results_ = AppendFile::open(request_.results);
  if (!request_.resume && results_->initial_size() > 0 && request_.verbosity > 0) {
    diag::warning("appending to the existing results in '" + request_.results +
                  "'; --resume would skip the tasks already done");
  }
  if (!request_.joblog.empty()) {
    joblog_ = AppendFile::open(request_.joblog);
    if (joblog_->initial_size() == 0) joblog_->append(joblog_header());
  }

  // Run cgroups of pollkills that died without cleaning up (a machine crash, an old version).
  if (!subreaper_) {
    std::vector<GcRemoved> gc_removed = gc_run_cgroups(decision.root->path);
    for (const auto& [controller, base] : v1_bases) {
      for (auto& removed : gc_v1_run_cgroups(base)) gc_removed.push_back(std::move(removed));
    }
    for (const auto& removed : gc_removed) {
      if (request_.verbosity > 1)
        diag::detail("gc: removed '" + removed.path.string() + "' (pollkill " +
                     std::to_string(removed.owner) + " is gone)");
    }
  }

  BlockedSignals blocked;
  std::optional<SubreaperScope> subreaper_scope;
  if (subreaper_) {
    // Orphans whose task's init was killed from outside come to pollkill, not to PID 1.
    own_children_ = children_of_self();
    subreaper_scope.emplace();
    guard_ = Guard::start(nullptr);
    own_children_.push_back(guard_.pid());
  } else {
    run_ = RunCgroup::prepare(*decision.root, *host.mounts.cgroup2, available_, v1_bases);
    guard_ = Guard::start(run_);
    run_.realize(guard_.pid());
  }

  epfd_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epfd_) throw_errno("epoll_create1");
  sigfd_.reset(::signalfd(-1, &blocked.set(), SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd_) throw_errno("signalfd");
  sample_timer_ = make_timerfd();
  sync_timer_ = make_timerfd();
  backoff_timer_ = make_timerfd();
  devnull_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull_) throw_errno("open /dev/null");
  epoll_add(epfd_.get(), sigfd_.get(), kSignal);
  epoll_add(epfd_.get(), sample_timer_.get(), kSample);
  epoll_add(epfd_.get(), sync_timer_.get(), kSync);
  epoll_add(epfd_.get(), backoff_timer_.get(), kBackoff);
  arm_timer(sample_timer_.get(), policy.watchdog.poll_interval, policy.watchdog.poll_interval);
  progress_ = request_.progress.value_or(::isatty(STDERR_FILENO) == 1) && request_.verbosity > 0;
  if (progress_) {
    progress_timer_ = make_timerfd();
    epoll_add(epfd_.get(), progress_timer_.get(), kProgress);
    arm_timer(progress_timer_.get(), Duration(250), Duration(250));
  }
  env_ = sandbox_.env;
  spawn_method_ = default_spawn_method();
  slots_.resize(static_cast<std::size_t>(jobs));
  inotify_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify_) throw_errno("inotify_init1");
  epoll_add(epfd_.get(), inotify_.get(), kEvents);
  for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
    deadline_timers_.push_back(make_timerfd());
    wall_timers_.push_back(make_timerfd());
    epoll_add(epfd_.get(), deadline_timers_.back().get(), slot_tag(slot, kDeadline));
    epoll_add(epfd_.get(), wall_timers_.back().get(), slot_tag(slot, kWall));
  }

  start_ready();
  for (;;) {
    bool idle = running_count() == 0;
    if (idle && (cancel_signal_ || (file_done_ && retries_.empty()))) break;
    epoll_event events[16];
    int n = ::epoll_wait(epfd_.get(), events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("epoll_wait");
    }
    // Signals first: a terminal's Ctrl-C reaches the tasks too, and a task that died of it
    // must be recorded as cancelled, not as crashed.
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kSignal) on_signal();
    }
    for (int i = 0; i < n; ++i) {
      std::uint64_t tag = events[i].data.u64;
      if (tag == kSignal) {
        continue;
      } else if (tag == kSample) {
        drain_fd(sample_timer_.get());
        auto now = Clock::now();
        for (auto& slot : slots_) {
          if (!slot || !slot->watch) continue;
          slot->watch->on_sample(now);
          if (slot->policy.limits.output) {
            struct stat a {
            }, b{};
            ::fstat(slot->out.get(), &a);
            ::fstat(slot->err.get(), &b);
            slot->watch->on_output(static_cast<std::uint64_t>(a.st_size + b.st_size));
          }
        }
      } else if (tag == kSync) {
        drain_fd(sync_timer_.get());
        sync_armed_ = false;
        results_->sync();
        if (joblog_) joblog_->sync();
      } else if (tag == kEvents) {
        on_inotify();
      } else if (tag == kBackoff) {
        drain_fd(backoff_timer_.get());
      } else if (tag == kProgress) {
        drain_fd(progress_timer_.get());
        draw_progress(false);
      } else {
        std::size_t slot = (tag - kSlotBase) / 8;
        auto kind = static_cast<SlotKind>((tag - kSlotBase) % 8);
        Running* r = slot < slots_.size() ? slots_[slot].get() : nullptr;
        if (!r || !r->watch) {
          drain_fd(kind == kDeadline ? deadline_timers_[slot].get() : wall_timers_[slot].get());
          continue;
        }
        switch (kind) {
          case kPidfd:
            if (r->pidfd_watched) {
              ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, r->watch->pidfd(), nullptr);
              r->pidfd_watched = false;
            }
            r->watch->on_main_exit();
            break;
          case kDeadline:
            drain_fd(deadline_timers_[slot].get());
            r->watch->on_deadline();
            break;
          case kWall:
            drain_fd(wall_timers_[slot].get());
            r->watch->on_sample(Clock::now());
            break;
          case kTree:  // the task's lingering init exited: its tree is empty
            r->watch->on_events();
            break;
        }
      }
    }
    for (std::size_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s] && slots_[s]->watch && slots_[s]->watch->finished()) finish(s);
    }
    start_ready();
  }

  if (progress_) {
    draw_progress(true);
    diag::text("\n");
  }
  results_->sync();
  if (joblog_) joblog_->sync();
  if (subreaper_) {
    reap_stray_children(own_children_);
  } else {
    run_.destroy();
  }
  guard_.stop();
  if (!subreaper_) run_.leave_leaf();
  if (request_.verbosity > 0) diag::text(summary_.format_text());
  if (cancel_signal_) return 128 + *cancel_signal_;
  return summary_.exit_code();
}

void Batch::on_signal() {
  signalfd_siginfo info;
  while (::read(sigfd_.get(), &info, sizeof info) == sizeof info) {
    int sig = static_cast<int>(info.ssi_signo);
    if (!cancel_signal_) {
      cancel_signal_ = sig;
      if (request_.verbosity > 0) {
        diag::text("\n");
        diag::notice(std::string(sig == SIGINT ? "interrupted" : "terminated") +
                     ": stopping; running tasks are being reaped");
      }
    }
    // The first signal asks each task to stop (SIGTERM, then the kill after kill_grace); a
    // second one kills at once.
    for (auto& slot : slots_) {
      if (slot && slot->watch) slot->watch->cancel(sig);
    }
  }
}

void Batch::on_inotify() {
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buffer, sizeof buffer);
    if (n <= 0) return;
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      // cgroup.events is the only way a task's end is seen (samples do not poll it), so a lost
      // notification must not be: after a queue overflow, every task is read again.
      bool overflow = (event->mask & IN_Q_OVERFLOW) != 0;
      for (auto& slot : slots_) {
        if (slot && slot->watch && (overflow || slot->events_wd == event->wd)) {
          slot->watch->on_events();
        }
      }
    }
  }
}

void Batch::start_ready() {
  if (cancel_signal_) return;
  for (std::size_t free = slots_.size() - running_count(); free > 0;) {
    auto now = Clock::now();
    std::optional<Attempt> next;
    if (!retries_.empty() && retries_.begin()->first <= now) {
      next = std::move(retries_.begin()->second);
      retries_.erase(retries_.begin());
    } else if (!file_done_) {
      auto task = file_->next(request_.policy);
      if (!task) {
        file_done_ = true;
        continue;
      }
      Attempt a{std::move(*task), 1};
      if (request_.resume) {
        auto it = resume_.tasks.find(a.task.id);
        if (it != resume_.tasks.end()) {
          if (it->second.final) {
            summary_.add_skipped(it->second.final_status);
            ++done_;
            resume_.tasks.erase(it);  // memory shrinks as the batch goes
            continue;
          }
          a.attempt = it->second.attempts + 1;
          resume_.tasks.erase(it);
        }
      }
      next = std::move(a);
    } else {
      break;
    }
    if (start_attempt(std::move(*next))) --free;
  }
  arm_backoff();
}

void Batch::arm_backoff() {
  if (retries_.empty()) {
    arm_timer(backoff_timer_.get(), Duration(0), Duration(0));
    return;
  }
  auto wait = std::chrono::duration_cast<Duration>(retries_.begin()->first - Clock::now());
  arm_timer(backoff_timer_.get(), std::max(wait, Duration(1)), Duration(0));
}

void Batch::arm_sync() {
  if (sync_armed_) return;
  sync_armed_ = true;
  arm_timer(sync_timer_.get(), std::max(request_.sync_interval, Duration(1)), Duration(0));
}

// Starts one attempt in a free slot. Returns false when it ended at once (it could not be
// executed) and its record is already written.
bool Batch::start_attempt(Attempt what) {
  std::size_t slot = 0;
  while (slots_[slot]) ++slot;
  auto r = std::make_unique<Running>();
  r->what = std::move(what);
  const TaskSpec& task = r->what.task;
  Result& result = r->result;
  result.id = task.id;
  result.attempt = r->what.attempt;
  result.command = task.command;
  result.started_at = std::chrono::system_clock::now();
  result.mode = subreaper_ ? "subreaper" : "cgroup";
  try {
    r->policy = task_policy(task, request_.policy);
  } catch (const Error& e) {
    result.status = Status::error;
    result.reason = e.what();
    record(result, r->what);
    return false;
  }
  if (r->policy.retry.attempts < 1) r->policy.retry.attempts = 1;
  WallTimeLimit wall = effective_wall_time(r->policy.limits, ok_walls_);
  r->adaptive = r->policy.limits.wall_time_percent.has_value();
  r->policy.limits.wall_time = wall.limit;
  r->wall_source = wall.source;

  std::string base = logs_dir_ + "/" + safe_name(task.id) + "." + std::to_string(result.attempt);
  result.stdout_path = base + ".out";
  result.stderr_path = base + ".err";
  std::string name = "task-" + std::to_string(task.seq) + "-" + std::to_string(result.attempt);
  LimitSplit limits;
  if (subreaper_) {
    result.limits_not_enforced = cgroup_only_limits(r->policy.limits);
  } else {
    result.cgroup = run_.relative_path() + "/" + name;
    limits = split_limits(r->policy.limits, available_, v1_controllers_);
    result.limits_not_enforced = limits.not_enforced;
    result.limits_cgroup_v1 = limits.v1_keys;
  }

  CgroupDir dir;
  V1TaskCgroups v1;  // removed when this attempt is given up, else owned by its watch
  std::vector<UniqueFd> v1_join;
  try {
    r->out = open_log(*result.stdout_path);
    r->err = open_log(*result.stderr_path);
    if (!subreaper_) {
      dir = run_.create_child(name);
      r->cgroup_path = dir.path();
      apply_limits(dir, limits.v2, result.limits_not_enforced, MissingControllers::warn);
      v1 = V1TaskCgroups::create(run_, name);
      v1.apply(limits.v1, result.limits_not_enforced, MissingControllers::warn);
      std::erase_if(result.limits_cgroup_v1, [&](const std::string& key) {
        return std::find(result.limits_not_enforced.begin(), result.limits_not_enforced.end(),
                         key) != result.limits_not_enforced.end();  // swap without accounting
      });
      v1_join = v1.open_join_fds();
    }
  } catch (const Error& e) {
    result.status = Status::error;
    result.reason = e.what();
    if (!r->cgroup_path.empty()) remove_cgroup(r->cgroup_path);
    record(result, r->what);
    return false;
  }
  // A task that cannot be started (no memory for the watch, clone3 failing under pressure) is
  // recorded as `error`; the batch goes on.
  auto give_up = [&](const Error& e) {
    result.status = Status::error;
    result.reason = e.what();
    try {
      if (!r->cgroup_path.empty()) remove_cgroup(r->cgroup_path);
    } catch (const Error& again) {
      diag::warning(again.what());
    }
    record(result, r->what);
    return false;
  };
  if (!subreaper_) {
    r->events_wd =
        ::inotify_add_watch(inotify_.get(), (dir.path() / "cgroup.events").c_str(), IN_MODIFY);
    if (r->events_wd < 0) {
      return give_up(SystemError(errno, "watch '" + (dir.path() / "cgroup.events").string() + "'"));
    }
  }

  std::vector<std::string> env = env_;
  for (const auto& e : task.env) {
    auto eq = e.find('=');
    std::erase_if(env,
                  [&](const std::string& x) { return x.compare(0, eq + 1, e, 0, eq + 1) == 0; });
    env.push_back(e);
  }
  SpawnRequest spawn_request{task.command, std::move(env), subreaper_ ? -1 : dir.fd(),
                             spawn_method_};
  spawn_request.subreaper_init = subreaper_;
  spawn_request.stdio[0] = devnull_.get();
  spawn_request.stdio[1] = r->out.get();
  spawn_request.stdio[2] = r->err.get();
  spawn_request.cwd = task.cwd;
  spawn_request.sandbox = &sandbox_;
  for (const auto& fd : v1_join) spawn_request.join_v1_fds.push_back(fd.get());
  r->start = Clock::now();
  Spawned spawned;
  try {
    spawned = spawn(spawn_request);
  } catch (const Error& e) {
    return give_up(e);
  }
  if (spawned.failure) {
    spawned.child.reap();
    Outcome base_outcome;
    base_outcome.exec_errno = spawned.failure->error;
    base_outcome.exec_step = spawned.failure->step;
    auto cls = classify(base_outcome, result.command);
    result.status = cls.status;
    result.reason = cls.reason;
    result.exit_code =
        spawned.failure->error == ENOENT ? exit_code::kNotFound : exit_code::kNotExecutable;
    result.wall_s = std::chrono::duration<double>(Clock::now() - r->start).count();
    try {
      if (!r->cgroup_path.empty()) remove_cgroup(r->cgroup_path);
    } catch (const Error& e) {
      diag::warning(e.what());
    }
    record(result, r->what);
    return false;
  }
  if (subreaper_) {
    r->init_pid = spawned.child.pid();
    try {
      if (auto st = ProcDir().stat(r->init_pid)) guard_.watch_tree(r->init_pid, st->starttime);
      r->watch = std::make_unique<TaskWatch>(r->policy, std::move(spawned.child), r->start);
    } catch (const Error& e) {
      return give_up(e);  // the Child's destructor kills the init, and its task with it
    }
    epoll_add(epfd_.get(), r->watch->tree_fd(), slot_tag(slot, kTree));
  } else {
    r->watch = std::make_unique<TaskWatch>(r->policy, std::move(dir), std::move(spawned.child),
                                           r->start, 0);
    r->watch->set_v1(std::move(v1));
  }
  r->watch->set_deadline_fd(deadline_timers_[slot].get());
  epoll_add(epfd_.get(), r->watch->pidfd(), slot_tag(slot, kPidfd));
  r->pidfd_watched = true;
  if (r->policy.limits.wall_time) {
    arm_timer(wall_timers_[slot].get(), *r->policy.limits.wall_time, Duration(0));
  }
  if (cancel_signal_) r->watch->cancel(*cancel_signal_);
  r->watch->on_events();
  slots_[slot] = std::move(r);
  return true;
}

void Batch::finish(std::size_t slot) {
  std::unique_ptr<Running> r = std::move(slots_[slot]);
  r->watch->fill(r->result, Outcome{}, r->start);
  if (r->adaptive && r->result.status == Status::timeout) {
    r->result.reason += " (" + r->wall_source + ")";
  }
  // The slot's timers must not fire for the next task that runs in it.
  arm_timer(deadline_timers_[slot].get(), Duration(0), Duration(0));
  arm_timer(wall_timers_[slot].get(), Duration(0), Duration(0));
  drain_fd(deadline_timers_[slot].get());
  drain_fd(wall_timers_[slot].get());
  const fs::path path = r->cgroup_path;
  // Closing the descriptors takes them out of the epoll set; the cgroup directory goes last.
  r->watch.reset();
  if (subreaper_) guard_.forget_tree(r->init_pid);
  try {
    if (!path.empty()) remove_cgroup(path);
  } catch (const Error& e) {
    diag::warning(e.what());
  }
  record(r->result, r->what);
}

// Appends the attempt's record and decides what comes next for the task.
void Batch::record(Result& result, const Attempt& what) {
  Policy policy_for_retry = request_.policy;
  try {
    policy_for_retry = task_policy(what.task, request_.policy);
  } catch (const Error&) {
  }
  bool retry = !cancel_signal_ && should_retry(policy_for_retry.retry, result.status, what.attempt);
  if (result.status == Status::cancelled && !result.cancel_signal)
    result.cancel_signal = cancel_signal_;
  result.final = !retry;
  results_->append(dump_result_line(result));
  arm_sync();
  if (result.final && joblog_)
    joblog_->append(format_joblog_line(joblog_entry(result, what.task.seq)));
  summary_.add(SummaryRecord::from(result));
  if (request_.verbosity > 1) {
    diag::notice(result.id + " (attempt " + std::to_string(result.attempt) +
                 "): " + std::string(to_string(result.status)) + ": " + result.reason);
  }
  if (result.status == Status::ok) ok_walls_.add(result.wall_s);
  if (retry) {
    Attempt next{what.task, what.attempt + 1};
    auto at = Clock::now() + retry_backoff(policy_for_retry.retry, what.attempt);
    retries_.emplace(at, std::move(next));
  } else {
    ++done_;
  }
}

void Batch::draw_progress(bool force) {
  auto now = Clock::now();
  if (!force && now - last_draw_ < Duration(250)) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - started_).count();
  std::string line = "\r" + std::to_string(done_) + "/" + std::to_string(total_) + " done, " +
                     std::to_string(running_count()) + " running";
  for (Status s : {Status::ok, Status::failed, Status::crashed, Status::timeout, Status::hung,
                   Status::spinning, Status::oom, Status::exec_error, Status::output_limit,
                   Status::cancelled}) {
    if (auto c = summary_.count(s))
      line += ", " + std::to_string(c) + " " + std::string(to_string(s));
  }
  char tail[96];
  double eta = done_ > 0 ? elapsed / static_cast<double>(done_) *
                               static_cast<double>(total_ - std::min(done_, total_))
                         : 0;
  std::snprintf(tail, sizeof tail, ", %.0fs elapsed, ETA %.0fs\x1b[K", elapsed, eta);
  line += tail;
  diag::text(line);
}

}  // namespace

int jobs_for(int affinity_cpus, std::string_view cpu_max) {
  int cpus = std::max(1, affinity_cpus);
  char quota[32] = {};
  unsigned long long period = 0;
  std::string text(cpu_max);
  if (std::sscanf(text.c_str(), "%31s %llu", quota, &period) == 2 &&
      std::string_view(quota) != "max" && period > 0) {
    double q = std::strtod(quota, nullptr) / static_cast<double>(period);
    if (q > 0) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(q))));
  }
  return cpus;
}

int default_jobs() {
  int cpus = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  std::string cpu_max;
  try {
    CgroupMounts mounts = probe_cgroup_mounts();
    std::string own = probe_own_cgroup();
    if (mounts.cgroup2 && !own.empty()) {
      if (auto text = CgroupDir::open(*mounts.cgroup2 / own.substr(1)).try_read("cpu.max"))
        cpu_max = *text;
    }
  } catch (const std::exception&) {
    // No cgroup to read: the affinity mask alone decides.
  }
  return jobs_for(cpus, cpu_max);
}

int run_batch(const BatchRequest& request) {
  Batch batch(request);
  return batch.run();
}

}  // namespace pollkill
