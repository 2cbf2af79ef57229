#include "pollkill/pressure.h"

#include <charconv>

namespace pollkill {
namespace {

// The value of "total=N" in one line; nullopt when absent or malformed.
std::optional<std::uint64_t> total_of(std::string_view line) {
  constexpr std::string_view kKey = " total=";
  const size_t at = line.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  const char* first = line.data() + at + kKey.size();
  const char* last = line.data() + line.size();
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || end == first || (end != last && *end != ' ')) return std::nullopt;
  return value;
}

}  // namespace

std::optional<PressureTotals> parse_pressure(std::string_view text) {
  std::optional<std::uint64_t> some;
  std::optional<std::uint64_t> full;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.starts_with("some ")) some = total_of(line);
    if (line.starts_with("full ")) full = total_of(line);
  }
  if (!some) return std::nullopt;
  return PressureTotals{*some, full};
}

PressureFile PressureFile::open(const CgroupDir& dir, std::string_view attr) {
  PressureFile file;
  file.reader_ = AttrReader::open(dir, attr);
  return file;
}

std::optional<PressureTotals> PressureFile::read() const {
  auto text = reader_.read();
  if (!text) return std::nullopt;
  return parse_pressure(*text);
}

}  // namespace pollkill
