#include "pollkill/report_html.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <unordered_map>

#include "pollkill/error.h"
#include "pollkill/units.h"
#include "report_assets.h"  // generated from src/core/report_page/ (CMakeLists.txt)

namespace pollkill {
namespace {

// The timeline's drawing area in SVG user units; the SVG stretches it to the page width.
constexpr double kPlotWidth = 1000;
constexpr std::size_t kFailuresShown = 1000;
constexpr std::size_t kSlowestShown = 10;
constexpr std::size_t kSignatureGroupsShown = 100;
constexpr std::size_t kSignatureIdsShown = 12;
constexpr std::size_t kHistogramBins = 30;

// A number with at most `decimals` digits after the point, trailing zeros dropped.
std::string num(double value, int decimals = 2) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  std::string text = buffer;
  if (text.find('.') != std::string::npos) {
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  if (text == "-0") text = "0";
  return text;
}

std::string with_commas(std::uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string status_name(Status s) {
  return std::string(to_string(s));
}

std::string random_nonce() {
  std::random_device device;
  std::string nonce;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) {
    const auto word = device();
    for (int shift = 0; shift < 32; shift += 8) {
      nonce += kHex[(word >> (shift + 4)) & 0xf];
      nonce += kHex[(word >> shift) & 0xf];
    }
  }
  return nonce;
}

// Values of one kind (wall time, memory peak) of the attempts, each with its status.
struct Sample {
  double value;
  Status status;
};

// Everything the page needs, computed once from the batch.
class Page {
 public:
  Page(const BatchRecords& batch, const HtmlOptions& options)
      : batch_(batch),
        options_(options),
        attempts_(batch.attempts),
        lanes_(assign_lanes(attempts_)),
        span_(time_span(attempts_)) {
    for (std::size_t i = 0; i < attempts_.size(); ++i) {
      attempts_of_[attempts_[i].id].push_back(i);
      if (!attempts_[i].final) continue;
      // A later final record of an id replaces an earlier one, as in `pollkill report`.
      auto [it, inserted] = final_of_.try_emplace(attempts_[i].id, i);
      if (!inserted) it->second = i;
    }
    for (std::size_t i = 0; i < attempts_.size(); ++i) {
      auto it = final_of_.find(attempts_[i].id);
      if (it != final_of_.end() && it->second == i) finals_.push_back(i);
    }
    drawn_ = 0;
    for (int lane : lanes_.lane_of) drawn_ += lane >= 0 ? 1 : 0;
    aggregated_ = drawn_ > options_.max_bars;
  }

  std::string render();

 private:
  // The index of attempt i in the page's data block, adding it on first use.
  std::size_t pick(std::size_t i) {
    auto [it, inserted] = picked_.try_emplace(i, picked_order_.size());
    if (inserted) picked_order_.push_back(i);
    return it->second;
  }
  std::string id_link(std::size_t i) {
    return "<a class=\"pick mono\" href=\"#\" data-a=\"" + std::to_string(pick(i)) + "\">" +
           html_escape(attempts_[i].id) + "</a>";
  }
  static std::string pill(Status s) {
    return "<span class=\"pill s-" + status_name(s) + "\">" + status_name(s) + "</span>";
  }

  void head();
  void tiles();
  void status_breakdown();
  void timeline();
  void timeline_bars(double lane_h, std::string& svg);
  std::string timeline_bins(double lane_h, std::string& svg);
  void resources();
  struct ValueAxis {
    std::string (*format)(double);
    double (*step)(double highest);  // a round tick step for values up to `highest`
    bool binary;                     // sizes: bins in powers of two of a tick
  };
  std::string histogram(const std::string& title, const std::vector<Sample>& samples,
                        std::optional<double> limit, const std::string& limit_key,
                        const ValueAxis& axis);
  void slowest();
  void failures();
  void signatures();
  void data_block();
  std::string bar(std::size_t i, double scale, double y, double height);
  std::string axis_grid();
  std::string axis_labels();

