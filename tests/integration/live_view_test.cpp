// The batch's progress line and live view in a real terminal: pollkill runs in a tmux pane of
// a fixed size (a private tmux server), the pane is captured while it runs, after a resize and
// after Ctrl-C. Without tmux the tests skip; POLLKILL_REQUIRE_TOOLS (scripts/test) makes that
// a failure.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "harness.h"

namespace pollkill::testing {
namespace {

namespace fs = std::filesystem;

std::string shell_quoted(const std::string& word) {
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The output of a shell command line, and its exit status.
std::pair<std::string, int> shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {"", -1};
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// One tmux server on a private socket with one pane of a fixed size, killed at the end. The
// socket is a file in the test's directory (tmux leaves it behind), removed with it.
class TmuxPane {
 public:
  TmuxPane(const fs::path& dir, std::size_t width, std::size_t height, const std::string& command) {
    socket_ = shell_quoted((dir / "tmux.socket").string());
    // The pane stays after its command ended (remain-on-exit), so that its last screen and
    // its exit status can be read: set on an idle pane first, then the command respawned in it.
    ok_ = tmux("-f /dev/null new-session -d -s pk -x " + std::to_string(width) + " -y " +
               std::to_string(height) + " 'sleep 600'")
                  .second == 0 &&
          tmux("set-option -t pk remain-on-exit on").second == 0 &&
          // tmux 3.3 keeps a whole screen's clear in its history: the capture would show the
          // erased frame when it started on the first line.
          tmux("set-option -g scroll-on-clear off").second >= 0 &&
          tmux("respawn-pane -k -t pk " + shell_quoted(command)).second == 0;
  }
  ~TmuxPane() { tmux("kill-server"); }
  bool ok() const { return ok_; }

  std::pair<std::string, int> tmux(const std::string& args) const {
    return shell("tmux -S " + socket_ + " " + args);
  }
  std::vector<std::string> capture() const {
    std::vector<std::string> lines;
    // The screen and what scrolled off it: a line repeated per redraw would be there too.
    std::string text = tmux("capture-pane -p -S - -t pk").first;
    std::size_t at = 0;
    while (at < text.size()) {
      auto end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      lines.push_back(text.substr(at, end - at));
      at = end + 1;
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    return lines;
  }
  void keys(const std::string& keys) const { tmux("send-keys -t pk " + keys); }
  void resize(std::size_t width) const { tmux("resize-window -t pk -x " + std::to_string(width)); }

 private:
  std::string socket_;
  bool ok_ = false;
};

// A progress line starts with done/total.
bool is_progress_line(const std::string& line) {
  static const std::regex progress(R"(^[0-9]+/[0-9]+ .*)");
  return std::regex_match(line, progress);
}

std::size_t progress_lines(const std::vector<std::string>& lines) {
  return static_cast<std::size_t>(std::count_if(lines.begin(), lines.end(), is_progress_line));
}

std::string show(const std::vector<std::string>& lines) {
  std::string out = "\n--- pane ---\n";
  for (const auto& line : lines) out += "|" + line + "|\n";
  return out + "------------";
}

bool contains(const std::vector<std::string>& lines, const std::string& what) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const auto& l) { return l.find(what) != std::string::npos; });
}

// Every line within the width, no escape sequence left on the screen as text.
void expect_clean(const std::vector<std::string>& lines, std::size_t width) {
  for (const auto& line : lines) {
    EXPECT_LE(line.size(), width) << line << show(lines);
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << show(lines);
    EXPECT_EQ(line.find("[K"), std::string::npos) << show(lines);
    EXPECT_EQ(line.find("[J"), std::string::npos) << show(lines);
  }
}

#define PK_REQUIRE_TMUX()                                                                  \
  do {                                                                                     \
    if (!find_program("tmux")) {                                                           \
      if (::getenv("POLLKILL_REQUIRE_TOOLS"))                                              \
        FAIL() << "POLLKILL_REQUIRE_TOOLS is set but tmux is not installed "               \
                  "(scripts/install-deps installs it)";                                    \
      GTEST_SKIP() << "tmux is not installed: the live view is not checked in a terminal"; \
    }                                                                                      \
  } while (0)

class LiveViewInTmux : public ::testing::Test {
 protected:
  // `pollkill batch FLAGS tasks` in a pane, its pid written where the test finds it.
  // `pollkill batch FLAGS tasks` in a pane: its pid written where the test finds it, and when
  // it ended, its exit status as the shell's $? says it (128+N for signal N). The shell
  // around it catches SIGINT (and so runs on after Ctrl-C); pollkill gets its default back.
  std::string batch_command(const std::vector<std::string>& flags) {
    std::string command = "echo $$ > " + shell_quoted((dir_.path() / "pid").string()) + "; exec " +
                          shell_quoted(POLLKILL_BINARY) + " batch";
    for (const auto& f : flags) command += " " + shell_quoted(f);
    command += " --results " + shell_quoted((dir_.path() / "r.jsonl").string()) + " " +
               shell_quoted((dir_.path() / "tasks").string());
    return "trap : INT; echo live view; sh -c " + shell_quoted(command) + "; echo $? > " +
           shell_quoted((dir_.path() / "status").string());
  }
  std::optional<int> exit_status() {
    const std::string status = slurp(dir_.path() / "status");
    if (status.empty() || status.back() != '\n') return std::nullopt;
    return std::atoi(status.c_str());
  }
  bool ended() { return exit_status().has_value(); }
  void write_tasks(const std::string& tasks) { write_file(dir_.path() / "tasks", tasks); }
  pid_t pollkill_pid() {
    pid_t pid = 0;
    wait_until([&] { return (pid = std::atoi(slurp(dir_.path() / "pid").c_str())) > 0; },
               Seconds(10));
    return pid;
  }

