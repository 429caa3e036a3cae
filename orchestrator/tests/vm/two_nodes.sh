#!/usr/bin/env bash
# The libvirt backend end to end, run by orchestrator/tests/libvirt_vm.rs inside a network and
# mount namespace of its own (`unshare -n -m --propagation private`): nothing it starts can
# reach, or be reached from, any other network, and the host's libvirt (if any) is untouched.
#
#   FAME=.../fame WORK=/tmp/dir two_nodes.sh
#
# Starts virtlogd and libvirtd in the namespace, brings up a 2-node VM cluster under TCG, writes
# on node01 and verifies on node02 through /lfs, stores through a direct map of the ivshmem BAR
# on node01 and loads them on node02, checks exec's exit status, then `fame down` and that
# nothing is left (no domain, no network, no QEMU, no cluster files). Prints "VM-TEST-OK" at the
# end; any failure exits non-zero after cleaning up.
set -euo pipefail
: "${FAME:?}" "${WORK:?}"
export FAME_HOME="$WORK/home"
export FAME_BIN_DIR="${FAME_BIN_DIR:-$(dirname "$FAME")}"
mkdir -p "$FAME_HOME" "$WORK/run"

step() { echo "== $(date +%T) $*"; }

cleanup() {
  rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    echo "-- failed ($rc); state for diagnosis:"
    for f in "$FAME_HOME"/vmtest/nodes/*/console.log "$FAME_HOME"/vmtest/logs/*.log; do
      [ -f "$f" ] && { echo "---- $f"; tail -n 30 "$f"; }
    done
  fi
  "$FAME" down vmtest >/dev/null 2>&1
  for d in $(virsh -q -c qemu:///system list --name 2>/dev/null); do
    virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1
  done
  for n in $(virsh -q -c qemu:///system net-list --name 2>/dev/null); do
    virsh -q -c qemu:///system net-destroy "$n" >/dev/null 2>&1
  done
  [ -f "$WORK/run/libvirtd.pid" ] && kill "$(cat "$WORK/run/libvirtd.pid")" 2>/dev/null
  [ -f "$WORK/run/virtlogd.pid" ] && kill "$(cat "$WORK/run/virtlogd.pid")" 2>/dev/null
  sleep 0.5
  # QEMU outlives libvirtd: any QEMU it left (pid files in our private /run/libvirt) goes now.
  for p in /run/libvirt/qemu/fame-*.pid; do
    [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
  done
  exit $rc
}
trap cleanup EXIT

step "namespace: lo up, private /run/libvirt, virtlogd and libvirtd"
ip link set lo up
mount -t tmpfs tmpfs /run/libvirt 2>/dev/null || { mkdir -p /run/libvirt && mount -t tmpfs tmpfs /run/libvirt; }
virtlogd -d -p "$WORK/run/virtlogd.pid"
libvirtd -d -p "$WORK/run/libvirtd.pid"
for _ in $(seq 1 100); do
  virsh -q -c qemu:///system version >/dev/null 2>&1 && break
  sleep 0.1
done
virsh -q -c qemu:///system version >/dev/null

step "a bad --subnet is refused before anything is made"
if "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --subnet 10.1.2.3/24 2>"$WORK/err"; then
  echo "fame up accepted --subnet 10.1.2.3/24"; exit 1
fi
grep -q -- "--subnet 10.1.2.3/24: host bits are set" "$WORK/err" || { cat "$WORK/err"; exit 1; }
[ ! -e "$FAME_HOME/vmtest" ] || { echo "a refused fame up left $FAME_HOME/vmtest"; exit 1; }

# Missing parts: each is one clear error with the fix, and nothing is left behind.
refused() { # WHAT EXPECTED-TEXT -- fame up arguments...
  local what=$1 want=$2; shift 3
  if "$@" 2>"$WORK/err"; then echo "fame up accepted $what"; exit 1; fi
  grep -q -- "$want" "$WORK/err" || { echo "$what: unexpected error:"; cat "$WORK/err"; exit 1; }
  [ ! -e "$FAME_HOME/vmtest" ] || { echo "a refused fame up ($what) left $FAME_HOME/vmtest"; exit 1; }
  case "$(virsh -q -c qemu:///system net-list --all --name)" in *fame-*) echo "$what left a network"; exit 1 ;; esac
}
step "libvirtd unreachable, no guest kernel, not enough memory: refused with the fix"
refused "an unreachable libvirtd" "libvirtd -d" -- \
  env FAME_LIBVIRT_URI='qemu:///system?socket=/nonexistent/libvirt-sock' \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg
mount -t tmpfs tmpfs /boot   # private to this mount namespace: the host's /boot is untouched
refused "a host without the cloud kernel" "apt-get install linux-image-cloud-amd64" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg
umount /boot
refused "VMs bigger than the host's memory" "use fewer --nodes or a smaller --memory" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 4 --fam 1G --accel tcg --memory 16G

step "--accel kvm where KVM cannot work: refused with the fix"
# KVM forced where it cannot work: /dev/null over /dev/kvm (in this mount namespace only) makes
# the probe guest fail on any host, with or without working KVM.
mount --bind /dev/null /dev/kvm 2>/dev/null || { [ -e /dev/kvm ] || touch /dev/kvm; mount --bind /dev/null /dev/kvm; }
refused "--accel kvm without a usable KVM" "use --accel tcg or --accel auto" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel kvm
umount /dev/kvm
case "$(virsh -q -c qemu:///system list --all --name)" in *fame-*) echo "the KVM probe left a domain"; exit 1 ;; esac

step "fame up --backend libvirt --nodes 2 --fam 1G --accel tcg"
"$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --timeout 120
doms=$(virsh -q -c qemu:///system list --name)
nets=$(virsh -q -c qemu:///system net-list --name)
case "$doms" in *fame-vmtest-node01*) ;; *) echo "no domain fame-vmtest-node01: $doms"; exit 1 ;; esac
case "$nets" in *fame-vmtest*) ;; *) echo "no network fame-vmtest: $nets"; exit 1 ;; esac
"$FAME" status vmtest

step "exec passes output and exit status through"
[ "$("$FAME" exec --name vmtest node02 -- hostname)" = node02 ]
set +e
"$FAME" exec --name vmtest node01 -- sh -c 'echo to-stderr >&2; exit 7' 2>"$WORK/err"
rc=$?
set -e
[ $rc -eq 7 ] || { echo "exit status $rc, not 7"; exit 1; }
grep -q to-stderr "$WORK/err"
[ "$(echo stdin-works | "$FAME" exec --name vmtest node01 -- cat)" = stdin-works ]

step "the Librarian listens on torms only; nodes resolve torms"
"$FAME" exec --name vmtest node01 -- sh -c 'grep -q torms /etc/hosts && ping -c1 -W2 torms >/dev/null'

step "write on node01, verify on node02 through /lfs"
"$FAME" exec --name vmtest node01 -- lfs-node fill /lfs/shared --seed 42 --size 3M
"$FAME" exec --name vmtest node02 -- lfs-node verify /lfs/shared --seed 42
"$FAME" exec --name vmtest node02 -- sh -c 'ls -l /lfs/shared'

step "direct-map stores on node01 (ivshmem BAR), loads on node02"
"$FAME" exec --name vmtest node01 -- sh -c 'cat /sys/bus/pci/devices/0000:00:10.0/vendor /sys/bus/pci/devices/0000:00:10.0/device'
"$FAME" exec --name vmtest node01 -- lfs-node fill /lfs/direct --seed 7 --size 2M --direct
"$FAME" exec --name vmtest node02 -- lfs-node verify /lfs/direct --seed 7 --direct
"$FAME" exec --name vmtest node02 -- lfs-node verify /lfs/direct --seed 7
if "$FAME" exec --name vmtest node02 -- lfs-node verify /lfs/direct --seed 8 --direct 2>/dev/null; then
  echo "verify with the wrong seed passed"; exit 1
fi

step "a second VM cluster at once: its own network, its own LFS"
"$FAME" up --name vmtwo --backend libvirt --nodes 1 --fam 1G --accel tcg --timeout 120
case "$("$FAME" ls)" in *vmtest*vmtwo*|*vmtwo*vmtest*) ;; *) "$FAME" ls; echo "fame ls does not list both"; exit 1 ;; esac
case "$(virsh -q -c qemu:///system net-list --name)" in *fame-vmtwo*) ;; *) echo "no network fame-vmtwo"; exit 1 ;; esac
[ "$("$FAME" exec --name vmtwo node01 -- hostname)" = node01 ]
if "$FAME" exec --name vmtwo node01 -- test -e /lfs/shared; then echo "vmtwo sees vmtest's file"; exit 1; fi
"$FAME" exec --name vmtwo node01 -- lfs-node fill /lfs/two --seed 5 --size 1M
"$FAME" down vmtwo
case "$(virsh -q -c qemu:///system list --all --name)" in *fame-vmtwo*) echo "vmtwo left a domain"; exit 1 ;; esac
"$FAME" exec --name vmtest node02 -- lfs-node verify /lfs/shared --seed 42

step "logs include the console logs"
case "$("$FAME" logs vmtest)" in *node02/console.log*) ;; *) echo "fame logs does not list the console logs"; exit 1 ;; esac
grep -q "fame-init" "$FAME_HOME/vmtest/nodes/node01/console.log"

step "fame down leaves nothing"
"$FAME" down vmtest
# (libvirt-daemon-system's own inactive network "default" does not count.)
case "$(virsh -q -c qemu:///system list --all --name)" in *fame-*) virsh -c qemu:///system list --all; exit 1 ;; esac
case "$(virsh -q -c qemu:///system net-list --all --name)" in *fame-*) virsh -c qemu:///system net-list --all; exit 1 ;; esac
for p in /run/libvirt/qemu/fame-*.pid; do
  [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null && { echo "QEMU process $(cat "$p") left"; exit 1; }
done
if ps -eo args | grep -q "^[q]emu-system-x86_64 -name guest=fame-vmtest-"; then echo "QEMU processes left"; exit 1; fi
if ip link show br_vmtest >/dev/null 2>&1; then echo "bridge br_vmtest left"; exit 1; fi
[ ! -e "$FAME_HOME/vmtest" ] || { echo "$FAME_HOME/vmtest left"; exit 1; }
ls /var/log/libvirt/qemu/fame-vmtest-* >/dev/null 2>&1 && { echo "QEMU logs left"; exit 1; }

step "scenarios on VM nodes: the smoke test (busybox and util-linux tools in the guest) and pause and resume through libvirt"
scenarios="$(cd "$(dirname "$0")/../../../scenarios" && pwd)"
"$FAME" scenario run --backend libvirt "$scenarios/01-smoke.toml" "$scenarios/13-pause-resume.toml" --junit "$WORK/vm-junit.xml"
# Both scenarios ran and none of their steps failed.
if grep -q 'failures="[1-9]' "$WORK/vm-junit.xml" || ! grep -q 'testsuite name="smoke"' "$WORK/vm-junit.xml" \
    || ! grep -q 'testsuite name="pause-resume"' "$WORK/vm-junit.xml"; then
  cat "$WORK/vm-junit.xml"; exit 1
fi
case "$(virsh -q -c qemu:///system list --all --name)" in *fame-*) echo "the scenario left a domain"; exit 1 ;; esac

echo VM-TEST-OK
