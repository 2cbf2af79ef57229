// The files a batch and a run write: results and logs are opened as a careful root tool opens
// them (no symbolic link followed, no FIFO or device, nothing of another user's truncated), a
// results file has one writer at a time, and run --result is checked before the task starts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "pollkill/error.h"
#include "pollkill/results.h"

namespace pollkill {
namespace {

namespace fs = std::filesystem;

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/pk-files-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The message of the Error `f` throws ("" when it throws none).
  template <typename F>
  static std::string error_of(F f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(FilesTest, OutputFilesAreNeverLinksFifosOrDevices) {
  std::ofstream(path("target")) << "precious\n";
  fs::create_symlink(path("target"), path("link"));
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  fs::create_directory(path("dir"));
  const std::pair<std::string, std::string> cases[] = {
      {path("link"), "is a symbolic link"},
      {path("fifo"), "is a FIFO"},
      {"/dev/null", "is a character device"},
      {path("dir"), "is a directory"},
  };
  for (const auto& [file, kind] : cases) {
    EXPECT_NE(error_of([&] { open_output_file(file, O_WRONLY); }).find("'" + file + "' " + kind),
              std::string::npos)
        << file;
    EXPECT_NE(error_of([&] { AppendFile::open(file); }).find(kind), std::string::npos) << file;
    EXPECT_NE(error_of([&] { open_log_file(file); }).find(kind), std::string::npos) << file;
  }
  EXPECT_EQ(slurp(path("target")), "precious\n");
  EXPECT_EQ(error_of([&] { open_output_file(path("new"), O_WRONLY); }), "");
}

TEST_F(FilesTest, ALogFileOfAnotherUserIsNotTruncated) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  std::ofstream(path("1.1.out")) << "someone else's\n";
  ASSERT_EQ(::chown(path("1.1.out").c_str(), 65534, 65534), 0);
  EXPECT_NE(error_of([&] { open_log_file(path("1.1.out")); }).find("belongs to uid 65534"),
            std::string::npos);
  EXPECT_EQ(slurp(path("1.1.out")), "someone else's\n");
  std::ofstream(path("1.2.out")) << "old attempt\n";
  EXPECT_EQ(error_of([&] { open_log_file(path("1.2.out")); }), "");
  EXPECT_EQ(slurp(path("1.2.out")), "");  // our own: emptied for the new attempt
}

TEST_F(FilesTest, LogsDirectoryOthersCanWriteIntoIsRefused) {
  fs::create_directory(path("own"));
  ::chmod(path("own").c_str(), 0755);
  EXPECT_EQ(error_of([&] { check_logs_dir(path("own")); }), "");
  fs::create_directory(path("group"));
  ::chmod(path("group").c_str(), 0775);
  EXPECT_NE(error_of([&] { check_logs_dir(path("group")); }).find("is writable by its group"),
            std::string::npos);
  fs::create_directory(path("all"));
  ::chmod(path("all").c_str(), 01777);
  EXPECT_NE(error_of([&] { check_logs_dir(path("all")); }).find("is writable by every user"),
            std::string::npos);
  fs::create_directory_symlink(path("own"), path("link"));
  EXPECT_NE(error_of([&] { check_logs_dir(path("link")); }).find("is a symbolic link"),
            std::string::npos);
  if (::geteuid() == 0) {
    fs::create_directory(path("theirs"));
    ::chmod(path("theirs").c_str(), 0755);
    ASSERT_EQ(::chown(path("theirs").c_str(), 65534, 65534), 0);
    EXPECT_NE(error_of([&] { check_logs_dir(path("theirs")); }).find("belongs to uid 65534"),
              std::string::npos);
  }
}

// A second writer (here another process: record locks are per process) is refused, and the
// message names the process holding the file.
TEST_F(FilesTest, AResultsFileInUseIsRefusedNamingItsHolder) {
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const std::string results = path("r.jsonl");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    AppendFile holder = AppendFile::open(results);
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(done[0], &c, 1);  // until the parent has tried
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const std::string message = error_of([&] { AppendFile::open(results); });
  (void)!::write(done[1], &c, 1);
  int status = 0;
  ::waitpid(child, &status, 0);
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
  EXPECT_NE(message.find("'" + results + "' is in use: process " + std::to_string(child)),
            std::string::npos)
      << message;
  EXPECT_EQ(error_of([&] { AppendFile::open(results); }), "");  // free again once it is gone
}

TEST_F(FilesTest, AnUnusableResultPathIsFoundBeforeTheTaskRuns) {
  fs::create_directory(path("dir"));
  const std::pair<std::string, std::string> cases[] = {
      {path("dir"), "is a directory"},
      {"/dev/full", "is a character device"},
      {path("missing/result.json"), "No such file or directory"},
  };
  for (const auto& [file, message] : cases) {
    EXPECT_NE(error_of([&] { RecordWriter::replace(file); }).find(message), std::string::npos)
        << file;
  }
}

TEST_F(FilesTest, AResultFileCreatedButNeverWrittenIsRemoved) {
  { RecordWriter writer = RecordWriter::replace(path("result.json")); }
  EXPECT_FALSE(fs::exists(path("result.json")));
  std::ofstream(path("old.json")) << "{}\n";
  { RecordWriter writer = RecordWriter::replace(path("old.json")); }
  EXPECT_EQ(slurp(path("old.json")), "{}\n");  // not ours to remove, and not emptied
  Result r;
  r.status = Status::ok;
  { RecordWriter::replace(path("old.json")).write(r); }
  EXPECT_EQ(slurp(path("old.json")), dump_result_line(r) + "\n");
}

}  // namespace
}  // namespace pollkill
