/* An unmodified program that shares memory through plain mmap(2) of a file: what FAM software
 * does with an /lfs file. Used by tests/tests/lfs_mmap.rs, with and without liblfs_preload.so.
 *
 *   plain_mmap add PATH N [READY GO]
 *                                 N atomic increments of the u64 at offset 0 (MAP_SHARED); with
 *                                 READY and GO: maps and reads the counter, creates the file READY,
 *                                 and starts only once the file GO exists (so that every process
 *                                 has the page before any of them writes)
 *   plain_mmap store PATH OFF V [HOLD]
 *                                 stores V (u64) at OFF, no msync; with HOLD: prints "stored" and
 *                                 keeps the map (and the file) until the file HOLD exists
 *   plain_mmap load PATH OFF      prints the u64 at OFF
 *   plain_mmap private PATH       a MAP_PRIVATE store is not seen by a MAP_SHARED map
 *   plain_mmap past PATH LEN OFF  maps LEN bytes, touches OFF: prints "ok" or "SIGBUS"
 *   plain_mmap maps PATH          prints what backs a MAP_SHARED map of PATH (/proc/self/maps)
 *   plain_mmap fork PATH          a child's store (and munmap) through an inherited MAP_SHARED map is
 *                                 seen by the parent; a map of a read-only descriptor cannot be made
 *                                 writable (mprotect: EACCES); prints "fork-ok"
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void *map(const char *path, size_t len, int prot, int flags) {
  int fd = open(path, O_RDWR);
  if (fd < 0) { perror(path); exit(2); }
  void *p = mmap(NULL, len, prot, flags, fd, 0);
  if (p == MAP_FAILED) { perror("mmap"); exit(2); }
  close(fd); /* the map must outlive the descriptor, as with the kernel */
  return p;
}

static void wait_for(const char *path) {
  while (access(path, F_OK) != 0) usleep(1000);
}

static sigjmp_buf jump;
static void on_bus(int sig) { (void)sig; siglongjmp(jump, 1); }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: see the header\n"); return 2; }
  const char *cmd = argv[1], *path = argv[2];
  long page = sysconf(_SC_PAGESIZE);
  if (!strcmp(cmd, "add") && (argc == 4 || argc == 6)) {
    uint64_t *c = map(path, page, PROT_READ | PROT_WRITE, MAP_SHARED);
    long n = atol(argv[3]);
    if (argc == 6) {
      volatile uint64_t seen = *c;
      (void)seen;
      close(open(argv[4], O_CREAT | O_WRONLY, 0644));
      wait_for(argv[5]);
    }
    for (long i = 0; i < n; i++) __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
    printf("%llu\n", (unsigned long long)__atomic_load_n(c, __ATOMIC_SEQ_CST));
    return munmap(c, page) != 0;
  }
  if (!strcmp(cmd, "store") && (argc == 5 || argc == 6)) {
    long off = atol(argv[3]);
    uint64_t *p = map(path, off + 8, PROT_READ | PROT_WRITE, MAP_SHARED);
    __atomic_store_n((uint64_t *)((char *)p + off), strtoull(argv[4], NULL, 0), __ATOMIC_SEQ_CST);
    if (argc == 6) {
      printf("stored\n");
      fflush(stdout);
      wait_for(argv[5]); /* no msync, no munmap, no exit: only FAM can carry the store */
    }
    return 0;
  }
  if (!strcmp(cmd, "load") && argc == 4) {
    long off = atol(argv[3]);
    uint64_t *p = map(path, off + 8, PROT_READ, MAP_SHARED);
    printf("%llu\n", (unsigned long long)__atomic_load_n((uint64_t *)((char *)p + off), __ATOMIC_SEQ_CST));
    return 0;
  }
  if (!strcmp(cmd, "private")) {
    volatile char *priv = map(path, page, PROT_READ | PROT_WRITE, MAP_PRIVATE);
    volatile char *shared = map(path, page, PROT_READ, MAP_SHARED);
    char before = shared[0];
    priv[0] = before + 1;
    if (shared[0] != before || priv[0] != (char)(before + 1)) { printf("private store leaked\n"); return 1; }
    printf("private-ok\n");
    return 0;
  }
  if (!strcmp(cmd, "past") && argc == 5) {
    size_t len = strtoull(argv[3], NULL, 0), off = strtoull(argv[4], NULL, 0);
    volatile char *p = map(path, len, PROT_READ | PROT_WRITE, MAP_SHARED);
    signal(SIGBUS, on_bus);
    if (sigsetjmp(jump, 1)) { printf("SIGBUS\n"); return 0; }
    p[off] = 1;
    printf("ok\n");
    return 0;
  }
  if (!strcmp(cmd, "maps")) {
    char *p = map(path, page, PROT_READ, MAP_SHARED);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
      unsigned long lo, hi;
      if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= (unsigned long)p && (unsigned long)p < hi) {
        char *name = strchr(line, '/');
        printf("%s", name ? name : "(anonymous)\n");
      }
    }
    return 0;
  }
  if (!strcmp(cmd, "fork")) {
    volatile uint64_t *p = map(path, page, PROT_READ | PROT_WRITE, MAP_SHARED);
    p[0] = 1;
    pid_t child = fork();
    if (child == 0) {
      p[0] = 99;
      munmap((void *)p, page);
      _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || p[0] != 99) { printf("the child's store was not seen: %llu\n", (unsigned long long)p[0]); return 1; }
    int fd = open(path, O_RDONLY);
    void *ro = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
    if (ro == MAP_FAILED) { perror("mmap read-only"); return 1; }
    if (mprotect(ro, page, PROT_READ | PROT_WRITE) == 0 || errno != EACCES) { printf("a read-only map became writable\n"); return 1; }
    printf("fork-ok\n");
    return 0;
  }
  fprintf(stderr, "usage: see the header\n");
  return 2;
}
