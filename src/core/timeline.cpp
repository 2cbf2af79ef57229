#include "pollkill/timeline.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <queue>
#include <set>

#include "pollkill/result.h"
#include "pollkill/results.h"

namespace pollkill {
namespace {

template <typename T>
std::optional<T> number_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  if constexpr (std::is_unsigned_v<T>) {
    if (!it->is_number_unsigned()) return std::nullopt;
  }
  if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) return std::nullopt;
  }
  return it->get<T>();
}

std::string string_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Reads `count` digits at `pos`; -1 when they are not all digits.
int digits(const std::string& s, std::size_t pos, std::size_t count) {
  if (pos + count > s.size()) return -1;
  int value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    value = value * 10 + (s[i] - '0');
  }
  return value;
}

}  // namespace

std::optional<double> parse_rfc3339(const std::string& text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  const int year = digits(text, 0, 4), month = digits(text, 5, 2), day = digits(text, 8, 2);
  const int hour = digits(text, 11, 2), minute = digits(text, 14, 2), second = digits(text, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
      minute < 0 || minute > 59 || second < 0 || second > 60 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  std::size_t pos = 19;
  double fraction = 0;
  if (pos < text.size() && text[pos] == '.') {
    double scale = 0.1;
    ++pos;
    const std::size_t first = pos;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos, scale /= 10)
      fraction += (text[pos] - '0') * scale;
    if (pos == first) return std::nullopt;
  }
  int offset_s = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int oh = digits(text, pos + 1, 2), om = digits(text, pos + 4, 2);
    if (oh < 0 || om < 0 || pos + 3 >= text.size() || text[pos + 3] != ':') return std::nullopt;
    offset_s = (oh * 3600 + om * 60) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const double seconds = static_cast<double>(::timegm(&tm)) + fraction - offset_s;
  if (seconds == 0) return std::nullopt;  // a time_point{} written as is: no start recorded
  return seconds;
}

std::string utc_rfc3339(double epoch_s) {
  return format_rfc3339_ms(std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::duration<double>(epoch_s))));
}

std::optional<Attempt> attempt_from_record(const nlohmann::json& j) {
  auto summary = SummaryRecord::from(j);
  if (!summary) return std::nullopt;
  Attempt a;
  a.id = summary->id;
  a.attempt = summary->attempt;
  a.final = summary->final;
  a.status = summary->status;
  a.reason = summary->reason;
  a.wall_s = std::max(0.0, summary->wall_s);
  a.processes_reaped = summary->processes_reaped;
  a.stdout_path = summary->stdout_path;
  a.stderr_path = summary->stderr_path;
  if (auto it = j.find("command"); it != j.end() && it->is_array()) {
    std::vector<std::string> words;
    for (const auto& word : *it)
      words.push_back(word.is_string() ? word.get<std::string>() : word.dump());
    a.command = shell_join(words);
  }
  a.exit_code = number_field<int>(j, "exit_code");
  a.signal = number_field<int>(j, "signal");
  a.start_s = parse_rfc3339(string_field(j, "started_at"));
  a.cpu_s = std::max(0.0, number_field<double>(j, "cpu_user_s").value_or(0) +
                              number_field<double>(j, "cpu_system_s").value_or(0));
  a.memory_peak_bytes = number_field<std::uint64_t>(j, "memory_peak_bytes");
  a.host = string_field(j, "host");
  a.slot = number_field<int>(j, "slot");
  a.stack_signature = string_field(j, "stack_signature");
  return a;
}

BatchRecords read_batch_records(const std::string& path) {
  BatchRecords batch;
  for_each_record(path,
                  [&](const nlohmann::json& json, const SummaryRecord& record, std::uint64_t line) {
                    batch.summary.add(record);
                    if (auto attempt = attempt_from_record(json)) {
                      attempt->line = line;
                      batch.attempts.push_back(std::move(*attempt));
                    }
                  });
  return batch;
}

