// Which shared libraries pollkill loads: libdw and libsystemd are opened with dlopen where they
// are used (src/core/dynlib.cpp), so the binary does not list them, an ordinary run does not map
// them, and taking stacks does.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "pollkill/stack_unwind.h"

namespace pollkill::testing {
namespace {

const std::string kPollkill = POLLKILL_BINARY;

// The output of `readelf ARGS kPollkill`.
std::string readelf(const std::string& args) {
  auto readelf_path = find_program("readelf");
  if (!readelf_path) return {};
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("pollkill-readelf-" + std::to_string(::getpid()));
  const std::string command = *readelf_path + " " + args + " " + kPollkill + " > " + out.string();
  const int status = std::system(command.c_str());
  std::string text = slurp(out);
  std::filesystem::remove(out);
  return status == 0 ? text : std::string();
}

// Whether a library whose file name starts with `name` ("libdw", "libsystemd") is in the
// /proc/PID/maps text `maps`: as "/libdw.so.1" or as the file it links to, "/libdw-0.188.so".
bool maps_library(const std::string& maps, const std::string& name) {
  return maps.find("/" + name + ".so") != std::string::npos ||
         maps.find("/" + name + "-") != std::string::npos;
}

TEST(LoadedLibraries, ThePollkillBinaryNeedsNeitherLibdwNorLibsystemd) {
  if (!find_program("readelf")) GTEST_SKIP() << "readelf (binutils) is not installed";
  const std::string dynamic = readelf("-d");
  ASSERT_NE(dynamic.find("(NEEDED)"), std::string::npos) << dynamic;
  std::istringstream lines(dynamic);
  std::vector<std::string> needed;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("(NEEDED)") != std::string::npos) needed.push_back(line);
  }
  // libseccomp is linked: the list is the real one.
  EXPECT_NE(dynamic.find("[libseccomp.so."), std::string::npos) << dynamic;
  for (const std::string& line : needed) {
    for (const char* library : {"libdw", "libelf", "libsystemd", "libz.", "liblzma", "libzstd"}) {
      EXPECT_EQ(line.find(library), std::string::npos) << line;
    }
  }
  // What replaces them for packagers: the .note.dlopen notes naming the sonames opened.
  const std::string notes = readelf("-p .note.dlopen");
  EXPECT_NE(notes.find(std::string("\"soname\":[\"") + POLLKILL_LIBDW_SONAME + "\"]"),
            std::string::npos)
      << notes;
#ifdef POLLKILL_LIBSYSTEMD_SONAME
  EXPECT_NE(notes.find(std::string("\"soname\":[\"") + POLLKILL_LIBSYSTEMD_SONAME + "\"]"),
            std::string::npos)
      << notes;
#endif
}

// The task reads its parent's, pollkill's, list of mappings while pollkill runs it.
TEST(LoadedLibraries, AnOrdinaryRunMapsNeitherLibdwNorLibsystemd) {
  RunOutput r = run_task_cli({"-q"}, {"/bin/sh", "-c", "cat /proc/$PPID/comm /proc/$PPID/maps"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_EQ(r.out.substr(0, r.out.find('\n')), "pollkill") << r.out;
  EXPECT_TRUE(maps_library(r.out, "libseccomp")) << r.out;  // the maps are pollkill's
  EXPECT_FALSE(maps_library(r.out, "libdw")) << r.out;
  EXPECT_FALSE(maps_library(r.out, "libelf")) << r.out;
  EXPECT_FALSE(maps_library(r.out, "libsystemd")) << r.out;
}

// In a process of its own (this test binary, run again with only this test): an earlier test in
// the same process may have taken stacks already.
TEST(LoadedLibraries, TakingStacksLoadsLibdwThatWasNotLoadedBefore) {
  if (!std::getenv("POLLKILL_TEST_FRESH_PROCESS")) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setenv("POLLKILL_TEST_FRESH_PROCESS", "1", 1);
      ::execl("/proc/self/exe", "pollkill_tests",
              "--gtest_filter=LoadedLibraries.TakingStacksLoadsLibdwThatWasNotLoadedBefore",
              "--gtest_brief=1", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the test failed in its own process (output above)";
    return;
  }
  EXPECT_FALSE(maps_library(slurp("/proc/self/maps"), "libdw"));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (;;) ::pause();
  }
  const UnwoundStacks stacks =
      unwind_process(child, {child}, std::chrono::steady_clock::now() + std::chrono::seconds(20));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(maps_library(slurp("/proc/self/maps"), "libdw"));
  auto why = stacks.missing.find(child);
  EXPECT_EQ(stacks.frames.count(child), 1u)
      << (why != stacks.missing.end() ? why->second : std::string("no reason"));
}

}  // namespace
}  // namespace pollkill::testing
