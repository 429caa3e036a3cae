#!/usr/bin/env python3
"""Benchmark of `fame up` and `fame down`: median wall time of N runs per cluster size and
backend, with the median of every step of `fame up` (from state.json) and the memory of a node
(the resident set of its processes, median over nodes and runs).

    cargo build --release -p fame -p librarian --bins -p lfs-node
    python3 orchestrator/bench.py --fame target/release/fame --runs 5 4:32G 32:32G 80:32G

With `--backend container` (repeatable with `--backend process`, to compare in the same run) it
needs a Docker engine in its network namespace; `--cold-image` first removes the node image so
that the first run builds and imports it, and reports that time separately:

    bash scripts/dockerd.sh --dir /tmp/bench-docker --own-netns &
    nsenter --net=/proc/$!/ns/net env DOCKER_HOST=unix:///tmp/bench-docker/docker.sock \
        python3 orchestrator/bench.py --fame target/release/fame --runs 5 \
        --backend process --backend container --cold-image 4:32G

Needs root and /dev/fuse. Clusters live under a temporary FAME_HOME, removed at the end.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(fame, env, *args):
    t = time.perf_counter()
    p = subprocess.run([fame, *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"fame {' '.join(args)} failed:\n{p.stdout}{p.stderr}")
    return took


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    out = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for c in f.read().split():
                    out.extend(descendants(int(c)))
    except OSError:
        pass
    return out


def parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def node_memory_kib(state):
    """The resident set of each node's processes: the daemon's process tree (the process
    backend's handle names the daemon; the container backend's names the container's init,
    whose parent, the engine's per-container containerd-shim, is counted too)."""
    out = []
    for n in state["nodes"]:
        h = n.get("handle") or {}
        pid = h.get("pid")
        if pid:
            total = sum(rss_kib(p) for p in descendants(pid))
            shim = parent(pid)
            if comm(shim).startswith("containerd-shim"):
                total += rss_kib(shim)
            out.append(total)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fame", default="target/release/fame")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backend", action="append", help="process (default), container, libvirt")
    ap.add_argument("--cold-image", action="store_true",
                    help="remove the container node image first; its build is timed on its own")
    ap.add_argument("sizes", nargs="*", default=["4:32G", "32:32G", "80:32G"], help="NODES:FAM")
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="fame-bench-")
    env = dict(os.environ, FAME_HOME=home)
    for v in ("FAME_DIR", "FAME_FAM", "FAME_HOSTBASE", "FAME_BIN_DIR"):
        env.pop(v, None)
    backends = a.backend or ["process"]
    try:
        if a.cold_image and "container" in backends:
            subprocess.run([a.fame, "images", "build"], env=env, capture_output=True, check=True)
            subprocess.run([a.fame, "images", "prune"], env=env, capture_output=True, check=True)
            # The content key is remembered under FAME_HOME/cache; a fresh FAME_HOME forgets it.
            shutil.rmtree(os.path.join(home, "cache"), ignore_errors=True)
            t = time.perf_counter()
            p = subprocess.run([a.fame, "images", "build"], env=env, capture_output=True, text=True)
            took = time.perf_counter() - t
            if p.returncode != 0:
                sys.exit(f"fame images build failed:\n{p.stdout}{p.stderr}")
            print(f"cold node image build and import: {took * 1000:.0f} ms ({p.stderr.strip()})\n")
        print(f"| backend | nodes | FAM | `fame up` (median of {a.runs}) | ready | `fame down` | memory per node | steps of `up` (median) |")
        print("|---|---|---|---|---|---|---|---|")
        for size in a.sizes:
            nodes, fam = size.split(":")
            for backend in backends:
                ups, downs, readies, steps, mem = [], [], [], {}, []
                for _ in range(a.runs):
                    ups.append(run(a.fame, env, "up", "--name", "bench", "--nodes", nodes,
                                   "--fam", fam, "--backend", backend))
                    with open(os.path.join(home, "bench", "state.json")) as f:
                        state = json.load(f)
                    mem.extend(node_memory_kib(state))
                    for name, secs in state["timings"]:
                        if name == "ready":
                            readies.append(secs)
                        else:
                            steps.setdefault(name, []).append(secs)
                    downs.append(run(a.fame, env, "down", "bench"))
                ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"
                detail = ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in steps.items())
                memory = f"{statistics.median(mem) / 1024:.1f} MiB" if mem else "-"
                print(f"| {backend} | {nodes} | {fam} | {ms(ups)} | {ms(readies)} | {ms(downs)} | {memory} | {detail} |", flush=True)
    finally:
        subprocess.run([a.fame, "down", "--all"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
