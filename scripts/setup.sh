#!/usr/bin/env bash
# Installs the Debian packages fame needs, only those that are missing. Run as root.
# One list for the whole project, so the README's commands and CI install the same things.
set -euo pipefail

packages=(
  fuse3          # fusermount3 and /etc/fuse.conf for the lfs-node FUSE mounts
  pkg-config     # -sys crates find their C libraries
  gcc libc6-dev  # the C example of the direct-map API and crates that build C
  sqlite3        # inspecting librarian databases by hand (tests do not need it)
  procps         # ps/pkill used in diagnostics
  python3        # tests run programs on the mounts with it, some as other users (/usr/bin/python3)
  util-linux     # setpriv: the owner and permission tests run calls as other users
  rsync          # the LFS test copies between node mounts with cp -a, mv and rsync -X
  chromium       # the LMP dashboard test loads the page in headless Chromium
  # The libvirt backend (VM nodes) and its test: QEMU and libvirt (daemons started by hand, no
  # systemd), dnsmasq for the cluster networks, the guest kernel and busybox for the initramfs.
  qemu-system-x86 libvirt-daemon-system libvirt-clients libvirt-dev dnsmasq-base
  linux-image-cloud-amd64 busybox-static cpio
  # The container backend and its tests: a Docker engine (started by hand with
  # scripts/dockerd.sh, no systemd) and curl to ask it whether it answers.
  docker.io curl
  # scripts/dockerd.sh --own-netns brings the loopback of its namespace up with `ip`.
  iproute2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
command -v cargo >/dev/null || {
  echo "setup: cargo not found: install a Rust toolchain (1.80 or newer) first" >&2
  exit 1
}
# scripts/test.sh holds the style gates: rustfmt and clippy must be there.
for c in rustfmt clippy; do
  sub=${c/rustfmt/fmt}
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null && rustup component add "$c" >/dev/null 2>&1 || true
    cargo "$sub" --version >/dev/null 2>&1 || {
      echo "setup: cargo $sub is missing: install the toolchain's $c component (rustup component add $c)" >&2
      exit 1
    }
  fi
done
[ -e /dev/fuse ] || echo "setup: warning: /dev/fuse is missing: lfs-node mounts will fail (modprobe fuse)" >&2
exit 0
