// What the watchdog's CPU-wanted figure is made of: PSI files, schedstat, and the meter that
// combines them, on text and on fake /proc and cgroup directories.
#include "pollkill/demand.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "pollkill/pressure.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

const TimePoint kT0 = TimePoint{} + std::chrono::hours(10);

TEST(Pressure, ParsesSomeAndFullTotals) {
  struct Case {
    const char* name;
    std::string text;
    std::optional<PressureTotals> expected;
  };
  const std::vector<Case> cases{
      {"cpu, 5.13+",
       "some avg10=29.26 avg60=11.64 avg300=7.84 total=51195660\n"
       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
       PressureTotals{51195660, 0}},
      {"memory", "some avg10=1.00 avg60=2.00 avg300=3.00 total=7\nfull avg10=0 avg60=0 total=5\n",
       PressureTotals{7, 5}},
      {"cpu before 5.13: no full line", "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
       PressureTotals{42, std::nullopt}},
      {"no trailing newline", "some avg10=0.00 avg60=0.00 avg300=0.00 total=18446744073709551615",
       PressureTotals{18446744073709551615ull, std::nullopt}},
      {"empty", "", std::nullopt},
      {"no some line", "full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n", std::nullopt},
      {"no total", "some avg10=0.00 avg60=0.00 avg300=0.00\n", std::nullopt},
      {"bad total", "some avg10=0.00 avg60=0.00 avg300=0.00 total=12x\n", std::nullopt},
      {"negative total", "some avg10=0.00 total=-1\n", std::nullopt},
  };
  for (const auto& c : cases) {
    auto got = parse_pressure(c.text);
    ASSERT_EQ(got.has_value(), c.expected.has_value()) << c.name;
    if (!got) continue;
    EXPECT_EQ(got->some_usec, c.expected->some_usec) << c.name;
    EXPECT_EQ(got->full_usec, c.expected->full_usec) << c.name;
  }
}

TEST(SchedStat, Parses) {
  struct Case {
    std::string text;
    std::optional<SchedStat> expected;
  };
  const std::vector<Case> cases{
      {"590126110 5810239256 250\n", SchedStat{590126110, 5810239256, 250}},
      {"0 0 0", SchedStat{0, 0, 0}},
      {"1 2\n", std::nullopt},
      {"", std::nullopt},
      {"1 2 3 4\n", std::nullopt},
      {"a 2 3\n", std::nullopt},
  };
  for (const auto& c : cases) {
    auto got = parse_schedstat(c.text);
    ASSERT_EQ(got.has_value(), c.expected.has_value()) << c.text;
    if (!got) continue;
    EXPECT_EQ(got->run_ns, c.expected->run_ns) << c.text;
    EXPECT_EQ(got->wait_ns, c.expected->wait_ns) << c.text;
    EXPECT_EQ(got->slices, c.expected->slices) << c.text;
  }
}

class DemandFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("pk-demand-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void write(const fs::path& relative, const std::string& text) {
    fs::create_directories((root_ / relative).parent_path());
    std::ofstream(root_ / relative) << text;
  }
  fs::path root_;
};

TEST_F(DemandFiles, ReadsSchedstatsAndThreadsOfProcesses) {
  write("10/task/10/schedstat", "1 2 3\n");
  write("10/task/11/schedstat", "4 5 6\n");
  write("10/schedstat", "1 2 3\n");
  write("11/schedstat", "4 5 6\n");
  write("20/task/20/schedstat", "garbage\n");
  write("20/schedstat", "garbage\n");
  fs::create_directories(root_ / "10/task/notapid");
  EXPECT_EQ(threads_of({10, 20, 99}, root_), (std::vector<pid_t>{10, 11, 20}));
  const auto stats = read_schedstats({10, 11, 20, 99}, root_);
  ASSERT_EQ(stats.size(), 2u);  // 20 does not parse, 99 is gone
  EXPECT_EQ(stats[0].tid, 10);
  EXPECT_EQ(stats[0].stat.wait_ns, 2u);
  EXPECT_EQ(stats[1].tid, 11);
  EXPECT_EQ(stats[1].stat.wait_ns, 5u);
}

