// libFuzzer target: both forms of a task-file line. The first byte picks the form (even: the
// shell-like words, with any leading '{' dropped; odd: a JSON object, '{' prepended), the rest
// is the line. Any line may be refused with an Error; nothing may crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/policy.h"
#include "pollkill/taskfile.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pollkill::diag::set_level(pollkill::diag::Level::quiet);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const pollkill::Policy base = pollkill::default_policy();
  const bool json = data[0] & 1;
  std::string line(reinterpret_cast<const char*>(data + 1), size - 1);
  if (json) {
    line.insert(0, "{");
  } else {
    while (!line.empty() && line.front() == '{') line.erase(0, 1);
  }
  try {
    if (!json) (void)pollkill::split_words(line);
    if (auto task = pollkill::parse_task_line(line, 1, base)) {
      (void)pollkill::task_policy(*task, base);
    }
  } catch (const pollkill::Error&) {
  }
  return 0;
}
