// The terminal pollkill's messages go to: whether there is one, and its size (TIOCGWINSZ).
// What is drawn on it is formatted elsewhere (live_view); this is the kernel edge only.
#pragma once

#include <cstddef>
#include <optional>

namespace pollkill {

struct TerminalSize {
  std::size_t width = 0;   ///< columns
  std::size_t height = 0;  ///< lines
};

/// Whether `fd` is a terminal (isatty).
bool is_terminal(int fd);

/// The size of the terminal `fd` refers to; nullopt when it is not a terminal or reports no
/// size (0 columns: a pseudo-terminal nobody sized). Read again after each SIGWINCH.
std::optional<TerminalSize> terminal_size(int fd);

}  // namespace pollkill
