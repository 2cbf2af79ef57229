#include "pollkill/taskfile.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "pollkill/diag.h"

namespace pollkill {
namespace {

/// The keys a task line may set: those of [limits], under their policy names.
std::vector<std::string_view> limit_keys() {
  std::vector<std::string_view> names;
  for (const KeySpec& key : policy_keys()) {
    if (key.section == "limits") names.push_back(key.name);
  }
  return names;
}

// A JSON scalar as the same TOML value: strings as strings, numbers as integers or floats.
Setting limit_setting(const KeySpec& key, const nlohmann::json& value) {
  Setting setting{&key, {}, std::string(key.name)};
  if (value.is_string()) {
    setting.value = value.get<std::string>();
  } else if (value.is_number_unsigned() &&
             value.get<std::uint64_t>() >
                 static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    throw Error(setting.origin + ": " + value.dump() + " is too large");
  } else if (value.is_number_integer()) {
    setting.value = value.get<std::int64_t>();
  } else if (value.is_number_float()) {
    setting.value = value.get<double>();
  } else {
    throw Error(setting.origin + ": expected a string or a number, got " +
                std::string(value.type_name()));
  }
  return setting;
}

// Refuses an id whose file name would not fit; the caller adds FILE:LINE.
void check_id_length(const std::string& id) {
  const std::size_t length = id_file_name(id).size();
  if (length > kMaxIdFileName) {
    throw Error("id: too long: its log file name would be " + std::to_string(length) +
                " bytes, at most " + std::to_string(kMaxIdFileName) +
                " (bytes other than letters, digits, '-', '_' and '.' take 3)");
  }
}

std::string describe_json_error(const nlohmann::json::exception& e) {
  std::string text = e.what();
  // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> after "]: "
  auto pos = text.find("] ");
  return "invalid JSON: " + (pos == std::string::npos ? text : text.substr(pos + 2));
}

std::optional<TaskSpec> parse_json_task(std::string_view text, std::uint64_t line_number) {
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(describe_json_error(e));
  }
  if (!object.is_object()) throw Error("expected a JSON object");
  TaskSpec task;
  task.line = line_number;
  task.id = std::to_string(line_number);
  bool has_cmd = false, has_sh = false;
  for (const auto& [key, value] : object.items()) {
    if (key == "id") {
      if (value.is_string() && !value.get<std::string>().empty()) {
        task.id = value.get<std::string>();
      } else if (value.is_number_integer()) {
        task.id = value.dump();
      } else {
        throw Error("id: expected a non-empty string or an integer");
      }
    } else if (key == "cmd") {
      if (!value.is_array() || value.empty()) throw Error("cmd: expected a non-empty array");
      for (const auto& word : value) {
        if (!word.is_string()) throw Error("cmd: expected an array of strings");
        task.command.push_back(word.get<std::string>());
      }
      has_cmd = true;
    } else if (key == "sh") {
      if (!value.is_string() || value.get<std::string>().empty())
        throw Error("sh: expected a non-empty string");
      task.command = {"/bin/sh", "-c", value.get<std::string>()};
      has_sh = true;
    } else if (key == "cwd") {
      if (!value.is_string() || value.get<std::string>().empty())
        throw Error("cwd: expected a non-empty string");
      task.cwd = value.get<std::string>();
    } else if (key == "env") {
      if (!value.is_object()) throw Error("env: expected an object of strings");
      for (const auto& [name, v] : value.items()) {
        if (!v.is_string()) throw Error("env." + name + ": expected a string");
        if (name.empty() || name.find('=') != std::string::npos)
          throw Error("env: invalid variable name '" + name + "'");
        task.env.push_back(name + "=" + v.get<std::string>());
      }
    } else if (const KeySpec* limit = find_key("limits", key)) {
      task.limits.push_back(limit_setting(*limit, value));
    } else {
      std::vector<std::string_view> known{"id", "cmd", "sh", "cwd", "env"};
      const std::vector<std::string_view> limits = limit_keys();
      known.insert(known.end(), limits.begin(), limits.end());
      std::string message = "unknown key '" + key + "'";
      if (std::string near = did_you_mean(key, known); !near.empty())
        message += "; did you mean '" + near + "'?";
      throw Error(message);
    }
  }
  check_id_length(task.id);
  if (has_cmd && has_sh) throw Error("give either cmd or sh, not both");
  if (!has_cmd && !has_sh) throw Error("missing cmd (an array) or sh (a string)");
  return task;
}

}  // namespace

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  size_t i = 0;
  const size_t n = line.size();
  while (i < n) {
    char c = line[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      ++i;
    } else if (c == '#' && !in_word) {
      break;
    } else if (c == '\\') {
      if (i + 1 >= n) throw Error("trailing backslash");
      word += line[i + 1];
      in_word = true;
      i += 2;
    } else if (c == '\'') {
      size_t end = line.find('\'', i + 1);
      if (end == std::string_view::npos) throw Error("unterminated single quote");
      word.append(line.substr(i + 1, end - i - 1));
      in_word = true;
      i = end + 1;
    } else if (c == '"') {
      ++i;
      bool closed = false;
      while (i < n) {
        char d = line[i];
        if (d == '"') {
          closed = true;
          ++i;
          break;
        }
        if (d == '\\' && i + 1 < n &&
            (line[i + 1] == '\\' || line[i + 1] == '"' || line[i + 1] == '$' ||
             line[i + 1] == '`' || line[i + 1] == '\n')) {
          if (line[i + 1] != '\n') word += line[i + 1];
          i += 2;
          continue;
        }
        word += d;
        ++i;
      }
      if (!closed) throw Error("unterminated double quote");
      in_word = true;
    } else {
      word += c;
      in_word = true;
      ++i;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

std::string shell_syntax(std::string_view line) {
  bool word_start = true;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    switch (c) {
      case ' ':
      case '\t': word_start = true; continue;
      case '#':
        if (word_start) return {};
        break;
      case '\\': ++i; break;
      case '\'': {
        const std::size_t end = line.find('\'', i + 1);
        if (end == std::string_view::npos) return {};
        i = end;
        break;
      }
      case '"':
        for (++i; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\') {
            ++i;
          } else if (line[i] == '$' || line[i] == '`') {
            return std::string(1, line[i]);
          }
        }
        break;
      case '&':
      case '|':
        if (i + 1 < line.size() && line[i + 1] == c) return std::string(2, c);
        return std::string(1, c);
      case '>':
      case '<':
      case ';':
      case '$':
      case '`':
      case '*':
      case '?':
      case '[': return std::string(1, c);
      default: break;
    }
    word_start = false;
  }
  return {};
}

