#include "pollkill/arguments.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "pollkill/error.h"

namespace pollkill {
namespace {

bool is_separator(const std::string& word) {
  return word == ":::" || word == "::::";
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path);
    if (!file) {
      const int err = errno;
      throw Error(":::: " + path + ": cannot read the argument file: " + std::strerror(err) + " (" +
                  errno_name(err) + ")");
    }
    in = &file;
  }
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(*in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

std::string basename_of(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// dirname(1): "a/b/c" -> "a/b", "c" -> ".", "/c" -> "/".
std::string dirname_of(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

// Without the extension of its last component: "dir/a.tar.gz" -> "dir/a.tar", "dir.d/a" ->
// "dir.d/a", ".hidden" -> ".hidden".
std::string without_extension(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  const std::size_t start = slash == std::string_view::npos ? 0 : slash + 1;
  const std::size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || dot <= start) return std::string(path);
  return std::string(path.substr(0, dot));
}

// The value of a replacement string's body ("", ".", "/", "//", "/.", "#", "2", "2/."), or
// nullopt when the body is not one (then the braces stay as they are).
std::optional<std::string> replacement(std::string_view body,
                                       const std::vector<std::string>& arguments,
                                       std::uint64_t number) {
  if (body == "#") return std::to_string(number);
  std::size_t digits = 0;
  while (digits < body.size() && body[digits] >= '0' && body[digits] <= '9') ++digits;
  std::string value;
  if (digits > 0) {
    const std::size_t index = std::stoul(std::string(body.substr(0, digits)));
    if (index == 0 || index > arguments.size()) return std::nullopt;
    value = arguments[index - 1];
  } else {
    for (std::size_t i = 0; i < arguments.size(); ++i) value += (i ? " " : "") + arguments[i];
  }
  const std::string_view form = body.substr(digits);
  if (form.empty()) return value;
  if (form == ".") return without_extension(value);
  if (form == "/") return basename_of(value);
  if (form == "//") return dirname_of(value);
  if (form == "/.") return without_extension(basename_of(value));
  return std::nullopt;
}

// `word` with its replacement strings replaced; `found` set when there was one.
std::string expand_word(const std::string& word, const std::vector<std::string>& arguments,
                        std::uint64_t number, bool& found) {
  std::string out;
  std::size_t i = 0;
  while (i < word.size()) {
    const std::size_t open = word.find('{', i);
    if (open == std::string::npos) break;
    const std::size_t close = word.find('}', open + 1);
    if (close == std::string::npos) break;
    out.append(word, i, open - i);
    const std::string_view body(word.data() + open + 1, close - open - 1);
    if (std::optional<std::string> value = replacement(body, arguments, number)) {
      out += *value;
      found = true;
      i = close + 1;
    } else {
      out += '{';
      i = open + 1;
    }
  }
  out.append(word, i);
  return out;
}

}  // namespace

bool has_argument_sources(const std::vector<std::string>& words) {
  for (const auto& word : words) {
    if (is_separator(word)) return true;
  }
  return false;
}

ArgumentSources parse_argument_sources(const std::vector<std::string>& words) {
  ArgumentSources out;
  std::size_t i = 0;
  for (; i < words.size() && !is_separator(words[i]); ++i) out.command.push_back(words[i]);
  if (out.command.empty()) {
    throw Error("no command before '" + (i < words.size() ? words[i] : std::string(":::")) + "'",
                "pollkill batch [OPTIONS] -- COMMAND {} ::: ARG...");
  }
  while (i < words.size()) {
    const bool from_file = words[i] == "::::";
    const std::string separator = words[i++];
    std::vector<std::string> source;
    for (; i < words.size() && !is_separator(words[i]); ++i) {
      if (from_file) {
        std::vector<std::string> lines = read_lines(words[i]);
        source.insert(source.end(), std::make_move_iterator(lines.begin()),
                      std::make_move_iterator(lines.end()));
      } else {
        source.push_back(words[i]);
      }
    }
    if (source.empty()) {
      throw Error("'" + separator + "' gives no " + (from_file ? "lines" : "arguments"),
                  from_file ? ":::: FILE reads one argument per line of FILE"
                            : "::: ARG... takes the arguments on the command line");
    }
    out.sources.push_back(std::move(source));
  }
  return out;
}

std::vector<std::string> expand_command(const std::vector<std::string>& command,
                                        const std::vector<std::string>& arguments,
                                        std::uint64_t number) {
  std::vector<std::string> out;
  out.reserve(command.size() + arguments.size());
  bool found = false;
  for (const auto& word : command) out.push_back(expand_word(word, arguments, number, found));
  if (!found) out.insert(out.end(), arguments.begin(), arguments.end());
  return out;
}

std::string argument_task_lines(const ArgumentSources& sources) {
  if (sources.sources.empty()) throw Error("no arguments: give ::: ARG... or :::: FILE");
  std::string text;
  std::vector<std::size_t> index(sources.sources.size(), 0);
  std::vector<std::string> arguments(sources.sources.size());
  for (std::uint64_t number = 1;; ++number) {
    for (std::size_t s = 0; s < index.size(); ++s) arguments[s] = sources.sources[s][index[s]];
    text +=
        nlohmann::json{{"cmd", expand_command(sources.command, arguments, number)}}.dump() + "\n";
    // Odometer: the last source varies fastest.
    std::size_t s = index.size();
    while (s > 0) {
      --s;
      if (++index[s] < sources.sources[s].size()) break;
      index[s] = 0;
      if (s == 0) return text;
    }
  }
}

}  // namespace pollkill
