#!/bin/sh
# FAME container node entrypoint: the command of every node container of `fame up --backend
# container` (docker-init is PID 1 and reaps orphans). It records the start in the node's
# console log (nodes/NODE/console.log on the host, bind-mounted at /var/log/fame) and becomes
# lfs-node, which mounts /lfs and unmounts it on SIGTERM (`docker stop`). Its arguments are
# lfs-node's, chosen by fame.
exec >>/var/log/fame/console.log 2>&1
echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') $(hostname): starting lfs-node $*"
# The daemon maps FAM itself: keep the preload of --mmap fam out of it.
LFS_MMAP=page-cache exec /usr/bin/lfs-node "$@"
