#!/usr/bin/env bash
# The Librarian's benchmarks, as recorded in BENCHMARKS.md. Run from the repository root:
#   cargo build --release --workspace --bins && bash librarian/bench/run.sh
# Each figure is the median of three runs of 5 s; the machine should be otherwise idle.
set -euo pipefail
B=${BIN_DIR:-target/release}
here=$(dirname "$0")
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # CONFIG CLIENTS -> "ops_per_sec p99_ms rss_kib" (median by ops/s)
  for i in 1 2 3; do
    "$B/lfs-bench" --spawn "$1" --clients "$2" --seconds 5 --json
  done | python3 -c '
import json, sys
rows = sorted((json.loads(l) for l in sys.stdin), key=lambda r: r["ops_per_sec"])
m = rows[len(rows) // 2]
print("%.0f %.3f %d" % (m["ops_per_sec"], m["p99_ms"], m["server_peak_rss_kib"]))'
}
echo "pool          clients  ops/s   p99_ms  server_peak_rss_KiB"
for cfg in pool_4096 pool_80x8192; do
  for c in 1 16; do
    echo "$cfg $c $(run "$here/$cfg.ini" "$c")"
  done
done
echo
echo "book-register of 80 x 8192 books (median of 3):"
tmp=$(mktemp -d)
for i in 1 2 3; do
  python3 -c 'import subprocess, sys, time
t = time.monotonic(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print("%.3f" % (time.monotonic() - t))' "$B/book-register" -d "$tmp/l$i.db" "$here/pool_80x8192.ini"
done | median
rm -rf "$tmp"
echo
echo "LMP under the 16-client metadata load (500 one-book shelves), unthrottled and at 20 req/s"
echo "(baseline and loaded phases alternate 3 times; medians):"
"$B/lfs-bench" --spawn "$here/pool_4096.ini" --clients 16 --seconds 4 --prefill 500 --lmp --http-clients 2
"$B/lfs-bench" --spawn "$here/pool_4096.ini" --clients 16 --seconds 4 --prefill 500 --lmp --http-clients 2 --http-rate 20
