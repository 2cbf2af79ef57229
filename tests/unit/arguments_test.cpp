#include "pollkill/arguments.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "pollkill/error.h"

namespace pollkill {
namespace {

using Words = std::vector<std::string>;

TEST(ExpandCommand, ReplacementStringsAsGnuParallelHasThem) {
  const struct {
    Words command;
    Words arguments;
    Words expanded;
  } cases[] = {
      {{"gzip", "{}"}, {"dir/a.txt"}, {"gzip", "dir/a.txt"}},
      {{"echo", "{.}"}, {"dir/a.tar.gz"}, {"echo", "dir/a.tar"}},
      {{"echo", "{/}"}, {"dir/sub/a.txt"}, {"echo", "a.txt"}},
      {{"echo", "{//}"}, {"dir/sub/a.txt"}, {"echo", "dir/sub"}},
      {{"echo", "{//}"}, {"a.txt"}, {"echo", "."}},
      {{"echo", "{/.}"}, {"dir/sub/a.txt"}, {"echo", "a"}},
      {{"echo", "{.}"}, {"dir.d/a"}, {"echo", "dir.d/a"}},
      {{"echo", "{#}"}, {"x"}, {"echo", "7"}},
      // Inside a word, several in one word, and words that only look like one.
      {{"convert", "{}", "out/{/.}.png"}, {"in/cat.jpg"}, {"convert", "in/cat.jpg", "out/cat.png"}},
      {{"echo", "{}-{#}"}, {"a"}, {"echo", "a-7"}},
      {{"echo", "{x}", "{", "}{"}, {"a"}, {"echo", "{x}", "{", "}{", "a"}},
      // No replacement string: the arguments go at the end.
      {{"echo", "n"}, {"a", "b"}, {"echo", "n", "a", "b"}},
      // Several sources: {} joins them, {N} picks one.
      {{"echo", "{}"}, {"a", "1"}, {"echo", "a 1"}},
      {{"echo", "{2}", "{1/.}"}, {"d/a.c", "1"}, {"echo", "1", "a"}},
      {{"echo", "{3}"}, {"a", "1"}, {"echo", "{3}", "a", "1"}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(expand_command(c.command, c.arguments, 7), c.expanded) << c.command[1];
  }
}

TEST(ArgumentSources, EveryCombinationInParallelsOrderAsTaskLines) {
  ArgumentSources sources =
      parse_argument_sources({"echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"});
  EXPECT_EQ(sources.command, (Words{"echo", "{1}-{2}"}));
  ASSERT_EQ(sources.sources.size(), 2u);
  EXPECT_EQ(argument_task_lines(sources),
            "{\"cmd\":[\"echo\",\"a-1\"]}\n{\"cmd\":[\"echo\",\"a-2\"]}\n"
            "{\"cmd\":[\"echo\",\"b-1\"]}\n{\"cmd\":[\"echo\",\"b-2\"]}\n");
}

TEST(ArgumentSources, FourColonsReadAFileLinePerArgument) {
  char path[] = "/tmp/pollkill-args-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  { std::ofstream(path) << "x y\nz\n"; }
  ArgumentSources sources = parse_argument_sources({"wc", "{}", "::::", path});
  std::filesystem::remove(path);
  EXPECT_EQ(argument_task_lines(sources), "{\"cmd\":[\"wc\",\"x y\"]}\n{\"cmd\":[\"wc\",\"z\"]}\n");
}

TEST(ArgumentSources, MistakesSayWhat) {
  EXPECT_THROW(parse_argument_sources({":::", "a"}), Error);
  EXPECT_THROW(parse_argument_sources({"echo", ":::"}), Error);
  EXPECT_THROW(parse_argument_sources({"echo", "::::", "/nonexistent/args"}), Error);
  try {
    parse_argument_sources({"echo", ":::", "a", ":::"});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "':::' gives no arguments");
  }
  EXPECT_FALSE(has_argument_sources({"tasks.txt"}));
  EXPECT_TRUE(has_argument_sources({"echo", "::::", "f"}));
}

}  // namespace
}  // namespace pollkill
