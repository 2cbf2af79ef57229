// libFuzzer target: the size and duration parsers (overflow, fractions, suffixes); a value
// that parses is formatted too.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pollkill/error.h"
#include "pollkill/units.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)pollkill::format_size(pollkill::parse_size(text));
  } catch (const pollkill::Error&) {
  }
  try {
    (void)pollkill::format_duration(pollkill::parse_duration(text));
  } catch (const pollkill::Error&) {
  }
  return 0;
}