  const BatchRecords& batch_;
  const HtmlOptions& options_;
  const std::vector<Attempt>& attempts_;
  Lanes lanes_;
  std::optional<Span> span_;
  std::unordered_map<std::string, std::vector<std::size_t>> attempts_of_;
  std::unordered_map<std::string, std::size_t> final_of_;
  std::vector<std::size_t> finals_;  // the final attempt of each id, in file order
  std::size_t drawn_ = 0;            // attempts with a start
  bool aggregated_ = false;
  std::unordered_map<std::size_t, std::size_t> picked_;
  std::vector<std::size_t> picked_order_;
  std::string nonce_;
  std::string bins_note_;  // for the script's tooltip of a bin
  double bin_s_ = 0;
  double plot_height_ = 0;
  std::string out_;
};

std::string format_seconds(double s) {
  return short_duration(s);
}
std::string format_bytes(double b) {
  return format_size(static_cast<std::uint64_t>(std::max(0.0, b)));
}

void Page::head() {
  const std::string source = html_escape(options_.source);
  out_ +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      // Nothing may be fetched and only the page's own style and script may apply: markup
      // that slipped past escaping could neither run nor load anything.
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'nonce-" +
      nonce_ + "'; script-src 'nonce-" + nonce_ +
      "'; img-src data:; base-uri 'none'; form-action 'none'\">\n"
      "<meta name=\"generator\" content=\"pollkill " POLLKILL_VERSION
      "\">\n"
      "<title>pollkill report: " +
      source + "</title>\n<style nonce=\"" + nonce_ + "\">\n" + std::string(kReportCss) +
      "</style>\n</head>\n<body>\n<header>\n<h1><span class=\"brand\">pollkill</span> report</h1>\n"
      "<div class=\"file\">" +
      source + "</div>\n<div class=\"meta\">";
  out_ += with_commas(attempts_.size()) + " records (attempts) of " +
          with_commas(batch_.summary.finals()) + " tasks";
  if (span_) {
    out_ += " · first start " + utc_rfc3339(span_->begin) + " · last end " +
            utc_rfc3339(span_->end) + " · span " + short_duration(span_->length());
  }
  if (lanes_.hosts > 0) out_ += " · " + std::to_string(lanes_.hosts) + " hosts";
  out_ += "</div>\n</header>\n<main>\n";
}

void Page::tiles() {
  const auto summary = batch_.summary.to_json();
  double cpu = 0;
  for (const auto& a : attempts_) cpu += a.cpu_s;
  auto tile = [&](const std::string& key, const std::string& value, const std::string& label,
                  const char* cls = "") {
    out_ += "<div class=\"tile " + std::string(cls) + "\"><div class=\"v\" data-count=\"" + key +
            "\">" + value + "</div><div class=\"k\">" + label + "</div></div>\n";
  };
  out_ += "<section class=\"tiles\">\n";
  tile("tasks", with_commas(summary["tasks"].get<std::uint64_t>()), "tasks");
  tile("ok", with_commas(batch_.summary.count(Status::ok)), "ok", "good");
  tile("not_ok", with_commas(summary["not_ok"].get<std::uint64_t>()), "not ok",
       batch_.summary.not_ok() > 0 ? "bad" : "");
  tile("retries", with_commas(summary["retries"].get<std::uint64_t>()), "retries");
  tile("attempts", with_commas(attempts_.size()), "attempts");
  tile("processes_reaped", with_commas(summary["processes_reaped"].get<std::uint64_t>()),
       "processes reaped");
  tile("span", span_ ? short_duration(span_->length()) : "-", "wall span");
  tile("cpu", short_duration(cpu), "CPU time, all attempts");
  tile("lanes", with_commas(lanes_.lanes.size()), lanes_.hosts > 0 ? "lanes on hosts" : "lanes");
  out_ += "</section>\n";
}

void Page::status_breakdown() {
  const auto total = batch_.summary.finals();
  out_ +=
      "<section id=\"status\">\n<h2>Final status<span class=\"sub\">of each task: its last final "
      "record, as <code>pollkill report</code> counts</span></h2>\n";
  out_ += "<svg class=\"statusbar\" viewBox=\"0 0 1000 22\" preserveAspectRatio=\"none\">";
  double x = 0;
  for (std::size_t s = 0; s < TimelineBins::kStatuses; ++s) {
    const auto count = batch_.summary.count(static_cast<Status>(s));
    if (count == 0 || total == 0) continue;
    const double w = 1000.0 * static_cast<double>(count) / static_cast<double>(total);
    out_ += "<rect class=\"s-" + status_name(static_cast<Status>(s)) + "\" x=\"" + num(x) +
            "\" y=\"0\" width=\"" + num(w) + "\" height=\"22\"/>";
    x += w;
  }
  out_ += "</svg>\n<div class=\"legend\">\n";
  for (std::size_t s = 0; s < TimelineBins::kStatuses; ++s) {
    const auto status = static_cast<Status>(s);
    const auto count = batch_.summary.count(status);
    if (count == 0) continue;
    out_ += "<span class=\"item\"><span class=\"sw s-" + status_name(status) + "\"></span>" +
            status_name(status) + " <span class=\"num\" data-count-status=\"" +
            status_name(status) + "\">" + with_commas(count) + "</span> (" +
            num(100.0 * static_cast<double>(count) / static_cast<double>(total), 1) + "%)</span>\n";
  }
  if (total == 0) out_ += "<span class=\"item\">no tasks</span>\n";
  out_ += "</div>\n</section>\n";
}

void Page::timeline() {
  out_ +=
      "<section id=\"timeline-section\">\n<h2>Timeline<span class=\"sub\">every attempt on the "
      "lane it ran on, coloured by how it ended</span></h2>\n";
  if (!span_) {
    out_ += "<p class=\"note\">No record has a start time: nothing to draw.</p>\n</section>\n";
    return;
  }
  const double lanes = static_cast<double>(std::max<std::size_t>(lanes_.lanes.size(), 1));
  const double lane_h = lanes <= 8 ? 26 : lanes <= 40 ? 18 : std::clamp(720.0 / lanes, 3.0, 18.0);
  plot_height_ = lane_h * lanes;

  std::string svg;
  std::string bins_note;
  if (aggregated_) {
    bins_note = timeline_bins(lane_h, svg);
  } else {
    timeline_bars(lane_h, svg);
  }

  out_ += "<p class=\"note\">";
  if (lanes_.source == LaneSource::recorded_slots) {
    out_ += "Lanes are the slots the records name.";
  } else {
    out_ +=
        "The records do not say which slot an attempt ran in, so the lanes are made from the "
        "times: attempts in start order, each on the lowest lane free at its start (the fewest "
        "lanes that hold them without overlap; a local batch run with <code>-j N</code> gets at "
        "most N).";
  }
  if (lanes_.hosts > 0) out_ += " One group of lanes per host.";
  if (drawn_ < attempts_.size()) {
    const auto n = attempts_.size() - drawn_;
    out_ += " " + with_commas(n) +
            (n == 1 ? " record has no start time and is not drawn."
                    : " records have no start time and are not drawn.");
  }
  if (aggregated_) {
    out_ += " <b>" + with_commas(drawn_) + " attempts are more than a browser draws well (" +
            with_commas(options_.max_bars) +
            "), so each lane is drawn in time bins</b>: a bin's shade is how busy the lane was, "
            "its colour the status that held it longest. " +
            bins_note;
  } else {
    out_ += " " + with_commas(drawn_) + " attempts, one bar each.";
  }
  out_ += "</p>\n";

  out_ +=
      "<div class=\"tl-tools\"><button id=\"zoom-reset\" type=\"button\">reset zoom</button>"
      "<span>drag across the timeline to zoom into a stretch of time; click a bar for its "
      "details and the other attempts of its task</span></div>\n";
  out_ += "<div class=\"tl-wrap\">\n<svg class=\"tl-labels\" width=\"150\" height=\"" +
          num(plot_height_) + "\">";
  const int every = lane_h >= 10 ? 1 : static_cast<int>(std::ceil(11.0 / lane_h));
  const double font = std::min(11.0, std::max(lane_h - 2, 8.0));
  for (std::size_t l = 0; l < lanes_.lanes.size(); ++l) {
    if (static_cast<int>(l) % every != 0) continue;
    out_ += "<text x=\"146\" y=\"" + num(static_cast<double>(l) * lane_h + lane_h / 2 + font / 3) +
            "\" text-anchor=\"end\" font-size=\"" + num(font) + "\" fill=\"#5d6678\">" +
            html_escape(lanes_.lanes[l].label) + "</text>";
  }
  out_ += "</svg>\n<div class=\"tl-plot\">\n<svg id=\"timeline\" viewBox=\"0 0 " + num(kPlotWidth) +
          " " + num(plot_height_) + "\" preserveAspectRatio=\"none\" height=\"" +
          num(plot_height_) + "\">\n";
  out_ += axis_grid();
  for (std::size_t l = 1; l < lanes_.lanes.size(); ++l) {
    if (lanes_.lanes[l].host == lanes_.lanes[l - 1].host) continue;
    const std::string y = num(static_cast<double>(l) * lane_h);
    out_ += "<line x1=\"0\" x2=\"" + num(kPlotWidth) + "\" y1=\"" + y + "\" y2=\"" + y +
            "\" stroke=\"#9aa3ad\" stroke-width=\"1\" vector-effect=\"non-scaling-stroke\"/>\n";
  }
  out_ += svg;
  out_ += "</svg>\n<svg id=\"axis\" height=\"22\">" + axis_labels() + "</svg>\n</div>\n</div>\n";
  out_ +=
      "<div id=\"details\"><span class=\"empty\">Hover over an attempt for a summary; click it "
      "for everything its record says.</span></div>\n</section>\n";
}

void Page::timeline_bars(double lane_h, std::string& svg) {
  const double scale = kPlotWidth / std::max(span_->length(), 1e-3);
  const double bar_h = lane_h >= 8 ? lane_h - 3 : std::max(lane_h - 0.5, 1.0);
  const double pad = (lane_h - bar_h) / 2;
  for (std::size_t i = 0; i < attempts_.size(); ++i) {
    const int lane = lanes_.lane_of[i];
    if (lane < 0) continue;
    svg += bar(i, scale, static_cast<double>(lane) * lane_h + pad, bar_h);
  }
}

std::string Page::bar(std::size_t i, double scale, double y, double height) {
  const Attempt& a = attempts_[i];
  // At least about a pixel wide on a wide screen, so that a short attempt can be seen.
  const double width = std::max(a.wall_s * scale, kPlotWidth / 1400);
  return "<rect class=\"b s-" + status_name(a.status) + "\" x=\"" +
         num((*a.start_s - span_->begin) * scale) + "\" y=\"" + num(y) + "\" width=\"" +
         num(width) + "\" height=\"" + num(height) + "\" data-a=\"" + std::to_string(pick(i)) +
         "\"/>\n";
}

std::string Page::timeline_bins(double lane_h, std::string& svg) {
  const TimelineBins bins = bin_timeline(attempts_, lanes_, *span_, options_.bins);
  bin_s_ = bins.bin_s;
  auto shade_of = [&](std::size_t l, std::size_t b) {
    return std::clamp(static_cast<int>(std::ceil(bins.busy_s(l, b) / bins.bin_s * 5 - 1e-9)), 1, 5);
  };
  const double w = kPlotWidth / static_cast<double>(bins.bins);
  for (std::size_t l = 0; l < bins.busy.size(); ++l) {
    if (bins.busy[l].empty()) continue;
    // Neighbouring bins of one status and shade become one rectangle.
    std::size_t b = 0;
    while (b < bins.bins) {
      if (bins.busy_s(l, b) <= 0) {
        ++b;
        continue;
      }
      const Status status = bins.dominant(l, b);
      const int shade = shade_of(l, b);
      std::size_t end = b + 1;
      while (end < bins.bins && bins.busy_s(l, end) > 0 && bins.dominant(l, end) == status &&
             shade_of(l, end) == shade)
        ++end;
      svg += "<rect class=\"c s-" + status_name(status) + "\" x=\"" +
             num(static_cast<double>(b) * w) + "\" y=\"" + num(static_cast<double>(l) * lane_h) +
             "\" width=\"" + num(static_cast<double>(end - b) * w) + "\" height=\"" + num(lane_h) +
             "\" opacity=\"" + num(0.2 + 0.16 * shade) + "\" data-l=\"" + std::to_string(l) +
             "\" data-b0=\"" + std::to_string(b) + "\" data-b1=\"" + std::to_string(end - 1) +
             "\" data-p=\"" + std::to_string(shade * 20) + "\"/>\n";
      b = end;
    }
  }
  // The attempts that did not end ok, one by one on top, so that none hides in a bin.
  const double scale = kPlotWidth / std::max(span_->length(), 1e-3);
  std::size_t shown = 0, not_ok = 0;
  for (std::size_t i = 0; i < attempts_.size(); ++i) {
    if (lanes_.lane_of[i] < 0 || attempts_[i].status == Status::ok) continue;
    ++not_ok;
    if (shown >= options_.max_bars) continue;
    ++shown;
    svg += bar(i, scale, static_cast<double>(lanes_.lane_of[i]) * lane_h + 1,
               std::max(lane_h - 2, 1.0));
  }
  bins_note_ = "shade in steps of 20%";
  std::string note = std::to_string(bins.bins) + " bins of " + short_duration(bins.bin_s) +
                     " per lane; the " + with_commas(not_ok) +
                     " attempts that did not end ok are drawn one by one on top";
  if (shown < not_ok) note += " (the first " + with_commas(shown) + " of them)";
  return note + ".";
}

// Tick steps: 1, 2 or 5 times a power of ten seconds below a minute, whole minutes and hours
// above (the script uses the same list when it redraws the axis for a zoom).
double tick_step(double span_s) {
  static constexpr double kSteps[] = {0.001, 0.002, 0.005, 0.01,   0.02,  0.05, 0.1,  0.2,
                                      0.5,   1,     2,     5,      10,    15,   30,   60,
                                      120,   300,   600,   900,    1800,  3600, 7200, 10800,
                                      21600, 43200, 86400, 172800, 604800};
  for (double step : kSteps)
    if (span_s / step <= 10) return step;
  return kSteps[std::size(kSteps) - 1];
}

std::string tick_label(double s) {
  if (s == 0) return "0";
  if (s < 1) return num(s * 1000, 0) + "ms";
  if (s < 60) return num(s, 3) + "s";
  const auto total = static_cast<long long>(std::llround(s));
  const long long h = total / 3600, m = total % 3600 / 60, r = total % 60;
  return (h ? std::to_string(h) + "h" : "") + (m ? std::to_string(m) + "m" : "") +
         (r ? std::to_string(r) + "s" : "");
}

std::string Page::axis_grid() {
  std::string svg;
  const double step = tick_step(span_->length());
  for (double t = 0; t <= span_->length() + 1e-9; t += step) {
    const std::string x = num(t / std::max(span_->length(), 1e-3) * kPlotWidth);
    svg += "<line class=\"gridline\" x1=\"" + x + "\" x2=\"" + x + "\" y1=\"0\" y2=\"" +
           num(plot_height_) + "\"/>\n";
  }
  return svg;
}

std::string Page::axis_labels() {
  std::string svg;
  const double length = std::max(span_->length(), 1e-3);
  const double step = tick_step(length);
  for (double t = 0; t <= span_->length() + 1e-9; t += step) {
    const double frac = t / length;
    svg += "<text x=\"" + num(frac * 100, 3) + "%\" y=\"15\" text-anchor=\"" +
           (frac < 0.02   ? "start"
            : frac > 0.98 ? "end"
                          : "middle") +
           "\">" + tick_label(t) + "</text>";
  }
  return svg;
}

// Axis steps for the histograms: seconds from the timeline's list, bytes in powers of two.
double seconds_step(double hi) {
  return tick_step(hi * 10 / 5);  // about five ticks
}
double bytes_step(double hi) {
  double step = 1024;
  while (hi / step > 5) step *= 2;
  return step;
}

std::string Page::histogram(const std::string& title, const std::vector<Sample>& samples,
                            std::optional<double> limit, const std::string& limit_key,
                            const ValueAxis& axis) {
  std::string svg = "<div class=\"chart\"><h3>" + html_escape(title) + "</h3>\n";
  if (samples.empty()) {
    return svg + "<p class=\"note\">No record has this value.</p></div>\n";
  }
  double top_value = 0;
  for (const auto& s : samples) top_value = std::max(top_value, s.value);
  if (limit) top_value = std::max(top_value, *limit);
  // Whole ticks, with bins that divide them.
  const double step = axis.step(std::max(top_value, 1e-3));
  const auto ticks = static_cast<std::size_t>(std::max(1.0, std::floor(top_value / step) + 1));
  const double hi = static_cast<double>(ticks) * step;
  // Bins per tick that keep the bin width round: 10, 5, 2 or 1 for times, powers of two
  // for sizes.
  std::size_t per_tick = 1;
  for (std::size_t candidate :
       axis.binary ? std::vector<std::size_t>{8, 4, 2} : std::vector<std::size_t>{10, 5, 2}) {
    if (candidate * ticks <= kHistogramBins) {
      per_tick = candidate;
      break;
    }
  }
  const std::size_t bins = per_tick * ticks;
  const double bin = hi / static_cast<double>(bins);
  std::vector<std::array<std::uint64_t, TimelineBins::kStatuses>> counts(bins);
  for (auto& c : counts) c.fill(0);
  for (const auto& s : samples) {
    auto b = std::min(bins - 1, static_cast<std::size_t>(s.value / bin));
    ++counts[b][static_cast<std::size_t>(s.status)];
  }
  std::uint64_t top = 1;
  for (const auto& c : counts) {
    std::uint64_t n = 0;
    for (auto v : c) n += v;
    top = std::max(top, n);
  }
  // Plot area: x 46..552, y 14..166 in a 560 x 196 box.
  const double x0 = 46, x1 = 552, y0 = 14, y1 = 166;
  const double bw = (x1 - x0) / static_cast<double>(bins);
  svg += "<svg viewBox=\"0 0 560 196\" role=\"img\">\n";
  for (std::size_t b = 0; b < bins; ++b) {
    double y = y1;
    for (std::size_t s = 0; s < TimelineBins::kStatuses; ++s) {
      if (counts[b][s] == 0) continue;
      const double h = (y1 - y0) * static_cast<double>(counts[b][s]) / static_cast<double>(top);
      y -= h;
      svg += "<rect class=\"s-" + status_name(static_cast<Status>(s)) + "\" x=\"" +
             num(x0 + static_cast<double>(b) * bw + 0.5) + "\" y=\"" + num(y) + "\" width=\"" +
             num(std::max(bw - 1, 0.5)) + "\" height=\"" + num(h) + "\"/>";
    }
  }
  svg += "\n<line class=\"axisline\" x1=\"" + num(x0) + "\" x2=\"" + num(x1) + "\" y1=\"" +
         num(y1) + "\" y2=\"" + num(y1) + "\"/>";
  svg += "<line class=\"axisline\" x1=\"" + num(x0) + "\" x2=\"" + num(x0) + "\" y1=\"" + num(y0) +
         "\" y2=\"" + num(y1) + "\"/>";
  for (std::size_t t = 0; t <= ticks; ++t) {
    const double x = x0 + (x1 - x0) * static_cast<double>(t) / static_cast<double>(ticks);
    svg += "<line class=\"axisline\" x1=\"" + num(x) + "\" x2=\"" + num(x) + "\" y1=\"" + num(y1) +
           "\" y2=\"" + num(y1 + 3) + "\"/><text x=\"" + num(x) + "\" y=\"178\" text-anchor=\"" +
           (t == 0       ? "start"
            : t == ticks ? "end"
                         : "middle") +
           "\">" + html_escape(axis.format(static_cast<double>(t) * step)) + "</text>";
  }
  svg += "<text x=\"" + num(x0 - 4) + "\" y=\"" + num(y0 + 4) + "\" text-anchor=\"end\">" +
         with_commas(top) + "</text><text x=\"" + num(x0 - 4) + "\" y=\"" + num(y1) +
         "\" text-anchor=\"end\">0</text>";
  svg += "<text x=\"" + num((x0 + x1) / 2) + "\" y=\"194\" text-anchor=\"middle\">attempts per " +
         html_escape(axis.format(bin)) + "</text>";
  if (limit) {
    const double x = x0 + (x1 - x0) * *limit / hi;
    svg += "<line class=\"limit\" x1=\"" + num(x) + "\" x2=\"" + num(x) + "\" y1=\"" + num(y0 - 6) +
           "\" y2=\"" + num(y1) + "\"/><text class=\"limitlabel\" x=\"" + num(x - 4) + "\" y=\"" +
           num(y0 - 2) + "\" text-anchor=\"end\">" + html_escape(limit_key) + " " +
           html_escape(axis.format(*limit)) + "</text>";
  }
  return svg + "\n</svg></div>\n";
}

void Page::resources() {
  std::vector<Sample> walls, memory;
  std::vector<double> wall_values, memory_values, cpu_use;
  std::size_t timeouts = 0, ooms = 0;
  for (const auto& a : attempts_) {
    walls.push_back({a.wall_s, a.status});
    wall_values.push_back(a.wall_s);
    if (a.memory_peak_bytes) {
      memory.push_back({static_cast<double>(*a.memory_peak_bytes), a.status});
      memory_values.push_back(static_cast<double>(*a.memory_peak_bytes));
    }
    if (a.wall_s > 0) cpu_use.push_back(a.cpu_s / a.wall_s);
    timeouts += a.status == Status::timeout ? 1 : 0;
    ooms += a.status == Status::oom ? 1 : 0;
  }
  std::sort(wall_values.begin(), wall_values.end());
  std::sort(memory_values.begin(), memory_values.end());
  std::sort(cpu_use.begin(), cpu_use.end());
  const auto& limits = options_.limits;

  out_ +=
      "<section id=\"resources\">\n<h2>Wall time and memory against the limits<span "
      "class=\"sub\">every attempt, like <code>seff</code></span></h2>\n<p class=\"note\">";
  if (!limits.wall_time_s && !limits.memory_bytes) {
    out_ +=
        "Results records do not carry the limits a batch ran with: give them to draw them "
        "(<code>pollkill report --html FILE --wall-time 30m --memory 4GiB RESULTS</code>).";
  } else {
    out_ +=
        "Limits as given to <code>pollkill report</code> (tasks with limits of their own in "
        "the task file may have run under others).";
  }
  if (memory_values.size() < attempts_.size()) {
    out_ += " " + with_commas(attempts_.size() - memory_values.size()) +
            " attempts have no memory peak (<code>memory.peak</code> needs the memory controller "
            "in the task's cgroup).";
  }
  out_ += "</p>\n<div class=\"charts\">\n";
  out_ += histogram("Wall time", walls,
                    limits.wall_time_s ? std::optional<double>(*limits.wall_time_s) : std::nullopt,
                    "wall_time", {tick_label, seconds_step, false});
  out_ += histogram("Memory peak", memory,
                    limits.memory_bytes
                        ? std::optional<double>(static_cast<double>(*limits.memory_bytes))
                        : std::nullopt,
                    "memory", {format_bytes, bytes_step, true});
  out_ +=
      "</div>\n<table class=\"seff\">\n<tr><th></th><th class=\"r\">limit</th><th "
      "class=\"r\">median</th><th class=\"r\">90%</th><th class=\"r\">max</th><th "
      "class=\"r\">max of limit</th><th class=\"r\">above 80% of limit</th><th "
      "class=\"r\">stopped by it</th></tr>\n";
  auto row = [&](const std::string& name, const std::vector<double>& v, std::optional<double> limit,
                 std::string (*format)(double), std::optional<std::size_t> stopped) {
    out_ += "<tr><td>" + name + "</td><td class=\"r\">" + (limit ? format(*limit) : "-") + "</td>";
    if (v.empty()) {
      out_ += "<td class=\"r\" colspan=\"6\">not recorded</td></tr>\n";
      return;
    }
    out_ += "<td class=\"r\">" + format(quantile(v, 0.5)) + "</td><td class=\"r\">" +
            format(quantile(v, 0.9)) + "</td><td class=\"r\">" + format(v.back()) + "</td>";
    if (limit && *limit > 0) {
      const auto near =
          static_cast<std::size_t>(v.end() - std::lower_bound(v.begin(), v.end(), 0.8 * *limit));
      out_ += "<td class=\"r\">" + num(100 * v.back() / *limit, 0) + "%</td><td class=\"r\">" +
              with_commas(near) + "</td>";
    } else {
      out_ += "<td class=\"r\">-</td><td class=\"r\">-</td>";
    }
    out_ +=
        "<td class=\"r\">" + (stopped ? with_commas(*stopped) : std::string("-")) + "</td></tr>\n";
  };
  row("wall time", wall_values, limits.wall_time_s, format_seconds, timeouts);
  row("memory peak", memory_values,
      limits.memory_bytes ? std::optional<double>(static_cast<double>(*limits.memory_bytes))
                          : std::nullopt,
      format_bytes, ooms);
  row(
      "CPUs used (CPU time / wall)", cpu_use, std::nullopt, [](double v) { return num(v, 2); },
      std::nullopt);
  out_ += "</table>\n</section>\n";
}

void Page::slowest() {
  std::vector<std::size_t> order = finals_;
  const std::size_t n = std::min(kSlowestShown, order.size());
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
      [&](std::size_t a, std::size_t b) { return attempts_[a].wall_s > attempts_[b].wall_s; });
  out_ +=
      "<section id=\"slowest\">\n<h2>Slowest tasks<span class=\"sub\">by the wall time of "
      "their final attempt</span></h2>\n<table>\n<tr><th>id</th><th>status</th><th "
      "class=\"r\">wall</th><th class=\"r\">CPU</th><th class=\"r\">memory peak</th><th "
      "class=\"r\">attempts</th><th>command</th></tr>\n";
  for (std::size_t k = 0; k < n; ++k) {
    const Attempt& a = attempts_[order[k]];
    out_ += "<tr><td>" + id_link(order[k]) + "</td><td>" + pill(a.status) +
            "</td><td class=\"r\">" + short_duration(a.wall_s) + "</td><td class=\"r\">" +
            short_duration(a.cpu_s) + "</td><td class=\"r\">" +
            (a.memory_peak_bytes ? format_size(*a.memory_peak_bytes) : std::string("-")) +
            "</td><td class=\"r\">" + std::to_string(attempts_of_[a.id].size()) +
            "</td><td class=\"mono\">" + html_escape(a.command) + "</td></tr>\n";
  }
  out_ += "</table>\n</section>\n";
}

void Page::failures() {
  std::vector<std::size_t> failed;
  for (std::size_t i : finals_)
    if (attempts_[i].status != Status::ok) failed.push_back(i);
  out_ +=
      "<section id=\"failures\">\n<h2>Tasks that did not end ok<span class=\"sub\" "
      "data-count=\"failures\">" +
      with_commas(failed.size()) + "</span></h2>\n";
  if (failed.empty()) {
    out_ += "<p class=\"note\">Every task ended ok.</p>\n</section>\n";
    return;
  }
  out_ +=
      "<table>\n<tr><th>id</th><th>status</th><th>reason</th><th class=\"r\">attempts</th><th "
      "class=\"r\">wall</th><th>logs</th></tr>\n";
  for (std::size_t k = 0; k < failed.size() && k < kFailuresShown; ++k) {
    const Attempt& a = attempts_[failed[k]];
    out_ += "<tr><td>" + id_link(failed[k]) + "</td><td>" + pill(a.status) +
            "</td><td class=\"reason\">" + html_escape(a.reason) + "</td><td class=\"r\">" +
            std::to_string(attempts_of_[a.id].size()) + "</td><td class=\"r\">" +
            short_duration(a.wall_s) + "</td><td class=\"logs\">" + html_escape(a.stdout_path) +
            (a.stderr_path.empty() ? "" : "<br>") + html_escape(a.stderr_path) + "</td></tr>\n";
  }
  out_ += "</table>\n";
  if (failed.size() > kFailuresShown) {
    out_ += "<p class=\"note\">The first " + with_commas(kFailuresShown) + " of " +
            with_commas(failed.size()) + " are listed.</p>\n";
  }
  out_ += "</section>\n";
}

void Page::signatures() {
  struct Group {
    std::vector<std::size_t> members;
    std::map<Status, std::size_t> statuses;
  };
  std::map<std::string, Group> groups;
  for (std::size_t i = 0; i < attempts_.size(); ++i) {
    if (attempts_[i].stack_signature.empty()) continue;
    Group& g = groups[attempts_[i].stack_signature];
    g.members.push_back(i);
    ++g.statuses[attempts_[i].status];
  }
  out_ +=
      "<section id=\"signatures\">\n<h2>Hang and spin signatures<span class=\"sub\">attempts "
      "grouped by the <code>stack_signature</code> their record carries</span></h2>\n";
  if (groups.empty()) {
    out_ += "<p class=\"note\">No record carries a stack signature.</p>\n</section>\n";
    return;
  }
  std::vector<const std::pair<const std::string, Group>*> sorted;
  for (const auto& g : groups) sorted.push_back(&g);
  std::stable_sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) {
    return a->second.members.size() > b->second.members.size();
  });
  out_ +=
      "<table>\n<tr><th class=\"r\">attempts</th><th>statuses</th><th>signature</th><th>"
      "tasks</th></tr>\n";
  for (std::size_t k = 0; k < sorted.size() && k < kSignatureGroupsShown; ++k) {
    const auto& [signature, group] = *sorted[k];
    std::string statuses;
    for (const auto& [status, count] : group.statuses)
      statuses += (statuses.empty() ? "" : " ") + pill(status) + " " + std::to_string(count);
    std::string ids;
    for (std::size_t m = 0; m < group.members.size() && m < kSignatureIdsShown; ++m)
      ids += (m ? " " : "") + id_link(group.members[m]);
    if (group.members.size() > kSignatureIdsShown)
      ids += " and " + with_commas(group.members.size() - kSignatureIdsShown) + " more";
    out_ += "<tr><td class=\"r\">" + with_commas(group.members.size()) + "</td><td>" + statuses +
            "</td><td class=\"mono\">" + html_escape(signature) + "</td><td>" + ids +
            "</td></tr>\n";
  }
  out_ += "</table>\n";
  if (sorted.size() > kSignatureGroupsShown)
    out_ += "<p class=\"note\">The " + std::to_string(kSignatureGroupsShown) + " largest of " +
            with_commas(sorted.size()) + " groups are listed.</p>\n";
  out_ += "</section>\n";
}

