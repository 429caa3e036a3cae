#!/usr/bin/env python3
"""Benchmark of `fame up` and `fame down` (process backend): median wall time of N runs per
cluster size, with the median of every step of `fame up` (from state.json).

    cargo build --release -p fame -p librarian --bins -p lfs-node
    python3 orchestrator/bench.py --fame target/release/fame --runs 5 4:32G 32:32G 80:32G

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fame", default="target/release/fame")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("sizes", nargs="*", default=["4:32G", "32:32G", "80:32G"], help="NODES:FAM")
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="fame-bench-")
    env = dict(os.environ, FAME_HOME=home)
    for v in ("FAME_DIR", "FAME_FAM", "FAME_HOSTBASE", "FAME_BIN_DIR"):
        env.pop(v, None)
    try:
        print(f"| nodes | FAM | `fame up` (median of {a.runs}) | ready | `fame down` | steps of `up` (median) |")
        print("|---|---|---|---|---|---|")
        for size in a.sizes:
            nodes, fam = size.split(":")
            ups, downs, readies, steps = [], [], [], {}
            for _ in range(a.runs):
                ups.append(run(a.fame, env, "up", "--name", "bench", "--nodes", nodes, "--fam", fam))
                with open(os.path.join(home, "bench", "state.json")) as f:
                    timings = json.load(f)["timings"]
                for name, secs in timings:
                    if name == "ready":
                        readies.append(secs)
                    else:
                        steps.setdefault(name, []).append(secs)
                downs.append(run(a.fame, env, "down", "bench"))
            ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"
            detail = ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in steps.items())
            print(f"| {nodes} | {fam} | {ms(ups)} | {ms(readies)} | {ms(downs)} | {detail} |", flush=True)
    finally:
        subprocess.run([a.fame, "down", "--all"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
