// Pure pieces of the Slurm modes: array specs, job scripts and commands, attempt numbers,
// element exit codes, record names and the order collect appends records in; and how records
// are put into place in a temporary directory (one final record per task, no name replaced).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "pollkill/error.h"
#include "pollkill/slurm.h"

namespace pollkill {
namespace {

TEST(SlurmArraySpec, RangesOfConsecutiveTasks) {
  struct Case {
    std::vector<std::uint64_t> seqs;
    int jobs;
    std::string want;
  };
  for (const auto& c : std::vector<Case>{
           {{1}, 0, "1"},
           {{1, 2, 3, 4}, 2, "1-4%2"},
           {{1, 2, 3, 5, 7, 8}, 0, "1-3,5,7-8"},
           {{2, 4, 6}, 1, "2,4,6%1"},
           {{9, 10}, 0, "9-10"},
       }) {
    EXPECT_EQ(array_spec(c.seqs, c.jobs), c.want);
  }
}

TEST(SlurmCpus, CeilingOfTheCpuLimitElseOne) {
  Limits limits;
  EXPECT_EQ(slurm_cpus(limits), 1);
  limits.cpus = 0.5;
  EXPECT_EQ(slurm_cpus(limits), 1);
  limits.cpus = 2.0;
  EXPECT_EQ(slurm_cpus(limits), 2);
  limits.cpus = 2.25;
  EXPECT_EQ(slurm_cpus(limits), 3);
}

TEST(SlurmElementExit, RequeueOnlyForARetryThatIsDue) {
  Result r;
  r.status = Status::ok;
  r.final = true;
  EXPECT_EQ(element_exit_code(r), 0);
  r.status = Status::hung;
  EXPECT_EQ(element_exit_code(r), 1);
  r.final = false;  // the retry policy wants another attempt
  EXPECT_EQ(element_exit_code(r), 75);
  r.status = Status::failed;
  r.final = true;
  EXPECT_EQ(element_exit_code(r), 1);
}

TEST(SlurmElementAttempt, RestartCountAndRecordsTogether) {
  EXPECT_EQ(element_attempt(std::nullopt, 0), 1);  // first run, outside a requeue
  EXPECT_EQ(element_attempt(0, 0), 1);
  EXPECT_EQ(element_attempt(1, 1), 2);  // requeued by Slurm after attempt 1
  EXPECT_EQ(element_attempt(0, 2), 3);  // a resumed submission: Slurm counts from 0
  EXPECT_EQ(element_attempt(2, 1), 3);  // attempt 2 died without a record
}

TEST(SlurmRecordName, SeqDotAttemptDotJsonOnly) {
  auto n = parse_record_name("12.3.json");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->seq, 12u);
  EXPECT_EQ(n->attempt, 3);
  for (const char* bad : {"12.json", ".12.3.json.tmp.77", "12.3.json.tmp", "a.1.json", "0.1.json",
                          "1.0.json", "1.2.3.json", ""}) {
    EXPECT_FALSE(parse_record_name(bad)) << bad;
  }
  SlurmDir dir{"/shared/run"};
  EXPECT_EQ(dir.record(4, 2), "/shared/run/records/4.2.json");
  EXPECT_EQ(dir.log(4, 2, "err"), "/shared/run/logs/4.2.err");
}

TEST(SlurmScript, ExecsTheElementWithTheDirectoryQuoted) {
  std::string script = sbatch_script("/usr/bin/pollkill", "/shared/my run");
  EXPECT_EQ(script.rfind("#!/bin/sh\n", 0), 0u);
  EXPECT_NE(script.find("\nexec /usr/bin/pollkill slurm-element '/shared/my run'\n"),
            std::string::npos)
      << script;
}

TEST(SlurmCommands, SbatchUserArgumentsComeLastSoTheyWin) {
  auto argv = sbatch_command("/d", "1-3%2", 2, {"--partition=big", "--time=10"}, "/d/slurm/e.sh");
  std::vector<std::string> want{"sbatch",
                                "--parsable",
                                "--job-name=pollkill",
                                "--array=1-3%2",
                                "--cpus-per-task=2",
                                "--output=/d/slurm/%A_%a.out",
                                "--error=/d/slurm/%A_%a.out",
                                "--requeue",
                                "--partition=big",
                                "--time=10",
                                "/d/slurm/e.sh"};
  EXPECT_EQ(argv, want);
}

TEST(SlurmCommands, SrunStepIsExclusiveOneTaskWithTheAttempt) {
  auto argv = srun_command("/bin/pk", "/d", 7, 2, 1, {"--mem=1G"});
  std::vector<std::string> want{"srun",
                                "--exclusive",
                                "--ntasks=1",
                                "--nodes=1",
                                "--cpus-per-task=1",
                                "--job-name=pollkill-7",
                                "--quiet",
                                "--mem=1G",
                                "/bin/pk",
                                "slurm-element",
                                "/d",
                                "--seq",
                                "7",
                                "--attempt",
                                "2"};
  EXPECT_EQ(argv, want);
}

TEST(SlurmRecord, ContractPlusHostAndJobId) {
  Result r;
  r.id = "a";
  r.status = Status::ok;
  auto record = element_record(r, "node1", "12_3");
  EXPECT_EQ(record["host"], "node1");
  EXPECT_EQ(record["slurm_job_id"], "12_3");
  EXPECT_EQ(record["id"], "a");
  EXPECT_TRUE(element_record(r, "node1", "")["slurm_job_id"].is_null());
  // The contract's keys first, in their order; the Slurm keys after them.
  auto plain = to_json(r);
  auto it = record.begin();
  for (auto p = plain.begin(); p != plain.end(); ++p, ++it) EXPECT_EQ(it.key(), p.key());
  EXPECT_EQ(it.key(), "host");
}

TEST(SlurmMemory, TheUsersMemArgumentInSlurmUnits) {
  EXPECT_EQ(sbatch_memory({}, 1), std::nullopt);
  EXPECT_EQ(sbatch_memory({"--partition=x", "--time=10"}, 1), std::nullopt);
  EXPECT_EQ(sbatch_memory({"--mem=4G"}, 1), 4ull << 30);
  EXPECT_EQ(sbatch_memory({"--mem=300"}, 1), 300ull << 20);  // a number alone is MiB
  EXPECT_EQ(sbatch_memory({"--mem", "512M"}, 1), 512ull << 20);
  EXPECT_EQ(sbatch_memory({"--mem=1G", "--mem=2048K"}, 1), 2ull << 20);  // the last wins
  EXPECT_EQ(sbatch_memory({"--mem-per-cpu=100M"}, 4), 400ull << 20);
  EXPECT_THROW(sbatch_memory({"--mem=lots"}, 1), Error);
  EXPECT_THROW(sbatch_memory({"--mem=4X"}, 1), Error);
  EXPECT_THROW(sbatch_memory({"--mem="}, 1), Error);
}

TEST(SlurmMemory, ElementNeedsTheLargestTimesTasksPlusOverhead) {
  EXPECT_EQ(slurm_size(1), "1M");
  EXPECT_EQ(slurm_size(128ull << 20), "128M");
  EXPECT_EQ(slurm_size((128ull << 20) + 1), "129M");
  EXPECT_EQ(element_memory(128ull << 20, 1), (128ull << 20) + kElementOverheadBytes);
  EXPECT_EQ(element_memory(128ull << 20, 4), (512ull << 20) + kElementOverheadBytes);
  EXPECT_EQ(element_memory(128ull << 20, 0), (128ull << 20) + kElementOverheadBytes);
}

TEST(SlurmChunk, SizeSplitAndTheListsElementsRead) {
  EXPECT_EQ(chunk_size(2000, 100), 100u);
  EXPECT_EQ(chunk_size(5, 100), 100u);
  EXPECT_EQ(chunk_size(2000, 0), 20u);  // auto: at most kAutoChunkElements elements
  EXPECT_EQ(chunk_size(2001, 0), 21u);
  EXPECT_EQ(chunk_size(50, 0), 1u);
  EXPECT_EQ(chunk_size(0, 0), 1u);
  auto chunks = split_chunks({1, 2, 3, 5, 8}, 2);
  EXPECT_EQ(chunks, (std::vector<std::vector<std::uint64_t>>{{1, 2}, {3, 5}, {8}}));
  EXPECT_TRUE(split_chunks({}, 3).empty());
  EXPECT_EQ(parse_task_list("1-3,5"), (std::vector<std::uint64_t>{1, 2, 3, 5}));
  EXPECT_EQ(parse_task_list(array_spec({7, 8, 9, 12}, 0)),
            (std::vector<std::uint64_t>{7, 8, 9, 12}));
  for (const char* bad : {"", "0", "3-1", "1,1", "2,1", "1-", "a", "1,", "1%2", "-3"})
    EXPECT_THROW(parse_task_list(bad), Error) << bad;
}

TEST(SlurmChunk, JobsFromTheElementsCpus) {
  EXPECT_EQ(chunk_jobs(std::nullopt, 1), 1);
  EXPECT_EQ(chunk_jobs(8, 1), 8);
  EXPECT_EQ(chunk_jobs(8, 3), 2);
  EXPECT_EQ(chunk_jobs(2, 4), 1);
  EXPECT_EQ(sbatch_cpus({}), std::nullopt);
  EXPECT_EQ(sbatch_cpus({"--cpus-per-task=4"}), 4);
  EXPECT_EQ(sbatch_cpus({"-c", "3", "--mem=1G"}), 3);
  EXPECT_EQ(sbatch_cpus({"-c6"}), 6);
  EXPECT_EQ(sbatch_cpus({"--cpus-per-task", "2", "-c8"}), 8);  // the last wins
  EXPECT_THROW(sbatch_cpus({"--cpus-per-task=0"}), Error);
  EXPECT_THROW(sbatch_cpus({"-c", "x"}), Error);
}

TEST(SlurmChunk, ScriptRunsTheElementsChunk) {
  std::string script = sbatch_script("/usr/bin/pollkill", "/shared/r 1", "/shared/r 1/slurm/c.1");
  EXPECT_NE(script.find("exec /usr/bin/pollkill slurm-element '/shared/r 1' --chunks "
                        "'/shared/r 1/slurm/c.1'\n"),
            std::string::npos)
      << script;
}

TEST(SlurmMissing, TasksWithoutAFinalRecord) {
  std::map<std::uint64_t, RecordedAttempts> done{
      {1, {1, true, Status::ok}}, {2, {2, false, Status::error}}, {4, {1, true, Status::failed}}};
  EXPECT_EQ(missing_tasks(5, done), (std::vector<std::uint64_t>{2, 3, 5}));
  EXPECT_TRUE(missing_tasks(0, done).empty());
}

TEST(SlurmCollect, TaskThenAttemptOrderWithoutWhatIsThere) {
  auto rec = [](const char* id, int attempt) {
    return nlohmann::ordered_json{{"id", id}, {"attempt", attempt}};
  };
  std::vector<std::pair<RecordName, nlohmann::ordered_json>> records{
      {{10, 1}, rec("j", 1)}, {{2, 2}, rec("b", 2)}, {{2, 1}, rec("b", 1)}, {{1, 1}, rec("a", 1)}};
  auto out = records_to_append(records, {record_key("b", 1)});
  std::vector<std::string> got;
  for (const auto* r : out)
    got.push_back((*r)["id"].get<std::string>() + std::to_string((*r)["attempt"].get<int>()));
  EXPECT_EQ(got, (std::vector<std::string>{"a1", "b2", "j1"}));
  // Collecting again adds nothing.
  std::vector<std::string> all{record_key("a", 1), record_key("b", 1), record_key("b", 2),
                               record_key("j", 1)};
  EXPECT_TRUE(records_to_append(records, all).empty());
}

TEST(SlurmScan, FinalAttemptsFromTheRecordsDirectory) {
  char tmpl[] = "/tmp/pollkill-slurm-scan-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  SlurmDir dir{tmpl};
  std::filesystem::create_directories(dir.records());
  auto write = [](const std::filesystem::path& p, const std::string& text) {
    std::ofstream(p) << text;
  };
  write(dir.record(1, 1), R"({"id":"a","attempt":1,"final":false,"status":"hung"})");
  write(dir.record(1, 2), R"({"id":"a","attempt":2,"final":true,"status":"ok"})");
  write(dir.record(2, 1), R"({"id":"b","attempt":1,"final":true,"status":"cancelled"})");
  write(dir.record(3, 1), R"({"id":"c","attempt":1,"final":true,"status":"failed"})");
  write(dir.records() / "4.1.json", "{torn");
  write(dir.records() / ".5.1.json.tmp.9", "{}");
  std::vector<std::string> warnings;
  auto scanned = scan_records(dir, &warnings);
  EXPECT_EQ(warnings.size(), 1u);
  ASSERT_EQ(scanned.size(), 3u);
  EXPECT_EQ(scanned[1].highest, 2);
  EXPECT_TRUE(scanned[1].final);
  EXPECT_EQ(scanned[1].final_status, Status::ok);
  EXPECT_FALSE(scanned[2].final);  // cancelled: resume runs it again, as batch does
  EXPECT_EQ(scanned[3].final_status, Status::failed);
  EXPECT_EQ(missing_tasks(4, scanned), (std::vector<std::uint64_t>{2, 4}));
  std::filesystem::remove_all(tmpl);
}

// A results directory under /tmp, removed at the end of the test.
class SlurmPlace : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pollkill-slurm-place-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_.root = tmpl;
    std::filesystem::create_directories(dir_.records());
    std::filesystem::create_directories(dir_.logs());
  }
  void TearDown() override { std::filesystem::remove_all(dir_.root); }

  static std::string record(int attempt, bool final, const std::string& status) {
    return R"({"id":"a","attempt":)" + std::to_string(attempt) + R"(,"final":)" +
           (final ? "true" : "false") + R"(,"status":")" + status + "\"}\n";
  }
  static std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::vector<std::string> names(const std::filesystem::path& d) const {
    std::vector<std::string> out;
    if (!std::filesystem::exists(d)) return out;
    for (const auto& e : std::filesystem::directory_iterator(d))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  SlurmDir dir_;
};

