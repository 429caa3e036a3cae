/*
 * lfs_direct.h: map an LFS file's books straight from fabric-attached memory.
 *
 * The file must live on an lfs-node mount (e.g. /lfs). The returned range is one contiguous
 * mapping of the file's books in the FAM device: loads and stores go to FAM with no daemon in
 * the path, and every node sharing that FAM sees them at once. The map is a snapshot of the
 * file's book list (growing the file later does not extend it). While mapped, the file stays
 * open, so it cannot be unlinked, nor shrunk by another node.
 *
 * Link with -llfs_direct (liblfs_direct.so or liblfs_direct.a + -lpthread -ldl -lm).
 */
#ifndef LFS_DIRECT_H
#define LFS_DIRECT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct LfsMap lfs_map;

/* Flag for lfs_map_open: map read-only. */
#define LFS_MAP_READONLY 1

/* Maps `path`, growing it to at least `min_size` bytes first (0: leave the size alone); a
 * writable map with min_size > 0 creates the file if it is missing.
 * Returns NULL with errno set on failure; lfs_last_error() says why. */
lfs_map *lfs_map_open(const char *path, uint64_t min_size, int flags);

/* Address of file byte 0. */
void *lfs_map_addr(const lfs_map *map);

/* File size when mapped, and bytes actually mapped (whole books). */
uint64_t lfs_map_size(const lfs_map *map);
uint64_t lfs_map_mapped_size(const lfs_map *map);
uint64_t lfs_map_book_size(const lfs_map *map);

/* Unmaps and closes the file. Returns 0. */
int lfs_map_close(lfs_map *map);

/* Message of the last failure on this thread. */
const char *lfs_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* LFS_DIRECT_H */
