#!/usr/bin/env bash
# The libvirt backend end to end, run by orchestrator/tests/libvirt_vm.rs inside a network and
# mount namespace of its own (`unshare -n -m --propagation private`): nothing it starts can
# reach, or be reached from, any other network, and the host's libvirt (if any) is untouched.
#
#   FAME=.../fame WORK=/tmp/dir HOSTDIR=/some/dir two_nodes.sh
#
# Starts virtlogd and libvirtd in the namespace; checks that bad input (including a --share or a
# host that virtiofs cannot serve) is refused with the fix and leaves nothing; brings up a 2-node
# VM cluster under TCG on the host's own root file system with a --share folder; runs a C program
# and a Python script made on the host (in HOSTDIR) in both nodes;
# passes a file through the shared folder; checks that nothing a node writes reaches the host or
# the other node; writes on node01 and verifies on node02 through /lfs, stores through a direct
# map of the ivshmem BAR on node01 and loads them on node02; reloads it with binaries from
# another folder; runs a second cluster on the minimal initramfs; kills a `fame up` with SIGKILL
# and cleans up after it; then `fame down` and that nothing is left (no domain, network, QEMU,
# virtiofsd, mount or cluster file); then scenarios on VM nodes (4 nodes adding to one counter through plain mmap among them). Prints "VM-TEST-OK" at the end;
# any failure exits non-zero after cleaning up.
set -euo pipefail
: "${FAME:?}" "${WORK:?}" "${HOSTDIR:?}"
export FAME_HOME="$WORK/home"
export FAME_BIN_DIR="${FAME_BIN_DIR:-$(dirname "$FAME")}"
mkdir -p "$FAME_HOME" "$WORK/run" "$WORK/shared" "$HOSTDIR"

step() { echo "== $(date +%T) $*"; }
# Pids of the virtiofsds of clusters under FAME_HOME (or of cluster $1), found by fame's marker.
virtiofsds() {
  for e in /proc/[0-9]*/environ; do
    if tr '\0' '\n' < "$e" 2>/dev/null | grep -q "^FAME_CLUSTER_DIR=$FAME_HOME/${1:-}" \
        && grep -q virtiofsd "${e%/environ}/cmdline" 2>/dev/null; then
      p=${e%/environ}; echo "${p#/proc/}"
    fi
  done
}
# Fails if anything of cluster $2 is left: domains, networks, bridges, QEMU, virtiofsd, mounts.
nothing_left() { # WHAT CLUSTER
  case "$(virsh -q -c qemu:///system list --all --name)" in *fame-$2-*) echo "$1 left a domain"; exit 1 ;; esac
  case "$(virsh -q -c qemu:///system net-list --all --name)" in *fame-$2*) echo "$1 left a network"; exit 1 ;; esac
  if ip link show "br_$2" >/dev/null 2>&1; then echo "$1 left the bridge br_$2"; exit 1; fi
  if ps -eo args | grep -q "^[q]emu-system-x86_64 -name guest=fame-$2-"; then echo "$1 left QEMU processes"; exit 1; fi
  [ -z "$(virtiofsds "$2")" ] || { echo "$1 left virtiofsd processes"; ps -eo pid,args | grep "[v]irtiofsd"; exit 1; }
  if grep -q " $FAME_HOME/$2" /proc/self/mountinfo; then echo "$1 left a mount under $FAME_HOME/$2"; exit 1; fi
  [ ! -e "$FAME_HOME/$2" ] || { echo "$1 left $FAME_HOME/$2"; exit 1; }
}

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
  for p in $(virtiofsds); do kill -9 "$p" 2>/dev/null; done
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

