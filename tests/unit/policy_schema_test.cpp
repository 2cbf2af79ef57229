// The policy schema: each key declared once drives the reader, the printer, the flags and the
// docs. These tests hold the copies that remain (docs, man pages, completions) to it, and the
// flags to the file: the same values give the same policy or the same error.
#include "pollkill/policy_schema.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "policy_flags.h"
#include "pollkill/mode.h"

#ifndef POLLKILL_SOURCE_DIR
#error "POLLKILL_SOURCE_DIR must name the source tree (CMake defines it)"
#endif

namespace pollkill {
namespace {

std::string read_source(const std::string& relative) {
  std::ifstream in(std::string(POLLKILL_SOURCE_DIR) + "/" + relative);
  std::ostringstream text;
  text << in.rdbuf();
  EXPECT_FALSE(text.str().empty()) << relative;
  return text.str();
}

/// A policy, or the message of the error that refused it.
struct Outcome {
  std::optional<Policy> policy;
  std::string error;
  std::string source;
};

/// The flags parsed by CLI11 exactly as `pollkill run` parses them, applied on the default.
Outcome from_flags(std::vector<std::string> args) {
  CLI::App app;
  LimitFlags flags;
  add_limit_flags(&app, flags);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
  app.parse(args);
  try {
    Policy policy = default_policy();
    apply_flags(flags, policy);
    return {policy, "", ""};
  } catch (const PolicyError& e) {
    EXPECT_EQ(e.line(), 0) << e.what();
    return {std::nullopt, e.message(), e.source()};
  }
}

/// The same values in a policy file. A value's error there starts with its dotted key, which a
/// flag's error replaces with the flag as the source: that prefix is dropped to compare.
Outcome from_file(const std::string& body) {
  try {
    return {parse_policy("version = 1\n" + body, "p.toml"), "", ""};
  } catch (const PolicyError& e) {
    std::string message = e.message();
    for (const KeySpec& key : policy_keys()) {
      const std::string prefix = key.dotted() + ": ";
      if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
    }
    return {std::nullopt, message, e.source()};
  }
}

struct ParityCase {
  std::vector<std::string> flags;
  std::string file;
  bool valid;
};

// Every key with a flag, with values that are right and values that are wrong. The two cases
// of the issue that started this: bands that meet, and a wall time of 0.
const ParityCase kParity[] = {
    {{"--memory=2GiB"}, "[limits]\nmemory = \"2GiB\"", true},
    {{"--memory=12XB"}, "[limits]\nmemory = \"12XB\"", false},
    {{"--memory=0"}, "[limits]\nmemory = 0", false},
    {{"--memory=-1"}, "[limits]\nmemory = -1", false},
    {{"--memory-high=1536MiB"}, "[limits]\nmemory_high = \"1536MiB\"", true},
    {{"--memory-high=0"}, "[limits]\nmemory_high = \"0\"", false},
    {{"--swap=0"}, "[limits]\nswap = 0", true},
    {{"--swap=max"}, "[limits]\nswap = \"max\"", true},
    {{"--cpus=1.5"}, "[limits]\ncpus = 1.5", true},
    {{"--cpus=2"}, "[limits]\ncpus = 2", true},
    {{"--cpus=0"}, "[limits]\ncpus = 0", false},
    {{"--cpus=inf"}, "[limits]\ncpus = inf", false},
    {{"--cpus=nan"}, "[limits]\ncpus = nan", false},
    {{"--cpus=1e+300"}, "[limits]\ncpus = 1e300", false},
    {{"--pids=100"}, "[limits]\npids = 100", true},
    {{"--pids=max"}, "[limits]\npids = \"max\"", true},
    {{"--pids=0"}, "[limits]\npids = 0", false},
    {{"--pids=9223372036854775807"}, "[limits]\npids = 9223372036854775807", false},
    {{"--wall-time=1h30m"}, "[limits]\nwall_time = \"1h30m\"", true},
    {{"--wall-time=90"}, "[limits]\nwall_time = 90", true},
    {{"--wall-time=0"}, "[limits]\nwall_time = \"0s\"", true},
    {{"--wall-time=0"}, "[limits]\nwall_time = 0", true},
    {{"--wall-time=300%"}, "[limits]\nwall_time = \"300%\"", true},
    {{"--wall-time=1e20%"}, "[limits]\nwall_time = \"1e20%\"", false},
    {{"--wall-time=0%"}, "[limits]\nwall_time = \"0%\"", false},
    {{"--wall-time=10x"}, "[limits]\nwall_time = \"10x\"", false},
    {{"--wall-time=876001h"}, "[limits]\nwall_time = \"876001h\"", false},
    {{"--wall-time-max=1h"}, "[limits]\nwall_time_max = \"1h\"", true},
    {{"--wall-time-max=0"}, "[limits]\nwall_time_max = \"0\"", false},
    {{"--cpu-time=5m"}, "[limits]\ncpu_time = \"5m\"", true},
    {{"--cpu-time=0"}, "[limits]\ncpu_time = 0", true},
    {{"--output=64MiB"}, "[limits]\noutput = \"64MiB\"", true},
    {{"--output=1.5"}, "[limits]\noutput = \"1.5\"", false},
    {{"--poll-interval=100ms"}, "[watchdog]\npoll_interval = \"100ms\"", true},
    {{"--poll-interval=5ms"}, "[watchdog]\npoll_interval = \"5ms\"", false},
    {{"--hang-after=2m"}, "[watchdog]\nhang_after = \"2m\"", true},
    {{"--hang-after=0"}, "[watchdog]\nhang_after = \"0s\"", true},
    {{"--hang-cpu-below=0.05"}, "[watchdog]\nhang_cpu_below = 0.05", true},
    {{"--hang-cpu-below=-0.1"}, "[watchdog]\nhang_cpu_below = -0.1", false},
    {{"--spin-after=5m"}, "[watchdog]\nspin_after = \"5m\"", true},
    {{"--spin-after=0"}, "[watchdog]\nspin_after = 0", true},
    {{"--spin-cpu-above=1.8"}, "[watchdog]\nspin_cpu_above = 1.8", true},
    {{"--spin-cpu-above=inf"}, "[watchdog]\nspin_cpu_above = inf", false},
    {{"--heartbeat=/tmp/beat"}, "[watchdog]\nheartbeat = \"/tmp/beat\"", true},
    {{"--heartbeat", ""}, "[watchdog]\nheartbeat = \"\"", false},
    {{"--kill-grace=0"}, "[watchdog]\nkill_grace = \"0s\"", true},
    {{"--kill-grace=-1s"}, "[watchdog]\nkill_grace = \"-1s\"", false},
    {{"--orphans=wait"}, "[watchdog]\norphans = \"wait\"", true},
    {{"--orphans=kil"}, "[watchdog]\norphans = \"kil\"", false},
    {{"--thrash-after=1m"}, "[watchdog]\nthrash_after = \"1m\"", true},
    {{"--thrash-after=0"}, "[watchdog]\nthrash_after = 0", true},
    {{"--thrash-after=-1s"}, "[watchdog]\nthrash_after = \"-1s\"", false},
    {{"--thrash-full-above=0.3"}, "[watchdog]\nthrash_full_above = 0.3", true},
    {{"--thrash-full-above=1"}, "[watchdog]\nthrash_full_above = 1", true},
    {{"--thrash-full-above=0"}, "[watchdog]\nthrash_full_above = 0", false},
    {{"--thrash-full-above=1.5"}, "[watchdog]\nthrash_full_above = 1.5", false},
    {{"--missing-controllers=warn"}, "[runner]\nmissing_controllers = \"warn\"", true},
    {{"--missing-controllers=eror"}, "[runner]\nmissing_controllers = \"eror\"", false},
    {{"--cgroup-v1=auto"}, "[runner]\ncgroup_v1 = \"auto\"", true},
    {{"--cgroup-v1=on"}, "[runner]\ncgroup_v1 = \"on\"", false},
    {{"--systemd-scope=never"}, "[runner]\nsystemd_scope = \"never\"", true},
    {{"--systemd-scope=yes"}, "[runner]\nsystemd_scope = \"yes\"", false},
    {{"--mode=subreaper"}, "[runner]\nmode = \"subreaper\"", true},
    {{"--mode=subreaper "}, "[runner]\nmode = \"subreaper \"", false},
    // The cross-key checks apply to flags too: the bands may not meet with both detections on.
    {{"--hang-cpu-below=0.95", "--spin-cpu-above=0.5", "--hang-after=1s", "--spin-after=1s"},
     "[watchdog]\nhang_after = 1\nspin_after = 1\nhang_cpu_below = 0.95\nspin_cpu_above = 0.5",
     false},
    {{"--hang-after=1s", "--hang-cpu-below=0.95", "--spin-cpu-above=0.5"},
     "[watchdog]\nhang_after = 1\nhang_cpu_below = 0.95\nspin_cpu_above = 0.5",
     true},
};

TEST(PolicySchema, FlagsAndFilesGiveTheSamePolicyOrTheSameError) {
  for (const ParityCase& c : kParity) {
    std::string flags;
    for (const auto& f : c.flags) flags += f + " ";
    const Outcome flag = from_flags(c.flags);
    const Outcome file = from_file(c.file);
    EXPECT_EQ(flag.policy.has_value(), c.valid) << flags << flag.error;
    EXPECT_EQ(file.policy.has_value(), c.valid) << c.file << "\n" << file.error;
    if (flag.policy && file.policy) {
      EXPECT_EQ(*flag.policy, *file.policy) << flags << "\n" << to_toml(*flag.policy);
    }
    EXPECT_EQ(flag.error, file.error) << flags;
    // A flag's error names the flag (the first one, for a conflict between several).
    if (!c.valid) {
      EXPECT_EQ(flag.source, c.flags.front().substr(0, c.flags.front().find('=')));
    }
  }
}

TEST(PolicySchema, ParityCoversEveryKeyWithAFlag) {
  std::set<std::string> covered;
  for (const ParityCase& c : kParity) {
    for (const auto& f : c.flags) covered.insert(f.substr(0, f.find('=')));
  }
  for (const KeySpec& key : policy_keys()) {
    if (key.flag.empty()) continue;
    EXPECT_TRUE(covered.count(std::string(key.flag))) << key.flag << " has no parity case";
    EXPECT_EQ(find_flag(key.flag), &key);
  }
}

// The word is the same everywhere: the key `wall_time`, the flag `--wall-time`.
TEST(PolicySchema, FlagsAreTheKeyNamesWithDashes) {
  for (const KeySpec& key : policy_keys()) {
    if (key.flag.empty()) continue;
    std::string word(key.name);
    std::replace(word.begin(), word.end(), '_', '-');
    EXPECT_EQ(key.flag, "--" + word);
    EXPECT_FALSE(key.placeholder.empty()) << key.flag;
    EXPECT_FALSE(key.doc.empty()) << key.flag;
  }
}

TEST(PolicySchema, FlagsApplyOnTopOfAPolicyAndWin) {
  CLI::App app;
  LimitFlags flags;
  add_limit_flags(&app, flags);
  std::vector<std::string> args{"--wall-time", "0", "--memory", "1G"};
  std::reverse(args.begin(), args.end());
  app.parse(args);
  Policy policy = parse_policy("version = 1\n[limits]\nwall_time = \"300%\"\nmemory = 1\n", "p");
  apply_flags(flags, policy);
  EXPECT_FALSE(policy.limits.wall_time);
  EXPECT_FALSE(policy.limits.wall_time_percent);
  EXPECT_EQ(policy.limits.memory, 1u << 30);
}

TEST(PolicySchema, CgroupOnlyLimitsAreTheSchemasNeedsCgroupKeys) {
  Limits all;
  all.memory = all.memory_high = all.swap = 1;
  all.cpus = 1;
  all.pids = 1;
  all.wall_time = all.cpu_time = Duration(1);
  all.output = 1;
  EXPECT_EQ(cgroup_only_limits(all),
            (std::vector<std::string>{"memory", "memory_high", "swap", "cpus", "pids"}));
  EXPECT_TRUE(cgroup_only_limits(Limits{}).empty());
  Limits swap_only;
  swap_only.swap = 0;
  EXPECT_EQ(cgroup_only_limits(swap_only), std::vector<std::string>{"swap"});
}

template <typename E>
void expect_round_trip() {
  std::set<std::string_view> seen;
  for (const auto& [value, name] : enum_names<E>()) {
    EXPECT_TRUE(seen.insert(name).second) << name << " named twice";
    EXPECT_EQ(enum_name(value), name);
    EXPECT_EQ(enum_value<E>(name), value) << name;
  }
  EXPECT_FALSE(enum_value<E>("no such word"));
}

TEST(PolicySchema, EveryEnumNameReadsBack) {
  expect_round_trip<OrphanPolicy>();
  expect_round_trip<MissingControllers>();
  expect_round_trip<CgroupV1>();
  expect_round_trip<SystemdScopeMode>();
  expect_round_trip<RunMode>();
  expect_round_trip<SeccompAction::Kind>();
  EXPECT_EQ(to_string(RunMode::subreaper), "subreaper");
  EXPECT_STREQ(to_string(SystemdScopeMode::automatic), "auto");
  EXPECT_EQ(to_string(SeccompAction{SeccompAction::error, EPERM}), "errno");
}

TEST(PolicySchema, FlagIntegersAreWholeNumbersInRange) {
  EXPECT_EQ(parse_flag_integer("--retries", "3", 0, 999), 3);
  for (const char* bad : {"", "-1", "1000", "2.0", "1e2", " 3", "3x"}) {
    EXPECT_THROW(parse_flag_integer("--retries", bad, 0, 999), PolicyError) << bad;
  }
}

/// docs/POLICY.md: the rows "| `key` | type | ..." of the table under "## `[section]`".
std::map<std::string, std::string> keys_in_policy_md() {
  std::map<std::string, std::string> keys;
  std::istringstream in(read_source("docs/POLICY.md"));
  const std::regex heading(R"(^## `\[(\w+)\]`)"), row(R"(^\| `(\w+)` *\| *([^|]*[^| ]) *\|)");
  std::string line, section;
  std::smatch m;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) section.clear();
    if (std::regex_search(line, m, heading)) section = m[1];
    if (!section.empty() && std::regex_search(line, m, row)) {
      std::string type = m[2];
      type.erase(std::remove(type.begin(), type.end(), '`'), type.end());
      keys[section + "." + std::string(m[1])] = type;
    }
  }
  return keys;
}