TEST_F(SlurmPlace, TheFirstRecordOfAnAttemptKeepsItsName) {
  // Two runs of attempt 1 (a straggler and a resumed rerun); neither decides the task.
  auto first = place_record(dir_, 1, 1, record(1, false, "hung"), false);
  EXPECT_EQ(first.placement, Placement::placed);
  EXPECT_EQ(first.path, dir_.record(1, 1));
  auto second = place_record(dir_, 1, 1, record(1, false, "crashed"), false);
  EXPECT_EQ(second.placement, Placement::superseded);
  EXPECT_EQ(second.path.parent_path(), dir_.superseded());
  EXPECT_EQ(slurp(dir_.record(1, 1)), record(1, false, "hung"));             // not replaced
  EXPECT_EQ(slurp(second.path), record(1, false, "crashed"));                // kept aside, whole
  EXPECT_EQ(names(dir_.records()), (std::vector<std::string>{"1.1.json"}));  // no temporaries
}

TEST_F(SlurmPlace, OneFinalRecordPerTaskTheFirstToDecideWins) {
  // The rerun on another node (attempt 2) decides the task first; the straggler from the
  // node declared dead (attempt 1) ends later with its own verdict.
  EXPECT_EQ(place_record(dir_, 1, 2, record(2, true, "ok"), true).placement, Placement::placed);
  EXPECT_EQ(decided_attempt(dir_, 1), 2);
  auto late = place_record(dir_, 1, 1, record(1, true, "failed"), true);
  EXPECT_EQ(late.placement, Placement::superseded);
  EXPECT_EQ(slurp(late.path), record(1, true, "failed"));
  // A record of a decided task that does not decide it (not final, or cancelled) goes aside.
  EXPECT_EQ(place_record(dir_, 1, 3, record(3, false, "hung"), false).placement,
            Placement::superseded);
  EXPECT_EQ(names(dir_.records()), (std::vector<std::string>{"1.2.json", "1.final"}));
  EXPECT_EQ(names(dir_.superseded()).size(), 2u);
  std::vector<std::string> warnings;
  auto scanned = scan_records(dir_, &warnings);
  EXPECT_EQ(scanned[1].highest, 2);
  EXPECT_EQ(scanned[1].final_status, Status::ok);
  // Other tasks are not concerned.
  EXPECT_FALSE(decided_attempt(dir_, 2));
  EXPECT_EQ(place_record(dir_, 2, 1, record(1, true, "ok"), true).placement, Placement::placed);
}

