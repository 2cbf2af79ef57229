#include "pollkill/units.h"

#include <array>
#include <cstdio>
#include <limits>
#include <optional>

#include "pollkill/error.h"

namespace pollkill {
namespace {

// 128-bit intermediates make "fraction x multiplier" exact without floating point, so
// "1.1GiB" is the same number of bytes on every machine. __extension__ keeps -Wpedantic quiet.
__extension__ using U128 = unsigned __int128;

// Digits beyond this many after the point cannot change a result measured in bytes or
// milliseconds by a whole unit often enough to matter, and 10^18 still fits in 64 bits.
constexpr int kMaxFractionDigits = 18;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// An unsigned decimal number "W" or "W.F" as written, kept exact.
struct Decimal {
  std::uint64_t whole = 0;
  std::uint64_t fraction = 0;  ///< the digits after the point, as an integer
  int fraction_digits = 0;
  bool has_point = false;
};

/// Reads a decimal number at the start of `text`, advancing it. Empty when there are no
/// digits; throws `fail("too large")` when the whole part overflows.
template <typename Fail>
std::optional<Decimal> read_decimal(std::string_view& text, Fail fail) {
  Decimal number;
  std::size_t i = 0;
  bool any_digit = false;
  for (; i < text.size() && is_digit(text[i]); ++i) {
    any_digit = true;
    if (__builtin_mul_overflow(number.whole, 10u, &number.whole) ||
        __builtin_add_overflow(number.whole, static_cast<unsigned>(text[i] - '0'), &number.whole)) {
      fail("too large");
    }
  }
  if (i < text.size() && text[i] == '.') {
    number.has_point = true;
    for (++i; i < text.size() && is_digit(text[i]); ++i) {
      any_digit = true;
      if (number.fraction_digits < kMaxFractionDigits) {
        number.fraction = number.fraction * 10 + static_cast<unsigned>(text[i] - '0');
        ++number.fraction_digits;
      }
    }
  }
  if (!any_digit) return std::nullopt;
  text.remove_prefix(i);
  return number;
}

/// floor(number * multiplier), or empty on overflow of `limit`.
std::optional<std::uint64_t> scale(const Decimal& number, std::uint64_t multiplier,
                                   std::uint64_t limit) {
  U128 pow10 = 1;
  for (int i = 0; i < number.fraction_digits; ++i) pow10 *= 10;
  const U128 total = static_cast<U128>(number.whole) * multiplier +
                     static_cast<U128>(number.fraction) * multiplier / pow10;
  if (total > limit) return std::nullopt;
  return static_cast<std::uint64_t>(total);
}

struct Unit {
  std::string_view suffix;
  std::uint64_t multiplier;
};

constexpr std::uint64_t kKi = 1024;
// Compared without regard to case: a bare letter and the IEC "iB" forms are powers of 1024
// (what docker, systemd and ulimit users mean by "2g"), the SI "B" forms powers of 1000.
constexpr std::array<Unit, 14> kSizeUnits{{
    {"", 1},
    {"b", 1},
    {"k", kKi},
    {"kib", kKi},
    {"kb", 1000},
    {"m", kKi* kKi},
    {"mib", kKi* kKi},
    {"mb", 1000 * 1000},
    {"g", kKi* kKi* kKi},
    {"gib", kKi* kKi* kKi},
    {"gb", 1000 * 1000 * 1000},
    {"t", kKi* kKi* kKi* kKi},
    {"tib", kKi* kKi* kKi* kKi},
    {"tb", 1000ull * 1000 * 1000 * 1000},
}};

std::optional<std::uint64_t> size_multiplier(std::string_view suffix) {
  std::string lower(suffix);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (const Unit& unit : kSizeUnits) {
    if (unit.suffix == lower) return unit.multiplier;
  }
  return std::nullopt;
}

constexpr std::int64_t kMsPerSecond = 1000;
constexpr std::array<Unit, 4> kDurationUnits{{
    {"ms", 1},
    {"s", kMsPerSecond},
    {"m", 60 * kMsPerSecond},
    {"h", 3600 * kMsPerSecond},
}};

}  // namespace

std::uint64_t parse_size(std::string_view text) {
  const auto fail = [text](const std::string& why) -> void {
    throw Error("invalid size '" + std::string(text) + "': " + why);
  };
  if (text.empty()) fail("empty (use a number of bytes such as 1048576, 512MiB, or max)");
  if (text == "max") return kSizeMax;
  if (text.front() == '-') fail("must not be negative");
  std::string_view rest = text;
  const std::optional<Decimal> number = read_decimal(rest, fail);
  if (!number) fail("expected a number followed by an optional unit, such as 512MiB");
  const std::optional<std::uint64_t> multiplier = size_multiplier(rest);
  if (!multiplier) {
    fail("unknown unit '" + std::string(rest) +
         "' (use bytes, K/M/G/T or KiB/MiB/GiB/TiB for powers of 1024, KB/MB/GB/TB for powers of "
         "1000, or max)");
  }
  if (number->has_point && *multiplier == 1) fail("a fractional size needs a unit, such as 1.5GiB");
  const std::optional<std::uint64_t> bytes = scale(*number, *multiplier, kSizeMax);
  if (!bytes) fail("too large");
  return *bytes;
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == kSizeMax) return "max";
  static constexpr std::array<std::string_view, 4> kNames{"KiB", "MiB", "GiB", "TiB"};
  if (bytes < kKi) return std::to_string(bytes) + "B";
  std::size_t index = 0;
  std::uint64_t unit = kKi;
  while (index + 1 < kNames.size() && bytes >= unit * kKi) {
    unit *= kKi;
    ++index;
  }
  if (bytes % unit == 0) return std::to_string(bytes / unit) + std::string(kNames[index]);
  // Two decimals are enough for people; to_toml checks exactness before using this form.
  double value = static_cast<double>(bytes) / static_cast<double>(unit);
  if (value >= 1023.995 && index + 1 < kNames.size()) {
    value /= kKi;
    ++index;
  }
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.2f", value);
  std::string digits = buffer;
  while (digits.back() == '0') digits.pop_back();
  if (digits.back() == '.') digits.pop_back();
  return digits + std::string(kNames[index]);
}