std::string sh_c_rewrite(std::string_view line) {
  const std::size_t first = line.find_first_not_of(" \t");
  const std::size_t last = line.find_last_not_of(" \t\r");
  if (first == std::string_view::npos) return "sh -c ''";
  std::string out = "sh -c '";
  for (char c : line.substr(first, last - first + 1)) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::optional<TaskSpec> parse_task_line(std::string_view text, std::uint64_t line_number,
                                        const Policy& base) {
  size_t first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos || text[first] == '#') return std::nullopt;
  std::optional<TaskSpec> task;
  if (text[first] == '{') {
    task = parse_json_task(text.substr(first), line_number);
  } else {
    auto words = split_words(text);
    if (words.empty()) return std::nullopt;  // a comment after blanks
    task = TaskSpec{};
    task->line = line_number;
    task->id = std::to_string(line_number);
    task->command = std::move(words);
  }
  if (!task->limits.empty()) task_policy(*task, base);  // validates the overrides
  return task;
}

Policy task_policy(const TaskSpec& task, const Policy& base) {
  if (task.limits.empty()) return base;
  try {
    // A fixed wall_time in the task replaces an adaptive one of the batch, and vice versa.
    return apply_settings(base, task.limits);
  } catch (const PolicyError& e) {
    throw Error(e.what());  // "memory: invalid size ...": the caller adds FILE:LINE
  }
}

TaskFile TaskFile::open(const std::string& path) {
  TaskFile file;
  file.name_ = path == "-" ? "<stdin>" : path;
  if (path == "-") {
    // Standard input can be read only once: spool it into an unlinked temporary file.
    std::FILE* spool = std::tmpfile();
    if (!spool) throw_errno("create a temporary file for the task list on standard input");
    char buffer[65536];
    ssize_t n;
    while ((n = ::read(STDIN_FILENO, buffer, sizeof buffer)) > 0) {
      if (std::fwrite(buffer, 1, static_cast<size_t>(n), spool) != static_cast<size_t>(n)) {
        std::fclose(spool);
        throw_errno("spool the task list from standard input");
      }
    }
    std::rewind(spool);
    file.file_.reset(spool);
    return file;
  }
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (!f) {
    int err = errno;
    throw Error(path + ": cannot read the task file: " + std::strerror(err) + " (" +
                errno_name(err) + ")");
  }
  file.file_.reset(f);
  return file;
}