/// man/pollkill-policy.5: ".TP" ".B key" ... "Type: type." under ".SH [section]".
std::map<std::string, std::string> keys_in_man_page() {
  std::map<std::string, std::string> keys;
  std::istringstream in(read_source("man/pollkill-policy.5"));
  std::string line, section, key;
  bool item = false;
  while (std::getline(in, line)) {
    line = std::regex_replace(line, std::regex(R"(\\-)"), "-");
    if (line.rfind(".SH ", 0) == 0) {
      section = line.size() > 6 && line[4] == '[' ? line.substr(5, line.size() - 6) : "";
    } else if (line == ".TP") {
      item = true;
      continue;
    } else if (item && !section.empty() && line.rfind(".B ", 0) == 0) {
      key = section + "." + line.substr(3);
    } else if (!key.empty() && line.rfind("Type: ", 0) == 0 && line.back() == '.') {
      keys[key] = line.substr(6, line.size() - 7);
      key.clear();
    }
    item = false;
  }
  return keys;
}

// A key added to the schema and not to the docs, or documented and not read, fails here; so
// does a type or range that the docs state differently from the schema.
TEST(PolicySchema, DocsAndManPageDocumentEveryKeyWithItsType) {
  std::map<std::string, std::string> schema;
  for (const KeySpec& key : policy_keys()) schema[key.dotted()] = key.type;
  EXPECT_EQ(keys_in_policy_md(), schema) << "docs/POLICY.md";
  EXPECT_EQ(keys_in_man_page(), schema) << "man/pollkill-policy.5";
}

