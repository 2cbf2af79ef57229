#include "pollkill/taskfile.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

namespace pollkill {
namespace {

struct SplitCase {
  std::string line;
  std::vector<std::string> words;
};

TEST(SplitWords, FollowsShellQuoting) {
  const SplitCase cases[] = {
      {"", {}},
      {"   ", {}},
      {"true", {"true"}},
      {"  echo  a   b ", {"echo", "a", "b"}},
      {"echo 'a b' c", {"echo", "a b", "c"}},
      {"echo \"a  b\"", {"echo", "a  b"}},
      {"echo \"a\\\"b\"", {"echo", "a\"b"}},
      {"echo \"a\\nb\"", {"echo", "a\\nb"}},
      {"echo a\\ b", {"echo", "a b"}},
      {"echo 'it'\\''s'", {"echo", "it's"}},
      {"echo ''", {"echo", ""}},
      {"echo a#b # comment", {"echo", "a#b"}},
      {"# only a comment", {}},
      {"sh -c 'echo $HOME; exit 3'", {"sh", "-c", "echo $HOME; exit 3"}},
      {"a\tb", {"a", "b"}},
  };
  for (const auto& c : cases) EXPECT_EQ(split_words(c.line), c.words) << c.line;
}

TEST(SplitWords, RefusesUnterminatedQuotes) {
  for (const char* line : {"echo 'a", "echo \"a", "echo a\\"}) {
    EXPECT_THROW(split_words(line), Error) << line;
  }
}

TEST(ShellSyntax, FindsWhatAShellWouldActOnOutsideQuotes) {
  const std::pair<std::string, std::string> cases[] = {
      {"echo a > out", ">"},
      {"sort < in", "<"},
      {"cat x | wc -l", "|"},
      {"make && make install", "&&"},
      {"a || b", "||"},
      {"sleep 1 &", "&"},
      {"cd /tmp; ls", ";"},
      {"echo $HOME", "$"},
      {"echo \"$HOME\"", "$"},
      {"echo `date`", "`"},
      {"rm *.o", "*"},
      {"ls file?.txt", "?"},
      {"ls [ab].txt", "["},
      {"gmsh -3 mesh.geo", ""},
      {"echo 'a > b | c $d *'", ""},
      {"echo \"a > b | c *\"", ""},
      {"echo a\\>b", ""},
      {"echo a # > comment", ""},
      {"echo a#b>c", ">"},
      {"echo 'unterminated > x", ""},
  };
  for (const auto& [line, op] : cases) EXPECT_EQ(shell_syntax(line), op) << line;
}

TEST(ShellSyntax, RewriteRunsTheLineInAShell) {
  EXPECT_EQ(sh_c_rewrite("  echo a > out  "), "sh -c 'echo a > out'");
  EXPECT_EQ(sh_c_rewrite("echo 'x y' | wc"), "sh -c 'echo '\\''x y'\\'' | wc'");
  // The rewrite, split as a task line, is sh -c with the original line as its script.
  EXPECT_EQ(split_words(sh_c_rewrite("echo 'x y' | wc")),
            (std::vector<std::string>{"sh", "-c", "echo 'x y' | wc"}));
}

TEST(ParseTaskLine, PlainLineIdIsTheLineNumber) {
  auto task = parse_task_line("sleep 1", 7, default_policy());
  ASSERT_TRUE(task);
  EXPECT_EQ(task->id, "7");
  EXPECT_EQ(task->line, 7u);
  EXPECT_EQ(task->command, (std::vector<std::string>{"sleep", "1"}));
  EXPECT_FALSE(parse_task_line("", 1, default_policy()));
  EXPECT_FALSE(parse_task_line("   # note", 1, default_policy()));
}

TEST(ParseTaskLine, JsonObject) {
  auto task = parse_task_line(
      R"({"id": "a1", "cmd": ["ls", "-l"], "cwd": "/tmp", "env": {"X": "1"}, "wall_time": "5s"})",
      3, default_policy());
  ASSERT_TRUE(task);
  EXPECT_EQ(task->id, "a1");
  EXPECT_EQ(task->command, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(task->cwd, "/tmp");
  EXPECT_EQ(task->env, (std::vector<std::string>{"X=1"}));
  EXPECT_EQ(task_policy(*task, default_policy()).limits.wall_time, Duration(5000));

  auto sh = parse_task_line(R"({"id": 12, "sh": "echo hi | wc -c"})", 4, default_policy());
  ASSERT_TRUE(sh);
  EXPECT_EQ(sh->id, "12");
  EXPECT_EQ(sh->command, (std::vector<std::string>{"/bin/sh", "-c", "echo hi | wc -c"}));
}

TEST(ParseTaskLine, BadJsonLinesSayWhy) {
  struct Case {
    std::string line;
    std::string message;
  };
  const Case cases[] = {
      {R"({"cmd": ["a"], "sh": "b"})", "either cmd or sh"},
      {R"({"id": "x"})", "missing cmd"},
      {R"({"cmd": []})", "cmd: expected a non-empty array"},
      {R"({"cmd": ["a", 1]})", "array of strings"},
      {R"({"cmd": ["a"], "wall_tme": "1s"})", "did you mean 'wall_time'"},
      {R"({"cmd": ["a"], "memory": "lots"})", "memory"},
      {R"({"cmd": ["a"], "memory": 0})", "greater than 0"},
      {R"({"cmd": ["a"])", "invalid JSON"},
      {R"({"cmd": ["a"], "env": {"A": 1}})", "env.A"},
  };
  for (const auto& c : cases) {
    try {
      parse_task_line(c.line, 1, default_policy());
      ADD_FAILURE() << "accepted: " << c.line;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos)
          << c.line << " -> " << e.what();
    }
  }
}

// A task line's keys go through the policy's own reader (no TOML text in between): the same
// values and range checks as a file, the same zero-means-no-limit, errors named by the key.
TEST(ParseTaskLine, LimitKeysAreReadLikeAPolicyFile) {
  Policy base;
  base.limits.wall_time = Duration(60'000);
  base.limits.memory = 1u << 30;
  auto task = parse_task_line(
      R"({"cmd": ["a"], "wall_time": 0, "memory": "64MiB", "cpus": 0.5, "pids": 10})", 1, base);
  ASSERT_TRUE(task);
  const Policy p = task_policy(*task, base);
  EXPECT_FALSE(p.limits.wall_time);
  EXPECT_EQ(p.limits.memory, 64u << 20);
  EXPECT_EQ(p.limits.cpus, 0.5);
  EXPECT_EQ(p.limits.pids, 10u);

  struct Case {
    std::string line;
    std::string what;
  };
  const Case cases[] = {
      {R"({"cmd": ["a"], "memory": "lots"})",
       "memory: invalid size 'lots': expected a number followed by an optional unit, such as "
       "512MiB"},
      {R"({"cmd": ["a"], "cpus": "2"})", "cpus: expected a number, got string '2'"},
      {R"({"cmd": ["a"], "cpus": 1e300})", "cpus: invalid value '1e+300': must be at most 1000000"},
      {R"({"cmd": ["a"], "pids": 9223372036854775807})",
       "pids: invalid value '9223372036854775807' (use an integer from 1 to 4194304 or \"max\")"},
      {R"({"cmd": ["a"], "pids": 18446744073709551615})",
       "pids: 18446744073709551615 is too large"},
      {R"({"cmd": ["a"], "wall_time": "1e20%"})",
       "wall_time: invalid percentage '1e20%' (use a number such as 300%)"},
      {R"({"cmd": ["a"], "output": true})", "output: expected a string or a number, got boolean"},
      {R"({"cmd": ["a"], "hang_after": "1s"})", "unknown key 'hang_after'"},
  };
  for (const Case& c : cases) {
    try {
      parse_task_line(c.line, 1, base);
      ADD_FAILURE() << "accepted: " << c.line;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), c.what) << c.line;
    }
  }
}

// Two different ids never share a log file: the mapping is injective (every byte that is
// escaped is escaped as %XX, and '%' itself is escaped), and keeps plain ids as they are.
TEST(IdFileName, DifferentIdsGetDifferentNames) {
  const std::pair<std::string, std::string> cases[] = {
      {"1", "1"},
      {"build-x86_64.v2", "build-x86_64.v2"},
      {"a/b", "a%2Fb"},
      {"a_b", "a_b"},
      {".hidden", "%2Ehidden"},
      {"t.hidden", "t.hidden"},
      {"..", "%2E."},
      {"x y", "x%20y"},
      {"x?y", "x%3Fy"},
      {"100%", "100%25"},
      {"a%2Fb", "a%252Fb"},
      {"\xc3\xa9", "%C3%A9"},
      {std::string("a\0b", 3), "a%00b"},
  };
  std::set<std::string> names;
  for (const auto& [id, name] : cases) {
    EXPECT_EQ(id_file_name(id), name) << id;
    EXPECT_TRUE(names.insert(id_file_name(id)).second) << id;
  }
}

TEST(ParseTaskLine, IdTooLongForAFileNameIsRefused) {
  const Policy base = default_policy();
  const std::string fits(kMaxIdFileName, 'a');
  EXPECT_EQ(parse_task_line(R"({"id": ")" + fits + R"(", "sh": "true"})", 1, base)->id, fits);
  const std::string too_long(kMaxIdFileName + 1, 'a');
  // 70 '/' are 210 bytes once escaped.
  for (const std::string& id : {too_long, std::string(70, '/')}) {
    try {
      parse_task_line(R"({"id": ")" + id + R"(", "sh": "true"})", 1, base);
      ADD_FAILURE() << "accepted an id of " << id.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("id: too long"), std::string::npos) << e.what();
    }
  }
}

class TaskFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() /
            ("pk-taskfile-" + std::to_string(::getpid()) + ".txt");
    std::ofstream(path_) << text;
    return path_.string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_;
};

TEST_F(TaskFileTest, ValidatesThenStreams) {
  std::string path = write("# tasks\ntrue\n\nfalse\n{\"id\": \"j\", \"sh\": \"exit 0\"}\n");
  TaskFile file = TaskFile::open(path);
  auto v = file.validate(default_policy());
  EXPECT_EQ(v.tasks, 3u);
  std::vector<std::string> ids;
  std::vector<std::uint64_t> seqs;
  while (auto t = file.next(default_policy())) {
    ids.push_back(t->id);
    seqs.push_back(t->seq);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"2", "4", "j"}));
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{1, 2, 3}));
}

// The open-file budget counts the output relay only where a task may have one.
TEST_F(TaskFileTest, ValidationSaysWhetherAnyTaskHasAnOutputLimitOrTakesEvidence) {
  Policy no_evidence = default_policy();
  no_evidence.evidence.on.clear();
  {
    TaskFile file = TaskFile::open(write("true\n{\"cmd\": [\"b\"], \"memory\": \"1G\"}\n"));
    auto v = file.validate(no_evidence);
    EXPECT_FALSE(v.output_limit);
    EXPECT_FALSE(v.evidence);
  }
  {
    TaskFile file = TaskFile::open(write("true\n{\"cmd\": [\"b\"], \"output\": \"1M\"}\n"));
    auto v = file.validate(no_evidence);
    EXPECT_TRUE(v.output_limit);
    EXPECT_FALSE(v.evidence);
  }
  TaskFile file = TaskFile::open(write("true\n"));
  EXPECT_TRUE(file.validate(default_policy()).evidence);  // on by default
}

