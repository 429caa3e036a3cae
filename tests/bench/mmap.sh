#!/usr/bin/env bash
# Benchmarks of plain mmap of /lfs files through liblfs_preload.so on process nodes (BENCHMARKS.md):
#   cargo build --release && bash tests/bench/mmap.sh target/release
# Every figure is a median measured in this one run, against a baseline of the same run.
set -euo pipefail
BIN=$(cd "${1:?usage: mmap.sh BIN_DIR}" && pwd)
WORK=$(mktemp -d)
export FAME_HOME=$WORK/home
trap '"$BIN/fame" down bench >/dev/null 2>&1; rm -rf "$WORK"' EXIT
cc -O2 -o "$WORK/mmap_bench" "$(dirname "$0")/../c/mmap_bench.c"
B=$WORK/mmap_bench
"$BIN/fame" up --name bench --nodes 2 --fam 2G --bin-dir "$BIN" >/dev/null
fam=$(readlink -f "$FAME_HOME/bench/fam")
x() { "$BIN/fame" exec --name bench node01 -- "$@"; }
x truncate -s 512M /lfs/big
x truncate -s 512M /lfs/books64
echo "== memcpy into a plain map of an /lfs file (preloaded) against a map of the FAM file itself"
x "$B" memcpy /lfs/big "$fam" 256 9
echo "== start-up cost of the library for a program that never touches /lfs"
x env LFS_MMAP=page-cache LD_PRELOAD= "$B" spawn 2001 /bin/true
x "$B" spawn 2001 /bin/true
echo "== mmap + munmap of a 64-book (512 MiB) file"
x "$B" mapcost /lfs/books64 2001
x env LFS_MMAP=page-cache "$B" mapcost /lfs/books64 2001
