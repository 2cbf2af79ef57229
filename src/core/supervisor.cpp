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
#include "pollkill/container.h"
#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/guard.h"
#include "pollkill/mode.h"
#include "pollkill/output.h"
#include "pollkill/progress.h"
#include "pollkill/sandbox.h"
#include "pollkill/spawn.h"
#include "pollkill/systemd.h"
#include "pollkill/task.h"
#include "pollkill/watchdog.h"

extern char** environ;

namespace pollkill {
namespace {

void epoll_add(int epfd, int fd, std::uint64_t tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl ADD");
}

enum Tag : std::uint64_t {
  kSignal = 1,
  kPidfd,
  kEvents,
  kSampleTimer,
  kDeadlineTimer,
  kWallTimer,
  kStdout,
  kStderr,
  kTree
};

}  // namespace

Result run_task(const RunRequest& request) {
  const Policy& policy = request.policy;
  Result result;
  result.id = request.id;
  result.command = request.command;
  result.started_at = std::chrono::system_clock::now();
  // First, so that a policy this process cannot enforce fails before anything is created.
  const SandboxPlan sandbox = prepare_sandbox(policy, current_environment());

  HostCgroups host;
  std::vector<LimitWrite> plan = plan_limits(policy.limits);
  std::vector<std::string> wanted = controllers_for(plan);
  // A scope asked for with "always" must be had: its failure is an error, not a reason to fall
  // back to subreaper mode as a failed "auto" request is (decide_mode says why on stderr).
  const bool scope_required = policy.runner.systemd_scope == SystemdScopeMode::always &&
                              policy.runner.mode != RunMode::subreaper;
  if (scope_required) {
    host = probe_host_cgroups();
    enter_delegated_scope(host, request.cgroup_root, policy, ::getenv("POLLKILL_CGROUP_ROOT"));
  }
  ModeDecision decision = decide_mode(policy.runner.mode, [&] {
    if (!scope_required) {
      host = probe_host_cgroups();
      enter_delegated_scope(host, request.cgroup_root, policy, ::getenv("POLLKILL_CGROUP_ROOT"));
    }
    return resolve_run_root(host, request.cgroup_root, policy, ::getenv("POLLKILL_CGROUP_ROOT"),
                            !wanted.empty());
  });
  const bool subreaper = decision.mode == RunMode::subreaper;
  result.mode = to_string(decision.mode);
  std::vector<std::string> v2_controllers;
  LimitSplit limits;
  std::vector<std::pair<std::string, std::filesystem::path>> v1_bases;
  if (subreaper) {
    if (policy.runner.mode == RunMode::automatic) {
      diag::notice("no usable cgroup (" + decision.why + "): running in subreaper mode");
    }
    check_subreaper_sandbox(sandbox);
    result.limits_not_enforced = check_subreaper_limits(
        cgroup_only_limits(policy.limits), policy.runner.missing_controllers, &decision);
  } else {
    EnforceablePlan checked = check_controllers(host, *decision.root, plan, policy.runner);
    v2_controllers = controllers_for(checked.enforceable);
    limits = split_limits(policy.limits, v2_controllers, checked.v1_controllers);
    result.limits_not_enforced = limits.not_enforced;
    result.limits_cgroup_v1 = limits.v1_keys;
    v1_bases = checked.v1_bases;
  }

  BlockedSignals blocked;
  RunCgroup run;
  Guard guard;
  std::optional<CgroupDir> task_dir;
  V1TaskCgroups v1;
  std::vector<UniqueFd> v1_join;
  std::optional<SubreaperScope> subreaper_scope;
  std::vector<pid_t> own_children;  // not the run's: never reaped as strays
  if (subreaper) {
    // Orphans whose task's init was killed from outside come to pollkill, not to PID 1.
    own_children = children_of_self();
    subreaper_scope.emplace();
    guard = Guard::start(nullptr);
    own_children.push_back(guard.pid());
  } else {
    // The guard exists before anything is created, so a SIGKILL at any moment leaves nothing.
    run = RunCgroup::prepare(*decision.root, *host.mounts.cgroup2, v2_controllers, v1_bases);
    guard = Guard::start(run);
    run.realize(guard.pid());
    task_dir = run.create_child("task-" + request.id);
    result.cgroup = run.relative_path() + "/task-" + request.id;
    apply_limits(*task_dir, limits.v2, result.limits_not_enforced,
                 policy.runner.missing_controllers);
    v1 = V1TaskCgroups::create(run, "task-" + request.id);
    v1.apply(limits.v1, result.limits_not_enforced, policy.runner.missing_controllers);
    std::erase_if(result.limits_cgroup_v1, [&](const std::string& key) {
      return std::find(result.limits_not_enforced.begin(), result.limits_not_enforced.end(),
                       key) != result.limits_not_enforced.end();  // swap, when v1 does not
                                                                  // account it
    });
    v1_join = v1.open_join_fds();
  }
  // Everything pollkill made goes, in this order, however the run ends from here on.
  const auto clean_up = [&] {
    if (subreaper) {
      reap_stray_children(own_children);
    } else {
      run.destroy();
    }
    guard.stop();
    if (!subreaper) run.leave_leaf();
  };

  UniqueFd sigfd(::signalfd(-1, &blocked.set(), SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd) throw_errno("signalfd");
  UniqueFd epfd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epfd) throw_errno("epoll_create1");
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify) throw_errno("inotify_init1");
  if (task_dir && ::inotify_add_watch(inotify.get(), (task_dir->path() / "cgroup.events").c_str(),
                                      IN_MODIFY) < 0) {
    throw_errno("watch '" + (task_dir->path() / "cgroup.events").string() + "'");
  }
  UniqueFd sample_timer = make_timerfd();
  UniqueFd deadline_timer = make_timerfd();
  UniqueFd wall_timer = make_timerfd();