// The flags' other documents: pollkill(1), the README's table and the bash completion.
TEST(PolicySchema, FlagDocsAndCompletionNameEveryFlag) {
  const std::string man =
      std::regex_replace(read_source("man/pollkill.1"), std::regex(R"(\\-)"), "-");
  // A '|' inside a Markdown table is written "\|".
  const std::string readme =
      std::regex_replace(read_source("README.md"), std::regex(R"(\\\|)"), "|");
  const std::string completion = read_source("completions/pollkill.bash");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(completion, m, std::regex(R"(local limits='([^']*)')")));
  std::istringstream listed(m[1].str());
  std::set<std::string> completed{std::istream_iterator<std::string>(listed), {}};
  for (const KeySpec& key : policy_keys()) {
    if (key.flag.empty()) continue;
    const std::string flag(key.flag);
    EXPECT_NE(man.find(flag + " \" " + key.placeholder + "\""), std::string::npos)
        << "man/pollkill.1 lacks " << flag << " " << key.placeholder;
    EXPECT_NE(readme.find("`" + flag + " " + key.placeholder + "`"), std::string::npos)
        << "README.md lacks `" << flag << " " << key.placeholder << "`";
    EXPECT_TRUE(completed.count(flag)) << "completions/pollkill.bash lacks " << flag;
    if (key.choices.empty()) continue;
    std::string words;
    for (std::string_view choice : key.choices)
      words += (words.empty() ? "" : " ") + std::string(choice);
    EXPECT_NE(completion.find(flag + ") COMPREPLY=($(compgen -W '" + words + "'"),
              std::string::npos)
        << "completions/pollkill.bash does not complete " << flag << " with " << words;
  }
}

}  // namespace
}  // namespace pollkill
