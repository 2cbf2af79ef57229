// `pollkill report --html` and `--trace`, from synthetic records: escaping of hostile
// strings, one bar per attempt, counts, aggregation beyond max_bars, the trace's structure.
#include "pollkill/report_html.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>

#include "pollkill/report_trace.h"

namespace pollkill {
namespace {

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

nlohmann::json record(const std::string& id, const std::string& status, double start, double wall,
                      int attempt = 1, bool final = true) {
  char started[64];
  const int whole = static_cast<int>(start);
  std::snprintf(started, sizeof started, "2023-11-14T22:%02d:%02d.%03dZ", whole / 60 % 60,
                whole % 60, static_cast<int>((start - whole) * 1000 + 0.5));
  return {{"id", id},
          {"attempt", attempt},
          {"final", final},
          {"command", {"sh", "-c", "work " + id}},
          {"status", status},
          {"reason", status == "ok" ? "exited 0" : "it went " + status},
          {"exit_code", status == "ok" ? nlohmann::json(0) : nlohmann::json()},
          {"signal", nullptr},
          {"started_at", started},
          {"wall_s", wall},
          {"cpu_user_s", wall / 2},
          {"cpu_system_s", 0.0},
          {"memory_peak_bytes", 50u << 20},
          {"processes_reaped", 0},
          {"stdout", "/data/run.logs/" + id + "." + std::to_string(attempt) + ".out"},
          {"stderr", "/data/run.logs/" + id + "." + std::to_string(attempt) + ".err"}};
}

BatchRecords records_of_batch(const std::vector<nlohmann::json>& records) {
  BatchRecords batch;
  std::uint64_t line = 0;
  for (const auto& r : records) {
    ++line;
    auto a = attempt_from_record(r);
    auto s = SummaryRecord::from(r);
    if (!a || !s) continue;
    a->line = line;
    batch.summary.add(*s);
    batch.attempts.push_back(*a);
  }
  return batch;
}

// The text of the data block, decoded.
nlohmann::json data_block(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"pk-data\">";
  auto begin = html.find(open);
  EXPECT_NE(begin, std::string::npos);
  begin += open.size();
  auto end = html.find("</script>", begin);
  return nlohmann::json::parse(html.substr(begin, end - begin));
}

TEST(ReportHtml, EscapesForMarkup) {
  EXPECT_EQ(html_escape("a<b>&\"c\"'d'"), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
  EXPECT_EQ(html_escape("plain ü"), "plain ü");
  EXPECT_EQ(html_escape(""), "");
}

TEST(ReportHtml, ScriptJsonCannotCloseItsBlock) {
  const nlohmann::json value = {{"id", "</script><img src=x onerror=alert(1)>"},
                                {"c", "<!-- & -->"},
                                {"bad", std::string("\xff\xfe", 2)}};
  const std::string text = script_json(value);
  EXPECT_EQ(text.find('<'), std::string::npos) << text;
  EXPECT_EQ(text.find('>'), std::string::npos) << text;
  EXPECT_EQ(text.find('&'), std::string::npos) << text;
  auto back = nlohmann::json::parse(text);
  EXPECT_EQ(back["id"], value["id"]);
  EXPECT_EQ(back["c"], value["c"]);
  EXPECT_EQ(back["bad"], "\xEF\xBF\xBD\xEF\xBF\xBD");  // invalid UTF-8 replaced
}

TEST(ReportHtml, SmallHelpers) {
  EXPECT_EQ(common_directory({"/d/r.logs/1.1.out", "/d/r.logs/1.1.err", "/d/r.logs/22.1.out"}),
            "/d/r.logs/");
  EXPECT_EQ(common_directory({"/d/r.logs/a.out", "/d/r.logsx/a.out"}), "/d/");
  EXPECT_EQ(common_directory({"a.out", "b.out"}), "");
  EXPECT_EQ(common_directory({}), "");

  const std::vector<double> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(quantile(v, 0.5), 5);
  EXPECT_EQ(quantile(v, 0.9), 9);
  EXPECT_EQ(quantile(v, 1), 10);
  EXPECT_EQ(quantile(v, 0), 1);
  EXPECT_EQ(quantile({}, 0.5), 0);

  struct Case {
    double seconds;
    const char* text;
  };
  for (const Case& c : {Case{0, "0s"}, Case{0.731, "0.73s"}, Case{12.44, "12.4s"},
                        Case{125, "2m05s"}, Case{3725, "1h02m"}, Case{-1, "-"}})
    EXPECT_EQ(short_duration(c.seconds), c.text) << c.seconds;
}

TEST(ReportHtml, HostileRecordsCannotBreakOrScriptThePage) {
  const std::string evil = "</script><img src=x onerror=alert(1)>";
  auto r = record(evil, "failed", 0, 1);
  r["command"] = {"sh", "-c", "echo '<script>alert(2)</script>' \"$X\" && <!--"};
  r["reason"] = "exited with code 1 ]]> <svg onload=alert(3)>";
  r["stdout"] = "/tmp/\"><iframe src=//evil>.out";
  r["host"] = "node'1\"<b>";
  r["stack_signature"] = "<style>*{display:none}</style>";
  BatchRecords batch = records_of_batch({r, record("ok1", "ok", 1, 1)});
  HtmlOptions options;
  options.source = "results <b>.jsonl";
  options.nonce = "n0nce";
  const std::string html = render_html(batch, options);

  // Only the page's own elements: none of the records' markup became an element.
  for (const char* tag : {"<img", "<iframe", "<svg onload", "<b>", "<style>*", "<!--"})
    EXPECT_EQ(html.find(tag), std::string::npos) << tag;
  EXPECT_EQ(count_of(html, "<script"), 2u);
  EXPECT_EQ(count_of(html, "</script>"), 2u);
  EXPECT_EQ(count_of(html, "<style"), 1u);
  EXPECT_NE(html.find(html_escape(evil)), std::string::npos);
  EXPECT_NE(html.find("results &lt;b&gt;.jsonl"), std::string::npos);
  // Only nonced style and script may apply, and nothing may be fetched.
  EXPECT_NE(html.find("default-src 'none'; style-src 'nonce-n0nce'; script-src 'nonce-n0nce'"),
            std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  // The strings arrive intact in the data block.
  auto data = data_block(html);
  EXPECT_EQ(data["attempts"][0][0], evil);
  EXPECT_EQ(data["attempts"][0][5],
            "sh -c 'echo '\\''<script>alert(2)</script>'\\'' \"$X\" && <!--'");
}

TEST(ReportHtml, OneBarPerAttemptAndTheSummaryCounts) {
  std::vector<nlohmann::json> records = {
      record("1", "hung", 0, 2, 1, false), record("1", "ok", 3, 1, 2),
      record("2", "failed", 0, 4),         record("3", "crashed", 1, 0.5),
      record("4", "timeout", 2, 3),        record("5", "ok", 4.5, 0.001)};
  records.push_back({{"id", "6"}, {"status", "exec_error"}});  // no start: counted, not drawn
  BatchRecords batch = records_of_batch(records);
  HtmlOptions options;
  options.limits.wall_time_s = 3;
  options.limits.memory_bytes = 64u << 20;
  const std::string html = render_html(batch, options);
  EXPECT_EQ(count_of(html, "<rect class=\"b "), 6u);
  EXPECT_EQ(count_of(html, "<rect class=\"c "), 0u);
  for (auto [status, count] : std::map<std::string, int>{
           {"ok", 2}, {"failed", 1}, {"crashed", 1}, {"timeout", 1}, {"exec_error", 1}})
    EXPECT_NE(html.find("data-count-status=\"" + status + "\">" + std::to_string(count) + "<"),
              std::string::npos)
        << status;
  EXPECT_EQ(html.find("data-count-status=\"hung\""), std::string::npos);  // not final
  EXPECT_NE(html.find("data-count=\"tasks\">6<"), std::string::npos);
  EXPECT_NE(html.find("data-count=\"retries\">1<"), std::string::npos);
  EXPECT_NE(html.find("data-count=\"attempts\">7<"), std::string::npos);
  EXPECT_NE(html.find("data-count=\"failures\">4<"), std::string::npos);
  EXPECT_NE(html.find("1 record has no start time"), std::string::npos);
  EXPECT_NE(html.find("wall_time 3s"), std::string::npos);
  EXPECT_NE(html.find("memory 64MiB"), std::string::npos);
  // Each bar's data-a points at its own attempt in the data block.
  auto data = data_block(html);
  std::regex bar("<rect class=\"b s-([a-z_]+)\"[^>]* data-a=\"([0-9]+)\"");
  std::set<std::string> seen;
  for (std::sregex_iterator it(html.begin(), html.end(), bar), end; it != end; ++it) {
    const auto& row = data["attempts"][std::stoul((*it)[2])];
    EXPECT_EQ(row[3], (*it)[1]);
    seen.insert(row[0].get<std::string>() + "#" + std::to_string(row[1].get<int>()));
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(data["log_prefix"], "/data/run.logs/");
  EXPECT_EQ(data["lanes"].size(), 3u);  // at most three attempts ran at once
}

TEST(ReportHtml, BeyondMaxBarsLanesAreBinnedAndFailuresStillDrawn) {
  std::vector<nlohmann::json> records;
  std::size_t not_ok = 0;
  for (int i = 0; i < 2000; ++i) {
    const bool bad = i % 97 == 0;
    not_ok += bad ? 1 : 0;
    records.push_back(record(std::to_string(i), bad ? "spinning" : "ok", (i / 4) * 0.5, 0.5));
  }
  BatchRecords batch = records_of_batch(records);
  HtmlOptions options;
  options.max_bars = 100;
  options.bins = 50;
  const std::string html = render_html(batch, options);
  EXPECT_EQ(count_of(html, "<rect class=\"b "), not_ok);
  EXPECT_GT(count_of(html, "<rect class=\"c s-ok"), 0u);
  EXPECT_LE(count_of(html, "<rect class=\"c "), 4u * 50u);
  EXPECT_NE(html.find("2,000 attempts are more than a browser draws well (100)"),
            std::string::npos);
  EXPECT_NE(html.find("the " + std::to_string(not_ok) + " attempts that did not end ok"),
            std::string::npos);
  char ok[32];  // shown with a thousands separator
  std::snprintf(ok, sizeof ok, "%zu,%03zu", (2000 - not_ok) / 1000, (2000 - not_ok) % 1000);
  EXPECT_NE(html.find("data-count-status=\"ok\">" + std::string(ok) + "<"), std::string::npos);
}

TEST(ReportHtml, AnEmptyResultsFileStillMakesAPage) {
  const std::string html = render_html(BatchRecords{}, HtmlOptions{});
  EXPECT_NE(html.find("No record has a start time"), std::string::npos);
  EXPECT_NE(html.find("data-count=\"tasks\">0<"), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

TEST(ReportTrace, OneEventPerAttemptOnNonOverlappingThreads) {
  std::vector<nlohmann::json> records = {
      record("1", "hung", 0, 2, 1, false), record("1", "ok", 2.0, 1, 2),
      record("2", "failed", 0, 4.002), record("3", "crashed", 4, 0.5),
      record("a\"</script>", "ok", 1, 0.25)};
  records[2]["host"] = "node1";
  records[3]["host"] = "node1";
  records.push_back({{"id", "6"}, {"status", "exec_error"}});
  BatchRecords batch = records_of_batch(records);
  auto trace = nlohmann::json::parse(render_trace(batch, "run.jsonl"));
  EXPECT_EQ(trace["displayTimeUnit"], "ms");
  EXPECT_EQ(trace["otherData"]["records_without_start"], 1);
  EXPECT_EQ(trace["otherData"]["started_at"], "2023-11-14T22:00:00.000Z");
  std::map<std::pair<int, int>, std::string> thread_names;
  std::map<int, std::string> process_names;
  std::map<std::pair<int, int>, std::vector<std::pair<std::int64_t, std::int64_t>>> slices;
  std::size_t complete = 0;
  for (const auto& e : trace["traceEvents"]) {
    ASSERT_TRUE(e["pid"].is_number_integer());
    ASSERT_TRUE(e["tid"].is_number_integer());
    if (e["ph"] == "M") {
      if (e["name"] == "thread_name") thread_names[{e["pid"], e["tid"]}] = e["args"]["name"];
      if (e["name"] == "process_name") process_names[e["pid"]] = e["args"]["name"];
      continue;
    }
    ASSERT_EQ(e["ph"], "X");
    ++complete;
    ASSERT_TRUE(e["ts"].is_number_integer());
    ASSERT_TRUE(e["dur"].is_number_integer());
    EXPECT_GE(e["ts"].get<std::int64_t>(), 0);
    EXPECT_EQ(e["cat"], e["args"]["status"]);
    EXPECT_TRUE(thread_names.count({e["pid"], e["tid"]})) << e.dump();
    slices[{e["pid"], e["tid"]}].emplace_back(e["ts"], e["dur"]);
  }
  EXPECT_EQ(complete, 5u);
  EXPECT_EQ(process_names.size(), 2u);
  EXPECT_EQ(process_names[1], "pollkill batch");
  EXPECT_EQ(process_names[2], "node1");
  for (auto& [thread, list] : slices) {
    std::sort(list.begin(), list.end());
    for (std::size_t k = 1; k < list.size(); ++k)
      EXPECT_LE(list[k - 1].first + list[k - 1].second, list[k].first)
          << thread_names[thread] << " overlaps";
  }
}

}  // namespace
}  // namespace pollkill
