#include "pollkill/live_view.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <utility>

#include "pollkill/units.h"

namespace pollkill {
namespace {

constexpr std::array<std::pair<ProgressMode, std::string_view>, 3> kModeNames{{
    {ProgressMode::off, "off"},
    {ProgressMode::line, "line"},
    {ProgressMode::full, "full"},
}};

constexpr std::array<std::pair<LiveState, std::string_view>, 5> kStateNames{{
    {LiveState::running, "running"},
    {LiveState::capturing, "capturing"},
    {LiveState::grace, "in grace"},
    {LiveState::killing, "killing"},
    {LiveState::ending, "ending"},
}};

// The order the counts by status are told in: the good news first, then the verdicts.
constexpr Status kStatusOrder[] = {Status::ok,           Status::failed,   Status::crashed,
                                   Status::oom,          Status::timeout,  Status::cpu_limit,
                                   Status::hung,         Status::spinning, Status::thrashing,
                                   Status::output_limit, Status::blocked,  Status::exec_error,
                                   Status::cancelled,    Status::error};

std::string cut(std::string text, std::size_t width) {
  if (text.size() > width) text.resize(width);
  return text;
}

std::string pad_right(std::string text, std::size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

std::string pad_left(const std::string& text, std::size_t width) {
  return text.size() < width ? std::string(width - text.size(), ' ') + text : text;
}

// An id cut to its column, the cut marked with '~'.
std::string fit_id(const std::string& id, std::size_t width) {
  if (id.size() <= width) return pad_right(id, width);
  if (width < 3) return id.substr(0, width);
  return id.substr(0, width - 1) + "~";
}

std::string format_cpu(double seconds) {
  if (seconds >= 1000) return format_clock(seconds);
  char text[32];
  std::snprintf(text, sizeof text, "%.1fs", seconds);
  return text;
}

// Lines the view gives each part.
struct Layout {
  bool heading = false;
  std::size_t task_lines = 0;  ///< rows of tasks, "+N more" included
  std::size_t shown = 0;       ///< tasks with a row
  std::size_t verdicts = 0;    ///< verdict lines (after a "last:" heading)
};

constexpr std::size_t kVerdictsShown = 3;

Layout layout(std::size_t height, std::size_t running, std::size_t verdicts) {
  Layout plan;
  if (height <= 1) return plan;
  std::size_t left = height - 1;  // below the progress line
  const std::size_t wanted_verdicts = std::min(verdicts, kVerdictsShown);
  if (running > 0) {
    if (left < 2) return plan;  // a heading without a row says nothing
    plan.heading = true;
    left -= 2;  // the heading and one row
    std::size_t v = wanted_verdicts;
    while (v > 0 && v + 1 > left) --v;
    plan.verdicts = v;
    if (v > 0) left -= v + 1;
    plan.task_lines = 1 + std::min(left, running - 1);
    plan.shown = plan.task_lines < running ? plan.task_lines - 1 : running;
  } else {
    std::size_t v = wanted_verdicts;
    while (v > 0 && v + 1 > left) --v;
    plan.verdicts = v;
  }
  return plan;
}

}  // namespace

std::string_view to_string(ProgressMode mode) {
  for (const auto& [value, name] : kModeNames)
    if (value == mode) return name;
  return "off";
}

std::optional<ProgressMode> progress_mode_from_string(std::string_view text) {
  for (const auto& [value, name] : kModeNames)
    if (name == text) return value;
  return std::nullopt;
}

std::vector<std::string> progress_mode_words() {
  std::vector<std::string> words;
  for (const auto& [value, name] : kModeNames) words.emplace_back(name);
  return words;
}

std::string_view to_string(LiveState state) {
  for (const auto& [value, name] : kStateNames)
    if (value == state) return name;
  return "running";
}

ProgressCounts ProgressCounts::of(const Summary& summary, std::uint64_t total,
                                  std::uint64_t running, double elapsed_s) {
  ProgressCounts counts;
  counts.total = total;
  counts.done = summary.finals();
  counts.done_this_run = counts.done - std::min(counts.done, summary.skipped());
  counts.running = running;
  for (Status s : kStatusOrder)
    if (auto c = summary.count(s)) counts.by_status.emplace_back(s, c);
  counts.elapsed_s = elapsed_s;
  return counts;
}

std::optional<double> estimate_left_s(const ProgressCounts& counts) {
  if (counts.done_this_run == 0 || counts.done >= counts.total || counts.elapsed_s <= 0)
    return std::nullopt;
  const double rate = static_cast<double>(counts.done_this_run) / counts.elapsed_s;
  return static_cast<double>(counts.total - counts.done) / rate;
}

std::string format_clock(double seconds) {
  const auto s = static_cast<std::uint64_t>(std::max(0.0, std::round(seconds)));
  char text[32];
  if (s < 60) {
    std::snprintf(text, sizeof text, "%llus", static_cast<unsigned long long>(s));
  } else if (s < 3600) {
    std::snprintf(text, sizeof text, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  } else {
    std::snprintf(text, sizeof text, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60));
  }
  return text;
}

std::string format_progress_line(const ProgressCounts& counts, std::size_t width) {
  const std::string done = std::to_string(counts.done) + "/" + std::to_string(counts.total);
  const std::string running = std::to_string(counts.running);
  std::vector<std::string> statuses;
  for (const auto& [status, count] : counts.by_status)
    statuses.push_back(std::to_string(count) + " " + std::string(to_string(status)));
  const std::string elapsed = format_clock(counts.elapsed_s);
  const std::optional<double> left = estimate_left_s(counts);
  const std::string eta = left ? "ETA " + format_clock(*left) : "";

  // From the widest form to the narrowest; the first that fits is the line.
  enum class Form { long_labels, short_labels, no_elapsed, no_eta };
  for (Form form : {Form::long_labels, Form::short_labels, Form::no_elapsed, Form::no_eta}) {
    const bool long_labels = form == Form::long_labels;
    std::vector<std::string> fields{long_labels ? done + " done" : done,
                                    running + (long_labels ? " running" : " run")};
    fields.insert(fields.end(), statuses.begin(), statuses.end());
    if (form == Form::long_labels) fields.push_back(elapsed + " elapsed");
    if (form == Form::short_labels) fields.push_back(elapsed);
    if (!eta.empty() && form != Form::no_eta) fields.push_back(eta);
    const std::string sep = long_labels ? ", " : " ";
    std::string line = fields[0];
    for (std::size_t i = 1; i < fields.size(); ++i) line += sep + fields[i];
    if (line.size() <= width) return line;
    if (form != Form::no_eta) continue;
    // Too narrow for every count: whole counts go from the end, and a '+' says so.
    line = cut(fields[0], width);
    for (std::size_t i = 1; i < fields.size(); ++i) {
      if (line.size() + 1 + fields[i].size() + 2 > width) break;
      line += " " + fields[i];
    }
    if (line.size() + 2 <= width) line += " +";
    return line;
  }
  return {};
}

std::size_t live_view_rows(std::size_t height, std::size_t running, std::size_t verdicts) {
  return layout(height, running, verdicts).shown;
}

std::vector<std::string> format_live_view(const ProgressCounts& counts,
                                          const std::vector<LiveTask>& tasks,
                                          const std::deque<LiveVerdict>& verdicts,
                                          std::size_t width, std::size_t height) {
  std::vector<std::string> lines;
  if (height == 0) return lines;
  lines.push_back(format_progress_line(counts, width));
  const Layout plan = layout(height, counts.running, verdicts.size());
  if (plan.heading) {
    // Fixed columns after the id: state, elapsed, CPU, memory; the id gets what is left.
    constexpr std::size_t kState = 9, kElapsed = 7, kCpu = 7, kMemory = 8;
    constexpr std::size_t kFixed = kState + kElapsed + kCpu + kMemory + 4;
    std::size_t id_width = 2;
    for (const auto& t : tasks) id_width = std::max(id_width, t.id.size());
    id_width = std::min(id_width, width > kFixed + 3 ? width - kFixed - 1 : 2);
    auto row = [&](const std::string& id, std::string_view state, const std::string& elapsed,
                   const std::string& cpu, const std::string& memory) {
      return cut(fit_id(id, id_width) + " " + pad_right(std::string(state), kState) + " " +
                     pad_left(elapsed, kElapsed) + " " + pad_left(cpu, kCpu) + " " +
                     pad_left(memory, kMemory),
                 width);
    };
    std::string heading = row("ID", "STATE", "ELAPSED", "CPU", "MEMORY");
    while (!heading.empty() && heading.back() == ' ') heading.pop_back();
    lines.push_back(heading);
    const std::size_t shown = std::min(plan.shown, tasks.size());
    for (std::size_t i = 0; i < shown; ++i) {
      const LiveTask& t = tasks[i];
      const std::string id = t.attempt > 1 ? t.id + "#" + std::to_string(t.attempt) : t.id;
      lines.push_back(row(id, to_string(t.state), format_clock(t.elapsed_s),
                          t.cpu_s ? format_cpu(*t.cpu_s) : "-",
                          t.memory_bytes ? format_size(*t.memory_bytes) : "-"));
    }
    if (counts.running > shown) {
      lines.push_back(cut("+" + std::to_string(counts.running - shown) + " more", width));
    }
  }
  if (plan.verdicts > 0) {
    lines.push_back(cut("last:", width));
    for (std::size_t i = verdicts.size() - plan.verdicts; i < verdicts.size(); ++i) {
      const LiveVerdict& v = verdicts[i];
      const std::string id = v.attempt > 1 ? v.id + "#" + std::to_string(v.attempt) : v.id;
      lines.push_back(cut(id + " " + std::string(to_string(v.status)) + ": " + v.reason, width));
    }
  }
  return lines;
}

std::string InPlace::to_top() const {
  std::string out = "\r";
  if (rows_above_ > 0) out += "\x1b[" + std::to_string(rows_above_) + "A";
  return out;
}

std::string InPlace::redraw(const std::vector<std::string>& lines) {
  std::string out = to_top();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n";
    out += lines[i];
    out += "\x1b[K";
  }
  out += "\x1b[J";
  lines_ = lines.size();
  rows_above_ = lines_ > 0 ? lines_ - 1 : 0;
  last_width_ = lines.empty() ? 0 : lines.back().size();
  return out;
}

void InPlace::resized(std::size_t width) {
  if (lines_ == 0 || width == 0) return;
  rows_above_ = lines_ - 1 + (last_width_ > 0 ? (last_width_ - 1) / width : 0);
}

std::string InPlace::erase() {
  if (lines_ == 0) return {};
  std::string out = to_top() + "\x1b[J";
  lines_ = 0;
  rows_above_ = 0;
  return out;
}

std::string InPlace::finish() {
  if (lines_ == 0) return {};
  lines_ = 0;
  rows_above_ = 0;
  return "\n";
}

}  // namespace pollkill