step "bad --share folders and hosts without virtiofs: refused with the fix"
touch "$WORK/a-file"
refused "a missing --share" "--share $WORK/nope: no such folder" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --share "$WORK/nope"
refused "a --share that is a file" "--share $WORK/a-file: not a folder" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --share "$WORK/a-file"
refused "a --share holding FAME_HOME" "--share $WORK: it holds" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --share "$WORK"
mount -t tmpfs tmpfs /usr/lib/qemu   # this mount namespace only: virtiofsd is gone
refused "a host without virtiofsd" "apt-get install qemu-system-common\`, or use --guest-root initramfs" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg
refused "a --share without virtiofsd" "or drop --share" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --guest-root initramfs --share "$WORK/shared"
umount /usr/lib/qemu
fusedir=$(dirname "$(find /lib/modules/*-cloud-amd64/kernel/fs/fuse -name virtiofs.ko | sort | tail -n 1)")
cp "$fusedir/fuse.ko" "$WORK/fuse.ko"
mount -t tmpfs tmpfs "$fusedir" && cp "$WORK/fuse.ko" "$fusedir/"   # a guest kernel without virtiofs.ko
refused "a guest kernel without virtiofs" "virtiofs.ko is not under" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg
grep -q -- "--guest-root initramfs" "$WORK/err" || { cat "$WORK/err"; exit 1; }
umount "$fusedir"
refused "a host whose root cannot be shared" "cannot be shared read-only" -- \
  setpriv --bounding-set=-sys_admin "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg
refused "--guest-root debian" "--guest-root debian: " -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --guest-root debian

step "--accel kvm where KVM cannot work: refused with the fix"
# KVM forced where it cannot work: /dev/null over /dev/kvm (in this mount namespace only) makes
# the probe guest fail on any host, with or without working KVM.
mount --bind /dev/null /dev/kvm 2>/dev/null || { [ -e /dev/kvm ] || touch /dev/kvm; mount --bind /dev/null /dev/kvm; }
refused "--accel kvm without a usable KVM" "use --accel tcg or --accel auto" -- \
  "$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel kvm
umount /dev/kvm
case "$(virsh -q -c qemu:///system list --all --name)" in *fame-*) echo "the KVM probe left a domain"; exit 1 ;; esac

step "fame up --backend libvirt --nodes 2 --fam 1G --accel tcg --share (on the host's root)"
"$FAME" up --name vmtest --backend libvirt --nodes 2 --fam 1G --accel tcg --timeout 120 --share "$WORK/shared"
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
"$FAME" exec --name vmtest node01 -- sh -c 'grep -q torms /etc/hosts && getent hosts torms'

step "a C program and a Python script made on the host run in both nodes, exit codes pass through"
cat > "$HOSTDIR/hello.c" <<'EOF'
#include <stdio.h>
#include <unistd.h>
int main(void) { char h[64]; gethostname(h, sizeof h); printf("C on %s\n", h); return 42; }
EOF
cc -o "$HOSTDIR/hello" "$HOSTDIR/hello.c"
printf 'import socket, sys\nprint("Python on", socket.gethostname())\nsys.exit(3)\n' > "$HOSTDIR/hello.py"
for n in node01 node02; do
  set +e
  out=$("$FAME" exec --name vmtest $n -- "$HOSTDIR/hello"); rc=$?
  pout=$("$FAME" exec --name vmtest $n -- python3 "$HOSTDIR/hello.py"); prc=$?
  set -e
  [ "$out" = "C on $n" ] && [ $rc -eq 42 ] || { echo "C program on $n: '$out', exit $rc (want 42)"; exit 1; }
  [ "$pout" = "Python on $n" ] && [ $prc -eq 3 ] || { echo "Python on $n: '$pout', exit $prc (want 3)"; exit 1; }
done

step "plain mmap of an /lfs file is FAM across VM nodes (liblfs_preload.so in the guest's /etc/ld.so.preload)"
cc -O2 -Wall -o "$HOSTDIR/plain_mmap" "$(dirname "$0")/../../../tests/c/plain_mmap.c"
"$FAME" exec --name vmtest node01 -- sh -c 'grep -q liblfs_preload.so /etc/ld.so.preload && truncate -s 16M /lfs/counter'
pids=""
for n in node01 node02; do
  "$FAME" exec --name vmtest $n -- "$HOSTDIR/plain_mmap" add /lfs/counter 20000 "$WORK/shared/ready-$n" "$WORK/shared/go" >/dev/null &
  pids="$pids $!"
