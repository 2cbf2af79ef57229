// Dynlib against the real dynamic loader: a library that is not there, a symbol that is not
// there, and libdw itself (a build dependency, so it is installed wherever the tests build).
#include "pollkill/dynlib.h"

#include <elfutils/libdwfl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "pollkill/error.h"

namespace pollkill {
namespace {

constexpr DynlibSpec kMissing = {"libpollkill-no-such-library.so.7", "to test a missing library",
                                 "Debian: pollkill-test-package"};
constexpr DynlibSpec kLibdw = {POLLKILL_LIBDW_SONAME, "to test libdw",
                               "Debian: libdw1; Fedora: elfutils-libs"};

TEST(Dynlib, AMissingLibraryNamesTheFileThePackageAndTheLoadersReason) {
  try {
    Dynlib::open(kMissing);
    FAIL() << "opened a library that does not exist";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot load libpollkill-no-such-library.so.7"), std::string::npos) << what;
    EXPECT_NE(what.find("to test a missing library"), std::string::npos) << what;
    // dlerror()'s own text, which names the file and says why.
    EXPECT_NE(what.find("libpollkill-no-such-library.so.7: cannot open shared object file"),
              std::string::npos)
        << what;
    EXPECT_NE(e.hint().find("Debian: pollkill-test-package"), std::string::npos) << e.hint();
  }
}

TEST(Dynlib, AMissingSymbolNamesTheSymbolAndTheLibrary) {
  const Dynlib lib = Dynlib::open(kLibdw);
  try {
    lib.symbol<int (*)(int)>("pollkill_no_such_symbol");
    FAIL() << "found a symbol libdw does not have";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(std::string("cannot use ") + POLLKILL_LIBDW_SONAME), std::string::npos)
        << what;
    EXPECT_NE(what.find("no symbol 'pollkill_no_such_symbol'"), std::string::npos) << what;
    EXPECT_NE(e.hint().find("elfutils-libs"), std::string::npos) << e.hint();
  }
}

TEST(Dynlib, LibdwLoadsAndItsFunctionsWorkThroughTheHandle) {
  const Dynlib lib = Dynlib::open(kLibdw);
  EXPECT_EQ(lib.soname(), POLLKILL_LIBDW_SONAME);
  auto version = lib.symbol<decltype(&dwfl_version)>("dwfl_version");
  ASSERT_NE(version, nullptr);
  // libdwfl answers with its version ("0.188"), which its own package also states.
  const std::string text = version(nullptr);
  EXPECT_FALSE(text.empty());
  EXPECT_NE(text.find('.'), std::string::npos) << text;
}

TEST(Dynlib, AMovedHandleKeepsTheLibraryOpen) {
  Dynlib first = Dynlib::open(kLibdw);
  Dynlib second = std::move(first);
  auto version = second.symbol<decltype(&dwfl_version)>("dwfl_version");
  EXPECT_NE(std::string(version(nullptr)), "");
  Dynlib third = Dynlib::open(kLibdw);
  third = std::move(second);
  EXPECT_NE(std::string(third.symbol<decltype(&dwfl_version)>("dwfl_version")(nullptr)), "");
}

// What the library's functions look like to a caller: a struct of them, loaded once.
struct CountedApi {
  static inline int constructed = 0;
  Dynlib lib = Dynlib::open(kLibdw);
  POLLKILL_DYNLIB_SYMBOL(dwfl_version);
  CountedApi() { ++constructed; }
};

struct FailingApi {
  static inline int attempts = 0;
  FailingApi() : lib(open_counted()) {}
  static Dynlib open_counted() {
    ++attempts;
    return Dynlib::open(kMissing);
  }
  Dynlib lib;
};

TEST(Dynlib, CachedLoadsOnceAndAFailureIsTriedAgain) {
  const CountedApi& a = cached<CountedApi>();
  const CountedApi& b = cached<CountedApi>();
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(CountedApi::constructed, 1);
  EXPECT_NE(std::string(a.dwfl_version(nullptr)), "");

  EXPECT_THROW(cached<FailingApi>(), Error);
  EXPECT_THROW(cached<FailingApi>(), Error);
  EXPECT_EQ(FailingApi::attempts, 2);
}

}  // namespace
}  // namespace pollkill
