#include "pollkill/result.h"

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string_view>
#include <utility>

#include "pollkill/error.h"

namespace pollkill {
namespace {

// Fixed names rather than strsignal/sigabbrev_np: the text is part of the JSON contract and
// must not change with the C library or the locale.
struct SignalName {
  int number;
  std::string_view name;
};

constexpr SignalName kSignalNames[] = {
    {SIGHUP, "SIGHUP"},       {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},   {SIGILL, "SIGILL"},
    {SIGTRAP, "SIGTRAP"},     {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},     {SIGFPE, "SIGFPE"},
    {SIGKILL, "SIGKILL"},     {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"},   {SIGUSR2, "SIGUSR2"},
    {SIGPIPE, "SIGPIPE"},     {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},   {SIGCHLD, "SIGCHLD"},
    {SIGCONT, "SIGCONT"},     {SIGSTOP, "SIGSTOP"}, {SIGTSTP, "SIGTSTP"},   {SIGTTIN, "SIGTTIN"},
    {SIGTTOU, "SIGTTOU"},     {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},   {SIGXFSZ, "SIGXFSZ"},
    {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"}, {SIGIO, "SIGIO"},
    {SIGPWR, "SIGPWR"},       {SIGSYS, "SIGSYS"},
};

std::string_view signal_name(int signal) {
  for (const auto& entry : kSignalNames) {
    if (entry.number == signal) return entry.name;
  }
  return {};
}

// "signal 11 (SIGSEGV)", or "signal 40" when the number has no fixed name (real-time signals).
std::string describe_signal(int signal) {
  std::string text = "signal " + std::to_string(signal);
  if (auto name = signal_name(signal); !name.empty()) {
    text += " (";
    text += name;
    text += ")";
  }
  return text;
}

// Milliseconds are as precise as the sampling that produced these numbers; more digits are noise.
double round_ms(double seconds) {
  return std::round(seconds * 1000.0) / 1000.0;
}

template <typename T>
nlohmann::ordered_json or_null(const std::optional<T>& value) {
  if (value) return *value;
  return nullptr;
}

}  // namespace

std::string format_rfc3339_ms(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  // floor, not duration_cast: a time before 1970 must not round toward the epoch.
  const auto secs = floor<seconds>(t);
  const auto ms = duration_cast<milliseconds>(t - secs).count();
  const std::time_t time = system_clock::to_time_t(time_point_cast<system_clock::duration>(secs));
  std::tm tm{};
  gmtime_r(&time, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

nlohmann::ordered_json to_json(const Result& result) {
  nlohmann::ordered_json unkillable = nlohmann::ordered_json::array();
  for (const auto& process : result.unkillable) {
    nlohmann::ordered_json entry;
    entry["pid"] = process.pid;
    entry["state"] = process.state;
    entry["comm"] = process.comm;
    unkillable.push_back(std::move(entry));
  }

  // ordered_json keeps insertion order, and this order is the contract's: do not sort.
  nlohmann::ordered_json json;
  json["id"] = result.id;
  json["attempt"] = result.attempt;
  json["final"] = result.final;
  json["command"] = result.command;
  json["status"] = to_string(result.status);
  json["reason"] = result.reason;
  json["exit_code"] = or_null(result.exit_code);
  json["signal"] = or_null(result.signal);
  json["started_at"] = format_rfc3339_ms(result.started_at);
  json["wall_s"] = round_ms(result.wall_s);
  json["cpu_user_s"] = round_ms(result.cpu_user_s);
  json["cpu_system_s"] = round_ms(result.cpu_system_s);
  json["memory_peak_bytes"] = or_null(result.memory_peak_bytes);
  json["oom_kills"] = or_null(result.oom_kills);
  json["pids_peak"] = or_null(result.pids_peak);
  json["processes_reaped"] = result.processes_reaped;
  json["unkillable"] = std::move(unkillable);
  json["limits_not_enforced"] = result.limits_not_enforced;
  json["limits_cgroup_v1"] = result.limits_cgroup_v1;
  json["mode"] = result.mode;
  if (result.cgroup.empty()) {
    json["cgroup"] = nullptr;
  } else {
    json["cgroup"] = result.cgroup;
  }
  json["stdout"] = or_null(result.stdout_path);
  json["stderr"] = or_null(result.stderr_path);
  json["evidence"] = or_null(result.evidence);
  json["stack_signature"] = or_null(result.stack_signature);
  json["memory_limit_bytes"] = or_null(result.memory_limit_bytes);
  json["wall_time_limit_s"] = or_null(result.wall_time_limit_s);
  return json;
}

std::string dump_result_line(const Result& result) {
  // Commands and paths are bytes from the user, not necessarily UTF-8; the default strict
  // handler would throw in the middle of writing a result, so replace invalid bytes instead.
  return to_json(result).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Classification classify(const Outcome& outcome, const std::vector<std::string>& command) {
  if (outcome.cancel_signal) {
    const int signal = *outcome.cancel_signal;
    auto name = signal_name(signal);
    return {Status::cancelled, "cancelled by " + (name.empty() ? "signal " + std::to_string(signal)
                                                               : std::string(name))};
  }
  if (outcome.verdict) {
    return {*outcome.verdict, outcome.verdict_reason.empty()
                                  ? std::string(to_string(*outcome.verdict))
                                  : outcome.verdict_reason};
  }
  // The OOM killer may have killed a child while the main process exited cleanly; the
  // task still did not get the memory it needed, so oom wins over the exit status.
  if (outcome.oom_kills_delta > 0) {
    const auto count = outcome.oom_kills_delta;
    return {Status::oom, "out of memory: the kernel OOM killer killed " + std::to_string(count) +
                             (count == 1 ? " process" : " processes")};
  }
  if (outcome.exec_errno) {
    const int err = *outcome.exec_errno;
    std::string reason = "cannot execute '" + (command.empty() ? std::string() : command[0]) +
                         "': " + std::strerror(err) + " (" + errno_name(err) + ")";
    if (!outcome.exec_step.empty()) reason += " at " + outcome.exec_step;
    return {Status::exec_error, std::move(reason)};
  }
  if (outcome.signal) {
    const int signal = *outcome.signal;
    if (outcome.signal_sent_by_pollkill) {
      // pollkill signalled the tree without a verdict (orphan cleanup raced the main exit):
      // not the task's crash, and no limit was hit, so it reads as a plain failure.
      return {Status::failed, "killed by " + describe_signal(signal) + " sent by pollkill"};
    }
    if (signal == SIGSYS) {
      return {Status::blocked, "killed by " + describe_signal(signal) + ": seccomp filter"};
    }
    return {Status::crashed, "killed by " + describe_signal(signal)};
  }
  if (outcome.exit_code) {
    const int code = *outcome.exit_code;
    if (code == 0) return {Status::ok, "exited 0"};
    return {Status::failed, "exited with code " + std::to_string(code)};
  }
  return {Status::error, "no exit status observed for the main process"};
}

int exit_code_for(const Result& result) {
  switch (result.status) {
    case Status::ok: return result.exit_code.value_or(0);
    case Status::failed: {
      // A failure must never look like success to the caller, whatever the fields say.
      const int code = result.exit_code.value_or(1);
      return code == 0 ? 1 : code;
    }
    case Status::crashed: return result.signal ? exit_code::kSignalBase + *result.signal : 1;
    case Status::blocked: return exit_code::kSignalBase + result.signal.value_or(SIGSYS);
    case Status::oom: return exit_code::kSignalBase + SIGKILL;
    case Status::timeout:
    case Status::cpu_limit:
    case Status::hung:
    case Status::spinning:
    case Status::thrashing:
    case Status::output_limit: return exit_code::kVerdict;
    case Status::exec_error: return result.exit_code.value_or(exit_code::kNotExecutable);
    case Status::cancelled: return exit_code::kSignalBase + result.cancel_signal.value_or(SIGINT);
    case Status::error: return exit_code::kInternal;
  }
  return exit_code::kInternal;
}

bool announce_end(const Result& result, bool verbose) {
  if (verbose) return true;
  if (result.status == Status::crashed && result.signal == SIGPIPE) return false;
  return result.status != Status::ok && result.status != Status::failed;
}

}  // namespace pollkill