done
for _ in $(seq 1 600); do [ -e "$WORK/shared/ready-node01" ] && [ -e "$WORK/shared/ready-node02" ] && break; sleep 0.1; done
touch "$WORK/shared/go"
for p in $pids; do wait $p; done
[ "$("$FAME" exec --name vmtest node02 -- "$HOSTDIR/plain_mmap" load /lfs/counter 0)" = 40000 ] \
  || { echo "atomic increments through plain mmap were lost across VM nodes"; exit 1; }
"$FAME" exec --name vmtest node02 -- python3 -c "import mmap, os, struct; m = mmap.mmap(os.open('/lfs/counter', os.O_RDWR), 8192); struct.pack_into('<Q', m, 4096, 4242)"
[ "$("$FAME" exec --name vmtest node01 -- "$HOSTDIR/plain_mmap" load /lfs/counter 4096)" = 4242 ]
[ "$("$FAME" exec --name vmtest node01 -- "$HOSTDIR/plain_mmap" private /lfs/counter)" = private-ok ]
# LFS_MMAP=page-cache for one command: the 6.1 guest kernel cannot share-map these files at all.
if "$FAME" exec --name vmtest node01 -- env LFS_MMAP=page-cache "$HOSTDIR/plain_mmap" load /lfs/counter 0 2>/dev/null; then
  echo "LFS_MMAP=page-cache did not turn the preload off"; exit 1
fi

step "a file written in the shared folder by node01 is read by node02 and by the host"
"$FAME" exec --name vmtest node01 -- sh -c "echo note-from-node01 > $WORK/shared/note"
[ "$("$FAME" exec --name vmtest node02 -- cat "$WORK/shared/note")" = note-from-node01 ]
[ "$(cat "$WORK/shared/note")" = note-from-node01 ]
echo note-from-host > "$WORK/shared/host-note"
[ "$("$FAME" exec --name vmtest node02 -- cat "$WORK/shared/host-note")" = note-from-host ]

step "what a node writes to /tmp, /etc, /root or /usr stays in that node; the host's root is read-only"
"$FAME" exec --name vmtest node01 -- sh -c "echo mine > /tmp/fame-mine && echo x >> /etc/fame-probe && touch /root/fame-probe /usr/bin/fame-probe $HOSTDIR/fame-probe"
[ "$("$FAME" exec --name vmtest node01 -- cat /tmp/fame-mine)" = mine ]
[ "$("$FAME" exec --name vmtest node01 -- cat /etc/hostname)" = node01 ]
for f in /etc/fame-probe /root/fame-probe /usr/bin/fame-probe "$HOSTDIR/fame-probe"; do
  [ ! -e "$f" ] || { echo "node01's $f reached the host"; exit 1; }
done
if "$FAME" exec --name vmtest node02 -- sh -c 'ls /tmp/fame-mine /etc/fame-probe /root/fame-probe' 2>/dev/null; then
  echo "node01's files reached node02"; exit 1
fi
[ "$("$FAME" exec --name vmtest node02 -- cat /etc/hostname)" = node02 ]
"$FAME" exec --name vmtest node01 -- sh -c 'mkdir -p /mnt/fame-root && mount -t virtiofs fame-root /mnt/fame-root && ! touch /mnt/fame-root/root/fame-escape 2>/dev/null'
[ ! -e /root/fame-escape ] || { echo "a node wrote through a fresh mount of the host's root"; exit 1; }

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

step "fame reload runs the binaries of another folder in the VMs (the guest sees the host's)"
mkdir -p "$HOSTDIR/bin"
for b in librarian lfs-node book-register fame-guest lmp fsck-lfs; do
  if [ -e "$FAME_BIN_DIR/$b" ]; then cp -l "$FAME_BIN_DIR/$b" "$HOSTDIR/bin/$b" 2>/dev/null || cp "$FAME_BIN_DIR/$b" "$HOSTDIR/bin/$b"; fi
done
"$FAME" reload vmtest --bin-dir "$HOSTDIR/bin"
"$FAME" exec --name vmtest node02 -- sh -c "readlink /proc/[0-9]*/exe | grep -x '$HOSTDIR/bin/lfs-node'"
"$FAME" exec --name vmtest node02 -- lfs-node verify /lfs/shared --seed 42