void Page::data_block() {
  // Log paths usually share a directory (RESULTS.logs/): it is written once.
  std::vector<std::string_view> paths;
  for (std::size_t i : picked_order_) {
    if (!attempts_[i].stdout_path.empty()) paths.push_back(attempts_[i].stdout_path);
    if (!attempts_[i].stderr_path.empty()) paths.push_back(attempts_[i].stderr_path);
  }
  const std::string prefix = common_directory(paths);
  auto strip = [&](const std::string& p) { return p.empty() ? p : p.substr(prefix.size()); };
  nlohmann::json data;
  data["fields"] = {"id",
                    "attempt",
                    "final",
                    "status",
                    "reason",
                    "command",
                    "exit_code",
                    "signal",
                    "start",
                    "wall_s",
                    "cpu_s",
                    "memory_peak_bytes",
                    "lane",
                    "stdout",
                    "stderr",
                    "stack_signature",
                    "processes_reaped",
                    "line"};
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i : picked_order_) {
    const Attempt& a = attempts_[i];
    auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
    rows.push_back({a.id, a.attempt, a.final, status_name(a.status), a.reason, a.command,
                    opt(a.exit_code), opt(a.signal),
                    a.start_s
                        ? nlohmann::json(std::round((*a.start_s - span_->begin) * 1000) / 1000)
                        : nlohmann::json(),
                    a.wall_s, std::round(a.cpu_s * 1000) / 1000, opt(a.memory_peak_bytes),
                    lanes_.lane_of[i], strip(a.stdout_path), strip(a.stderr_path),
                    a.stack_signature, a.processes_reaped, a.line});
  }
  data["attempts"] = std::move(rows);
  data["log_prefix"] = prefix;
  data["source"] = options_.source;
  data["t0"] = span_ ? span_->begin : 0.0;
  data["span_s"] = span_ ? std::max(span_->length(), 1e-3) : 1.0;
  nlohmann::json lanes = nlohmann::json::array();
  for (const auto& lane : lanes_.lanes) lanes.push_back(lane.label);
  data["lanes"] = std::move(lanes);
  data["plot"] = {{"width", kPlotWidth}, {"height", plot_height_}};
  if (aggregated_) {
    data["bins"] = {{"bin_s", bin_s_}, {"note", bins_note_}};
  } else {
    data["bins"] = nullptr;
  }
  out_ += "<script type=\"application/json\" id=\"pk-data\">" + script_json(data) + "</script>\n";
}

