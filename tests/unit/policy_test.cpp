#include "pollkill/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>

#ifndef POLLKILL_SOURCE_DIR
#error "POLLKILL_SOURCE_DIR must name the source tree (CMake defines it)"
#endif

namespace pollkill {
namespace {

using namespace std::chrono_literals;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(Policy, DefaultsNeverStopASleepingTask) {
  const Policy p = default_policy();
  EXPECT_EQ(p.limits, Limits{});
  EXPECT_FALSE(p.limits.wall_time);
  EXPECT_FALSE(p.limits.cpu_time);
  EXPECT_FALSE(p.watchdog.hang_after);
  EXPECT_FALSE(p.watchdog.spin_after);
  EXPECT_FALSE(p.watchdog.heartbeat);
  EXPECT_EQ(p.watchdog.poll_interval, 250ms);
  EXPECT_EQ(p.watchdog.hang_cpu_below, 0.01);
  EXPECT_EQ(p.watchdog.spin_cpu_above, 0.9);
  EXPECT_EQ(p.watchdog.kill_grace, 3s);
  EXPECT_EQ(p.watchdog.orphans, OrphanPolicy::kill);
  EXPECT_FALSE(p.runner.cgroup_root);
  EXPECT_EQ(p.runner.missing_controllers, MissingControllers::error);
}

TEST(Policy, DefaultTomlIsTheBuiltInDefault) {
  const std::string path = std::string(POLLKILL_SOURCE_DIR) + "/policies/default.toml";
  EXPECT_EQ(load_policy_file(path), default_policy());
  // Parsed on top of a different base, the file must still set every non-optional key.
  Policy other;
  other.watchdog.poll_interval = 1s;
  other.watchdog.hang_cpu_below = 0.5;
  other.watchdog.spin_cpu_above = 2;
  other.watchdog.kill_grace = 0s;
  other.watchdog.orphans = OrphanPolicy::wait;
  other.runner.missing_controllers = MissingControllers::warn;
  EXPECT_EQ(parse_policy(read_text(path), path, other), default_policy());
}

TEST(Policy, ReadsEveryKey) {
  const Policy p = parse_policy(R"(version = 1
[limits]
memory = "2GiB"
memory_high = 1073741824
swap = "0"
cpus = 1.5
pids = 100
wall_time = "1h30m"
cpu_time = 90
output = "64MB"
[watchdog]
poll_interval = 0.1
hang_after = "2m"
hang_cpu_below = 0
spin_after = "5m"
spin_cpu_above = 2
heartbeat = "/tmp/beat"
kill_grace = "0s"
orphans = "wait"
[runner]
cgroup_root = "/sys/fs/cgroup/pk"
missing_controllers = "warn"
cgroup_v1 = "auto"
cgroup_v1_root = "/batch"
mode = "subreaper"
)",
                                "test.toml");
  Policy want;
  want.limits = {2ull << 30, 1ull << 30, 0, 1.5, 100, 5400s, 90s, 64'000'000};
  want.watchdog = {100ms,        2min, 0.0, 5min, 2.0, "/tmp/beat", 0ms, OrphanPolicy::wait,
                   std::nullopt, 0.1};
  want.runner = {"/sys/fs/cgroup/pk",         MissingControllers::warn,
                 CgroupV1::automatic,         "/batch",
                 SystemdScopeMode::automatic, RunMode::subreaper};
  EXPECT_EQ(p, want);
}

TEST(Policy, KeepsBaseValuesForAbsentKeys) {
  Policy base;
  base.limits.memory = 1000;
  base.watchdog.hang_after = 1min;
  const Policy p = parse_policy("version = 1\n[limits]\npids = \"max\"\n", "t", base);
  EXPECT_EQ(p.limits.memory, 1000u);
  EXPECT_EQ(p.limits.pids, kSizeMax);
  EXPECT_EQ(p.watchdog.hang_after, 1min);
}

TEST(Policy, AcceptsDottedKeysAndInlineTables) {
  const Policy p =
      parse_policy("version = 1\nlimits.memory = \"max\"\nwatchdog = { hang_after = 5 }\n", "t");
  EXPECT_EQ(p.limits.memory, kSizeMax);
  EXPECT_EQ(p.watchdog.hang_after, 5s);
}

struct ErrorCase {
  std::string text;
  int line;
  int column;
  std::string message;
};

// Every way a policy can be wrong, with where the error must point.
TEST(Policy, RejectsBadPoliciesAtTheOffendingKeyOrValue) {
  const std::string use_sizes =
      "(use bytes, K/M/G/T or KiB/MiB/GiB/TiB for powers of 1024, KB/MB/GB/TB for powers of 1000, "
      "or max)";
  const std::string want_size =
      "expected a size (a string such as \"2GiB\" or \"max\", or an integer number of bytes), got ";
  const std::string want_duration =
      "expected a duration (a string such as \"30s\" or \"1h30m\", or a number of seconds), got ";
  const std::string too_long = " (at most 876000h0m0s, 100 years)";
  const std::string no_zero = ": must be greater than 0 (leave it out for no limit)";
  const std::string pids_range = "(use an integer from 1 to 4194304 or \"max\")";
  const ErrorCase cases[] = {
      // Syntax errors come from toml++ with its position.
      {"version = 1\n[limits\n", 2, 8, "Error while parsing table header: expected ']', saw '\\n'"},
      {"version = 1\nversion = 1\n", 2, 11,
       "Error while parsing key-value pair: cannot redefine existing integer 'version'"},
      // version
      {"", 1, 1, "missing 'version = 1' (put it at the top of the policy)"},
      {"[limits]\n", 1, 1, "missing 'version = 1' (put it at the top of the policy)"},
      {"version = 2\n", 1, 11, "unsupported policy version '2' (this pollkill reads version 1)"},
      {"version = \"1\"\n", 1, 11, "version: expected the integer 1, got string '1'"},
      // unknown sections and keys
      {"version = 1\n[limts]\n", 2, 2, "unknown section [limts]; did you mean 'limits'?"},
      {"version = 1\n[network]\n", 2, 2, "unknown section [network]"},
      {"version = 1\nmemory = 1\n", 2, 1, "unknown key 'memory'; it belongs in [limits]"},
      {"version = 1\nverison = 1\n", 2, 1, "unknown key 'verison'; did you mean 'version'?"},
      {"version = 1\nlimits = 5\n", 2, 10, "'limits' must be a section ([limits]), got integer 5"},
      {"version = 1\n[limits]\nmemroy = \"1G\"\n", 3, 1,
       "unknown key 'memroy' in [limits]; did you mean 'memory'?"},
      {"version = 1\n[limits]\ncpu = 1\n", 3, 1,
       "unknown key 'cpu' in [limits]; did you mean 'cpus'?"},
      {"version = 1\n[limits]\nhang_after = 1\n", 3, 1,
       "unknown key 'hang_after' in [limits]; it belongs in [watchdog]"},
      {"version = 1\n[watchdog]\n  spin_afer = 1\n", 3, 3,
       "unknown key 'spin_afer' in [watchdog]; did you mean 'spin_after'?"},
      {"version = 1\n[runner]\nbogus = 1\n", 3, 1, "unknown key 'bogus' in [runner]"},
      {"version = 1\n[limits.memory]\n", 2, 1, "limits.memory: " + want_size + "a table"},
      // the first error in file order wins, not the first in key order
      {"version = 1\n[limits]\nzzz = 1\naaa = 1\n", 3, 1, "unknown key 'zzz' in [limits]"},
      // [limits]
      {"version = 1\n[limits]\nmemory = \"12XB\"\n", 3, 10,
       "limits.memory: invalid size '12XB': unknown unit 'XB' " + use_sizes},
      {"version = 1\n[limits]\nmemory = -1\n", 3, 10,
       "limits.memory: invalid size '-1': must not be negative"},
      {"version = 1\n[limits]\nmemory = 0\n", 3, 10, "limits.memory: invalid value '0'" + no_zero},
      {"version = 1\n[limits]\nmemory = 1.5\n", 3, 10,
       "limits.memory: " + want_size + "floating-point 1.5"},
      {"version = 1\n[limits]\nmemory_high = \"0GiB\"\n", 3, 15,
       "limits.memory_high: invalid value '0GiB'" + no_zero},
      {"version = 1\n[limits]\nswap = true\n", 3, 8, "limits.swap: " + want_size + "boolean true"},
      {"version = 1\n[limits]\noutput = \"1.5\"\n", 3, 10,
       "limits.output: invalid size '1.5': a fractional size needs a unit, such as 1.5GiB"},
      {"version = 1\n[limits]\ncpus = 0\n", 3, 8,
       "limits.cpus: invalid value '0': must be at least 0.01"},
      {"version = 1\n[limits]\ncpus = -0.5\n", 3, 8,
       "limits.cpus: invalid value '-0.5': must be at least 0.01"},
      {"version = 1\n[limits]\ncpus = 0.005\n", 3, 8,
       "limits.cpus: invalid value '0.005': must be at least 0.01"},
      // Every value is range-checked where it is read, not at the cgroup write.
      {"version = 1\n[limits]\ncpus = 1e300\n", 3, 8,
       "limits.cpus: invalid value '1e+300': must be at most 1000000"},
      {"version = 1\n[limits]\ncpus = \"2\"\n", 3, 8,
       "limits.cpus: expected a number, got string '2'"},
      {"version = 1\n[limits]\ncpus = inf\n", 3, 8,
       "limits.cpus: invalid number 'inf': must be finite"},
      {"version = 1\n[limits]\npids = 0\n", 3, 8, "limits.pids: invalid value '0' " + pids_range},
      {"version = 1\n[limits]\npids = \"lots\"\n", 3, 8,
       "limits.pids: invalid value 'lots' " + pids_range},
      {"version = 1\n[limits]\npids = 9223372036854775807\n", 3, 8,
       "limits.pids: invalid value '9223372036854775807' " + pids_range},
      {"version = 1\n[limits]\npids = 4194305\n", 3, 8,
       "limits.pids: invalid value '4194305' " + pids_range},
      {"version = 1\n[limits]\npids = 1.0\n", 3, 8,
       "limits.pids: expected an integer from 1 to 4194304 or \"max\", got floating-point 1.0"},
      {"version = 1\n[limits]\nwall_time = \"10x\"\n", 3, 13,
       "limits.wall_time: invalid duration '10x': unknown unit 'x' (use h, m, s or ms)"},
      {"version = 1\n[limits]\nwall_time = \"1e20%\"\n", 3, 13,
       "limits.wall_time: invalid percentage '1e20%' (use a number such as 300%)"},
      {"version = 1\n[limits]\nwall_time = \"200000%\"\n", 3, 13,
       "limits.wall_time: invalid percentage '200000%': must be at most 100000%"},
      {"version = 1\n[limits]\nwall_time = \"0%\"\n", 3, 13,
       "limits.wall_time: invalid value '0%'" + no_zero},
      {"version = 1\n[limits]\nwall_time = \" 5%\"\n", 3, 13,
       "limits.wall_time: invalid percentage ' 5%' (use a number such as 300%)"},
      {"version = 1\n[limits]\nwall_time_max = 0\n", 3, 17,
       "limits.wall_time_max: invalid value '0'" + no_zero},
      {"version = 1\n[limits]\nwall_time = -1\n", 3, 13,
       "limits.wall_time: invalid duration '-1': must not be negative"},
      {"version = 1\n[limits]\ncpu_time = [1]\n", 3, 12,
       "limits.cpu_time: " + want_duration + "an array"},
      {"version = 1\n[limits]\ncpu_time = 1e300\n", 3, 12,
       "limits.cpu_time: invalid duration '1e+300': too large" + too_long},
      {"version = 1\n[limits]\ncpu_time = \"876001h\"\n", 3, 12,
       "limits.cpu_time: invalid duration '876001h': too large" + too_long},
      {"version = 1\n[watchdog]\nkill_grace = 3153600001\n", 3, 14,
       "watchdog.kill_grace: invalid duration '3153600001': too large" + too_long},
      {"version = 1\n[limits]\ncpu_time = nan\n", 3, 12,
       "limits.cpu_time: invalid duration 'nan': must not be negative"},
      // [watchdog]
      {"version = 1\n[watchdog]\npoll_interval = \"5ms\"\n", 3, 17,
       "watchdog.poll_interval: invalid value '5ms': must be at least 10ms"},
      {"version = 1\n[watchdog]\nspin_after = false\n", 3, 14,
       "watchdog.spin_after: " + want_duration + "boolean false"},
      {"version = 1\n[watchdog]\nhang_cpu_below = -0.1\n", 3, 18,
       "watchdog.hang_cpu_below: invalid value '-0.1': must not be negative"},
      {"version = 1\n[watchdog]\nspin_cpu_above = \"high\"\n", 3, 18,
       "watchdog.spin_cpu_above: expected a number, got string 'high'"},
      {"version = 1\n[watchdog]\nheartbeat = 1\n", 3, 13,
       "watchdog.heartbeat: expected a string, got integer 1"},
      {"version = 1\n[watchdog]\nheartbeat = \"\"\n", 3, 13,
       "watchdog.heartbeat: must not be empty (leave it out instead)"},
      {"version = 1\n[watchdog]\nkill_grace = \"-1s\"\n", 3, 14,
       "watchdog.kill_grace: invalid duration '-1s': must not be negative"},
      {"version = 1\n[watchdog]\norphans = \"kil\"\n", 3, 11,
       "watchdog.orphans: invalid value 'kil' (use \"kill\" or \"wait\"); did you mean 'kill'?"},
      {"version = 1\n[watchdog]\norphans = \"ignore\"\n", 3, 11,
       "watchdog.orphans: invalid value 'ignore' (use \"kill\" or \"wait\")"},
      {"version = 1\n[watchdog]\norphans = 1\n", 3, 11,
       "watchdog.orphans: expected \"kill\" or \"wait\", got integer 1"},
      // hang and spin bands must not meet when both are on
      {"version = 1\n[watchdog]\nhang_after = 60\nspin_after = 60\nhang_cpu_below = 0.9\n", 5, 1,
       "watchdog.hang_cpu_below (0.9) must be less than watchdog.spin_cpu_above (0.9) when both "
       "hang "
       "and spin detection are on"},
      {"version = 1\n[watchdog]\nhang_after = 60\nspin_after = 60\nspin_cpu_above = 0.001\n", 5, 1,
       "watchdog.hang_cpu_below (0.01) must be less than watchdog.spin_cpu_above (0.001) when both "
       "hang and spin detection are on"},
      // [runner]
      {"version = 1\n[runner]\ncgroup_root = 5\n", 3, 15,
       "runner.cgroup_root: expected a string, got integer 5"},
      {"version = 1\n[runner]\nmissing_controllers = \"eror\"\n", 3, 23,
       "runner.missing_controllers: invalid value 'eror' (use \"error\" or \"warn\"); did you mean "
       "'error'?"},
      {"version = 1\n[runner]\nmode = \"subreaper \"\n", 3, 8,
       "runner.mode: invalid value 'subreaper ' (use \"auto\" or \"cgroup\" or \"subreaper\"); did "
       "you mean 'subreaper'?"},
  };
  for (const auto& c : cases) {
    try {
      parse_policy(c.text, "p.toml");
      ADD_FAILURE() << "accepted:\n" << c.text;
    } catch (const PolicyError& e) {
      EXPECT_EQ(e.message(), c.message) << c.text;
      EXPECT_EQ(e.line(), c.line) << c.text;
      EXPECT_EQ(e.column(), c.column) << c.text;
      EXPECT_EQ(e.source(), "p.toml");
      EXPECT_EQ(std::string(e.what()), "p.toml:" + std::to_string(c.line) + ":" +
                                           std::to_string(c.column) + ": " + c.message);
    }
  }
}

// A duration of 0 is "no limit" for the four time limits, as `timeout 0` is: on top of a base
// that sets them, it turns them off.
TEST(Policy, ZeroDurationsMeanNoLimit) {
  Policy base;
  base.limits.wall_time_percent = 300;
  base.limits.cpu_time = 1min;
  base.watchdog.hang_after = 1min;
  base.watchdog.spin_after = 1min;
  const Policy p = parse_policy(
      "version = 1\n[limits]\nwall_time = 0\ncpu_time = \"0s\"\n"
      "[watchdog]\nhang_after = 0.0\nspin_after = \"0ms\"\n",
      "p.toml", base);
  EXPECT_FALSE(p.limits.wall_time);
  EXPECT_FALSE(p.limits.wall_time_percent);
  EXPECT_FALSE(p.limits.cpu_time);
  EXPECT_FALSE(p.watchdog.hang_after);
  EXPECT_FALSE(p.watchdog.spin_after);
  EXPECT_EQ(p, default_policy());
}

// toml++ recurses on dotted keys, table names and nested values: a deep enough document used
// to overflow the stack (exit 139), and /dev/zero was read without end. Both are refused
// before the parser sees them, at the place that goes too deep.
TEST(Policy, BoundsTheInputBeforeParsing) {
  std::string deep_key = "version = 1\n";
  for (int i = 0; i < 50000; ++i) deep_key += "a.";
  deep_key += "a = 1\n";
  std::string deep_header = "version = 1\n[";
  for (int i = 0; i < 50000; ++i) deep_header += "a.";
  deep_header += "a]\n";
  std::string deep_array = "version = 1\nx = ";
  for (int i = 0; i < 50000; ++i) deep_array += "[";
  const std::string parts = "a dotted key or table name of more than 32 parts";
  const std::string nested = "arrays and inline tables nested more than 32 deep";
  struct Case {
    std::string text;
    int line, column;
    std::string message;
  };
  const Case cases[] = {
      {deep_key, 2, 65, parts},
      {deep_header, 2, 66, parts},
      {deep_array, 2, 37, nested},
      {"version = 1\n[limits]\nx = { a = { b = { c = 1 } } }\n" + std::string(40, '['), 4, 33,
       nested},
  };
  for (const Case& c : cases) {
    try {
      parse_policy(c.text, "deep.toml");
      ADD_FAILURE() << "accepted " << c.text.substr(0, 40);
    } catch (const PolicyError& e) {
      EXPECT_EQ(e.message(), c.message);
      EXPECT_EQ(e.line(), c.line) << c.text.substr(0, 40);
      EXPECT_EQ(e.column(), c.column) << c.text.substr(0, 40);
    }
  }
  // Dots in strings and comments, and 32 parts exactly, are no reason to refuse.
  std::string dots(50000, '.');
  EXPECT_EQ(parse_policy("version = 1 # " + dots + "\n[watchdog]\nheartbeat = \"" + dots + "\"\n",
                         "dots.toml")
                .watchdog.heartbeat,
            dots);
  std::string thirty_two = "version = 1\n";
  for (int i = 0; i < 31; ++i) thirty_two += "a.";
  thirty_two += "a = 1\n";
  try {
    parse_policy(thirty_two, "p.toml");
    ADD_FAILURE() << "accepted";
  } catch (const PolicyError& e) {
    EXPECT_EQ(e.message(), "unknown section [a]");
  }
  // Size: a text, and a file that never ends.
  EXPECT_THROW(parse_policy("version = 1\n" + std::string(1 << 20, '#'), "big.toml"), PolicyError);
  try {
    load_policy_file("/dev/zero");
    ADD_FAILURE() << "read /dev/zero";
  } catch (const PolicyError& e) {
    EXPECT_STREQ(e.what(), "/dev/zero: too large: a policy is at most 1MiB");
  }
}

TEST(Policy, BandConflictFromTheBasePointsAtTheKeyThatEnabledIt) {
  Policy base;
  base.watchdog.hang_after = 1min;
  base.watchdog.spin_cpu_above = 0;
  try {
    parse_policy("version = 1\n[watchdog]\nspin_after = 60\n", "p.toml", base);
    ADD_FAILURE() << "accepted";
  } catch (const PolicyError& e) {
    EXPECT_STREQ(
        e.what(),
        "p.toml:3:1: watchdog.hang_cpu_below (0.01) must be less than watchdog.spin_cpu_above "
        "(0.0) when both hang and spin detection are on");
  }
}

TEST(Policy, BandsMayMeetWhenOneDetectionIsOff) {
  const Policy p =
      parse_policy("version = 1\n[watchdog]\nhang_after = 60\nhang_cpu_below = 5\n", "t");
  EXPECT_EQ(p.watchdog.hang_cpu_below, 5.0);
}

TEST(PolicyError, OmitsLineAndColumnWhenZero) {
  EXPECT_STREQ(PolicyError("--memory", 0, 0, "bad").what(), "--memory: bad");
  EXPECT_STREQ(PolicyError("f.toml", 3, 7, "bad").what(), "f.toml:3:7: bad");
}

TEST(Policy, UnreadableFileNamesTheFileAndErrno) {
  struct Case {
    std::string path;
    std::string what;
  };
  const Case cases[] = {
      {"/nonexistent/p.toml",
       "/nonexistent/p.toml: cannot read policy: No such file or directory (ENOENT)"},
      {"/", "/: cannot read policy: Is a directory (EISDIR)"},
  };
  for (const auto& c : cases) {
    try {
      load_policy_file(c.path);
      ADD_FAILURE() << "read " << c.path;
    } catch (const PolicyError& e) {
      EXPECT_EQ(std::string(e.what()), c.what);
      EXPECT_EQ(e.line(), 0);
    }
  }
}

TEST(Policy, ToTomlRoundTrips) {
  Policy full;
  full.limits = {(3ull << 30) / 2, 1'000'001, 0, 0.25, kSizeMax, 5400s, 1500ms, kSizeMax};
  full.watchdog = {10ms, 90'500ms,           0.05, 1h,  1.0, "/tmp/a \"quoted\" path\n",
                   0ms,  OrphanPolicy::wait, 90s,  0.25};
  full.evidence = {{"timeout", "hung"}, 5s};
  full.runner = {"/sys/fs/cgroup/x", MissingControllers::warn, CgroupV1::automatic, "/pk v1"};
  Policy huge;
  huge.limits.memory = kSizeMax - 1;  // not exact in any unit and beyond a TOML integer
  huge.limits.cpus = 1e6;             // printed with an exponent: 1e+06
  for (const Policy& p : {default_policy(), full, huge}) {
    const std::string text = to_toml(p);
    EXPECT_EQ(parse_policy(text, "to_toml"), p) << text;
  }
}

TEST(Policy, ToTomlShowsUnsetKeysAsComments) {
  Policy p;
  p.limits.memory = 2ull << 30;
  p.limits.memory_high = 1'000'001;
  p.limits.cpus = 2;
  const std::string text = to_toml(p);
  EXPECT_NE(text.find("\nversion = 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmemory = \"2GiB\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmemory_high = 1000001\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ncpus = 2.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n# wall_time = (no limit)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\npoll_interval = \"250ms\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n# hang_after = (off)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nhang_cpu_below = 0.01\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nkill_grace = \"3s\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\norphans = \"kill\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmissing_controllers = \"error\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ncgroup_v1 = \"off\"\n"), std::string::npos) << text;
}

TEST(Policy, EqualityComparesEveryField) {
  Policy a, b;
  EXPECT_EQ(a, b);
  b.limits.output = 1;
  EXPECT_NE(a, b);
  b = a;
  b.watchdog.orphans = OrphanPolicy::wait;
  EXPECT_NE(a, b);
  b = a;
  b.runner.cgroup_root = "/x";
  EXPECT_NE(a, b);
  b = a;
  b.seccomp.deny = {"socket"};
  EXPECT_NE(a, b);
  b = a;
  b.seccomp.deny_action.error_number = ENOSYS;
  EXPECT_NE(a, b);
  b = a;
  b.sandbox.rlimits.nproc = 1;
  EXPECT_NE(a, b);
  b = a;
  b.sandbox.namespaces.ipc = true;
  EXPECT_NE(a, b);
  b = a;
  b.sandbox.hide = {"/x"};
  EXPECT_NE(a, b);
}

TEST(Policy, ReadsSeccompAndSandbox) {
  const Policy p = parse_policy(R"(version = 1
[seccomp]
default = "kill"
allow = ["read", "write"]
deny = ["socket"]
deny_action = "errno:ENOSYS"
[sandbox]
user = 65534
group = "nogroup"
no_new_privs = false
env = { A = "1", B = "two words" }
clear_env = true
pass_env = ["PATH"]
cwd = "/tmp"
umask = "027"
namespaces = ["net", "pid", "mount", "uts"]
hostname = "box"
private_tmp = true
read_only = ["/usr"]
hide = ["/etc/shadow"]
[sandbox.rlimits]
core = 0
nofile = 64
fsize = "1MiB"
stack = "unlimited"
)",
                                "t.toml");
  EXPECT_EQ(p.seccomp.default_action, (SeccompAction{SeccompAction::kill, 1}));
  EXPECT_EQ(p.seccomp.allow, (std::vector<std::string>{"read", "write"}));
  EXPECT_EQ(p.seccomp.deny, std::vector<std::string>{"socket"});
  EXPECT_EQ(p.seccomp.deny_action, (SeccompAction{SeccompAction::error, ENOSYS}));
  EXPECT_EQ(p.sandbox.user, "65534");
  EXPECT_EQ(p.sandbox.group, "nogroup");
  EXPECT_FALSE(p.sandbox.no_new_privs);
  EXPECT_EQ(p.sandbox.env.size(), 2u);
  EXPECT_EQ(p.sandbox.env[1], (std::pair<std::string, std::string>{"B", "two words"}));
  EXPECT_TRUE(p.sandbox.clear_env);
  EXPECT_EQ(p.sandbox.umask, 027u);
  EXPECT_EQ(p.sandbox.rlimits.core, 0u);
  EXPECT_EQ(p.sandbox.rlimits.nofile, 64u);
  EXPECT_EQ(p.sandbox.rlimits.fsize, 1u << 20);
  EXPECT_EQ(p.sandbox.rlimits.stack, kRlimitUnlimited);
  EXPECT_FALSE(p.sandbox.rlimits.as);
  EXPECT_TRUE(p.sandbox.namespaces.net && p.sandbox.namespaces.pid && p.sandbox.namespaces.mount);
  EXPECT_FALSE(p.sandbox.namespaces.ipc || p.sandbox.namespaces.cgroup);
  EXPECT_EQ(p.sandbox.hostname, "box");
  EXPECT_EQ(p.sandbox.hide, std::vector<std::string>{"/etc/shadow"});
  // And the whole thing prints and reads back.
  EXPECT_EQ(parse_policy(to_toml(p), "to_toml"), p) << to_toml(p);
}

