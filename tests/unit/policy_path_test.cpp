#include "pollkill/policy_path.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "pollkill/policy.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;

TEST(PolicyPath, BareNamesAreNamesAndEverythingElseIsAPath) {
  const struct {
    const char* arg;
    bool name;
  } cases[] = {
      {"strict", true},       {"my-policy", true}, {"gmsh.v2", true},
      {"strict.toml", false}, {"./strict", false}, {"/etc/pollkill/x.toml", false},
      {"dir/strict", false},  {"", false},         {".", false},
      {"..", false},          {".toml", false},    {"strict.TOML", true},
  };
  for (const auto& c : cases) EXPECT_EQ(is_policy_name(c.arg), c.name) << "'" << c.arg << "'";
}

TEST(PolicyPath, BuiltInSearchIsTheAdminDirectoryThenTheShippedPolicies) {
  auto dirs = policy_search_path(nullptr);
  ASSERT_EQ(dirs.size(), 2u);
  EXPECT_EQ(dirs[0], fs::path(POLLKILL_SYSCONFDIR) / "pollkill");
  EXPECT_EQ(dirs[1], fs::path(POLLKILL_DATADIR) / "pollkill" / "policies");
  EXPECT_TRUE(dirs[0].is_absolute());
  EXPECT_TRUE(dirs[1].is_absolute());
}

TEST(PolicyPath, EnvironmentReplacesTheListAndSkipsEmptyEntries) {
  EXPECT_EQ(policy_search_path("/a:/b"), (std::vector<fs::path>{"/a", "/b"}));
  EXPECT_EQ(policy_search_path(":/a::/b:"), (std::vector<fs::path>{"/a", "/b"}));
  EXPECT_EQ(policy_search_path("rel"), (std::vector<fs::path>{"rel"}));
  EXPECT_TRUE(policy_search_path("").empty());
}

class PolicyLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/pollkill-policy-path-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    root_ = dir_template;
    fs::create_directories(root_ / "etc");
    fs::create_directories(root_ / "share");
    write(root_ / "share" / "strict.toml");
    write(root_ / "share" / "gmsh.toml");
    write(root_ / "etc" / "gmsh.toml");
    search_ = {root_ / "etc", root_ / "share"};
  }
  void TearDown() override { fs::remove_all(root_); }
  static void write(const fs::path& file) { std::ofstream(file) << "version = 1\n"; }

  fs::path root_;
  std::vector<fs::path> search_;
};

TEST_F(PolicyLookup, TheAdminsPolicyWinsOverTheShippedOne) {
  EXPECT_EQ(resolve_policy("gmsh", search_), root_ / "etc" / "gmsh.toml");
  EXPECT_EQ(resolve_policy("strict", search_), root_ / "share" / "strict.toml");
}

TEST_F(PolicyLookup, APathIsUsedAsIsEvenWhenItDoesNotExist) {
  EXPECT_EQ(resolve_policy("strict.toml", search_), fs::path("strict.toml"));
  EXPECT_EQ(resolve_policy("./strict", search_), fs::path("./strict"));
  EXPECT_EQ(resolve_policy("/nowhere/x.toml", search_), fs::path("/nowhere/x.toml"));
}

TEST_F(PolicyLookup, AnUnknownNameListsThePlacesSearchedAndSuggestsACloseOne) {
  try {
    resolve_policy("strictt", search_);
    FAIL() << "no error";
  } catch (const PolicyError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.source(), "strictt");
    EXPECT_NE(what.find((root_ / "etc" / "strictt.toml").string()), std::string::npos) << what;
    EXPECT_NE(what.find((root_ / "share" / "strictt.toml").string()), std::string::npos) << what;
    EXPECT_NE(what.find("did you mean 'strict'?"), std::string::npos) << what;
  }
  try {
    resolve_policy("nothing-like-it", search_);
    FAIL() << "no error";
  } catch (const PolicyError& e) {
    EXPECT_NE(std::string(e.what()).find("./nothing-like-it.toml"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_policy("strict", {}), PolicyError);
}

TEST_F(PolicyLookup, AvailablePoliciesAreSortedAndUnique) {
  EXPECT_EQ(available_policies(search_), (std::vector<std::string>{"gmsh", "strict"}));
  EXPECT_TRUE(available_policies({root_ / "missing"}).empty());
}

TEST(PolicyPath, EveryShippedPolicyResolvesByNameFromTheSourceTree) {
  const std::vector<fs::path> search{fs::path(POLLKILL_SOURCE_DIR) / "policies"};
  for (const char* name : {"default", "strict", "compute", "gmsh"}) {
    auto file = resolve_policy(name, search);
    EXPECT_NO_THROW(load_policy_file(file)) << file;
  }
}

}  // namespace
}  // namespace pollkill
