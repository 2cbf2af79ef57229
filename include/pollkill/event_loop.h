// The one event loop every mode drives: epoll over descriptors with their handlers, the
// signals pollkill reacts to read through a signalfd, timerfds, and the task cgroups'
// cgroup.events (EPOLLPRI). `run` (a batch of one), `batch`, the Slurm element and `--launcher
// srun` all wait here, and nowhere else.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "pollkill/fd.h"
#include "pollkill/units.h"

namespace pollkill {

/// A non-blocking, close-on-exec CLOCK_MONOTONIC timerfd.
UniqueFd make_timerfd();
/// Arms `fd` to fire after `first` and then every `interval` (0: once); both 0 disarms.
void arm_timer(int fd, Duration first, Duration interval);
/// Reads and discards everything readable on a non-blocking descriptor.
void drain_fd(int fd);

/// The signals that cancel pollkill: SIGINT, SIGTERM, SIGHUP.
inline constexpr int kCancelSignals[] = {SIGINT, SIGTERM, SIGHUP};
/// Blocks the cancel signals for the whole process. The CLI calls it first thing in main, so
/// that a cancel that arrives while pollkill starts up (policy, gc, cgroups, guard) stays
/// pending until the event loop reads it, and the task still gets its `cancelled` record.
void hold_cancel_signals();
/// Unblocks them again, for commands without an event loop: a pending one then does what it
/// would have done at once (ends pollkill).
void release_cancel_signals();

/// Blocks `signals` (read through a signalfd instead) for its lifetime; signals still pending
/// at destruction are dropped.
class BlockedSignals {
 public:
  explicit BlockedSignals(std::initializer_list<int> signals);
  ~BlockedSignals();
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_;
  sigset_t old_;
};

/// A timerfd owned by its user (a slot's deadline, the sample clock). Disarming also drops an
/// expiry that is already pending, so a timer reused by the next task in a slot cannot fire
/// for it.
class Timer {
 public:
  Timer() : fd_(make_timerfd()) {}
  /// Fires after `first`, then every `interval` (0: once). `first` is at least 1 ms (a zero
  /// would disarm).
  void arm(Duration first, Duration interval = Duration(0)) const;
  void disarm() const;
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

/// epoll over registered descriptors. Level-triggered: a handler is called at each wait while
/// its descriptor is readable, so a handler reads what it is told about (or removes it).
///
/// Each wait calls the signal handler first, for every signal that arrived, and then the
/// other handlers in the order the kernel reported them: a terminal's Ctrl-C reaches the tasks
/// too, and a task that died of it must be seen as cancelled, not as crashed. A handler may
/// add and remove registrations; one removed by an earlier handler of the same wait is not
/// called.
class EventLoop {
 public:
  using Handler = std::function<void()>;
  using Id = std::uint64_t;

  /// Blocks SIGINT, SIGTERM and SIGHUP for the loop's lifetime (before anything is created,
  /// so that none of them can kill pollkill halfway through) and calls `on_signal` with each
  /// one that arrives.
  explicit EventLoop(std::function<void(int sig)> on_signal);
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Calls `handler` while `fd` is readable, until remove(). The descriptor stays the
  /// caller's, open until remove() (closing it first is harmless only when nothing else
  /// opened a descriptor of the same number since). Throws SystemError.
  Id add(int fd, Handler handler);
  /// The same while `fd` is writable (EPOLLOUT; a relay's destination that took no more).
  Id add_writable(int fd, Handler handler);
  /// A timer: its expiries are read before `handler` is called.
  Id add_timer(const Timer& timer, Handler handler);
  /// Stops calling the handler (EPOLL_CTL_DEL; a deadline is dropped). Unknown ids are
  /// ignored.
  void remove(Id id);

  /// A one-shot deadline, disarmed until arm_deadline(). Every deadline of the loop shares
  /// one timerfd, set for the earliest one due (a queue ordered by time): a batch of thousands
  /// of slots holds no timer descriptor per slot. Throws SystemError.
  Id add_deadline(Handler handler);
  /// Calls the deadline's handler once, `after` from now (at least 1 ms); arming it again
  /// replaces the earlier time. Throws SystemError.
  void arm_deadline(Id id, Duration after);
  /// The handler is not called until the deadline is armed again, even where its time was
  /// already due in this wait.
  void disarm_deadline(Id id);

  /// Calls `on_change` whenever the kernfs file open as `fd` (a cgroup's cgroup.events) has
  /// changed since it was last read through `fd` (EPOLLPRI; a file just opened counts as
  /// changed). The handler must read the file through `fd`, which re-arms it; otherwise it is
  /// called again at every wait. No inotify: closing an inotify instance waits for an RCU
  /// grace period (5 to 35 ms measured here), more than a whole short task costs. Like add(),
  /// the descriptor stays the caller's. Throws SystemError.
  Id add_kernfs_notify(int fd, Handler on_change);

  /// Also reads `sig` through the signalfd, blocked for the loop's lifetime, and calls
  /// `handler` (not the cancel handler) when it arrives: a signal that asks for work, such as
  /// SIGWINCH (the terminal was resized), is handled in the loop like any event, never in an
  /// asynchronous handler. Throws SystemError.
  void add_signal(int sig, Handler handler);

  /// Calls the signal handler for every signal already pending (one that arrived before the
  /// loop existed included), without waiting.
  void poll_signals() { read_signals(); }

  /// Waits once for events and calls their handlers. An interrupted wait (EINTR) returns
  /// without calling any. Throws SystemError.
  void wait();

 private:
  Id add_for(int fd, std::uint32_t events, Handler handler);
  void read_signals();
  using TimePoint = std::chrono::steady_clock::time_point;
  /// Sets the shared timerfd for the earliest deadline (or disarms it: none is armed).
  void set_deadline_timer();
  /// Calls the handler of every deadline that is due.
  void run_due_deadlines();

  BlockedSignals blocked_;
  UniqueFd epfd_;
  UniqueFd sigfd_;
  std::function<void(int)> on_signal_;
  std::vector<std::unique_ptr<BlockedSignals>> more_blocked_;  ///< add_signal's
  std::unordered_map<int, Handler> signal_handlers_;
  struct Entry {
    int fd;
    std::shared_ptr<Handler> handler;
  };
  std::unordered_map<Id, Entry> handlers_;
  std::unordered_map<int, int> fd_users_;  ///< live registrations per descriptor number
  Id next_id_ = 1;
  Id signal_id_ = 0;
  struct Deadline {
    std::shared_ptr<Handler> handler;
    std::optional<std::multimap<TimePoint, Id>::iterator> due;  ///< armed: its place in due_
  };
  std::unordered_map<Id, Deadline> deadlines_;
  std::multimap<TimePoint, Id> due_;             ///< the armed deadlines, earliest first
  std::optional<Timer> deadline_timer_;          ///< made at the first add_deadline()
  std::optional<TimePoint> deadline_timer_set_;  ///< when it fires; none: disarmed
};

}  // namespace pollkill
