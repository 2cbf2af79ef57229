// The summary's grouping of stuck tasks by stack signature (report.h).
#include "pollkill/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace pollkill {
namespace {

SummaryRecord stuck(const std::string& id, Status status, const std::string& signature) {
  SummaryRecord r;
  r.id = id;
  r.status = status;
  r.reason = "stuck";
  r.stack_signature = signature;
  return r;
}

TEST(SummarySignatures, FiveHundredTasksWithThreeKindsOfHangReadAsThreeLines) {
  Summary summary;
  const std::string read = "pk_stuck: stuck_in_read < main < __libc_start_call_main";
  const std::string lock = "solver: pthread_mutex_lock < Mesh::refine < main";
  const std::string spin = "gmsh: gmsh_yyparse < ParseFile < GModel::readGEO";
  for (int i = 0; i < 500; ++i) {
    const std::string id = std::to_string(i);
    if (i % 10 == 3) {
      summary.add(stuck(id, Status::hung, read));  // 50
    } else if (i % 25 == 7) {
      summary.add(stuck(id, Status::hung, lock));  // 20
    } else if (i % 50 == 11) {
      summary.add(stuck(id, Status::spinning, spin));  // 10
    } else {
      SummaryRecord ok;
      ok.id = id;
      ok.status = Status::ok;
      summary.add(ok);
    }
  }
  const auto groups = summary.signature_groups();
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].count, 50u);
  EXPECT_EQ(groups[0].status, Status::hung);
  EXPECT_EQ(groups[0].stack_signature, read);
  EXPECT_EQ(groups[0].ids, (std::vector<std::string>{"3", "13", "23", "33", "43"}));
  EXPECT_EQ(groups[1].count, 20u);
  EXPECT_EQ(groups[2].count, 10u);
  EXPECT_EQ(groups[2].status, Status::spinning);

  const std::string text = summary.format_text();
  EXPECT_NE(text.find("stuck, by stack signature:\n"
                      "  50 hung at `" +
                      read +
                      "` (tasks 3, 13, 23, 33, 43, ...)\n"
                      "  20 hung at `" +
                      lock +
                      "` (tasks 7, 32, 57, 82, 107, ...)\n"
                      "  10 spinning at `" +
                      spin + "` (tasks 11, 61, 111, 161, 211, ...)\n"),
            std::string::npos)
      << text;
  // Told by their groups, not one by one: the not-ok list is empty.
  EXPECT_EQ(text.find("not ok:"), std::string::npos) << text;
  EXPECT_EQ(summary.not_ok(), 80u);
  const auto j = summary.to_json();
  EXPECT_EQ(j["failed"].size(), 0u);
  ASSERT_EQ(j["stuck_by_signature"].size(), 3u);
  EXPECT_EQ(j["stuck_by_signature"][1]["stack_signature"], lock);
  EXPECT_EQ(j["stuck_by_signature"][1]["count"], 20);
  EXPECT_EQ(j["stuck_without_signature"], 0);
}

TEST(SummarySignatures, OnlyStuckStatusesAreGroupedAndSignatureLessOnesCounted) {
  Summary summary;
  summary.add(stuck("a", Status::thrashing, "app: memcpy < load"));
  summary.add(stuck("b", Status::timeout, "app: slow < main"));  // not a stuck verdict
  summary.add(stuck("c", Status::failed, "app: exit < main"));   // nor this
  summary.add(stuck("d", Status::hung, ""));                     // no evidence
  summary.add(stuck("e", Status::thrashing, "app: memcpy < load"));
  const auto groups = summary.signature_groups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].status, Status::thrashing);
  EXPECT_EQ(groups[0].count, 2u);
  EXPECT_EQ(summary.stuck_without_signature(), 1u);
  const std::string text = summary.format_text();
  EXPECT_NE(text.find("  2 thrashing at `app: memcpy < load` (tasks a, e)\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  1 without a stack signature\n"), std::string::npos) << text;
  // The not-ok list keeps the others; the signature-less stuck one is among them.
  EXPECT_EQ(text.find("  a: thrashing"), std::string::npos) << text;
  EXPECT_NE(text.find("  b: timeout: stuck\n      at: app: slow < main\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  d: hung: stuck\n"), std::string::npos) << text;
}

TEST(SummarySignatures, NoSectionWithoutSignatures) {
  Summary summary;
  summary.add(stuck("a", Status::hung, ""));
  EXPECT_EQ(summary.format_text().find("by stack signature"), std::string::npos);
}

TEST(SummarySignatures, SameSignatureDifferentStatusAreTwoGroups) {
  Summary summary;
  summary.add(stuck("a", Status::hung, "app: f < main"));
  summary.add(stuck("b", Status::spinning, "app: f < main"));
  EXPECT_EQ(summary.signature_groups().size(), 2u);
}

TEST(SummarySignatures, ManyDistinctSignaturesStayBounded) {
  Summary summary;
  const std::size_t n = Summary::kGroups + 7;
  for (std::size_t i = 0; i < n; ++i) {
    summary.add(stuck(std::to_string(i), Status::hung, "app: f" + std::to_string(i)));
  }
  EXPECT_EQ(summary.signature_groups().size(), Summary::kGroups);
  EXPECT_EQ(summary.stuck_ungrouped(), 7u);
  const std::string text = summary.format_text();
  EXPECT_NE(text.find("... and " + std::to_string(Summary::kGroups - Summary::kGroupsShown) +
                      " more in " + std::to_string(Summary::kGroups - Summary::kGroupsShown) +
                      " other signatures\n"),
            std::string::npos)
      << text.substr(0, 2000);
  EXPECT_NE(text.find("... and 7 more beyond 1000 signatures\n"), std::string::npos);
}

TEST(SummarySignatures, AReplacedFinalRecordLeavesItsGroup) {
  Summary summary(true);  // pollkill report: a later final record of an id replaces the earlier
  summary.add(stuck("t", Status::hung, "app: f < main"));
  summary.add(stuck("u", Status::hung, "app: f < main"));
  SummaryRecord rerun;
  rerun.id = "t";
  rerun.status = Status::ok;
  rerun.attempt = 2;
  summary.add(rerun);
  auto groups = summary.signature_groups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].count, 1u);
  EXPECT_EQ(groups[0].ids, (std::vector<std::string>{"u"}));
  summary.add(stuck("u", Status::spinning, "app: g < main"));
  groups = summary.signature_groups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].status, Status::spinning);
}

TEST(SummarySignatures, ReadFromAResultsFile) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("pk-report-" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream out(path);
    Result r;
    r.status = Status::hung;
    r.stack_signature = "pk_stuck: stuck_in_read < main";
    for (const char* id : {"3", "17", "41"}) {
      r.id = id;
      out << dump_result_line(r) << "\n";
    }
    r.id = "old";  // a record from before signatures: null
    r.stack_signature.reset();
    out << dump_result_line(r) << "\n";
  }
  const Summary summary = summarize_results_file(path.string());
  std::filesystem::remove(path);
  const std::string text = summary.format_text();
  EXPECT_NE(text.find("  3 hung at `pk_stuck: stuck_in_read < main` (tasks 3, 17, 41)\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(summary.stuck_without_signature(), 1u);
}

}  // namespace
}  // namespace pollkill
