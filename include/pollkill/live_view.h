// What a batch shows on a terminal while it runs: the progress line and the top-like view of
// the running tasks (`--progress=full`), formatted from counts, figures and a width (pure: no
// terminal is asked anything here; the engine reads the size and writes the frames).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pollkill/report.h"
#include "pollkill/status.h"

namespace pollkill {

/// `--progress=MODE`: nothing, the progress line, or the view of the running tasks.
enum class ProgressMode { off, line, full };
std::string_view to_string(ProgressMode mode);
std::optional<ProgressMode> progress_mode_from_string(std::string_view text);
/// "off", "line", "full": what `--progress=` takes.
std::vector<std::string> progress_mode_words();

/// What the progress line counts.
struct ProgressCounts {
  std::uint64_t total = 0;          ///< tasks in the task file
  std::uint64_t done = 0;           ///< final records, those --resume skipped included
  std::uint64_t done_this_run = 0;  ///< final records written by this run
  std::uint64_t running = 0;
  std::vector<std::pair<Status, std::uint64_t>> by_status;  ///< non-zero counts, fixed order
  double elapsed_s = 0;

  static ProgressCounts of(const Summary& summary, std::uint64_t total, std::uint64_t running,
                           double elapsed_s);
};

/// The estimated time left: nullopt until one task has finished in this run (a rate needs
/// one; those --resume skipped took no time here) and when nothing is left. Then the rate
/// so far, tasks finished in this run per second elapsed, applied to the tasks not done.
std::optional<double> estimate_left_s(const ProgressCounts& counts);

/// "3s", "4m05s", "2h03m": a duration in at most two units, for a narrow line.
std::string format_clock(double seconds);

/// The progress line, at most `width` characters, no control characters:
///   "3/10 done, 2 running, 2 ok, 1 hung, 4s elapsed, ETA 9s"
/// Narrower widths drop words before counts, in this order: the long labels ("3/10 2 run
/// 2 ok 1 hung 4s ETA 9s"), then the elapsed time, then the ETA; the done/total count and
/// the counts by status stay as long as they fit, and what is still too long is cut.
std::string format_progress_line(const ProgressCounts& counts, std::size_t width);

/// A running task as the view shows it.
enum class LiveState { running, capturing, grace, killing, ending };
std::string_view to_string(LiveState state);

struct LiveTask {
  std::string id;
  int attempt = 1;
  double elapsed_s = 0;
  std::optional<double> cpu_s;                ///< CPU used so far; nullopt: not known
  std::optional<std::uint64_t> memory_bytes;  ///< memory.current; nullopt: not available
  LiveState state = LiveState::running;
};

/// A verdict of an attempt that ended, newest last.
struct LiveVerdict {
  std::string id;
  int attempt = 1;
  Status status = Status::ok;
  std::string reason;
};

/// The view of `--progress=full`, at most `height` lines of at most `width` characters each:
///   the progress line;
///   a heading and one row per running task (the longest running first, as `tasks` are
///   given): id, state, elapsed, CPU seconds, memory ('-' when not known), the rows that do
///   not fit said as "+N more";
///   "last:" and the newest `verdicts` (id, status, reason), at most three, as many as fit
///   after one task row (the tasks get the lines that are left).
/// `tasks` holds the first live_view_rows() running tasks at most; the others (of
/// `counts.running`) are the "+N more". A height too small for a task row shows the progress
/// line alone.
std::vector<std::string> format_live_view(const ProgressCounts& counts,
                                          const std::vector<LiveTask>& tasks,
                                          const std::deque<LiveVerdict>& verdicts,
                                          std::size_t width, std::size_t height);

/// How many running tasks a view of `height` lines can show (the rest is "+N more"), so that
/// figures are read for those only.
std::size_t live_view_rows(std::size_t height, std::size_t running, std::size_t verdicts);

/// Redraws a block of lines in place on a terminal: the bytes that replace what the previous
/// frame drew (the cursor back to its first line with a carriage return and cursor-up, each
/// line written and cleared to its end, anything below cleared), written at once so that the
/// terminal never shows half a frame. The cursor is left at the end of the last line; lines
/// must not be wider than the terminal (no wrapping).
class InPlace {
 public:
  std::string redraw(const std::vector<std::string>& lines);
  /// The terminal is now `width` columns wide (SIGWINCH). Narrower than the last line, that
  /// line is rewrapped and the cursor, after its last character, goes down with it; the lines
  /// above keep the cursor's distance to the frame's first line (tmux rewraps them below the
  /// cursor, and the clear below the frame takes the rest). A terminal that moves the cursor
  /// down for every rewrapped line may keep a piece of the old frame above the new one.
  void resized(std::size_t width);
  /// Erases the frame: the cursor back at the start of its first line, nothing below.
  std::string erase();
  /// Ends the frame where it is: a newline after its last line (nothing when none is drawn).
  std::string finish();
  bool shown() const { return lines_ > 0; }

 private:
  std::string to_top() const;
  std::size_t lines_ = 0;       ///< lines of the frame
  std::size_t rows_above_ = 0;  ///< screen lines from the frame's first to the cursor's
  std::size_t last_width_ = 0;  ///< of the frame's last line
};

}  // namespace pollkill