step "a second VM cluster at once, on the minimal initramfs: its own network, its own LFS, the share"
"$FAME" up --name vmtwo --backend libvirt --nodes 1 --fam 1G --accel tcg --timeout 120 --guest-root initramfs --share "$WORK/shared"
[ "$("$FAME" exec --name vmtwo node01 -- cat "$WORK/shared/note")" = note-from-node01 ]
"$FAME" exec --name vmtwo node01 -- sh -c "echo from-vmtwo > $WORK/shared/vmtwo && ping -c1 -W2 torms >/dev/null"
[ "$(cat "$WORK/shared/vmtwo")" = from-vmtwo ]
if "$FAME" exec --name vmtwo node01 -- test -e /usr/bin/python3; then echo "the initramfs node runs on the host's root"; exit 1; fi
case "$("$FAME" ls)" in *vmtest*vmtwo*|*vmtwo*vmtest*) ;; *) "$FAME" ls; echo "fame ls does not list both"; exit 1 ;; esac
case "$(virsh -q -c qemu:///system net-list --name)" in *fame-vmtwo*) ;; *) echo "no network fame-vmtwo"; exit 1 ;; esac
[ "$("$FAME" exec --name vmtwo node01 -- hostname)" = node01 ]
if "$FAME" exec --name vmtwo node01 -- test -e /lfs/shared; then echo "vmtwo sees vmtest's file"; exit 1; fi
"$FAME" exec --name vmtwo node01 -- lfs-node fill /lfs/two --seed 5 --size 1M
"$FAME" down vmtwo
nothing_left "fame down vmtwo" vmtwo

step "fame down after a fame up killed with SIGKILL while its nodes start: nothing left"
"$FAME" up --name vmkill --backend libvirt --nodes 2 --fam 1G --accel tcg --timeout 120 --share "$WORK/shared" >"$WORK/kill.log" 2>&1 &
upid=$!
for _ in $(seq 1 600); do
  [ -n "$(virtiofsds vmkill)" ] && break
  sleep 0.1
done
[ -n "$(virtiofsds vmkill)" ] || { echo "no virtiofsd appeared"; cat "$WORK/kill.log"; exit 1; }
kill -9 $upid
wait $upid 2>/dev/null || true
"$FAME" down vmkill
nothing_left "fame down after SIGKILL of fame up" vmkill
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
nothing_left "fame down vmtest" vmtest
[ -z "$(virtiofsds)" ] || { echo "virtiofsd processes left: $(virtiofsds)"; exit 1; }
ls /var/log/libvirt/qemu/fame-vmtest-* >/dev/null 2>&1 && { echo "QEMU logs left"; exit 1; }

step "scenarios on VM nodes: smoke, notes passed between nodes through \$SCRATCH, pause and resume through libvirt, atomics from 4 nodes through plain mmap"
scenarios="$(cd "$(dirname "$0")/../../../scenarios" && pwd)"
"$FAME" scenario run --backend libvirt "$scenarios/01-smoke.toml" "$scenarios/07-rename-unlink-while-open.toml" \
  "$scenarios/13-pause-resume.toml" "$scenarios/14-plain-mmap-atomics.toml" --junit "$WORK/vm-junit.xml"
# All four ran and none of their steps failed.
if grep -q 'failures="[1-9]' "$WORK/vm-junit.xml" || ! grep -q 'testsuite name="smoke"' "$WORK/vm-junit.xml" \
    || ! grep -q 'testsuite name="rename-unlink-while-open"' "$WORK/vm-junit.xml" \
    || ! grep -q 'testsuite name="pause-resume"' "$WORK/vm-junit.xml" \
    || ! grep -q 'testsuite name="plain-mmap-atomics"' "$WORK/vm-junit.xml"; then
  cat "$WORK/vm-junit.xml"; exit 1
fi
case "$(virsh -q -c qemu:///system list --all --name)" in *fame-*) echo "the scenario left a domain"; exit 1 ;; esac

echo VM-TEST-OK
