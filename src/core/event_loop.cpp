#include "pollkill/event_loop.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "pollkill/error.h"

namespace pollkill {

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

namespace {
sigset_t cancel_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kCancelSignals) sigaddset(&set, sig);
  return set;
}
}  // namespace

void hold_cancel_signals() {
  const sigset_t set = cancel_set();
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
}

void release_cancel_signals() {
  const sigset_t set = cancel_set();
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

BlockedSignals::BlockedSignals(std::initializer_list<int> signals) {
  sigemptyset(&set_);
  for (int sig : signals) sigaddset(&set_, sig);
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

void Timer::arm(Duration first, Duration interval) const {
  arm_timer(fd_.get(), std::max(first, Duration(1)), interval);
}

void Timer::disarm() const {
  arm_timer(fd_.get(), Duration(0), Duration(0));
  drain_fd(fd_.get());
}

EventLoop::EventLoop(std::function<void(int sig)> on_signal)
    : blocked_({SIGINT, SIGTERM, SIGHUP}), on_signal_(std::move(on_signal)) {
  epfd_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epfd_) throw_errno("epoll_create1");
  sigfd_.reset(::signalfd(-1, &blocked_.set(), SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd_) throw_errno("signalfd");
  signal_id_ = add(sigfd_.get(), [this] { read_signals(); });
}

EventLoop::Id EventLoop::add(int fd, Handler handler) {
  return add_for(fd, EPOLLIN, std::move(handler));
}

EventLoop::Id EventLoop::add_writable(int fd, Handler handler) {
  return add_for(fd, EPOLLOUT, std::move(handler));
}

EventLoop::Id EventLoop::add_kernfs_notify(int fd, Handler on_change) {
  // kernfs reports EPOLLIN and EPOLLOUT always, and EPOLLPRI (with EPOLLERR) while the file
  // changed since this open file last read it.
  return add_for(fd, EPOLLPRI, std::move(on_change));
}

EventLoop::Id EventLoop::add_for(int fd, std::uint32_t events, Handler handler) {
  const Id id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl ADD");
  handlers_.emplace(id, Entry{fd, std::make_shared<Handler>(std::move(handler))});
  ++fd_users_[fd];
  return id;
}

EventLoop::Id EventLoop::add_timer(const Timer& timer, Handler handler) {
  return add(timer.fd(), [fd = timer.fd(), handler = std::move(handler)] {
    // Re-arming a timer clears its expiries, but an event that this round's epoll_wait
    // returned before a handler re-armed it is still delivered: only a read that finds an
    // expiry is one (else a fresh grace period would end at once).
    std::uint64_t expiries = 0;
    if (::read(fd, &expiries, sizeof expiries) != static_cast<ssize_t>(sizeof expiries)) return;
    handler();
  });
}

EventLoop::Id EventLoop::add_deadline(Handler handler) {
  if (!deadline_timer_) {
    deadline_timer_.emplace();
    add(deadline_timer_->fd(), [this] { run_due_deadlines(); });
  }
  const Id id = next_id_++;
  deadlines_.emplace(id, Deadline{std::make_shared<Handler>(std::move(handler)), std::nullopt});
  return id;
}

void EventLoop::arm_deadline(Id id, Duration after) {
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return;
  if (it->second.due) due_.erase(*it->second.due);
  it->second.due =
      due_.emplace(std::chrono::steady_clock::now() + std::max(after, Duration(1)), id);
  set_deadline_timer();
}

void EventLoop::disarm_deadline(Id id) {
  auto it = deadlines_.find(id);
  if (it == deadlines_.end() || !it->second.due) return;
  due_.erase(*it->second.due);
  it->second.due.reset();
  set_deadline_timer();
}

void EventLoop::set_deadline_timer() {
  if (due_.empty()) {
    if (deadline_timer_set_) deadline_timer_->disarm();
    deadline_timer_set_.reset();
    return;
  }
  const TimePoint first = due_.begin()->first;
  if (deadline_timer_set_ == first) return;
  // An absolute CLOCK_MONOTONIC time: steady_clock's clock.
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(first.time_since_epoch());
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns.count() / 1000000000);
  spec.it_value.tv_nsec = static_cast<long>(ns.count() % 1000000000);
  if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  if (::timerfd_settime(deadline_timer_->fd(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0)
    throw_errno("timerfd_settime");
  deadline_timer_set_ = first;
}

void EventLoop::run_due_deadlines() {
  // The expiry count does not matter: what is due is decided by the time (an event this wait
  // returned before a handler moved the timer finds nothing due, and calls nothing).
  drain_fd(deadline_timer_->fd());
  deadline_timer_set_.reset();  // fired, or about to be set anew
  const TimePoint now = std::chrono::steady_clock::now();
  // Each one is taken off the queue before its handler runs: a handler may arm, disarm or
  // remove any deadline (its own included); one it arms is due 1 ms later at the earliest.
  while (!due_.empty() && due_.begin()->first <= now) {
    const Id id = due_.begin()->second;
    due_.erase(due_.begin());
    auto it = deadlines_.find(id);
    it->second.due.reset();
    std::shared_ptr<Handler> handler = it->second.handler;
    (*handler)();
  }
  set_deadline_timer();
}

void EventLoop::remove(Id id) {
  if (auto deadline = deadlines_.find(id); deadline != deadlines_.end()) {
    if (deadline->second.due) due_.erase(*deadline->second.due);
    deadlines_.erase(deadline);
    set_deadline_timer();
    return;
  }
  auto it = handlers_.find(id);
  if (it == handlers_.end()) return;
  const int fd = it->second.fd;
  handlers_.erase(it);
  // A descriptor its owner closed left the epoll set by itself, and its number may already
  // belong to a newer registration, whose entry must stay.
  if (--fd_users_[fd] == 0) {
    fd_users_.erase(fd);
    ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);  // EBADF, ENOENT: closed already
  }
}

void EventLoop::add_signal(int sig, Handler handler) {
  more_blocked_.push_back(std::make_unique<BlockedSignals>(std::initializer_list<int>{sig}));
  // The signalfd reads the cancel signals and every signal added so far.
  sigset_t set = blocked_.set();
  sigaddset(&set, sig);
  for (const auto& [other, unused] : signal_handlers_) sigaddset(&set, other);
  if (::signalfd(sigfd_.get(), &set, SFD_CLOEXEC | SFD_NONBLOCK) < 0) throw_errno("signalfd");
  signal_handlers_[sig] = std::move(handler);
}

void EventLoop::read_signals() {
  signalfd_siginfo info;
  while (::read(sigfd_.get(), &info, sizeof info) == sizeof info) {
    const int sig = static_cast<int>(info.ssi_signo);
    if (auto it = signal_handlers_.find(sig); it != signal_handlers_.end()) {
      it->second();
    } else {
      on_signal_(sig);
    }
  }
}

void EventLoop::wait() {
  epoll_event events[32];
  int n = ::epoll_wait(epfd_.get(), events, 32, -1);
  if (n < 0) {
    if (errno == EINTR) return;
    throw_errno("epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == signal_id_) read_signals();
  }
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == signal_id_) continue;
    auto it = handlers_.find(events[i].data.u64);
    if (it == handlers_.end()) continue;  // removed by an earlier handler of this wait
    // Held while it runs: the handler may remove itself.
    std::shared_ptr<Handler> handler = it->second.handler;
    (*handler)();
  }
}

}  // namespace pollkill
