// The one place pollkill speaks to a person: warnings, notices, verbose details, errors and
// text blocks (the progress line, the batch summary), all on stderr with the `pollkill:`
// prefix. The core never writes to stderr itself; the CLI sets the level once from -q / -v.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "pollkill/error.h"

namespace pollkill::diag {

/// How much is said. `quiet` (-q) keeps errors only; `verbose` (-v) adds details.
enum class Level { quiet, normal, verbose };

void set_level(Level level);
Level level();
/// Whether a message of `wanted` is printed at the current level (e.g. to skip building a
/// costly verbose line).
bool enabled(Level wanted);

/// "pollkill: warning: MESSAGE": something the user should know and may want to fix; the run
/// goes on. Not printed when quiet.
void warning(std::string_view message);
/// "pollkill: MESSAGE": what pollkill decided or did (a fallback, a stop). Not when quiet.
void notice(std::string_view message);
/// "pollkill: MESSAGE", only when verbose (every attempt, gc details).
void detail(std::string_view message);
/// "pollkill: hint: MESSAGE": what the user can do next (after a notice). Not when quiet.
void hint(std::string_view message);
/// "pollkill: error: WHAT" and, when the error names one, "pollkill: hint: FIX". Always.
void error(const Error& e);
/// "pollkill: error: MESSAGE" for failures that are not an Error (always).
void error(std::string_view message);
/// Text written as it is (the progress line, the summary block). Not when quiet.
void text(std::string_view text);

/// A display drawn in place on the terminal (the batch's progress line or live view) that a
/// message must not be written into: `erase` gives the bytes that take it off the screen (or
/// end its line), written before each message line in the same write; the display draws
/// itself again below the message. An empty function: no such display.
using Eraser = std::function<std::string()>;
void set_eraser(Eraser erase);

/// Where the messages go: stderr by default. Tests capture them with their own writer;
/// an empty function restores stderr.
using Writer = std::function<void(std::string_view)>;
void set_writer(Writer writer);

}  // namespace pollkill::diag
