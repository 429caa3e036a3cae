#!/usr/bin/env bash
# Benchmark of the libvirt backend (BENCHMARKS.md): run as
#   unshare -n -m --propagation private env FAME=$CARGO_TARGET_DIR/debug/fame WORK=$(mktemp -d) bash orchestrator/tests/vm/bench.sh
set -euo pipefail
FAME=${FAME:?}; WORK=${WORK:?}
export FAME_HOME=$WORK/home FAME_BIN_DIR=$(dirname "$FAME")
mkdir -p "$FAME_HOME" "$WORK/run"
cleanup() { set +e; "$FAME" down bench >/dev/null 2>&1; kill $(cat "$WORK/run/libvirtd.pid") $(cat "$WORK/run/virtlogd.pid") 2>/dev/null; sleep 0.5; for p in /run/libvirt/qemu/fame-*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")"; done; true; }
trap cleanup EXIT
ip link set lo up; mount -t tmpfs tmpfs /run/libvirt
virtlogd -d -p "$WORK/run/virtlogd.pid"; libvirtd -d -p "$WORK/run/libvirtd.pid"
for _ in $(seq 100); do virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
echo "== cold image build (empty FAME_HOME cache) + accel auto probe"
"$FAME" up --name bench --backend libvirt --nodes 4 --fam 4G --accel auto 2>&1 | grep -E "^\[|libvirt:|ready in"
python3 -c "import json;print(json.load(open('$FAME_HOME/bench/nodes/libvirt.json'))['timings'])"
echo "== host memory per VM (RSS of each QEMU, KiB)"
for p in /run/libvirt/qemu/fame-*.pid; do echo "$(basename $p .pid) $(awk '/VmRSS/{print $2}' /proc/$(cat $p)/status)"; done
s=$(date +%s.%N); "$FAME" down bench; e=$(date +%s.%N); echo "down: $(echo "$e - $s" | bc) s"
for i in 1 2 3; do
  echo "== run $i: image cached"
  "$FAME" up --name bench --backend libvirt --nodes 4 --fam 4G 2>&1 | grep -E "^\[|libvirt:|ready in"
  python3 -c "import json;print(json.load(open('$FAME_HOME/bench/nodes/libvirt.json'))['timings'])"
  for p in /run/libvirt/qemu/fame-*.pid; do echo "$(basename $p .pid) rss_kib=$(awk '/VmRSS/{print $2}' /proc/$(cat $p)/status)"; done
  s=$(date +%s.%N); "$FAME" down bench; e=$(date +%s.%N); echo "down: $(echo "$e - $s" | bc) s"
done