TEST_F(TaskFileTest, BadLineIsFileColonLine) {
  std::string path = write("true\n\necho 'oops\n");
  TaskFile file = TaskFile::open(path);
  try {
    file.validate(default_policy());
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ":3: unterminated single quote");
  }
}

TEST_F(TaskFileTest, DuplicateIdsAreRefused) {
  std::string path =
      write("{\"id\": \"a\", \"sh\": \"true\"}\n{\"id\": \"a\", \"sh\": \"false\"}\n");
  TaskFile file = TaskFile::open(path);
  try {
    file.validate(default_policy());
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ":2: duplicate task id 'a'");
  }
}

TEST_F(TaskFileTest, LongIdIsRefusedWithFileColonLine) {
  std::string path = write("true\n{\"id\": \"" + std::string(300, 'x') + "\", \"sh\": \"true\"}\n");
  TaskFile file = TaskFile::open(path);
  try {
    file.validate(default_policy());
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ":2: id: too long", 0), 0u) << e.what();
  }
}

// The tasks that run are the ones validated: what is appended to the file while the batch
// runs (a whole line, or the rest of an unfinished last line) is not read.
TEST_F(TaskFileTest, LinesAppendedAfterValidationAreNotRun) {
  std::string path = write("true\n{\"id\": \"a\", \"sh\": \"true\"}\nfalse --partial");
  TaskFile file = TaskFile::open(path);
  EXPECT_EQ(file.validate(default_policy()).tasks, 3u);
  std::ofstream(path, std::ios::app) << " rest\n{\"id\": \"a\", \"sh\": \"rm -rf x\"}\nbad 'line\n";
  std::vector<std::vector<std::string>> commands;
  while (auto t = file.next(default_policy())) commands.push_back(t->command);
  EXPECT_EQ(commands, (std::vector<std::vector<std::string>>{
                          {"true"}, {"/bin/sh", "-c", "true"}, {"false", "--partial"}}));
  file.rewind();  // the resume check's pass sees the same snapshot
  std::size_t again = 0;
  while (file.next(default_policy())) ++again;
  EXPECT_EQ(again, 3u);
}

TEST_F(TaskFileTest, PlanCoversPerTaskLimits) {
  std::string path = write("{\"sh\": \"true\", \"memory\": \"64MiB\"}\ntrue\n");
  TaskFile file = TaskFile::open(path);
  auto v = file.validate(default_policy());
  bool memory = false;
  for (const auto& w : v.plan) memory = memory || w.attr == "memory.max";
  EXPECT_TRUE(memory);
}

}  // namespace
}  // namespace pollkill
