#include "pollkill/status.h"

#include <array>
#include <utility>

namespace pollkill {
namespace {

// One table serves both directions so a new Status cannot get a name without a parse.
constexpr std::array<std::pair<Status, std::string_view>, 14> kStatusNames{{
    {Status::ok, "ok"},
    {Status::failed, "failed"},
    {Status::crashed, "crashed"},
    {Status::oom, "oom"},
    {Status::timeout, "timeout"},
    {Status::cpu_limit, "cpu_limit"},
    {Status::hung, "hung"},
    {Status::spinning, "spinning"},
    {Status::thrashing, "thrashing"},
    {Status::output_limit, "output_limit"},
    {Status::blocked, "blocked"},
    {Status::exec_error, "exec_error"},
    {Status::cancelled, "cancelled"},
    {Status::error, "error"},
}};

}  // namespace

std::string_view to_string(Status status) {
  for (const auto& [value, name] : kStatusNames) {
    if (value == status) return name;
  }
  // Only reachable through a cast of an out-of-range integer; "error" keeps JSON valid.
  return "error";
}

std::optional<Status> status_from_string(std::string_view text) {
  for (const auto& [value, name] : kStatusNames) {
    if (name == text) return value;
  }
  return std::nullopt;
}

}  // namespace pollkill