Lanes assign_lanes(const std::vector<Attempt>& attempts, double tolerance_s) {
  Lanes out;
  out.lane_of.assign(attempts.size(), -1);
  std::map<std::string, std::vector<std::size_t>> groups;  // host -> attempts with a start
  for (std::size_t i = 0; i < attempts.size(); ++i)
    if (attempts[i].start_s) groups[attempts[i].host].push_back(i);

  bool any_packed = false;
  for (auto& [host, members] : groups) {
    if (!host.empty()) ++out.hosts;
    const bool slotted = std::all_of(members.begin(), members.end(), [&](std::size_t i) {
      return attempts[i].slot.has_value() && *attempts[i].slot >= 0;
    });
    std::vector<int> number(members.size());  // 1-based lane number within the group
    if (slotted) {
      for (std::size_t k = 0; k < members.size(); ++k) number[k] = *attempts[members[k]].slot;
    } else {
      any_packed = true;
      std::stable_sort(members.begin(), members.end(), [&](std::size_t a, std::size_t b) {
        return *attempts[a].start_s < *attempts[b].start_s;
      });
      using Busy = std::pair<double, int>;  // end, lane
      std::priority_queue<Busy, std::vector<Busy>, std::greater<>> busy;
      std::set<int> free;
      int lanes = 0;
      for (std::size_t k = 0; k < members.size(); ++k) {
        const Attempt& a = attempts[members[k]];
        while (!busy.empty() && busy.top().first <= *a.start_s + tolerance_s) {
          free.insert(busy.top().second);
          busy.pop();
        }
        int lane;
        if (free.empty()) {
          lane = ++lanes;
        } else {
          lane = *free.begin();
          free.erase(free.begin());
        }
        number[k] = lane;
        busy.emplace(*a.start_s + a.wall_s, lane);
      }
    }
    std::set<int> used(number.begin(), number.end());
    std::map<int, int> index;
    for (int n : used) {
      index[n] = static_cast<int>(out.lanes.size());
      std::string label = slotted ? "slot " + std::to_string(n) : "lane " + std::to_string(n);
      if (!host.empty()) label = host + " · " + label;
      out.lanes.push_back({host, n, std::move(label)});
    }
    for (std::size_t k = 0; k < members.size(); ++k) out.lane_of[members[k]] = index[number[k]];
  }
  out.source = any_packed || groups.empty() ? LaneSource::packed : LaneSource::recorded_slots;
  return out;
}

std::optional<Span> time_span(const std::vector<Attempt>& attempts) {
  std::optional<Span> span;
  for (const auto& a : attempts) {
    if (!a.start_s) continue;
    const double end = *a.start_s + a.wall_s;
    if (!span) {
      span = Span{*a.start_s, end};
    } else {
      span->begin = std::min(span->begin, *a.start_s);
      span->end = std::max(span->end, end);
    }
  }
  return span;
}

double TimelineBins::busy_s(std::size_t lane, std::size_t bin) const {
  if (busy[lane].empty()) return 0;
  double total = 0;
  for (std::size_t s = 0; s < kStatuses; ++s) total += busy[lane][bin * kStatuses + s];
  return total;
}

Status TimelineBins::dominant(std::size_t lane, std::size_t bin) const {
  std::size_t best = 0;
  for (std::size_t s = 1; s < kStatuses; ++s)
    if (busy[lane][bin * kStatuses + s] >= busy[lane][bin * kStatuses + best] &&
        busy[lane][bin * kStatuses + s] > 0)
      best = s;
  return static_cast<Status>(best);
}

TimelineBins bin_timeline(const std::vector<Attempt>& attempts, const Lanes& lanes,
                          const Span& span, std::size_t bins) {
  TimelineBins out;
  out.bins = std::max<std::size_t>(bins, 1);
  out.bin_s = std::max(span.length(), 1e-3) / static_cast<double>(out.bins);
  out.busy.resize(lanes.lanes.size());
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    const int lane = lanes.lane_of[i];
    if (lane < 0) continue;
    auto& cells = out.busy[static_cast<std::size_t>(lane)];
    if (cells.empty()) cells.assign(out.bins * TimelineBins::kStatuses, 0.0f);
    const double start = *attempts[i].start_s - span.begin;
    const double end = start + attempts[i].wall_s;
    const auto status = static_cast<std::size_t>(attempts[i].status);
    const auto last = out.bins - 1;
    auto first_bin = std::min(last, static_cast<std::size_t>(std::max(0.0, start / out.bin_s)));
    auto last_bin = std::min(last, static_cast<std::size_t>(std::max(0.0, end / out.bin_s)));
    for (std::size_t b = first_bin; b <= last_bin; ++b) {
      const double lo = std::max(start, static_cast<double>(b) * out.bin_s);
      const double hi = std::min(end, static_cast<double>(b + 1) * out.bin_s);
      // An attempt shorter than a millisecond still marks its bin.
      cells[b * TimelineBins::kStatuses + status] +=
          static_cast<float>(std::max(hi - lo, end == start ? 1e-3 : 0.0));
    }
  }
  return out;
}

}  // namespace pollkill
