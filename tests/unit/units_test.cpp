#include "pollkill/units.h"

#include <gtest/gtest.h>

#include <string>

#include "pollkill/error.h"

namespace pollkill {
namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = kKiB * 1024;
constexpr std::uint64_t kGiB = kMiB * 1024;
constexpr std::uint64_t kTiB = kGiB * 1024;

struct SizeCase {
  std::string text;
  std::uint64_t bytes;
};

TEST(ParseSize, AcceptsBytesUnitsAndMax) {
  const SizeCase cases[] = {
      {"0", 0},
      {"1048576", 1048576},
      {"512B", 512},
      {"1K", kKiB},
      {"1k", kKiB},
      {"1KiB", kKiB},
      {"1kib", kKiB},
      {"1KB", 1000},
      {"1kB", 1000},
      {"1kb", 1000},
      {"64M", 64 * kMiB},
      {"64MiB", 64 * kMiB},
      {"64MB", 64'000'000},
      {"2G", 2 * kGiB},
      {"2GiB", 2 * kGiB},
      {"2GB", 2'000'000'000},
      {"3T", 3 * kTiB},
      {"3TiB", 3 * kTiB},
      {"3TB", 3'000'000'000'000},
      // What docker and systemd users type: case does not matter, "i" or a bare letter is
      // binary, a "B" after the letter decimal.
      {"2g", 2 * kGiB},
      {"2gib", 2 * kGiB},
      {"2GIB", 2 * kGiB},
      {"2gb", 2'000'000'000},
      {"2Gb", 2'000'000'000},
      {"512m", 512 * kMiB},
      {"512mb", 512'000'000},
      {"1t", kTiB},
      {"1tb", 1'000'000'000'000},
      {"100b", 100},
      {"1.5GiB", kGiB + kGiB / 2},
      {"1.5K", 1536},
      {"0.5MB", 500'000},
      {"1.1KiB", 1126},  // 1126.4 rounds down
      {".5K", 512},
      {"2.K", 2048},
      {"max", kSizeMax},
      {"18446744073709551614", kSizeMax - 1},
      {"16777215TiB", 16777215 * kTiB},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parse_size(c.text), c.bytes) << c.text;
  }
}

struct BadCase {
  std::string text;
  std::string message;
};

TEST(ParseSize, RejectsBadValuesQuotingThem) {
  const BadCase cases[] = {
      {"12XB",
       "invalid size '12XB': unknown unit 'XB' (use bytes, K/M/G/T or KiB/MiB/GiB/TiB for "
       "powers of 1024, KB/MB/GB/TB for powers of 1000, or max)"},
      {"", "invalid size '': empty (use a number of bytes such as 1048576, 512MiB, or max)"},
      {"-1", "invalid size '-1': must not be negative"},
      {"-1K", "invalid size '-1K': must not be negative"},
      {"GiB", "invalid size 'GiB': expected a number followed by an optional unit, such as 512MiB"},
      {".", "invalid size '.': expected a number followed by an optional unit, such as 512MiB"},
      {"1.5", "invalid size '1.5': a fractional size needs a unit, such as 1.5GiB"},
      {"1.5B", "invalid size '1.5B': a fractional size needs a unit, such as 1.5GiB"},
      {"1 GiB",
       "invalid size '1 GiB': unknown unit ' GiB' (use bytes, K/M/G/T or KiB/MiB/GiB/TiB for "
       "powers of 1024, KB/MB/GB/TB for powers of 1000, or max)"},
      {"1gig",
       "invalid size '1gig': unknown unit 'gig' (use bytes, K/M/G/T or KiB/MiB/GiB/TiB for "
       "powers of 1024, KB/MB/GB/TB for powers of 1000, or max)"},
      {"1kibb",
       "invalid size '1kibb': unknown unit 'kibb' (use bytes, K/M/G/T or KiB/MiB/GiB/TiB for "
       "powers of 1024, KB/MB/GB/TB for powers of 1000, or max)"},
      {"MAX", "invalid size 'MAX': expected a number followed by an optional unit, such as 512MiB"},
      {"18446744073709551616", "invalid size '18446744073709551616': too large"},
      {"16777216TiB", "invalid size '16777216TiB': too large"},
      {"99999999999T", "invalid size '99999999999T': too large"},
  };
  for (const auto& c : cases) {
    try {
      parse_size(c.text);
      ADD_FAILURE() << "accepted '" << c.text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), c.message);
    }
  }
}

TEST(FormatSize, PrintsTheLargestExactOrRoundedUnit) {
  const SizeCase cases[] = {
      {"0B", 0},
      {"512B", 512},
      {"1023B", 1023},
      {"1KiB", kKiB},
      {"1.5KiB", 1536},
      {"64MiB", 64 * kMiB},
      {"1.5GiB", kGiB + kGiB / 2},
      {"1.33GiB", kGiB + kGiB / 3},
      {"1GiB", kGiB - 1},  // rounds up into the next unit rather than "1024MiB"
      {"2048TiB", 2048 * kTiB},
      {"max", kSizeMax},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(format_size(c.bytes), c.text) << c.bytes;
  }
}

TEST(FormatSize, ExactValuesParseBack) {
  for (std::uint64_t bytes :
       {std::uint64_t{0}, std::uint64_t{1}, kKiB, 1536 * kMiB, 7 * kTiB, kSizeMax}) {
    EXPECT_EQ(parse_size(format_size(bytes)), bytes) << bytes;
  }
}

struct DurationCase {
  std::string text;
  std::int64_t ms;
};

TEST(ParseDuration, AcceptsUnitsCombinationsAndSeconds) {
  const DurationCase cases[] = {
      {"0", 0},
      {"0s", 0},
      {"500ms", 500},
      {"30s", 30'000},
      {"5m", 300'000},
      {"2h", 7'200'000},
      {"1h30m", 5'400'000},
      {"1m30s500ms", 90'500},
      {"1h30m0s", 5'400'000},
      {"1.5s", 1500},
      {"1.5h", 5'400'000},
      {"0.25m", 15'000},
      {"90", 90'000},
      {"0.5", 500},
      {"0.0015", 1},  // sub-millisecond parts round down
      {"1.0005s", 1000},
      {"10ms", 10},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parse_duration(c.text).count(), c.ms) << c.text;
  }
}

TEST(ParseDuration, RejectsBadValuesQuotingThem) {
  const BadCase cases[] = {
      {"",
       "invalid duration '': empty (use a number of seconds, or a form such as 500ms, 30s, 1h30m)"},
      {"-5s", "invalid duration '-5s': must not be negative"},
      {"5x", "invalid duration '5x': unknown unit 'x' (use h, m, s or ms)"},
      {"5 s", "invalid duration '5 s': unknown unit ' s' (use h, m, s or ms)"},
      {"5sec", "invalid duration '5sec': unknown unit 'sec' (use h, m, s or ms)"},
      {"1h30", "invalid duration '1h30': a number inside a duration needs a unit (h, m, s or ms)"},
      {"s", "invalid duration 's': expected a number, such as 30s or 1h30m"},
      {"1h.m", "invalid duration '1h.m': expected a number after the unit"},
      {"9999999999999999999s", "invalid duration '9999999999999999999s': too large"},
      {"99999999999999999999", "invalid duration '99999999999999999999': too large"},
      {"9223372036854776s", "invalid duration '9223372036854776s': too large"},
  };
  for (const auto& c : cases) {
    try {
      parse_duration(c.text);
      ADD_FAILURE() << "accepted '" << c.text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), c.message);
    }
  }
}

TEST(FormatDuration, PrintsLikeGo) {
  const DurationCase cases[] = {
      {"0s", 0},
      {"1ms", 1},
      {"250ms", 250},
      {"999ms", 999},
      {"1s", 1000},
      {"1.5s", 1500},
      {"1.001s", 1001},
      {"2m0s", 120'000},
      {"1m30.5s", 90'500},
      {"1h0m0s", 3'600'000},
      {"1h30m0s", 5'400'000},
      {"25h0m1s", 90'001'000},
      {"-1.5s", -1500},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(format_duration(Duration(c.ms)), c.text) << c.ms;
    if (c.ms >= 0) {
      EXPECT_EQ(parse_duration(c.text).count(), c.ms) << c.text;
    }
  }
}

}  // namespace
}  // namespace pollkill
