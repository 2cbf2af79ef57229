// OutputRelay against real pipes: a destination that takes no more blocks nothing, a reader
// that goes away closes the task's pipe, and the limit is exact.
#include "pollkill/output.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace pollkill {
namespace {

using State = OutputRelay::State;

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
  UniqueFd read, write;
};

// Writes `n` bytes to the relay's child end of `stream` (non-blocking: as much as fits).
std::size_t feed(const OutputRelay& relay, int stream, std::size_t n) {
  const int fd = relay.child_end(stream);
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  std::string data(n, 'x');
  std::size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd, data.data() + done, n - done);
    if (w <= 0) break;
    done += static_cast<std::size_t>(w);
  }
  ::fcntl(fd, F_SETFL, flags);
  return done;
}

std::size_t drain(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  char buf[65536];
  std::size_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    total += static_cast<std::size_t>(n);
  }
  ::fcntl(fd, F_SETFL, flags);
  return total;
}

// Regression: the relay wrote with blocking writes, so a reader that took nothing froze
// pollkill (its timers and signals) inside pump().
TEST(OutputRelayTest, AFullDestinationBlocksTheStreamNotTheCaller) {
  Pipe out;  // nobody reads it: it fills
  OutputRelay relay(out.write.get(), -1, std::nullopt);
  State state = State::open;
  std::size_t fed = 0;
  for (int i = 0; i < 64 && state == State::open; ++i) {
    fed += feed(relay, 0, 65536);
    state = relay.pump(0);
  }
  ASSERT_EQ(state, State::blocked) << "after " << fed << " bytes";
  EXPECT_EQ(relay.state(0), State::blocked);
  EXPECT_GE(relay.dest_fd(0), 0);
  EXPECT_EQ(relay.pump(0), State::blocked) << "a blocked stream is not read";
  // The reader takes it all: the stream flows again.
  const std::size_t got = drain(out.read.get());
  EXPECT_GT(got, 0u);
  state = relay.flush(0);
  while (state == State::blocked) {
    drain(out.read.get());
    state = relay.flush(0);
  }
  EXPECT_EQ(state, State::open);
  EXPECT_EQ(relay.total(), fed);
}

// Regression: EPIPE was ignored, so `... | head -1` never ended.
TEST(OutputRelayTest, AReaderThatGoesAwayClosesTheTasksPipe) {
  // pollkill ignores SIGPIPE in itself (the task gets the default action back), as this test
  // does while it runs.
  struct sigaction ign {
  }, old{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, &old);
  Pipe out;
  OutputRelay relay(out.write.get(), -1, std::nullopt);
  out.read.reset();  // the reader exits
  ASSERT_EQ(feed(relay, 0, 10), 10u);
  EXPECT_EQ(relay.pump(0), State::closed);
  EXPECT_EQ(relay.read_end(0), -1);
  // The task's next write fails as in a pipeline.
  EXPECT_EQ(::write(relay.child_end(0), "y", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  ::sigaction(SIGPIPE, &old, nullptr);
}

// Regression: whole chunks were copied before the limit was looked at.
TEST(OutputRelayTest, NoMoreThanTheLimitIsCopied) {
  Pipe out, err;
  ASSERT_EQ(::fcntl(out.write.get(), F_SETPIPE_SZ, 1 << 20), 1 << 20);
  OutputRelay relay(out.write.get(), err.write.get(), 100000);
  feed(relay, 1, 30000);
  EXPECT_EQ(relay.pump(1), State::open);
  feed(relay, 0, 65536);
  relay.pump(0);
  feed(relay, 0, 65536);
  relay.pump(0);
  EXPECT_EQ(relay.total(), 30000u + 2 * 65536u) << "everything is counted";
  EXPECT_EQ(drain(err.read.get()), 30000u);
  EXPECT_EQ(drain(out.read.get()), 70000u) << "the rest of the limit, not a byte more";
}

TEST(OutputRelayTest, EofClosesTheStream) {
  Pipe out;
  OutputRelay relay(out.write.get(), -1, std::nullopt);
  feed(relay, 0, 5);
  relay.close_child_ends();
  EXPECT_EQ(relay.pump(0), State::closed);
  EXPECT_EQ(drain(out.read.get()), 5u);
  EXPECT_EQ(relay.abandon(), 0u);
}

}  // namespace
}  // namespace pollkill
