// libFuzzer target: the results reader of --resume (JSON Lines, torn lines, hostile field
// types and values). It reads a file: each input is written to one temporary file first.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "pollkill/diag.h"
#include "pollkill/error.h"
#include "pollkill/results.h"

namespace {
std::string path;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pollkill::diag::set_level(pollkill::diag::Level::quiet);
  const char* tmp = getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/pollkill-fuzz-results-XXXXXX";
  int fd = mkstemp(pattern.data());
  if (fd < 0) abort();
  close(fd);
  path = pattern;
  atexit([] { unlink(path.c_str()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) abort();
  for (std::size_t done = 0; done < size;) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) abort();
    done += static_cast<std::size_t>(n);
  }
  close(fd);
  try {
    (void)pollkill::read_results(path);
  } catch (const pollkill::Error&) {
  }
  return 0;
}
