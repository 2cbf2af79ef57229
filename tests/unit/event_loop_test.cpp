#include "pollkill/event_loop.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace pollkill {
namespace {

using std::chrono::milliseconds;

// Two timers expire before one wait; whichever handler runs first re-arms the other for later
// (as a task's deadline is re-armed for a grace period). The other's event, already returned by
// that epoll_wait, must not run its handler: its expiry was cleared by the re-arm.
TEST(EventLoopTimers, AnEventFromBeforeAReArmDoesNotRunTheHandler) {
  EventLoop loop([](int) {});
  Timer a, b;
  int calls = 0;
  loop.add_timer(a, [&] {
    ++calls;
    b.arm(std::chrono::seconds(10));
  });
  loop.add_timer(b, [&] {
    ++calls;
    a.arm(std::chrono::seconds(10));
  });
  a.arm(milliseconds(1));
  b.arm(milliseconds(1));
  std::this_thread::sleep_for(milliseconds(50));  // both have expired before the wait
  loop.wait();
  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTimers, AnExpiredTimerRunsItsHandlerOnce) {
  EventLoop loop([](int) {});
  Timer a;
  int calls = 0;
  loop.add_timer(a, [&] { ++calls; });
  a.arm(milliseconds(1));
  loop.wait();
  EXPECT_EQ(calls, 1);
}

// The slots' deadlines share one timerfd: each runs when due, earliest first, once.
TEST(EventLoopDeadlines, ManyDeadlinesShareOneTimerAndRunInTheirOrder) {
  EventLoop loop([](int) {});
  std::vector<int> order;
  std::vector<EventLoop::Id> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(loop.add_deadline([&, i] { order.push_back(i); }));
  loop.arm_deadline(ids[0], milliseconds(60));
  loop.arm_deadline(ids[1], milliseconds(1));
  loop.arm_deadline(ids[2], milliseconds(30));
  while (order.size() < 3) loop.wait();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 0}));
}

// A deadline disarmed (or re-armed for later) by the handler of another one due in the same
// wait does not run: as with a slot's timer, a pending expiry goes with the disarm.
TEST(EventLoopDeadlines, ADueDeadlineDisarmedByAnEarlierHandlerDoesNotRun) {
  EventLoop loop([](int) {});
  int calls = 0;
  EventLoop::Id a = 0, b = 0, c = 0;
  a = loop.add_deadline([&] {
    ++calls;
    loop.disarm_deadline(b);
    loop.arm_deadline(c, std::chrono::seconds(10));
  });
  b = loop.add_deadline([&] { ++calls; });
  c = loop.add_deadline([&] { ++calls; });
  loop.arm_deadline(a, milliseconds(1));
  loop.arm_deadline(b, milliseconds(2));
  loop.arm_deadline(c, milliseconds(3));
  std::this_thread::sleep_for(milliseconds(50));  // all three are due before the wait
  loop.wait();
  EXPECT_EQ(calls, 1);
  // Re-armed, the disarmed one runs again; a removed one never does.
  loop.arm_deadline(b, milliseconds(1));
  loop.remove(c);
  loop.wait();
  EXPECT_EQ(calls, 2);
}

// Arming again replaces the earlier time; a handler may re-arm its own deadline.
TEST(EventLoopDeadlines, ReArmingMovesADeadlineAndAHandlerMayReArmItself) {
  EventLoop loop([](int) {});
  int calls = 0;
  EventLoop::Id id = 0;
  id = loop.add_deadline([&] {
    if (++calls < 3) loop.arm_deadline(id, milliseconds(1));
  });
  loop.arm_deadline(id, std::chrono::seconds(10));
  const auto start = std::chrono::steady_clock::now();
  loop.arm_deadline(id, milliseconds(1));
  while (calls < 3) loop.wait();
  // Not the 10 s it was armed for first (a correctness bound, far from any speed).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace pollkill