TEST_F(DemandFiles, PressureFileAndCgroupThreadsReadTheirFileEachTime) {
  write("cg/cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=10\n");
  write("cg/cgroup.threads", "7\n8\n");
  const CgroupDir dir = CgroupDir::open(root_ / "cg");
  const PressureFile cpu = PressureFile::open(dir, "cpu.pressure");
  const CgroupThreads threads(dir);
  ASSERT_TRUE(cpu);
  EXPECT_EQ(cpu.read()->some_usec, 10u);
  EXPECT_EQ(threads.read(), (std::vector<pid_t>{7, 8}));
  // The same open file is read again from the start: a longer text replaces the old one.
  write("cg/cpu.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=123456\nfull avg10=0 total=9\n");
  EXPECT_EQ(cpu.read()->some_usec, 123456u);
  EXPECT_EQ(cpu.read()->full_usec, 9u);
  // A file the kernel does not keep: an empty reader, no error.
  const PressureFile memory = PressureFile::open(dir, "memory.pressure");
  EXPECT_FALSE(memory);
  EXPECT_FALSE(memory.read());
}

std::vector<ThreadSchedStat> threads(std::initializer_list<std::pair<pid_t, std::uint64_t>> waits) {
  std::vector<ThreadSchedStat> out;
  for (auto [tid, wait_ns] : waits) out.push_back({tid, SchedStat{0, wait_ns, 0}});
  return out;
}

TEST(CpuWaitMeter, TakesTheLargerLowerBoundPerInterval) {
  struct Step {
    int at_ms;
    std::optional<std::uint64_t> psi;
    std::vector<ThreadSchedStat> threads;
    std::uint64_t total;  ///< expected cumulative wait, usec
  };
  struct Case {
    const char* name;
    std::vector<Step> steps;
  };
  const std::vector<Case> cases{
      {"first call is the baseline", {{0, 5'000, threads({{1, 9'000'000}}), 0}}},
      {"schedstat above psi (one thread migrating)",
       {{0, 1'000, threads({{1, 0}}), 0}, {1000, 700'000, threads({{1, 900'000'000}}), 900'000}}},
      {"psi above schedstat (a thread that came and went)",
       {{0, 0, threads({{1, 0}}), 0}, {1000, 400'000, threads({{1, 100'000'000}}), 400'000}}},
      {"several threads sum",
       {{0, 0, threads({{1, 0}, {2, 0}}), 0},
        {1000, 500'000, threads({{1, 800'000'000}, {2, 700'000'000}}), 1'500'000}}},
      {"no psi (subreaper mode)",
       {{0, std::nullopt, threads({{1, 10}}), 0},
        {1000, std::nullopt, threads({{1, 300'000'010}}), 300'000}}},
      {"a new thread counts whole, capped at the interval",
       {{0, 0, threads({{1, 0}}), 0},
        {500, 0, threads({{1, 0}, {2, 200'000'000}}), 200'000},
        {1000, 0, threads({{1, 0}, {2, 200'000'000}, {3, 9'000'000'000}}), 700'000}}},
      {"a reused tid whose counter went down counts as new",
       {{0, 0, threads({{1, 5'000'000'000}}), 0}, {1000, 0, threads({{1, 100'000'000}}), 100'000}}},
      {"psi going down counts as no growth",
       {{0, 900, threads({}), 0}, {1000, 100, threads({}), 0}, {2000, 600, threads({}), 500}}},
      {"an interval without threads keeps their baseline",
       {{0, 0, threads({{1, 0}}), 0},
        {1000, 0, threads({}), 0},
        {2000, 0, threads({{1, 300'000'000}}), 300'000}}},
      {"a call at the same time adds nothing and loses nothing",
       {{0, 0, threads({{1, 0}}), 0},
        {0, 10, threads({{1, 50'000'000}}), 0},
        {1000, 20, threads({{1, 100'000'000}}), 100'000}}},
  };
  for (const auto& c : cases) {
    CpuWaitMeter meter;
    for (const auto& step : c.steps) {
      EXPECT_EQ(meter.observe(kT0 + milliseconds(step.at_ms), step.psi, step.threads), step.total)
          << c.name << " at " << step.at_ms << "ms";
    }
    EXPECT_EQ(meter.total_usec(), c.steps.back().total) << c.name;
  }
}

}  // namespace
}  // namespace pollkill
