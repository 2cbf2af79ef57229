#include "pollkill/diag.h"

#include <gtest/gtest.h>

#include <string>

namespace pollkill {
namespace {

// Captures what the sink says, and puts the level and writer back afterwards.
class Diag : public ::testing::Test {
 protected:
  void SetUp() override {
    diag::set_writer([this](std::string_view text) { said_ += text; });
  }
  void TearDown() override {
    diag::set_writer({});
    diag::set_level(diag::Level::normal);
  }
  std::string said_;
};

TEST_F(Diag, EachKindHasItsPrefix) {
  diag::warning("low on descriptors");
  diag::notice("running in subreaper mode");
  diag::hint("raise the limit");
  diag::error(Error("cannot create 'x'", "run as root"));
  diag::error(std::string_view("plain failure"));
  diag::text("3/10 done\n");
  EXPECT_EQ(said_,
            "pollkill: warning: low on descriptors\n"
            "pollkill: running in subreaper mode\n"
            "pollkill: hint: raise the limit\n"
            "pollkill: error: cannot create 'x'\n"
            "pollkill: hint: run as root\n"
            "pollkill: error: plain failure\n"
            "3/10 done\n");
}

TEST_F(Diag, QuietKeepsOnlyErrors) {
  diag::set_level(diag::Level::quiet);
  diag::warning("w");
  diag::notice("n");
  diag::hint("h");
  diag::detail("d");
  diag::text("t");
  diag::error(Error("e"));
  EXPECT_EQ(said_, "pollkill: error: e\n");
  EXPECT_FALSE(diag::enabled(diag::Level::normal));
}

TEST_F(Diag, DetailsOnlyWhenVerbose) {
  diag::detail("hidden");
  EXPECT_EQ(said_, "");
  diag::set_level(diag::Level::verbose);
  diag::detail("shown");
  diag::warning("still");
  EXPECT_EQ(said_, "pollkill: shown\npollkill: warning: still\n");
}

}  // namespace
}  // namespace pollkill