TaskFile TaskFile::from_text(const std::string& name, std::string_view text) {
  TaskFile file;
  file.name_ = name;
  std::FILE* spool = std::tmpfile();
  if (!spool) throw_errno("create a temporary file for the tasks of " + name);
  file.file_.reset(spool);
  if (std::fwrite(text.data(), 1, text.size(), spool) != text.size() || std::fflush(spool) != 0)
    throw_errno("spool the tasks of " + name);
  std::rewind(spool);
  return file;
}

bool TaskFile::read_line(std::string& line) {
  line.clear();
  if (end_ && offset_ >= *end_) return false;  // past the snapshot validate() read
  char* buffer = nullptr;
  size_t capacity = 0;
  ssize_t n = ::getline(&buffer, &capacity, file_.get());
  if (n < 0) {
    std::free(buffer);
    return false;
  }
  std::size_t length = static_cast<std::size_t>(n);
  // A last line that was unfinished at validation keeps only what was validated.
  if (end_ && offset_ + length > *end_) length = static_cast<std::size_t>(*end_ - offset_);
  offset_ += static_cast<std::uint64_t>(n);
  line.assign(buffer, length);
  std::free(buffer);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  ++line_;
  return true;
}

TaskFile::Validation TaskFile::validate(const Policy& base) {
  Validation result;
  std::unordered_set<std::string> ids;
  std::unordered_set<std::string> attrs;
  auto add_plan = [&](const Limits& limits) {
    for (auto& w : plan_limits(limits)) {
      if (attrs.insert(w.attr).second) result.plan.push_back(std::move(w));
    }
  };
  auto add_features = [&](const Policy& policy) {
    result.output_limit = result.output_limit || policy.limits.output.has_value();
    result.evidence = result.evidence || !policy.evidence.on.empty();
  };
  add_plan(base.limits);
  add_features(base);
  shell_lines_ = 0;
  while (std::optional<TaskSpec> task = read_task(base)) {
    if (!ids.insert(task->id).second) {
      throw Error(name_ + ":" + std::to_string(line_) + ": duplicate task id '" + task->id + "'");
    }
    if (!task->limits.empty()) {
      const Policy effective = task_policy(*task, base);
      add_plan(effective.limits);
      add_features(effective);
    }
    ++result.tasks;
  }
  if (std::ferror(file_.get())) throw_errno("read the task file '" + name_ + "'");
  end_ = offset_;
  if (*shell_lines_ > kShellWarnings) {
    diag::warning(name_ + ": " + std::to_string(*shell_lines_ - kShellWarnings) +
                  " more lines with shell syntax run as words");
  }
  shell_lines_.reset();
  rewind();
  return result;
}

void TaskFile::rewind() {
  std::rewind(file_.get());
  offset_ = 0;
  line_ = 0;
  seq_ = 0;
}

std::optional<TaskSpec> TaskFile::read_task(const Policy& base) {
  std::string line;
  while (read_line(line)) {
    std::optional<TaskSpec> task;
    try {
      task = parse_task_line(line, line_, base);
    } catch (const Error& e) {
      throw Error(name_ + ":" + std::to_string(line_) + ": " + e.what());
    }
    if (task && shell_lines_ && line.find_first_not_of(" \t") != line.find('{')) {
      if (std::string op = shell_syntax(line); !op.empty() && ++*shell_lines_ <= kShellWarnings) {
        diag::warning(name_ + ":" + std::to_string(line_) + ": '" + op +
                      "' is passed to the command as text, not acted on by a shell (pollkill "
                      "runs a task line as words); for a shell, write the line as: " +
                      sh_c_rewrite(line));
      }
    }
    if (task) return task;
  }
  return std::nullopt;
}

std::optional<TaskSpec> TaskFile::next(const Policy& base) {
  std::optional<TaskSpec> task = read_task(base);
  if (task) task->seq = ++seq_;
  return task;
}

}  // namespace pollkill
