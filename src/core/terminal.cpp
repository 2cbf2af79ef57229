#include "pollkill/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

namespace pollkill {

bool is_terminal(int fd) {
  return ::isatty(fd) == 1;
}

std::optional<TerminalSize> terminal_size(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) return std::nullopt;
  return TerminalSize{size.ws_col, size.ws_row};
}

}  // namespace pollkill
