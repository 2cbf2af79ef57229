// Command-line mistakes as the real binary reports them: pollkill's own form (no CLI11 text),
// the nearest real option or command suggested, the allowed range said in words, the pointer
// to --help, and the documented exit codes (125 for run and no command, 2 for the others).
#include <string>
#include <vector>

#include "harness.h"

namespace pollkill::testing {
namespace {

struct UsageCase {
  std::vector<std::string> args;
  int exit_code;
  std::string error;  ///< the whole "pollkill: error: ..." line
  std::string hint;   ///< the whole "pollkill: hint: ..." line
};

TEST(CliUsage, MistakesAreReportedInPollkillsFormWithTheFix) {
  const UsageCase cases[] = {
      {{"run", "--memroy", "1G", "--", "true"},
       125,
       "pollkill: error: unknown option '--memroy' for 'pollkill run'; did you mean '--memory'?",
       "pollkill: hint: see 'pollkill run --help'"},
      {{"rnu", "--", "true"},
       125,
       "pollkill: error: unknown command 'rnu'; did you mean 'run'?",
       "pollkill: hint: see 'pollkill --help'"},
      {{"frobnicate"},
       125,
       "pollkill: error: unknown command 'frobnicate' (commands: run, batch, collect, report, gc, "
       "policy, doctor)",
       "pollkill: hint: see 'pollkill --help'"},
      {{},
       125,
       "pollkill: error: missing a command (run, batch, collect, report, gc, policy, doctor)",
       "pollkill: hint: see 'pollkill --help'"},
      // The unknown option is the mistake, not the task file after it.
      {{"batch", "--retry", "2", "tasks.txt"},
       2,
       "pollkill: error: unknown option '--retry' for 'pollkill batch'; did you mean '--retries'?",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"batch", "--jobs", "0", "tasks.txt"},
       2,
       "pollkill: error: --jobs: invalid value '0' (use an integer from 1 to 100000)",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"batch", "-j", "many", "tasks.txt"},
       2,
       "pollkill: error: --jobs: invalid value 'many' (use an integer from 1 to 100000)",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"batch", "-j"},
       2,
       "pollkill: error: --jobs needs a value",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"batch"},
       2,
       "pollkill: error: missing TASKFILE",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"batch", "a.txt", "b.txt"},
       2,
       "pollkill: error: unexpected argument 'b.txt'",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"batch", "--launcher", "ssh", "tasks.txt"},
       2,
       "pollkill: error: --launcher: invalid value 'ssh' (use local or srun)",
       "pollkill: hint: see 'pollkill batch --help'"},
      {{"policy", "chek", "a.toml"},
       2,
       "pollkill: error: unknown command 'chek' for 'pollkill policy'; did you mean 'check'?",
       "pollkill: hint: see 'pollkill policy --help'"},
      {{"doctor", "--cgroup-v1", "yes"},
       2,
       "pollkill: error: --cgroup-v1: invalid value 'yes' (use off or auto)",
       "pollkill: hint: see 'pollkill doctor --help'"},
      {{"report", "--memory", "1G", "r.jsonl"},
       2,
       "pollkill: error: --memory needs --html",
       "pollkill: hint: see 'pollkill report --help'"},
      {{"--memory", "1G", "run", "--", "true"},
       125,
       "pollkill: error: unknown option '--memory' (options come after the command: pollkill "
       "COMMAND [OPTIONS])",
       "pollkill: hint: see 'pollkill --help'"},
  };
  for (const UsageCase& c : cases) {
    RunOutput r = run_pollkill(c.args);
    ASSERT_FALSE(r.timed_out) << r.describe();
    EXPECT_EQ(r.exit_code, c.exit_code) << r.describe();
    EXPECT_EQ(r.err, c.error + "\n" + c.hint + "\n") << r.describe();
    EXPECT_TRUE(r.out.empty()) << r.describe();
  }
}

// Flags take no value: what follows one is read on its own.
TEST(CliUsage, FlagsTakeNoValue) {
  RunOutput r = run_pollkill({"doctor", "--json", "--systemd-scope", "never"});
  EXPECT_NE(r.exit_code, 2) << r.describe();
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.describe();
  EXPECT_EQ(r.out.rfind("{", 0), 0u) << r.out;
}

// What comes after `run --` (or run's first word) is the command's, options and all.
TEST(CliUsage, RunsCommandKeepsItsOwnOptions) {
  RunOutput r =
      run_pollkill({"run", "--mode", "subreaper", "--", "sh", "-c", "exit 3", "--memroy"});
  EXPECT_EQ(r.exit_code, 3) << r.describe();
  RunOutput bare = run_pollkill({"run", "--mode", "subreaper", "sh", "-c", "exit 4", "--memroy"});
  EXPECT_EQ(bare.exit_code, 4) << bare.describe();
}

// --help names what each option takes: no CLI11 "TEXT" or "INT" placeholders, no ranges of
// doubles.
TEST(CliUsage, HelpShowsTypedPlaceholders) {
  for (const char* command : {"run", "batch", "report", "collect", "gc", "doctor"}) {
    RunOutput r = run_pollkill({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.out.find(" TEXT"), std::string::npos) << command << ":\n" << r.out;
    EXPECT_EQ(r.out.find(" INT"), std::string::npos) << command << ":\n" << r.out;
    EXPECT_EQ(r.out.find("POSITIVE"), std::string::npos) << command << ":\n" << r.out;
  }
  RunOutput batch = run_pollkill({"batch", "--help"});
  EXPECT_NE(batch.out.find("-j,--jobs N "), std::string::npos) << batch.out;
  EXPECT_NE(batch.out.find("--results FILE "), std::string::npos) << batch.out;
  EXPECT_NE(batch.out.find("--sync-interval DURATION "), std::string::npos) << batch.out;
  EXPECT_NE(batch.out.find("--memory SIZE "), std::string::npos) << batch.out;
  EXPECT_NE(batch.out.find("Usage: pollkill batch"), std::string::npos) << batch.out;
}

// `--memory 2g` is what docker and systemd users type (units.cpp's table tests the values).
TEST(CliUsage, SizesAcceptWhatPeopleType) {
  for (const char* size : {"2g", "2gb", "2GB", "512m"}) {
    RunOutput r =
        run_pollkill({"run", "--memory", size, "--missing-controllers", "warn", "--", "true"});
    EXPECT_EQ(r.exit_code, 0) << size << ": " << r.describe();
    EXPECT_EQ(r.err.find("invalid size"), std::string::npos) << size << ": " << r.describe();
  }
}

}  // namespace
}  // namespace pollkill::testing
