/* Benchmarks of plain mmap of LFS files (BENCHMARKS.md, tests/bench/mmap.sh):
 *
 *   mmap_bench memcpy LFSFILE FAMFILE MIB ROUNDS
 *       memcpy of MIB MiB into a plain MAP_SHARED map of LFSFILE and into a map of the FAM file
 *       itself (its first MIB MiB), ROUNDS times each, alternating; prints the median GiB/s of
 *       both and their ratio
 *   mmap_bench mapcost FILE N     N mmap+munmap pairs of the whole FILE: median microseconds
 *   mmap_bench spawn N PROG...    N runs of PROG (posix_spawn + wait): median microseconds
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, n, sizeof *v, cmp);
  return v[n / 2];
}

static char *map(const char *path, size_t len) {
  int fd = open(path, O_RDWR);
  if (fd < 0) { perror(path); exit(2); }
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) { perror("mmap"); exit(2); }
  close(fd);
  return p;
}

int main(int argc, char **argv) {
  if (argc >= 6 && !strcmp(argv[1], "memcpy")) {
    size_t len = (size_t)atol(argv[4]) << 20;
    int rounds = atoi(argv[5]);
    char *lfs = map(argv[2], len), *fam = map(argv[3], len);
    char *src = malloc(len);
    for (size_t i = 0; i < len; i++) src[i] = (char)(i * 131);
    double *a = calloc(rounds, sizeof *a), *b = calloc(rounds, sizeof *b);
    memcpy(lfs, src, len); /* fault both in first */
    memcpy(fam, src, len);
    for (int r = 0; r < rounds; r++) {
      double t = now();
      memcpy(lfs, src, len);
      a[r] = len / (now() - t) / (1 << 30);
      t = now();
      memcpy(fam, src, len);
      b[r] = len / (now() - t) / (1 << 30);
    }
    double ma = median(a, rounds), mb = median(b, rounds);
    printf("memcpy %zu MiB: lfs map %.2f GiB/s, fam map %.2f GiB/s, ratio %.3f\n", len >> 20, ma, mb, ma / mb);
    return 0;
  }
  if (argc == 4 && !strcmp(argv[1], "mapcost")) {
    int n = atoi(argv[3]);
    int fd = open(argv[2], O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[2]); return 2; }
    double *v = calloc(n, sizeof *v);
    for (int i = 0; i < n; i++) {
      double t = now();
      void *p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) { perror("mmap"); return 2; }
      munmap(p, st.st_size);
      v[i] = (now() - t) * 1e6;
    }
    printf("mmap+munmap of %lld MiB: %.1f us (median of %d)\n", (long long)st.st_size >> 20, median(v, n), n);
    return 0;
  }
  if (argc >= 4 && !strcmp(argv[1], "spawn")) {
    int n = atoi(argv[2]);
    double *v = calloc(n, sizeof *v);
    for (int i = 0; i < n; i++) {
      pid_t pid;
      double t = now();
      if (posix_spawn(&pid, argv[3], NULL, NULL, argv + 3, environ) != 0) { perror("spawn"); return 2; }
      int status;
      waitpid(pid, &status, 0);
      v[i] = (now() - t) * 1e6;
    }
    printf("spawn %s: %.0f us (median of %d)\n", argv[3], median(v, n), n);
    return 0;
  }
  fprintf(stderr, "usage: see the header\n");
  return 2;
}
