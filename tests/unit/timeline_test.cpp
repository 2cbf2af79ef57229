#include "pollkill/timeline.h"

#include "pollkill/diag.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

namespace pollkill {
namespace {

Attempt at(double start, double wall, std::string host = "", std::optional<int> slot = {}) {
  Attempt a;
  a.id = "t" + std::to_string(static_cast<long long>(start * 1000));
  a.start_s = 1'700'000'000 + start;
  a.wall_s = wall;
  a.host = std::move(host);
  a.slot = slot;
  a.status = Status::ok;
  return a;
}

// No two attempts on one lane overlap (beyond the tolerance).
void expect_no_overlap(const std::vector<Attempt>& attempts, const Lanes& lanes, double tolerance) {
  std::map<int, std::vector<std::pair<double, double>>> by_lane;
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    if (lanes.lane_of[i] < 0) continue;
    by_lane[lanes.lane_of[i]].emplace_back(*attempts[i].start_s,
                                           *attempts[i].start_s + attempts[i].wall_s);
  }
  for (auto& [lane, spans] : by_lane) {
    std::sort(spans.begin(), spans.end());
    for (std::size_t k = 1; k < spans.size(); ++k)
      EXPECT_GE(spans[k].first + tolerance, spans[k - 1].second) << "lane " << lane;
  }
}

TEST(Timeline, ParsesTheRecordsTimes) {
  struct Case {
    std::string text;
    std::optional<double> seconds;
  };
  const Case cases[] = {
      {"2023-11-14T22:13:20.000Z", 1'700'000'000.0},
      {"2023-11-14T22:13:20.250Z", 1'700'000'000.25},
      {"2023-11-14T22:13:20Z", 1'700'000'000.0},
      {"2023-11-14T23:13:20.5+01:00", 1'700'000'000.5},
      {"2023-11-14T21:13:20-01:00", 1'700'000'000.0},
      {"1970-01-01T00:00:00.000Z", std::nullopt},  // a start that was never set
      {"2023-11-14 22:13:20Z", 1'700'000'000.0},
      {"2023-11-14T22:13:20", std::nullopt},  // no zone: ambiguous
      {"2023-13-14T22:13:20Z", std::nullopt},
      {"2023-11-14T22:13:20.Z", std::nullopt},
      {"2023-11-14T22:13:20.000Zjunk", std::nullopt},
      {"yesterday", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    auto got = parse_rfc3339(c.text);
    ASSERT_EQ(got.has_value(), c.seconds.has_value()) << c.text;
    if (got) {
      EXPECT_NEAR(*got, *c.seconds, 1e-6) << c.text;
    }
  }
}

TEST(Timeline, AttemptFromARecord) {
  auto record = nlohmann::json::parse(R"({"id": "a1", "attempt": 2, "final": false,
    "command": ["sh", "-c", "echo 'hi' | wc"], "status": "hung", "reason": "no CPU use",
    "exit_code": null, "signal": 15, "started_at": "2023-11-14T22:13:20.000Z", "wall_s": 2.5,
    "cpu_user_s": 0.25, "cpu_system_s": 0.5, "memory_peak_bytes": 1048576,
    "processes_reaped": 3, "host": "node7", "slot": 4, "stdout": "r.logs/a1.2.out",
    "stderr": "r.logs/a1.2.err", "stack_signature": "poll<-main"})");
  auto a = attempt_from_record(record);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->id, "a1");
  EXPECT_EQ(a->attempt, 2);
  EXPECT_FALSE(a->final);
  EXPECT_EQ(a->status, Status::hung);
  EXPECT_EQ(a->command, "sh -c 'echo '\\''hi'\\'' | wc'");
  EXPECT_FALSE(a->exit_code);
  EXPECT_EQ(a->signal, 15);
  EXPECT_NEAR(*a->start_s, 1'700'000'000.0, 1e-6);
  EXPECT_DOUBLE_EQ(a->cpu_s, 0.75);
  EXPECT_EQ(a->memory_peak_bytes, 1048576u);
  EXPECT_EQ(a->processes_reaped, 3u);
  EXPECT_EQ(a->host, "node7");
  EXPECT_EQ(a->slot, 4);
  EXPECT_EQ(a->stderr_path, "r.logs/a1.2.err");
  EXPECT_EQ(a->stack_signature, "poll<-main");

  // Only id and status are needed; wrong types are ignored, not trusted.
  auto bare = attempt_from_record(nlohmann::json::parse(
      R"({"id": "b", "status": "ok", "memory_peak_bytes": -5, "slot": "x", "wall_s": -1})"));
  ASSERT_TRUE(bare);
  EXPECT_FALSE(bare->start_s);
  EXPECT_FALSE(bare->memory_peak_bytes);
  EXPECT_FALSE(bare->slot);
  EXPECT_EQ(bare->wall_s, 0);
  EXPECT_FALSE(attempt_from_record(nlohmann::json::parse(R"({"id": "c", "status": "great"})")));
  EXPECT_FALSE(attempt_from_record(nlohmann::json::parse(R"({"status": "ok"})")));
}

TEST(Timeline, PackingUsesTheFewestLanes) {
  // Three slots' worth of work: never more than three attempts at once.
  std::vector<Attempt> attempts = {at(0, 10), at(0, 4),  at(0, 2),    at(2, 3),  at(4, 6),
                                   at(5, 5),  at(10, 1), at(10, 0.5), at(12, 0), at(20, 1)};
  Lanes lanes = assign_lanes(attempts);
  EXPECT_EQ(lanes.source, LaneSource::packed);
  EXPECT_EQ(lanes.lanes.size(), 3u);
  EXPECT_EQ(lanes.hosts, 0u);
  expect_no_overlap(attempts, lanes, 0.005);
  // The lowest free lane is taken: the lone late attempt goes back to lane 1.
  EXPECT_EQ(lanes.lanes[lanes.lane_of.back()].number, 1);
  EXPECT_EQ(lanes.lanes[0].label, "lane 1");
}

TEST(Timeline, BackToBackAttemptsWithinTheToleranceShareALane) {
  // Starts to the millisecond, walls rounded: the second seems to start 1 ms early.
  std::vector<Attempt> attempts = {at(0, 1.001), at(1.000, 1), at(2.0, 1)};
  EXPECT_EQ(assign_lanes(attempts).lanes.size(), 1u);
  EXPECT_EQ(assign_lanes(attempts, 0).lanes.size(), 2u);
}

TEST(Timeline, RandomSchedulesNeverNeedMoreLanesThanSlots) {
  // Simulate a -j N scheduler: each slot runs tasks back to back; packing the recorded
  // intervals must not need more than N lanes, and lanes never overlap.
  std::mt19937 random(7);
  for (int jobs : {1, 2, 5, 16}) {
    std::vector<Attempt> attempts;
    std::vector<double> free_at(static_cast<std::size_t>(jobs), 0);
    for (int t = 0; t < 500; ++t) {
      auto slot = std::min_element(free_at.begin(), free_at.end());
      const double wall = std::uniform_real_distribution<double>(0, 3)(random);
      const double start = std::round(*slot * 1000) / 1000;  // recorded to the millisecond
      attempts.push_back(at(start, std::round(wall * 1000) / 1000));
      *slot = start + wall;
    }
    std::shuffle(attempts.begin(), attempts.end(), random);  // file order is not start order
    Lanes lanes = assign_lanes(attempts);
    EXPECT_LE(lanes.lanes.size(), static_cast<std::size_t>(jobs)) << jobs;
    expect_no_overlap(attempts, lanes, 0.005);
  }
}

TEST(Timeline, LanesPerHostAndRecordedSlots) {
  std::vector<Attempt> attempts = {at(0, 5, "node2"), at(0, 5, "node1"), at(1, 5, "node1"),
                                   at(0, 5, "node3", 3), at(1, 5, "node3", 7)};
  attempts.push_back(at(0, 1));
  attempts.back().start_s.reset();  // no start: not on the timeline
  Lanes lanes = assign_lanes(attempts);
  EXPECT_EQ(lanes.hosts, 3u);
  ASSERT_EQ(lanes.lanes.size(), 5u);
  EXPECT_EQ(lanes.lanes[0].label, "node1 · lane 1");
  EXPECT_EQ(lanes.lanes[1].label, "node1 · lane 2");
  EXPECT_EQ(lanes.lanes[2].label, "node2 · lane 1");
  EXPECT_EQ(lanes.lanes[3].label, "node3 · slot 3");
  EXPECT_EQ(lanes.lanes[4].label, "node3 · slot 7");
  EXPECT_EQ(lanes.lane_of[0], 2);
  EXPECT_EQ(lanes.lane_of[4], 4);
  EXPECT_EQ(lanes.lane_of[5], -1);
  EXPECT_EQ(lanes.source, LaneSource::packed);  // node1 and node2 were packed

  std::vector<Attempt> slotted = {at(0, 5, "", 0), at(0, 5, "", 1), at(5, 5, "", 0)};
  Lanes recorded = assign_lanes(slotted);
  EXPECT_EQ(recorded.source, LaneSource::recorded_slots);
  EXPECT_EQ(recorded.lanes.size(), 2u);
  EXPECT_EQ(recorded.lane_of[2], recorded.lane_of[0]);
}

TEST(Timeline, BinsKeepEveryBusySecond) {
  std::vector<Attempt> attempts = {at(0, 10), at(0, 2.5), at(3, 1), at(9.99, 0)};
  attempts[1].status = Status::hung;
  Lanes lanes = assign_lanes(attempts);
  Span span = *time_span(attempts);
  EXPECT_DOUBLE_EQ(span.length(), 10);
  TimelineBins bins = bin_timeline(attempts, lanes, span, 10);
  EXPECT_EQ(bins.bins, 10u);
  EXPECT_DOUBLE_EQ(bins.bin_s, 1);
  double total = 0;
  for (std::size_t l = 0; l < lanes.lanes.size(); ++l)
    for (std::size_t b = 0; b < bins.bins; ++b) total += bins.busy_s(l, b);
  // 10 + 2.5 + 1, plus the zero-length attempt's marker.
  EXPECT_NEAR(total, 13.5 + 1e-3, 1e-4);
  const auto lane2 = static_cast<std::size_t>(lanes.lane_of[1]);
  EXPECT_EQ(bins.dominant(lane2, 0), Status::hung);
  EXPECT_NEAR(bins.busy_s(lane2, 2), 0.5, 1e-6);
  EXPECT_EQ(bins.dominant(lane2, 3), Status::ok);
  EXPECT_NEAR(bins.busy_s(lane2, 5), 0, 1e-9);
}

TEST(Timeline, ReadBatchCountsAsReportDoes) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("pk-timeline-" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream out(path);
    out << R"({"id": "1", "attempt": 1, "final": false, "status": "hung", "started_at": "2023-11-14T22:13:20.000Z", "wall_s": 1})"
        << "\n"
        << R"({"id": "1", "attempt": 2, "final": true, "status": "ok", "started_at": "2023-11-14T22:13:22.000Z", "wall_s": 1})"
        << "\n"
        << "{torn\n"
        << R"({"id": "2", "attempt": 1, "final": true, "status": "failed", "started_at": "2023-11-14T22:13:20.000Z", "wall_s": 3})"
        << "\n";
  }
  std::string warnings;
  diag::set_writer([&](std::string_view text) { warnings += text; });
  BatchRecords batch = read_batch_records(path.string());
  diag::set_writer({});
  std::filesystem::remove(path);
  EXPECT_NE(warnings.find(path.string() + ":3: not a record, skipped"), std::string::npos)
      << warnings;
  ASSERT_EQ(batch.attempts.size(), 3u);
  EXPECT_EQ(batch.attempts[2].line, 4u);
  EXPECT_EQ(batch.summary.finals(), 2u);
  EXPECT_EQ(batch.summary.count(Status::ok), 1u);
  EXPECT_EQ(batch.summary.count(Status::failed), 1u);
  EXPECT_EQ(batch.summary.to_json()["retries"], 1);
}

}  // namespace
}  // namespace pollkill
