#!/bin/busybox sh
# FAME guest init: PID 1 of every VM node of `fame up --backend libvirt`. Rendered by fame from
# templates/libvirt/init.sh into the guest initramfs; per-node values come from the kernel
# command line (fame.node, fame.name, fame.ip, fame.torms, fame.port). Its output is the
# node's console log (nodes/NODE/console.log on the host).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /lfs /etc /var/log /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for w in $(cat /proc/cmdline); do
  case "$w" in
    fame.node=*) NODE=${w#*=} ;;
    fame.name=*) NAME=${w#*=} ;;
    fame.ip=*) IP=${w#*=} ;;
    fame.torms=*) TORMS=${w#*=} ;;
    fame.port=*) PORT=${w#*=} ;;
    fame.probe=*) PROBE=${w#*=} ;;
  esac
done
if [ -n "$PROBE" ]; then
  # The acceleration probe: reaching this line is all fame wants to know.
  echo "{{ probe_marker }}"
  poweroff -f
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "fame-init: node $NAME (id $NODE), $IP, torms $TORMS:$PORT"
# Modules in dependency order (virtio before the NIC, failover before virtio_net).
{% for m in modules -%}
insmod /lib/modules/{{ m }}.ko || echo "fame-init: insmod {{ m }} failed"
{% endfor -%}
hostname "$NAME"
echo "127.0.0.1 localhost" > /etc/hosts
echo "$TORMS torms vmhost" >> /etc/hosts
echo "${IP%/*} $NAME" >> /etc/hosts
echo "nameserver $TORMS" > /etc/resolv.conf
echo "hosts: files dns" > /etc/nsswitch.conf
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
ip addr add "$IP" dev eth0
ip link set eth0 up
/bin/fame-guest agent --allow "$TORMS" --port {{ agent_port }} &
# The LFS daemon finds its node id from the FAME MAC (48:50:42:NN:NN:NN) and the ivshmem BAR
# (PCI 1af4:1110 resource2) by itself, as on FAME proper.
(
  lfs-node --mountpoint /lfs --hostname torms --port "$PORT"
  echo "fame-init: lfs-node exited with status $?"
) &
echo "fame-init: started in $(cut -d' ' -f1 /proc/uptime) s"
# PID 1 reaps orphans for ever.
while true; do
  wait
  sleep 1
done
