/* Test workload: cycles through a file-backed working set, so that a memory limit below it
 * makes the task thrash (its page cache is reclaimed and read back on every pass: the cgroup's
 * memory.pressure "full" grows) while a working set that fits is read once and then stays.
 *
 * Usage: pk_thrash FILE MIB [SECONDS]
 *   Maps the first MIB MiB of FILE read-only (created with that size when it does not exist;
 *   an existing file is never written, and must be at least that long) and touches one byte of
 *   every page, pass after pass, for SECONDS (default: forever). Prints "ready" once the file is
 *   mapped and "pass N" after each pass.
 *
 * FILE must live on a file system whose pages can be dropped and read back (a disk, or 9p in
 * the VM), not on tmpfs: tmpfs pages are memory and, without swap, cannot be reclaimed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fill(int fd, off_t size) {
  static char block[1 << 16];
  memset(block, 'x', sizeof block);
  for (off_t at = 0; at < size; at += (off_t)sizeof block) {
    if (pwrite(fd, block, sizeof block, at) != (ssize_t)sizeof block) return -1;
  }
  return fsync(fd);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pk_thrash FILE MIB [SECONDS]\n");
    return 2;
  }
  const char* path = argv[1];
  const off_t size = (off_t)strtol(argv[2], NULL, 10) << 20;
  const double seconds = argc > 3 ? strtod(argv[3], NULL) : 0;
  if (size <= 0) {
    fprintf(stderr, "pk_thrash: MIB must be positive\n");
    return 2;
  }
  struct stat st;
  if (stat(path, &st) == 0) {
    if (st.st_size < size) {
      fprintf(stderr, "pk_thrash: %s is shorter than %s MiB\n", path, argv[2]);
      return 1;
    }
  } else {
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || fill(fd, size) != 0) {
      fprintf(stderr, "pk_thrash: cannot create %s: %s\n", path, strerror(errno));
      return 1;
    }
    close(fd);
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "pk_thrash: cannot open %s: %s\n", path, strerror(errno));
    return 1;
  }
  volatile const char* map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    fprintf(stderr, "pk_thrash: cannot map %s: %s\n", path, strerror(errno));
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  const long page = sysconf(_SC_PAGESIZE);
  const double start = now_s();
  unsigned long sum = 0;
  for (unsigned long pass = 1;; ++pass) {
    for (off_t at = 0; at < size; at += page) sum += (unsigned char)map[at];
    printf("pass %lu\n", pass);
    fflush(stdout);
    if (seconds > 0 && now_s() - start >= seconds) break;
  }
  return sum == 0 ? 1 : 0;
}
