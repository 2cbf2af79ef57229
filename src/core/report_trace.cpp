#include "pollkill/report_trace.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace pollkill {
namespace {

// trace-viewer's reserved colour names (Perfetto picks its own colours and ignores them).
const char* colour_name(Status status) {
  switch (status) {
    case Status::ok: return "good";
    case Status::failed:
    case Status::exec_error:
    case Status::output_limit: return "bad";
    case Status::crashed:
    case Status::oom:
    case Status::blocked: return "terrible";
    case Status::timeout:
    case Status::cpu_limit:
    case Status::hung:
    case Status::spinning:
    case Status::thrashing: return "yellow";
    case Status::cancelled: return "grey";
    case Status::error: return "black";
  }
  return "grey";
}

std::int64_t micros(double seconds) {
  return static_cast<std::int64_t>(std::llround(seconds * 1e6));
}

nlohmann::json or_null(const auto& value) {
  return value ? nlohmann::json(*value) : nlohmann::json();
}

}  // namespace

std::string render_trace(const BatchRecords& batch, const std::string& source) {
  const auto& attempts = batch.attempts;
  const Lanes lanes = assign_lanes(attempts);
  const auto span = time_span(attempts);

  // pid per host group, tid per lane (its index + 1: unique, and never 0).
  std::map<std::string, int> pid_of;
  for (const auto& lane : lanes.lanes) pid_of.try_emplace(lane.host, 0);
  int next_pid = 1;
  for (auto& [host, pid] : pid_of) pid = next_pid++;

  std::string out = "{\"traceEvents\":[\n";
  bool first = true;
  auto emit = [&](const nlohmann::json& event) {
    if (!first) out += ",\n";
    first = false;
    out += event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  for (const auto& [host, pid] : pid_of) {
    emit({{"ph", "M"},
          {"name", "process_name"},
          {"pid", pid},
          {"tid", 0},
          {"args", {{"name", host.empty() ? std::string("pollkill batch") : host}}}});
    emit({{"ph", "M"},
          {"name", "process_sort_index"},
          {"pid", pid},
          {"tid", 0},
          {"args", {{"sort_index", pid}}}});
  }
  for (std::size_t l = 0; l < lanes.lanes.size(); ++l) {
    const int pid = pid_of[lanes.lanes[l].host];
    const auto tid = static_cast<int>(l + 1);
    emit({{"ph", "M"},
          {"name", "thread_name"},
          {"pid", pid},
          {"tid", tid},
          {"args", {{"name", lanes.lanes[l].label}}}});
    emit({{"ph", "M"},
          {"name", "thread_sort_index"},
          {"pid", pid},
          {"tid", tid},
          {"args", {{"sort_index", lanes.lanes[l].number}}}});
  }

  // Per lane in start order, so that each event can end where the next one starts.
  std::vector<std::vector<std::size_t>> on_lane(lanes.lanes.size());
  for (std::size_t i = 0; i < attempts.size(); ++i)
    if (lanes.lane_of[i] >= 0) on_lane[static_cast<std::size_t>(lanes.lane_of[i])].push_back(i);
  for (std::size_t l = 0; l < on_lane.size(); ++l) {
    auto& members = on_lane[l];
    std::stable_sort(members.begin(), members.end(), [&](std::size_t a, std::size_t b) {
      return *attempts[a].start_s < *attempts[b].start_s;
    });
    for (std::size_t k = 0; k < members.size(); ++k) {
      const Attempt& a = attempts[members[k]];
      const std::int64_t ts = micros(*a.start_s - span->begin);
      std::int64_t dur = micros(a.wall_s);
      if (k + 1 < members.size())
        dur = std::min(dur, micros(*attempts[members[k + 1]].start_s - span->begin) - ts);
      dur = std::max<std::int64_t>(dur, 0);
      nlohmann::json args = {{"status", std::string(to_string(a.status))},
                             {"reason", a.reason},
                             {"attempt", a.attempt},
                             {"final", a.final},
                             {"command", a.command},
                             {"exit_code", or_null(a.exit_code)},
                             {"signal", or_null(a.signal)},
                             {"started_at", utc_rfc3339(*a.start_s)},
                             {"wall_s", a.wall_s},
                             {"cpu_s", std::round(a.cpu_s * 1000) / 1000},
                             {"memory_peak_bytes", or_null(a.memory_peak_bytes)},
                             {"processes_reaped", a.processes_reaped},
                             {"stdout", a.stdout_path},
                             {"stderr", a.stderr_path},
                             {"record", source + ":" + std::to_string(a.line)}};
      if (!a.stack_signature.empty()) args["stack_signature"] = a.stack_signature;
      emit({{"ph", "X"},
            {"name", a.attempt > 1 ? a.id + " (attempt " + std::to_string(a.attempt) + ")" : a.id},
            {"cat", std::string(to_string(a.status))},
            {"ts", ts},
            {"dur", dur},
            {"pid", pid_of[lanes.lanes[l].host]},
            {"tid", static_cast<int>(l + 1)},
            {"cname", colour_name(a.status)},
            {"args", std::move(args)}});
    }
  }
  std::size_t without_start = 0;
  for (int lane : lanes.lane_of) without_start += lane < 0 ? 1 : 0;
  nlohmann::json other = {{"generator", "pollkill " POLLKILL_VERSION},
                          {"source", source},
                          {"lanes", lanes.source == LaneSource::recorded_slots
                                        ? "the slots the records name"
                                        : "interval packing of [started_at, started_at + wall_s]"},
                          {"records_without_start", without_start}};
  if (span) other["started_at"] = utc_rfc3339(span->begin);
  out += "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":" +
         other.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "}\n";
  return out;
}

}  // namespace pollkill