TEST(Policy, RejectsBadSandboxAndSeccompAtTheirPosition) {
  struct Case {
    std::string text;
    int line, column;
    std::string message;
  };
  const Case cases[] = {
      {"[seccomp]\ndeny = [\"read\", \"sockt\"]\n", 3, 17,
       "seccomp.deny: unknown system call 'sockt' (libseccomp does not know it)"},
      {"[seccomp]\nallow = [\"nosuchcall\"]\n", 3, 10,
       "seccomp.allow: unknown system call 'nosuchcall' (libseccomp does not know it)"},
      {"[seccomp]\ndefault = \"kil\"\n", 3, 11,
       "seccomp.default: invalid value 'kil' (use \"allow\", \"errno\", \"errno:NAME\", "
       "\"kill\" or \"log\"); did you mean 'kill'?"},
      {"[seccomp]\ndeny_action = \"errno:EWHAT\"\n", 3, 15,
       "seccomp.deny_action: invalid value 'errno:EWHAT': unknown errno name 'EWHAT' (use a "
       "name such as EPERM or ENOSYS)"},
      {"[seccomp]\ndeny_action = \"allow\"\n", 3, 15,
       "seccomp.deny_action: invalid value 'allow' (use \"errno\", \"errno:NAME\", \"kill\" "
       "or \"log\")"},
      {"[seccomp]\nallow = [\"read\"]\ndeny = [\"read\"]\n", 4, 1,
       "seccomp: 'read' is in both allow and deny"},
      {"[sandbox]\nnamespaces = [\"net\", \"nett\"]\n", 3, 22,
       "sandbox.namespaces: invalid value 'nett' (use \"net\" or \"pid\" or \"ipc\" or \"uts\" or "
       "\"cgroup\" or \"mount\"); did you mean 'net'?"},
      {"[sandbox]\nhostname = \"x\"\n", 3, 1,
       "sandbox.hostname needs the uts namespace (add \"uts\" to sandbox.namespaces)"},
      {"[sandbox]\nprivate_tmp = true\n", 3, 1,
       "sandbox.private_tmp needs the mount namespace (add \"mount\" to sandbox.namespaces)"},
      {"[sandbox]\nnamespaces = [\"pid\"]\n", 3, 1,
       "sandbox.namespaces: \"pid\" needs \"mount\" as well, so that /proc can show the task's "
       "own namespace"},
      {"[sandbox]\nrlimits = { nofiles = 3 }\n", 3, 13,
       "unknown key 'nofiles' in sandbox.rlimits (use core, nofile, fsize, stack, as or nproc); "
       "did you mean 'nofile'?"},
      {"[sandbox]\nrlimits = { nofile = -1 }\n", 3, 22,
       "sandbox.rlimits.nofile: expected a non-negative integer or \"unlimited\", got integer -1"},
      {"[sandbox]\numask = \"999\"\n", 3, 9,
       "sandbox.umask: invalid value '999' (use an octal string such as \"022\", or 0o022)"},
      {"[sandbox]\nread_only = [\"usr\"]\n", 3, 14,
       "sandbox.read_only: invalid path 'usr': must be absolute"},
      {"[sandbox]\nclear_env = 1\n", 3, 13,
       "sandbox.clear_env: expected true or false, got integer 1"},
      {"[sandbox]\nusr = \"nobody\"\n", 3, 1,
       "unknown key 'usr' in [sandbox]; did you mean 'user'?"},
  };
  for (const Case& c : cases) {
    const std::string text = "version = 1\n" + c.text;
    try {
      parse_policy(text, "t.toml");
      ADD_FAILURE() << "accepted:\n" << text;
    } catch (const PolicyError& e) {
      EXPECT_EQ(e.message(), c.message) << text;
      EXPECT_EQ(e.line(), c.line) << text << e.what();
      EXPECT_EQ(e.column(), c.column) << text << e.what();
    }
  }
}