std::string Page::render() {
  nonce_ = options_.nonce.empty() ? random_nonce() : options_.nonce;
  head();
  tiles();
  status_breakdown();
  timeline();
  resources();
  failures();
  slowest();
  signatures();
  out_ += "</main>\n<div id=\"tip\"></div>\n<footer>pollkill " POLLKILL_VERSION;
  if (!options_.generated_at.empty()) out_ += " · written " + html_escape(options_.generated_at);
  out_ += " · one self-contained file: nothing is loaded from anywhere</footer>\n";
  data_block();
  out_ += "<script nonce=\"" + nonce_ + "\">\n" + std::string(kReportJs) +
          "</script>\n</body>\n</html>\n";
  return std::move(out_);
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string script_json(const nlohmann::json& value) {
  const std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  // These characters can only occur inside JSON strings, where \uXXXX means the same.
  for (char c : text) {
    switch (c) {
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      default: out += c;
    }
  }
  return out;
}

std::string common_directory(const std::vector<std::string_view>& paths) {
  if (paths.empty()) return "";
  std::string_view prefix = paths.front();
  for (const auto& p : paths) {
    std::size_t n = 0;
    while (n < prefix.size() && n < p.size() && prefix[n] == p[n]) ++n;
    prefix = prefix.substr(0, n);
  }
  const auto slash = prefix.rfind('/');
  return slash == std::string_view::npos ? "" : std::string(prefix.substr(0, slash + 1));
}

double quantile(const std::vector<double>& sorted_values, double q) {
  if (sorted_values.empty()) return 0;
  const double rank =
      std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(sorted_values.size()));
  const auto index = static_cast<std::size_t>(std::max(rank, 1.0)) - 1;
  return sorted_values[std::min(index, sorted_values.size() - 1)];
}

std::string short_duration(double s) {
  if (!(s >= 0)) return "-";
  if (s < 10) return num(s, 2) + "s";
  if (s < 60) return num(s, 1) + "s";
  const auto total = static_cast<long long>(s);
  char buffer[64];
  if (total < 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", total / 60, total % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", total / 3600, total % 3600 / 60);
  }
  return buffer;
}

std::string render_html(const BatchRecords& batch, const HtmlOptions& options) {
  return Page(batch, options).render();
}

void write_report_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  if (!out) throw SystemError(errno, "open '" + path + "' for writing");
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.flush();
  if (!out) throw SystemError(errno, "write '" + path + "'");
}

}  // namespace pollkill
