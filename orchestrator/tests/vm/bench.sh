#!/usr/bin/env bash
# Benchmark of the libvirt backend (BENCHMARKS.md), in a network and mount namespace of its own:
#   cargo build --workspace --bins && unshare -n -m --propagation private \
#     env FAME=$PWD/target/debug/fame WORK=$(mktemp -d) bash orchestrator/tests/vm/bench.sh
# Prints, each the median of 3 runs measured in this one run:
#   * `fame up --backend libvirt --nodes 4 --fam 4G` until ready, on the host's root (virtiofs) and on
#     the initramfs, runs interleaved (after one unmeasured warm-up each: image build, accel probe);
#   * `fame exec node01 -- python3 -c pass` (and `true`, the exec round trip alone) against
#     `python3 -c pass` on the host;
#   * a sequential read (dd, 1 MiB blocks) of a 256 MiB file of a --share folder inside node01,
#     against the same read on the host;
#   * the host memory (RSS) of each QEMU;
#   * memcpy into a plain mmap of an /lfs file (liblfs_preload.so) against a map of the ivshmem BAR,
#     in node01 (the start-up cost of the library is measured on process nodes: tests/bench/mmap.sh).
set -euo pipefail
FAME=${FAME:?}; WORK=${WORK:?}
export FAME_HOME=$WORK/home FAME_BIN_DIR=$(dirname "$FAME")
mkdir -p "$FAME_HOME" "$WORK/run" "$WORK/share"
cleanup() { set +e; "$FAME" down bench >/dev/null 2>&1; kill $(cat "$WORK/run/libvirtd.pid") $(cat "$WORK/run/virtlogd.pid") 2>/dev/null; sleep 0.5; for p in /run/libvirt/qemu/fame-*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")"; done; true; }
trap cleanup EXIT
ip link set lo up; mount -t tmpfs tmpfs /run/libvirt
virtlogd -d -p "$WORK/run/virtlogd.pid"; libvirtd -d -p "$WORK/run/libvirtd.pid"
for _ in $(seq 100); do virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done

now() { date +%s.%N; }
median() { sort -g | sed -n 2p; }
secs() { echo "$2 - $1" | bc; }
up() { # ROOT: brings the bench cluster up, prints the seconds until ready
  local s e; s=$(now)
  "$FAME" up --name bench --backend libvirt --nodes 4 --fam 4G --guest-root "$1" --share "$WORK/share" >"$WORK/up.log" 2>&1 \
    || { cat "$WORK/up.log"; exit 1; }
  e=$(now); secs "$s" "$e"
}
rss() { for p in /run/libvirt/qemu/fame-*.pid; do awk '/VmRSS/{print $2}' /proc/$(cat "$p")/status; done | sort -n | tr '\n' ' '; }

echo "== warm-up (image builds, accelerator probe)"
for root in host initramfs; do up $root >/dev/null; grep -E "libvirt:" "$WORK/up.log"; "$FAME" down bench >/dev/null; done
host_t=(); init_t=()
for i in 1 2 3; do
  t=$(up host); echo "run $i host root: ${t} s; QEMU RSS KiB: $(rss)"; host_t+=("$t"); "$FAME" down bench >/dev/null
  t=$(up initramfs); echo "run $i initramfs: ${t} s; QEMU RSS KiB: $(rss)"; init_t+=("$t"); "$FAME" down bench >/dev/null
done
mh=$(printf '%s\n' "${host_t[@]}" | median); mi=$(printf '%s\n' "${init_t[@]}" | median)
echo "up, 4 nodes, median: host root ${mh} s, initramfs ${mi} s, ratio $(echo "scale=2; $mh / $mi" | bc)"

up host >/dev/null
timed() { local s e; s=$(now); "$@" >/dev/null; e=$(now); secs "$s" "$e"; }
py_vm=$(for i in 1 2 3; do timed "$FAME" exec --name bench node01 -- python3 -c pass; done | median)
true_vm=$(for i in 1 2 3; do timed "$FAME" exec --name bench node01 -- true; done | median)
py_host=$(for i in 1 2 3; do timed python3 -c pass; done | median)
echo "exec, median: python3 -c pass in node01 ${py_vm} s (exec of true ${true_vm} s), on the host ${py_host} s, ratio $(echo "scale=1; $py_vm / $py_host" | bc)"

dd if=/dev/urandom of="$WORK/share/big" bs=1M count=256 status=none
ddsecs() { sed -n 's/.* copied, \([0-9.e-]*\) s,.*/\1/p'; }
rd_host=$(for i in 1 2 3; do dd if="$WORK/share/big" of=/dev/null bs=1M 2>&1 | ddsecs; done | median)
rd_vm=$(for i in 1 2 3; do "$FAME" exec --name bench node01 -- dd if="$WORK/share/big" of=/dev/null bs=1M 2>&1 | ddsecs; done | median)
echo "read 256 MiB of a --share, median: in node01 ${rd_vm} s ($(echo "256 / $rd_vm" | bc) MiB/s), on the host ${rd_host} s ($(echo "256 / $rd_host" | bc) MiB/s), ratio $(echo "scale=1; $rd_vm / $rd_host" | bc)"
"$FAME" down bench >/dev/null

echo "== plain mmap of an /lfs file in a VM node (liblfs_preload.so) against a map of the ivshmem BAR itself"
cc -O2 -o "$WORK/mmap_bench" "$(dirname "$0")/../../../tests/c/mmap_bench.c"
up host >/dev/null
"$FAME" exec --name bench node01 -- truncate -s 64M /lfs/big
"$FAME" exec --name bench node01 -- "$WORK/mmap_bench" memcpy /lfs/big /sys/bus/pci/devices/0000:00:10.0/resource2 32 5
"$FAME" down bench >/dev/null