TEST(Policy, ShippedPoliciesParse) {
  for (const char* name : {"default", "strict", "gmsh", "compute"}) {
    const std::string path = std::string(POLLKILL_SOURCE_DIR) + "/policies/" + name + ".toml";
    EXPECT_NO_THROW(load_policy_file(path)) << path;
  }
  const Policy strict =
      load_policy_file(std::string(POLLKILL_SOURCE_DIR) + "/policies/strict.toml");
  EXPECT_EQ(strict.sandbox.user, "dynamic");
  EXPECT_TRUE(strict.seccomp.deny_new_namespaces);
  EXPECT_TRUE(strict.sandbox.namespaces.net && strict.sandbox.namespaces.pid &&
              strict.sandbox.namespaces.ipc && strict.sandbox.namespaces.uts &&
              strict.sandbox.namespaces.cgroup && strict.sandbox.namespaces.mount);
  for (const char* call :
       {"ptrace", "mount", "bpf", "kexec_load", "keyctl", "io_uring_setup", "userfaultfd"}) {
    EXPECT_NE(std::find(strict.seccomp.deny.begin(), strict.seccomp.deny.end(), call),
              strict.seccomp.deny.end())
        << call;
  }
  const Policy gmsh = load_policy_file(std::string(POLLKILL_SOURCE_DIR) + "/policies/gmsh.toml");
  ASSERT_TRUE(gmsh.limits.cpus);
  const std::string threads = std::to_string(static_cast<int>(*gmsh.limits.cpus));
  EXPECT_EQ(gmsh.sandbox.env,
            (std::vector<std::pair<std::string, std::string>>{{"OMP_NUM_THREADS", threads}}));
}

