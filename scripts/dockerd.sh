#!/usr/bin/env bash
# Starts a Docker engine by hand, for machines without systemd (containers, CI). What the README
# tells users to run, and what the container tests run for an engine of their own.
#
#   scripts/dockerd.sh                 the machine's engine: /var/run/docker.sock, data in
#                                      /var/lib/docker, log /var/log/dockerd.log; started in
#                                      the background, returns once it answers
#   scripts/dockerd.sh --dir DIR --own-netns
#                                      an engine of its own in DIR (socket DIR/docker.sock),
#                                      in a new network namespace (its bridges and iptables
#                                      rules stay there) and a private mount namespace; runs
#                                      in the foreground, so the caller owns the process
#
# Needs root and Debian's docker.io (`apt-get install docker.io`; scripts/setup.sh installs it).
set -euo pipefail
dir=""
own_netns=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --own-netns) own_netns=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "scripts/dockerd.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
dockerd=$(command -v dockerd || true)
if [ -z "$dockerd" ]; then
  echo "scripts/dockerd.sh: dockerd is missing; install it with apt-get install docker.io" >&2
  exit 1
fi
if [ -n "$dir" ]; then
  mkdir -p "$dir"
  args=(--data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid"
        --host "unix://$dir/docker.sock" --log-level warn)
  if [ "$own_netns" = 1 ]; then
    # unshare -n, not `ip netns exec`: the latter remounts /sys and hides the cgroup mounts
    # dockerd needs. A new network namespace starts with its loopback down, and with it every
    # address of the namespace's own (a bridge's gateway, where fame's Librarian listens) is
    # unreachable from inside: bring it up, then become dockerd.
    exec unshare -n -m --propagation private -- \
      sh -c 'ip link set lo up && exec "$0" "$@"' "$dockerd" "${args[@]}"
  fi
  exec "$dockerd" "${args[@]}"
fi
if [ -S /var/run/docker.sock ] && docker_ping=$(curl -fsS --unix-socket /var/run/docker.sock http://docker/_ping 2>/dev/null) && [ "$docker_ping" = OK ]; then
  echo "a Docker engine already answers on /var/run/docker.sock"
  exit 0
fi
nohup "$dockerd" >>/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 300); do
  if [ -S /var/run/docker.sock ] && [ "$(curl -fsS --unix-socket /var/run/docker.sock http://docker/_ping 2>/dev/null)" = OK ]; then
    echo "dockerd is running (pid $!, log /var/log/dockerd.log, socket /var/run/docker.sock)"
    exit 0
  fi
  sleep 0.1
done
echo "scripts/dockerd.sh: dockerd did not answer within 30 s; see /var/log/dockerd.log" >&2
exit 1
