// `pollkill report --html FILE`: one self-contained HTML page of a batch (inline SVG drawn
// here, inline CSS and a small inline script; nothing is loaded from anywhere), and the
// pieces of it that are worth testing on their own. docs/REPORT.md says what the page shows
// and why it is drawn this way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pollkill/timeline.h"

namespace pollkill {

/// The limits the batch ran with, drawn on the histograms (results records do not carry
/// them: `pollkill report --memory SIZE --wall-time DURATION`).
struct ReportLimits {
  std::optional<std::uint64_t> memory_bytes;
  std::optional<double> wall_time_s;
};

struct HtmlOptions {
  std::string source;  ///< the results file, as named on the command line (shown, escaped)
  ReportLimits limits;
  /// At most this many attempts are drawn bar by bar; beyond it every lane is drawn as
  /// `bins` time bins, and the attempts that did not end ok are drawn on top (at most
  /// max_bars of them).
  std::size_t max_bars = 10000;
  std::size_t bins = 600;
  /// The Content-Security-Policy nonce of the page's own <style> and <script>; a random
  /// one when empty. Only they may run: markup that slipped through escaping could not.
  std::string nonce;
  std::string generated_at;  ///< shown in the footer (RFC 3339); empty: not shown
};

/// The page. Every string from the records (ids, commands, reasons, paths, hosts) is
/// escaped for where it goes: html_escape in markup, script_json inside the data block.
std::string render_html(const BatchRecords& batch, const HtmlOptions& options);

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted
/// attribute values.
std::string html_escape(std::string_view text);

/// JSON text that can sit inside <script type="application/json"> whatever its strings
/// hold: `<`, `>` and `&` as \u escapes (so no `</script>` or `<!--` can appear), invalid
/// UTF-8 replaced.
std::string script_json(const nlohmann::json& value);

/// The longest common prefix of the paths that ends with '/' ("" when there is none).
std::string common_directory(const std::vector<std::string_view>& paths);

/// The value at fraction q (0..1) of sorted `values` (nearest rank); 0 when empty.
double quantile(const std::vector<double>& sorted_values, double q);

/// "0.73s", "12.4s", "2m05s", "1h02m": short and exact enough for tables and ticks.
std::string short_duration(double seconds);

/// Writes `text` to `path` (replacing it), or throws SystemError naming the file.
void write_report_file(const std::string& path, const std::string& text);

}  // namespace pollkill