Duration parse_duration(std::string_view text) {
  const auto fail = [text](const std::string& why) -> void {
    throw Error("invalid duration '" + std::string(text) + "': " + why);
  };
  constexpr std::uint64_t kLimit = std::numeric_limits<Duration::rep>::max();
  if (text.empty()) fail("empty (use a number of seconds, or a form such as 500ms, 30s, 1h30m)");
  if (text.front() == '-') fail("must not be negative");
  std::string_view rest = text;
  const std::optional<Decimal> first = read_decimal(rest, fail);
  if (!first) fail("expected a number, such as 30s or 1h30m");
  if (rest.empty()) {  // a plain number of seconds
    const std::optional<std::uint64_t> ms = scale(*first, kMsPerSecond, kLimit);
    if (!ms) fail("too large");
    return Duration(static_cast<Duration::rep>(*ms));
  }
  std::uint64_t total = 0;
  std::optional<Decimal> number = first;
  while (true) {
    std::size_t length = 0;
    while (length < rest.size() && !is_digit(rest[length]) && rest[length] != '.') ++length;
    const std::string_view suffix = rest.substr(0, length);
    rest.remove_prefix(length);
    std::optional<std::uint64_t> multiplier;
    for (const Unit& unit : kDurationUnits) {
      if (unit.suffix == suffix) multiplier = unit.multiplier;
    }
    if (!multiplier) {
      fail(suffix.empty() ? "a number inside a duration needs a unit (h, m, s or ms)"
                          : "unknown unit '" + std::string(suffix) + "' (use h, m, s or ms)");
    }
    const std::optional<std::uint64_t> part = scale(*number, *multiplier, kLimit);
    if (!part || __builtin_add_overflow(total, *part, &total) || total > kLimit) fail("too large");
    if (rest.empty()) break;
    number = read_decimal(rest, fail);
    if (!number) fail("expected a number after the unit");
  }
  return Duration(static_cast<Duration::rep>(total));
}

std::string format_duration(Duration d) {
  // Go's time.Duration.String restricted to milliseconds: under a second it prints "250ms";
  // from a second on it prints hours and minutes when present and always seconds.
  std::int64_t ms = d.count();
  std::string sign;
  std::uint64_t magnitude = static_cast<std::uint64_t>(ms);
  if (ms < 0) {
    sign = "-";
    magnitude = 0 - magnitude;  // well defined for INT64_MIN as well
  }
  if (magnitude == 0) return "0s";
  if (magnitude < 1000) return sign + std::to_string(magnitude) + "ms";
  const std::uint64_t hours = magnitude / 3'600'000;
  const std::uint64_t minutes = magnitude / 60'000 % 60;
  const std::uint64_t seconds = magnitude / 1000 % 60;
  const std::uint64_t millis = magnitude % 1000;
  std::string out = sign;
  if (hours > 0) out += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  out += std::to_string(seconds);
  if (millis > 0) {
    char fraction[8];
    std::snprintf(fraction, sizeof fraction, ".%03u", static_cast<unsigned>(millis));
    std::string digits = fraction;
    while (digits.back() == '0') digits.pop_back();
    out += digits;
  }
  return out + "s";
}

}  // namespace pollkill
