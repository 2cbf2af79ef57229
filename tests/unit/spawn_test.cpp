#include <gtest/gtest.h>

#include "pollkill/progress.h"
#include "pollkill/spawn.h"

namespace pollkill {
namespace {

TEST(ExecCandidates, SearchesPathLikeExecvp) {
  EXPECT_EQ(exec_candidates("gmsh", "/usr/local/bin:/usr/bin"),
            (std::vector<std::string>{"/usr/local/bin/gmsh", "/usr/bin/gmsh"}));
  // An empty PATH entry means the current directory.
  EXPECT_EQ(exec_candidates("run", ":/bin"), (std::vector<std::string>{"./run", "/bin/run"}));
  EXPECT_EQ(exec_candidates("./x", "/bin"), (std::vector<std::string>{"./x"}));
  EXPECT_EQ(exec_candidates("/bin/true", "/usr/bin"), (std::vector<std::string>{"/bin/true"}));
  EXPECT_TRUE(exec_candidates("", "/bin").empty());
}

TEST(ProcIo, ParsesWchar) {
  EXPECT_EQ(parse_wchar("rchar: 10\nwchar: 4242\nsyscr: 1\n"), 4242u);
  EXPECT_FALSE(parse_wchar("rchar: 10\n").has_value());
}

}  // namespace
}  // namespace pollkill
