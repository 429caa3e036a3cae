#!/bin/busybox sh
# FAME guest init: PID 1 of every VM node of `fame up --backend libvirt`. Rendered by fame from
# templates/libvirt/init.sh into the guest initramfs; per-node values come from the kernel
# command line (fame.node, fame.name, fame.ip, fame.torms, fame.port, fame.timeout, fame.bin,
# fame.share).
# Its output is the node's console log (nodes/NODE/console.log on the host).
{%- if host_root %}
#
# This image is for `--guest-root host`: stage 1 (here, on busybox) mounts the host's root file
# system read-only over virtiofs under a tmpfs overlay of the node's own, mounts the shares,
# sets up the network and the node's /etc, then switches to that root, where stage 2
# (/run/fame/init, written below) runs lfs-node and the exec agent from the host's bin dir.
{%- endif %}
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /lfs /etc /var/log /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
SHARES=
for w in $(cat /proc/cmdline); do
  case "$w" in
    fame.node=*) NODE=${w#*=} ;;
    fame.name=*) NAME=${w#*=} ;;
    fame.ip=*) IP=${w#*=} ;;
    fame.torms=*) TORMS=${w#*=} ;;
    fame.port=*) PORT=${w#*=} ;;
    fame.lfs-args=*) LFS_ARGS=$(echo "${w#*=}" | tr , ' ') ;;
    fame.mmap=*) MMAP=${w#*=} ;;
    fame.bin=*) BIN=${w#*=} ;;
    fame.share=*) SHARES="$SHARES ${w#*=}" ;;
    fame.probe=*) PROBE=${w#*=} ;;
  esac
done
if [ -n "$PROBE" ]; then
  # The acceleration probe: reaching this line is all fame wants to know.
  echo "{{ probe_marker }}"
  poweroff -f
fi
fail() {
  echo "fame-init: $*"
  poweroff -f
}
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
echo "fame-init: node $NAME (id $NODE), $IP, torms $TORMS:$PORT"
# Modules in dependency order (virtio before the NIC, failover before virtio_net, fuse before
# virtiofs).
{% for m in modules -%}
insmod /lib/modules/{{ m }}.ko || echo "fame-init: insmod {{ m }} failed"
{% endfor -%}
{%- if host_root %}
# The host's root, read-only (virtiofsd serves a read-only view of it), under an overlay whose
# upper layer is this node's memory: the node writes anywhere, nothing reaches the host.
R=/newroot
mkdir -p /host /rw $R
mount -t virtiofs -o ro {{ root_tag }} /host || fail "cannot mount the host's root (virtiofs tag {{ root_tag }})"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay $R \
  || fail "cannot put the node's overlay on the host's root"
# /run is empty per node, as on a freshly booted machine (the host's holds its daemons' pid
# files and sockets). /tmp stays in the overlay: the host's files there (a build in /tmp) are
# seen, what the node writes there is its own.
mount -t tmpfs -o mode=0755 tmpfs $R/run
{%- else %}
R=
BIN=/bin
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "hosts: files dns" > /etc/nsswitch.conf
{%- endif %}
# The node's own identity; links of the host's /etc (say, to systemd-resolved) are replaced.
hostname "$NAME"
rm -f $R/etc/hostname $R/etc/hosts $R/etc/resolv.conf
echo "$NAME" > $R/etc/hostname
echo "127.0.0.1 localhost" > $R/etc/hosts
echo "$TORMS torms vmhost" >> $R/etc/hosts
echo "${IP%/*} $NAME" >> $R/etc/hosts
echo "nameserver $TORMS" > $R/etc/resolv.conf
mkdir -p $R/lfs
# --mmap fam: every dynamically linked program of the node maps /lfs files from FAM.
{%- if host_root %}
PRELOAD="$BIN/liblfs_preload.so"
{%- else %}
PRELOAD=/lib/liblfs_preload.so
{%- endif %}
if [ "$MMAP" = fam ] && [ -f "$R$PRELOAD" ]; then
  kept=$(cat $R/etc/ld.so.preload 2>/dev/null)
  printf '%s\n%s\n' "$PRELOAD" "$kept" > $R/etc/ld.so.preload
elif [ "$MMAP" = fam ]; then
  echo "fame-init: $PRELOAD is missing: plain mmap of /lfs files is the page cache"
fi
# The --share folders, read-write at the host's path (fame.share=TAG=PATH).
for s in $SHARES; do
  tag=${s%%=*}
  dir=${s#*=}
  mkdir -p "$R$dir" && mount -t virtiofs "$tag" "$R$dir" || fail "cannot mount the shared folder $dir (virtiofs tag $tag)"
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
ip addr add "$IP" dev eth0
ip link set eth0 up
mkdir -p $R/run/fame
cat > $R/run/fame/init <<EOF
# Stage 2 of the FAME guest init (written by stage 1): the node's daemons, then reaping orphans.
export PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root
"$BIN/fame-guest" agent --allow "$TORMS" --port {{ agent_port }} &
# The LFS daemon finds its node id from the FAME MAC (48:50:42:NN:NN:NN) and the ivshmem BAR
# (PCI 1af4:1110 resource2) by itself, as on FAME proper.
(
  LFS_MMAP=page-cache "$BIN/lfs-node" $LFS_ARGS
  echo "fame-init: lfs-node exited with status \$?"
) &
echo "fame-init: started in \$(cut -d' ' -f1 /proc/uptime) s"
while true; do
  wait
  sleep 1
done
EOF
{%- if host_root %}
mount --move /dev $R/dev
mount --move /sys $R/sys
mount --move /proc $R/proc
exec switch_root $R /bin/sh /run/fame/init
{%- else %}
exec /bin/sh /run/fame/init
{%- endif %}
