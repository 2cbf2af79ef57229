// Sizes and durations as users write them on the command line and in policies.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace pollkill {

using Duration = std::chrono::milliseconds;

/// The size value that means "no limit" (written `max`).
inline constexpr std::uint64_t kSizeMax = UINT64_MAX;

/// Parses a size: integer bytes ("1048576"), binary suffixes K M G T and KiB MiB GiB TiB
/// (powers of 1024), decimal suffixes KB MB GB TB (powers of 1000), or "max" (kSizeMax).
/// A fractional number is allowed with a suffix ("1.5GiB") and rounds down to whole bytes.
/// Suffixes are case-insensitive: "2g", "2G" and "2GiB" are 2 * 1024^3, "2gb" and "2GB"
/// 2 * 1000^3.
/// Throws pollkill::Error quoting the text on anything else (negative, empty, overflow,
/// unknown suffix).
std::uint64_t parse_size(std::string_view text);

/// Formats bytes for people: "64MiB", "1.5GiB", "512B", "max".
std::string format_size(std::uint64_t bytes);

/// Parses a duration: "500ms", "30s", "5m", "2h", "1h30m", "1m30s500ms", or a plain
/// non-negative number of seconds ("90", "0.5"). Throws pollkill::Error quoting the text.
Duration parse_duration(std::string_view text);

/// Formats a duration the way Go does, which reads well in sentences:
/// "0s", "250ms", "1.5s", "2m0s", "1h30m0s".
std::string format_duration(Duration d);

}  // namespace pollkill
