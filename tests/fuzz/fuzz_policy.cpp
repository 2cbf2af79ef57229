// libFuzzer target: the policy reader (size and depth bounds, toml++, every key through the
// schema). Any input may be refused with an Error; nothing may crash, leak past ASan or hit
// undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/policy.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pollkill::diag::set_level(pollkill::diag::Level::quiet);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  pollkill::Policy policy;
  try {
    policy = pollkill::parse_policy(text, "fuzz.toml");
  } catch (const pollkill::Error&) {
    return 0;
  }
  // What was accepted prints as a document that reads back to the same policy (to_toml's
  // contract): a failure here is a bug as much as a crash.
  try {
    if (!(pollkill::parse_policy(pollkill::to_toml(policy), "printed.toml") == policy)) {
      __builtin_trap();
    }
  } catch (const pollkill::Error&) {
    __builtin_trap();
  }
  return 0;
}
