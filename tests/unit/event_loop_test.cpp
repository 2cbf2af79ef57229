#include "pollkill/event_loop.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

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

}  // namespace
}  // namespace pollkill