TEST_F(SlurmPlace, AFinalRecordWhoseAttemptIsTakenGivesUpItsClaim) {
  EXPECT_EQ(place_record(dir_, 1, 1, record(1, false, "crashed"), false).placement,
            Placement::placed);
  // Another run of attempt 1 decides: the name is taken, so nothing is decided.
  EXPECT_EQ(place_record(dir_, 1, 1, record(1, true, "ok"), true).placement, Placement::superseded);
  EXPECT_FALSE(std::filesystem::exists(dir_.final_marker(1)));
  EXPECT_FALSE(decided_attempt(dir_, 1));
  EXPECT_EQ(place_record(dir_, 1, 2, record(2, true, "ok"), true).placement, Placement::placed);
}

TEST_F(SlurmPlace, AClaimLeftHalfDoneIsCompletedOrGivenUp) {
  // The run that claimed the task died before its record got its name.
  std::ofstream(dir_.final_marker(1)) << record(2, true, "ok");
  EXPECT_EQ(decided_attempt(dir_, 1), 2);
  EXPECT_EQ(slurp(dir_.record(1, 2)), record(2, true, "ok"));
  EXPECT_EQ(place_record(dir_, 1, 3, record(3, true, "ok"), true).placement, Placement::superseded);
  // A claim whose attempt's name holds another record was never won: it goes.
  std::ofstream(dir_.final_marker(5)) << record(1, true, "ok");
  std::ofstream(dir_.record(5, 1)) << record(1, false, "hung");
  EXPECT_FALSE(decided_attempt(dir_, 5));
  EXPECT_FALSE(std::filesystem::exists(dir_.final_marker(5)));
  // A marker that is no record is an error that names it.
  std::ofstream(dir_.final_marker(6)) << "{torn";
  EXPECT_THROW(decided_attempt(dir_, 6), Error);
}

TEST_F(SlurmPlace, StartedAttemptsCountTheirLogsToo) {
  EXPECT_EQ(highest_started_attempt(dir_, 1), 0);
  // Attempt 1 created its logs and died with its node: a rerun is attempt 2.
  std::ofstream(dir_.log(1, 1, "out"));
  EXPECT_EQ(highest_started_attempt(dir_, 1), 1);
  std::ofstream(dir_.record(1, 2)) << record(2, false, "hung");
  EXPECT_EQ(highest_started_attempt(dir_, 1), 2);
}

TEST_F(SlurmPlace, WriteFileAtomicReplacesWholeAndLeavesNoTemporary) {
  write_file_atomic(dir_.policy(), "one\n");
  write_file_atomic(dir_.policy(), "two\n");
  EXPECT_EQ(slurp(dir_.policy()), "two\n");
  EXPECT_EQ(names(dir_.root), (std::vector<std::string>{"logs", "policy.toml", "records"}));
}

}  // namespace
}  // namespace pollkill
