#include "pollkill/diag.h"

#include <unistd.h>

#include <cerrno>
#include <string>

namespace pollkill::diag {
namespace {

Level g_level = Level::normal;
Writer g_writer;
Eraser g_eraser;

// One write(2) per message, so lines from pollkill and its guard or tasks do not interleave
// within a line, and nothing is held in a stdio buffer when the process is killed.
void write_stderr(std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed or full stderr must not stop pollkill
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

void emit(std::string_view text) {
  if (g_writer) {
    g_writer(text);
  } else {
    write_stderr(text);
  }
}

void line(std::string_view kind, std::string_view message) {
  std::string out = g_eraser ? g_eraser() : std::string();
  out += "pollkill: ";
  out += kind;
  out += message;
  out += '\n';
  emit(out);
}

}  // namespace

void set_level(Level level) {
  g_level = level;
}
Level level() {
  return g_level;
}
bool enabled(Level wanted) {
  return static_cast<int>(g_level) >= static_cast<int>(wanted);
}

void warning(std::string_view message) {
  if (enabled(Level::normal)) line("warning: ", message);
}
void notice(std::string_view message) {
  if (enabled(Level::normal)) line("", message);
}
void detail(std::string_view message) {
  if (enabled(Level::verbose)) line("", message);
}
void hint(std::string_view message) {
  if (enabled(Level::normal)) line("hint: ", message);
}
void error(const Error& e) {
  line("error: ", e.what());
  if (!e.hint().empty()) line("hint: ", e.hint());
}
void error(std::string_view message) {
  line("error: ", message);
}
void text(std::string_view text) {
  if (enabled(Level::normal)) emit(text);
}
void set_eraser(Eraser erase) {
  g_eraser = std::move(erase);
}
void set_writer(Writer writer) {
  g_writer = std::move(writer);
}

}  // namespace pollkill::diag