TEST(DidYouMean, SuggestsOnlyCloseCandidates) {
  struct Case {
    std::string word;
    std::string want;
  };
  const std::vector<std::string_view> keys{"memory", "memory_high", "cpus", "pids", "swap"};
  const Case cases[] = {
      {"memroy", "memory"}, {"memory_hgih", "memory_high"},
      {"cpu", "cpus"},      {"pid", "pids"},
      {"mem", ""},          {"sawp", "swap"},  // two letters swapped: one edit
      {"sxqp", ""},                            // two edits on a four-letter word is too far
      {"mmeory", "memory"}, {"swp", "swap"},
      {"network", ""},      {"", ""},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(did_you_mean(c.word, keys), c.want) << c.word;
  }
}

}  // namespace
}  // namespace pollkill

namespace pollkill {
namespace {

TEST(Policy, ReadsRetryAndAdaptiveWallTime) {
  Policy p = parse_policy(
      "version = 1\n[limits]\nwall_time = \"250%\"\nwall_time_max = \"1h\"\n"
      "[retry]\nattempts = 3\non = [\"failed\", \"oom\"]\nbackoff = \"2s\"\n",
      "p.toml");
  EXPECT_EQ(p.limits.wall_time_percent, 250.0);
  EXPECT_FALSE(p.limits.wall_time);
  EXPECT_EQ(p.limits.wall_time_max, Duration(3600 * 1000));
  EXPECT_EQ(p.retry.attempts, 3);
  EXPECT_EQ(p.retry.on, (std::vector<std::string>{"failed", "oom"}));
  EXPECT_EQ(p.retry.backoff, Duration(2000));
  EXPECT_EQ(parse_policy(to_toml(p), "to_toml"), p) << to_toml(p);
  // A fixed wall_time on top replaces the percentage.
  Policy fixed = parse_policy("version = 1\n[limits]\nwall_time = \"5s\"\n", "f", p);
  EXPECT_FALSE(fixed.limits.wall_time_percent);
  EXPECT_EQ(fixed.limits.wall_time, Duration(5000));
}

TEST(Policy, ReadsRetryEscalation) {
  Policy p = parse_policy(
      "version = 1\n[retry]\nattempts = 3\n"
      "escalate = { memory = \"x2\", memory_max = \"8GiB\", wall_time = \"x1.5\", "
      "wall_time_max = \"4h\" }\n",
      "p.toml");
  EXPECT_EQ(p.retry.escalate.memory, 2.0);
  EXPECT_EQ(p.retry.escalate.memory_max, 8ull << 30);
  EXPECT_EQ(p.retry.escalate.wall_time, 1.5);
  EXPECT_EQ(p.retry.escalate.wall_time_max, Duration(4 * 3600 * 1000));
  EXPECT_EQ(parse_policy(to_toml(p), "to_toml"), p) << to_toml(p);
  EXPECT_NE(to_toml(p).find("escalate = { memory = \"x2\", memory_max = \"8GiB\", "
                            "wall_time = \"x1.5\", wall_time_max = \"4h0m0s\" }"),
            std::string::npos)
      << to_toml(p);
  // The table replaces the base's whole: a key left out is not set.
  Policy only = parse_policy("version = 1\n[retry]\nescalate = { wall_time = \"x3\" }\n", "o", p);
  EXPECT_FALSE(only.retry.escalate.memory);
  EXPECT_EQ(only.retry.escalate.wall_time, 3.0);
  EXPECT_EQ(default_policy().retry.escalate, RetryEscalation{});
  EXPECT_NE(p, default_policy());
}

TEST(Policy, RejectsBadEscalationAtItsPosition) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"escalate = { memory = 2 }", "p:3:23: retry.escalate.memory: invalid factor"},
           Case{"escalate = { memory = \"2\" }", "invalid factor '2'"},
           Case{"escalate = { memory = \"x1\" }", "above 1"},
           Case{"escalate = { memory = \"x0.5\" }", "invalid factor"},
           Case{"escalate = { memory = \"x101\" }", "at most 100"},
           Case{"escalate = { memory = \"x-2\" }", "invalid factor"},
           Case{"escalate = { wall_time = \"x2e3\" }", "invalid factor"},
           Case{"escalate = { memory_max = \"0\" }", "retry.escalate.memory_max"},
           Case{"escalate = { wall_time_max = \"0s\" }", "retry.escalate.wall_time_max"},
           Case{"escalate = { memroy = \"x2\" }", "did you mean 'memory'?"},
           Case{"escalate = \"x2\"", "expected a table"},
       }) {
    try {
      parse_policy(std::string("version = 1\n[retry]\n") + c.text, "p");
      ADD_FAILURE() << c.text << " was accepted";
    } catch (const PolicyError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos)
          << c.text << ": " << e.what();
    }
  }
}

TEST(Policy, RejectsBadRetryAndPercentages) {
  for (const char* text : {"[retry]\nattempts = 0", "[retry]\nattempts = \"2\"",
                           "[retry]\non = [\"crashd\"]", "[retry]\non = \"crashed\"",
                           "[limits]\nwall_time = \"0%\"", "[limits]\nwall_time = \"x%\""}) {
    EXPECT_THROW(parse_policy(std::string("version = 1\n") + text, "p"), PolicyError) << text;
  }
}

}  // namespace
}  // namespace pollkill
