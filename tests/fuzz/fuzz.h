// fuzz.h: what the libFuzzer targets share. Readers that take a path get
// the input through a memory file (memfd) named by /proc/self/fd/N, so no
// run touches the disk; every failure must come with a message.
#ifndef NNC_FUZZ_H
#define NNC_FUZZ_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data.h"

// The input as a file: its path, the same memory file each run.
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("fuzz-input", 0);
    if (fd < 0) {
      perror("memfd_create");
      abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
    perror("fuzz-input");
    abort();
  }
  return path;
}

// A reader that failed must say why.
static inline void fuzz_check_message(bool ok, const char *err, const char *what) {
  if (!ok && !err[0]) {
    fprintf(stderr, "%s failed without a message\n", what);
    abort();
  }
}

#endif
