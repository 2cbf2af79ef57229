// The progress line and the live view, formatted at several widths and heights, and the
// in-place redraw's bytes.
#include "pollkill/live_view.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pollkill {
namespace {

ProgressCounts counts(std::uint64_t total, std::uint64_t done, std::uint64_t running,
                      double elapsed_s) {
  ProgressCounts c;
  c.total = total;
  c.done = done;
  c.done_this_run = done;
  c.running = running;
  c.elapsed_s = elapsed_s;
  return c;
}

ProgressCounts mixed() {
  ProgressCounts c = counts(5000, 1234, 16, 754);
  c.by_status = {{Status::ok, 1200}, {Status::failed, 20},  {Status::timeout, 7},
                 {Status::hung, 4},  {Status::spinning, 2}, {Status::crashed, 1}};
  return c;
}

bool has_control(const std::string& s) {
  for (char ch : s)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return true;
  return false;
}

TEST(ProgressLine, WideShowsEverythingWithLongLabels) {
  EXPECT_EQ(format_progress_line(mixed(), 200),
            "1234/5000 done, 16 running, 1200 ok, 20 failed, 7 timeout, 4 hung, 2 spinning, "
            "1 crashed, 12m34s elapsed, ETA 38m21s");
}

TEST(ProgressLine, NoEtaUntilATaskFinishedInThisRun) {
  EXPECT_EQ(format_progress_line(counts(10, 0, 2, 4), 200), "0/10 done, 2 running, 4s elapsed");
  ProgressCounts resumed = counts(10, 6, 2, 4);
  resumed.done_this_run = 0;  // the six were skipped by --resume: no rate yet
  EXPECT_EQ(format_progress_line(resumed, 200), "6/10 done, 2 running, 4s elapsed");
  EXPECT_FALSE(estimate_left_s(resumed));
  resumed.done_this_run = 1;  // 1 task in 4s, 4 left
  ASSERT_TRUE(estimate_left_s(resumed));
  EXPECT_DOUBLE_EQ(*estimate_left_s(resumed), 16);
  EXPECT_FALSE(estimate_left_s(counts(10, 10, 0, 4))) << "nothing left";
}

TEST(ProgressLine, FitsEveryWidthKeepingTheCountsFirst) {
  for (std::size_t width : {0u, 1u, 5u, 10u, 20u, 39u, 40u, 59u, 60u, 79u, 80u, 120u, 200u}) {
    const std::string line = format_progress_line(mixed(), width);
    EXPECT_LE(line.size(), width) << line;
    EXPECT_FALSE(has_control(line)) << line;
    if (width >= 10) {
      EXPECT_EQ(line.rfind("1234/5000", 0), 0u) << line;
    }
  }
  // At 60 the labels go short and the elapsed time goes, but every count stays.
  const std::string at60 = format_progress_line(mixed(), 60);
  EXPECT_EQ(at60, "1234/5000 16 run 1200 ok 20 failed 7 timeout 4 hung +");
  // Where even the shortest form does not fit, whole counts go from the end ('+' says so).
  EXPECT_EQ(format_progress_line(mixed(), 20), "1234/5000 16 run +");
  EXPECT_EQ(format_progress_line(mixed(), 5), "1234/") << "the first count is cut last";
  // Narrow but wide enough: the short form with the ETA, without the elapsed time.
  EXPECT_EQ(format_progress_line(counts(10, 3, 2, 6), 26), "3/10 2 run 6s ETA 14s");
  EXPECT_EQ(format_progress_line(counts(10, 3, 2, 6), 20), "3/10 2 run ETA 14s");
}

TEST(ProgressLine, ClockReadsInAtMostTwoUnits) {
  EXPECT_EQ(format_clock(0), "0s");
  EXPECT_EQ(format_clock(59.4), "59s");
  EXPECT_EQ(format_clock(245), "4m05s");
  EXPECT_EQ(format_clock(7380), "2h03m");
}

TEST(ProgressMode, NamesBothWays) {
  for (const std::string& word : progress_mode_words()) {
    auto mode = progress_mode_from_string(word);
    ASSERT_TRUE(mode) << word;
    EXPECT_EQ(to_string(*mode), word);
  }
  EXPECT_EQ(progress_mode_words(), (std::vector<std::string>{"off", "line", "full"}));
  EXPECT_FALSE(progress_mode_from_string("on"));
}

std::vector<LiveTask> running_tasks(std::size_t n) {
  std::vector<LiveTask> tasks;
  for (std::size_t i = 0; i < n; ++i) {
    LiveTask t;
    t.id = "mesh-" + std::to_string(i) + (i == 0 ? "-with-a-rather-long-identifier" : "");
    t.elapsed_s = 100.0 - static_cast<double>(i);
    t.cpu_s = 12.25;
    if (i % 2) t.memory_bytes = 64ull << 20;
    t.state = i == 1 ? LiveState::grace : i == 2 ? LiveState::killing : LiveState::running;
    tasks.push_back(t);
  }
  return tasks;
}

std::deque<LiveVerdict> some_verdicts() {
  return {{"a", 1, Status::ok, "exit status 0"},
          {"b", 2, Status::failed, "exit status 1"},
          {"c", 1, Status::hung, "no CPU use (below 0.01 CPU) and no progress for 2s"},
          {"d", 1, Status::timeout, "wall time 5s exceeded"}};
}

TEST(LiveView, ShowsEachRunningTaskWithItsStateAndFigures) {
  ProgressCounts c = counts(10, 4, 3, 100);
  auto lines = format_live_view(c, running_tasks(3), some_verdicts(), 80, 20);
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_EQ(lines[0], format_progress_line(c, 80));
  EXPECT_EQ(lines[1], "ID                                   STATE     ELAPSED     CPU   MEMORY");
  EXPECT_EQ(lines[2], "mesh-0-with-a-rather-long-identifier running     1m40s   12.2s        -");
  EXPECT_NE(lines[3].find("in grace"), std::string::npos) << lines[3];
  EXPECT_NE(lines[3].find("64MiB"), std::string::npos) << lines[3];
  EXPECT_NE(lines[4].find("killing"), std::string::npos) << lines[4];
  EXPECT_EQ(lines[5], "last:");
  EXPECT_EQ(lines[6], "b#2 failed: exit status 1") << "the attempt when not the first";
  EXPECT_EQ(lines[8], "d timeout: wall time 5s exceeded") << "the newest last";
}

TEST(LiveView, FitsWidthAndHeightAndSaysHowManyMore) {
  for (std::size_t width : {1u, 20u, 40u, 60u, 200u}) {
    for (std::size_t height : {1u, 2u, 3u, 4u, 6u, 10u, 19u, 50u}) {
      for (std::size_t running : {0u, 1u, 5u, 40u}) {
        ProgressCounts c = mixed();
        c.running = running;
        const std::size_t rows = live_view_rows(height, running, 4);
        auto all = running_tasks(running);
        std::vector<LiveTask> shown(all.begin(), all.begin() + static_cast<long>(rows));
        auto lines = format_live_view(c, shown, some_verdicts(), width, height);
        const std::string where = std::to_string(width) + "x" + std::to_string(height) + ", " +
                                  std::to_string(running) + " running";
        EXPECT_LE(lines.size(), height) << where;
        for (const auto& line : lines) {
          EXPECT_LE(line.size(), width) << where << ": " << line;
          EXPECT_FALSE(has_control(line)) << where;
        }
        if (height >= 3 && running > 0 && width >= 60) {
          const std::string more = "+" + std::to_string(running - rows) + " more";
          const bool said = std::find(lines.begin(), lines.end(), more) != lines.end();
          EXPECT_EQ(said, rows < running) << where;
        }
      }
    }
  }
  ProgressCounts c = counts(100, 0, 40, 3);
  EXPECT_EQ(live_view_rows(20, 40, 0), 17u) << "19 lines below the progress line: a heading, "
                                               "17 rows and +23 more";
  EXPECT_EQ(live_view_rows(20, 40, 4), 13u) << "four lines for the last three verdicts";
  EXPECT_EQ(live_view_rows(20, 3, 4), 3u);
  EXPECT_EQ(live_view_rows(1, 3, 0), 0u) << "the progress line alone";
}

TEST(InPlace, RedrawsOverThePreviousFrameAndErasesIt) {
  InPlace view;
  EXPECT_FALSE(view.shown());
  EXPECT_EQ(view.erase(), "");
  EXPECT_EQ(view.redraw({"a", "b", "c"}), "\ra\x1b[K\nb\x1b[K\nc\x1b[K\x1b[J");
  EXPECT_TRUE(view.shown());
  // Back up two lines to the first, then a shorter frame: what is below is cleared.
  EXPECT_EQ(view.redraw({"x"}), "\r\x1b[2Ax\x1b[K\x1b[J");
  EXPECT_EQ(view.redraw({"y", "z"}), "\ry\x1b[K\nz\x1b[K\x1b[J");
  EXPECT_EQ(view.erase(), "\r\x1b[1A\x1b[J");
  EXPECT_FALSE(view.shown());
  EXPECT_EQ(view.finish(), "");
  view.redraw({"line"});
  EXPECT_EQ(view.finish(), "\n");
  EXPECT_EQ(view.erase(), "") << "a finished frame stays";
}

TEST(InPlace, ANarrowedTerminalRewrapsTheLastLineUnderTheCursor) {
  InPlace view;
  view.redraw({std::string(59, 'a')});
  view.resized(40);
  // 59 -> 2 screen lines, the cursor on the second.
  EXPECT_EQ(view.erase(), "\r\x1b[1A\x1b[J");
  view.redraw({std::string(70, 'a'), std::string(30, 'b'), std::string(45, 'c')});
  view.resized(40);
  // The lines above keep the cursor's distance (tmux); the last is 2 screen lines.
  EXPECT_EQ(view.erase(), "\r\x1b[3A\x1b[J");
  view.redraw({std::string(39, 'a')});
  view.resized(40);
  EXPECT_EQ(view.erase(), "\r\x1b[J") << "a line that still fits";
}

}  // namespace
}  // namespace pollkill