  // With an output limit the task writes into pipes that pollkill copies and counts;
  // otherwise it inherits pollkill's stdin, stdout and stderr.
  std::optional<OutputRelay> relay;
  SpawnRequest spawn_request{request.command, sandbox.env, task_dir ? task_dir->fd() : -1,
                             default_spawn_method()};
  spawn_request.sandbox = &sandbox;
  for (const auto& fd : v1_join) spawn_request.join_v1_fds.push_back(fd.get());
  spawn_request.subreaper_init = subreaper;
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
    clean_up();
    return result;
  }

  std::optional<TaskWatch> watch_storage;
  pid_t init_pid = -1;
  if (subreaper) {
    init_pid = spawned.child.pid();
    if (auto st = ProcDir().stat(init_pid)) guard.watch_tree(init_pid, st->starttime);
    watch_storage.emplace(policy, std::move(spawned.child), start);
  } else {
    watch_storage.emplace(policy, std::move(*task_dir), std::move(spawned.child), start, 0);
    watch_storage->set_v1(std::move(v1));
  }
  TaskWatch& watch = *watch_storage;
  watch.set_deadline_fd(deadline_timer.get());
  epoll_add(epfd.get(), sigfd.get(), kSignal);
  epoll_add(epfd.get(), watch.pidfd(), kPidfd);
  epoll_add(epfd.get(), inotify.get(), kEvents);
  if (watch.tree_fd() >= 0) epoll_add(epfd.get(), watch.tree_fd(), kTree);
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
          drain_fd(inotify.get());
          watch.on_events();
          break;
        case kTree:  // the lingering init exited: the tree is empty (reaped in on_events)
          watch.on_events();
          break;
        case kWallTimer:
        case kSampleTimer:
          drain_fd(events[i].data.u64 == kWallTimer ? wall_timer.get() : sample_timer.get());
          watch.on_sample(Clock::now());
          break;
        case kDeadlineTimer:
          drain_fd(deadline_timer.get());
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
  watch_storage.reset();
  if (subreaper) guard.forget_tree(init_pid);
  clean_up();
  return result;
}

}  // namespace pollkill
