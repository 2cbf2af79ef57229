/* Test workload: gets stuck in a named function, so that evidence capture can be checked for
 * naming it. Built with -O0 -g (tests/CMakeLists.txt) so that every function keeps its frame
 * and its line numbers.
 *
 * Usage: pk_stuck MODE [N]
 *   hang       the main thread blocks in stuck_in_read() (a read of a pipe nobody writes)
 *   spin       the main thread burns CPU in spin_here()
 *   threads N  N threads "idle-K" sleep in idle_worker(), one thread "stuck-one" blocks in
 *              stuck_in_read(), the main thread waits for them in wait_for_threads()
 *   spinner N  N threads "idle-K" sleep in idle_worker(), one thread "spinner" burns CPU in
 *              spin_here(), the main thread waits for them in wait_for_threads()
 *   setsid     forks a child that calls setsid() and blocks in stuck_in_read(); the parent
 *              waits for it in wait_for_child()
 *   write      burns CPU in write_forever(), writing a byte to stdout every millisecond
 * Prints "ready" on stdout (and flushes) once every thread is in place.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long counter;
static pthread_barrier_t ready;

__attribute__((noinline)) static void say_ready(void) {
  printf("ready\n");
  fflush(stdout);
}

__attribute__((noinline)) void stuck_in_read(void) {
  int fds[2];
  char byte;
  if (pipe(fds) != 0) abort();
  /* The write end stays open, so this read never returns. */
  while (read(fds[0], &byte, 1) != 0) {
  }
  abort();
}

__attribute__((noinline)) void spin_here(void) {
  for (;;) ++counter;
}

__attribute__((noinline)) void idle_worker(void) {
  for (;;) sleep(1000);
}

__attribute__((noinline)) void write_forever(void) {
  for (;;) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
      ++counter;
      clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 1000000L);
    if (write(1, ".", 1) != 1) abort();
  }
}

struct worker {
  pthread_t thread;
  char name[16];
  void (*body)(void);
};

static void* run_worker(void* arg) {
  struct worker* w = arg;
  pthread_setname_np(pthread_self(), w->name);
  pthread_barrier_wait(&ready);
  w->body();
  return NULL;
}

__attribute__((noinline)) static void wait_for_threads(struct worker* workers, int count) {
  for (int i = 0; i < count; ++i) pthread_join(workers[i].thread, NULL);
}

__attribute__((noinline)) static void wait_for_child(pid_t child) {
  int status;
  while (waitpid(child, &status, 0) != child) {
  }
}

static int run_threads(int idle, const char* name, void (*body)(void)) {
  int count = idle + 1;
  struct worker* workers = calloc((size_t)count, sizeof *workers);
  if (!workers) abort();
  pthread_barrier_init(&ready, NULL, (unsigned)count + 1);
  for (int i = 0; i < count; ++i) {
    if (i < idle) {
      snprintf(workers[i].name, sizeof workers[i].name, "idle-%d", i);
      workers[i].body = idle_worker;
    } else {
      snprintf(workers[i].name, sizeof workers[i].name, "%s", name);
      workers[i].body = body;
    }
    if (pthread_create(&workers[i].thread, NULL, run_worker, &workers[i]) != 0) abort();
  }
  pthread_barrier_wait(&ready);
  say_ready();
  wait_for_threads(workers, count);
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  const int n = argc > 2 ? atoi(argv[2]) : 3;
  if (strcmp(mode, "hang") == 0) {
    say_ready();
    stuck_in_read();
  } else if (strcmp(mode, "spin") == 0) {
    say_ready();
    spin_here();
  } else if (strcmp(mode, "threads") == 0) {
    return run_threads(n, "stuck-one", stuck_in_read);
  } else if (strcmp(mode, "spinner") == 0) {
    return run_threads(n, "spinner", spin_here);
  } else if (strcmp(mode, "setsid") == 0) {
    int report[2];
    if (pipe(report) != 0) abort();
    pid_t child = fork();
    if (child < 0) abort();
    if (child == 0) {
      close(report[0]);
      if (setsid() < 0) abort();
      close(report[1]); /* tells the parent the child is in its own session */
      stuck_in_read();
    }
    close(report[1]);
    char byte;
    while (read(report[0], &byte, 1) > 0) {
    }
    say_ready();
    wait_for_child(child);
  } else if (strcmp(mode, "write") == 0) {
    say_ready();
    write_forever();
  } else {
    fprintf(stderr, "usage: pk_stuck hang|spin|threads N|spinner N|setsid|write\n");
    return 2;
  }
  return 0;
}
