/*
 * hello_fabric.c: in the spirit of FAME's hello_fabric, store this node's uname straight into
 * fabric-attached memory through a direct map of an LFS file, then print what is there.
 *
 *   hello_fabric write /lfs/hello     # on one node: uname() lands in FAM
 *   hello_fabric read  /lfs/hello     # on any node: prints the stored uname
 *
 * Build: cc -I include examples/hello_fabric.c -L <dir of liblfs_direct.so> -llfs_direct
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "lfs_direct.h"

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "write") && strcmp(argv[1], "read"))) {
        fprintf(stderr, "usage: %s write|read FILE-ON-LFS\n", argv[0]);
        return 2;
    }
    int writing = !strcmp(argv[1], "write");
    lfs_map *map = lfs_map_open(argv[2], writing ? sizeof(struct utsname) : 0,
                                writing ? 0 : LFS_MAP_READONLY);
    if (!map) {
        fprintf(stderr, "hello_fabric: %s (errno %d)\n", lfs_last_error(), errno);
        return 1;
    }
    struct utsname *u = lfs_map_addr(map);
    if (lfs_map_size(map) < sizeof(*u)) {
        fprintf(stderr, "hello_fabric: %s is too small; run 'write' first\n", argv[2]);
        lfs_map_close(map);
        return 1;
    }
    if (writing && uname(u) != 0) {
        perror("uname");
        lfs_map_close(map);
        return 1;
    }
    printf("%s %s %s %s %s\n", u->sysname, u->nodename, u->release, u->version, u->machine);
    lfs_map_close(map);
    return 0;
}