  // After Ctrl-C: exit 130, the three sleeps cancelled in the summary below one final progress
  // line, the screen clean, and nothing of the batch left.
  void expect_cancelled(const std::vector<std::string>& lines, std::size_t width, pid_t pid) {
    EXPECT_EQ(exit_status(), 130) << show(lines);
    EXPECT_TRUE(contains(lines, "3 cancelled")) << show(lines);
    EXPECT_EQ(progress_lines(lines), 1u) << show(lines);
    expect_clean(lines, width);
    RunOutput run;
    run.pid = pid;
    expect_nothing_left(run, marker_);
  }

  TempDir dir_;
  const std::string marker_ = unique_marker();
};

// Waits for a capture that `pred` accepts; the last capture either way.
template <typename Pred>
std::vector<std::string> capture_until(const TmuxPane& pane, Pred pred,
                                       Seconds timeout = Seconds(30)) {
  std::vector<std::string> lines;
  wait_until(
      [&] {
        lines = pane.capture();
        return pred(lines);
      },
      timeout, Seconds(0.1));
  return lines;
}

TEST_F(LiveViewInTmux, TheProgressLineFitsStaysOneLineThroughAResizeAndCtrlCLeavesItClean) {
  PK_REQUIRE_CGROUP2();
  PK_REQUIRE_TMUX();
  const std::string sleep = "sleep " + long_sleep_arg(marker_);
  write_tasks(sleep + "\n" + sleep + "\nfalse\nsh -c 'exit 3'\n" + sleep + "\ntrue\n");
  TmuxPane pane(dir_.path(), 60, 20, batch_command({"-j", "4"}));
  ASSERT_TRUE(pane.ok());
  const pid_t pid = pollkill_pid();

  // Running: the failures done, three sleeps left; redrawn several times (its elapsed time
  // grows) in one screen line.
  auto lines = capture_until(pane, [&](const auto& l) {
    return processes_matching(marker_, "sleep").size() == 3 && contains(l, "2 failed") &&
           contains(l, "2s");
  });
  EXPECT_EQ(progress_lines(lines), 1u) << show(lines);
  expect_clean(lines, 60);

  // Narrower: the line redrawn within 40 columns, still one line.
  pane.resize(40);
  lines = capture_until(pane, [&](const auto& l) {
    return progress_lines(l) == 1 &&
           std::all_of(l.begin(), l.end(), [](const auto& x) { return x.size() <= 40; }) &&
           contains(l, "4s");
  });
  EXPECT_EQ(progress_lines(lines), 1u) << show(lines);
  expect_clean(lines, 40);

  // Ctrl-C: the batch cancels the sleeps, exits 130 and prints its summary below one final
  // progress line.
  pane.keys("C-c");
  ASSERT_TRUE(wait_until([&] { return ended(); }, Seconds(30))) << show(pane.capture());
  lines = pane.capture();
  EXPECT_TRUE(contains(lines, "interrupted: stopping")) << show(lines);
  expect_cancelled(lines, 40, pid);
}

TEST_F(LiveViewInTmux, FullShowsTheRunningTasksInPlaceAndCtrlCEndsWithTheSummary) {
  PK_REQUIRE_CGROUP2();
  PK_REQUIRE_TMUX();
  // The last one ignores SIGINT and SIGTERM: after Ctrl-C it is in its kill grace a while.
  const std::string arg = long_sleep_arg(marker_);
  write_tasks(R"({"id": "slow-a", "cmd": ["sleep", ")" + arg +
              R"("]})"
              "\n" +
              R"({"id": "fails", "cmd": ["false"]})"
              "\n" +
              R"({"id": "slow-b", "cmd": ["sleep", ")" + arg +
              R"("]})"
              "\n" +
              R"({"id": "exits-3", "sh": "exit 3"})"
              "\n" +
              R"({"id": "stubborn", "sh": "trap '' INT TERM; sleep )" + arg +
              R"(; :"})"
              "\n");
  TmuxPane pane(dir_.path(), 200, 20,
                batch_command({"-j", "5", "--progress=full", "--kill-grace", "5s"}));
  ASSERT_TRUE(pane.ok());
  const pid_t pid = pollkill_pid();

  auto lines = capture_until(pane, [&](const auto& l) {
    // Three sleeps: the stubborn one's shell has set its traps before it started its sleep.
    return processes_matching(marker_, "sleep").size() == 3 && contains(l, "slow-a") &&
           contains(l, "slow-b") && contains(l, "stubborn") && contains(l, "fails failed") &&
           contains(l, "exits-3 failed");
  });
  EXPECT_EQ(progress_lines(lines), 1u) << show(lines);
  EXPECT_TRUE(contains(lines, "STATE")) << show(lines);
  for (const std::string id : {"slow-a", "slow-b", "stubborn"}) {
    auto row = std::find_if(lines.begin(), lines.end(),
                            [&](const auto& l) { return l.rfind(id + " ", 0) == 0; });
    ASSERT_NE(row, lines.end()) << id << show(lines);
    EXPECT_NE(row->find("running"), std::string::npos) << show(lines);
  }
  EXPECT_TRUE(contains(lines, "last:")) << show(lines);
  expect_clean(lines, 200);

  // Narrower: redrawn in place within 60 columns, one view (one heading, one progress line).
  pane.resize(60);
  lines = capture_until(pane, [&](const auto& l) {
    return std::all_of(l.begin(), l.end(), [](const auto& x) { return x.size() <= 60; }) &&
           contains(l, "stubborn");
  });
  EXPECT_EQ(progress_lines(lines), 1u) << show(lines);
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                          [](const auto& l) { return l.rfind("ID ", 0) == 0; }),
            1)
      << show(lines);
  expect_clean(lines, 60);

  pane.keys("C-c");
  lines = capture_until(pane, [&](const auto& l) { return contains(l, "in grace"); });
  EXPECT_TRUE(contains(lines, "in grace")) << show(lines);
  ASSERT_TRUE(wait_until([&] { return ended(); }, Seconds(30))) << show(pane.capture());
  lines = pane.capture();
  // The view gave way to the summary: no heading, no rows, no verdicts left on the screen.
  EXPECT_FALSE(contains(lines, "STATE")) << show(lines);
  EXPECT_FALSE(contains(lines, "in grace")) << show(lines);
  EXPECT_FALSE(contains(lines, "last:")) << show(lines);
  expect_cancelled(lines, 60, pid);
}

}  // namespace
}  // namespace pollkill::testing
