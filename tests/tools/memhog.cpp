// Test workload: allocates MiB of memory and touches every page, then optionally holds it.
// Usage: pk_memhog MIB [HOLD_SECONDS]   prints "touched N MiB" when done.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: pk_memhog MIB [HOLD_SECONDS]\n");
    return 2;
  }
  const long mib = std::strtol(argv[1], nullptr, 10);
  const long hold = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 0;
  std::vector<char*> chunks;
  for (long i = 0; i < mib; ++i) {
    char* chunk = static_cast<char*>(std::malloc(1 << 20));
    if (!chunk) {
      std::fprintf(stderr, "malloc failed after %ld MiB\n", i);
      return 1;
    }
    std::memset(chunk, static_cast<int>(i), 1 << 20);  // touch every page
    chunks.push_back(chunk);
  }
  std::printf("touched %ld MiB\n", mib);
  std::fflush(stdout);
  if (hold > 0) ::sleep(static_cast<unsigned>(hold));
  return 0;
}
