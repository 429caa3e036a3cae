#!/usr/bin/env bash
# Installs what is missing, checks formatting and lints, builds everything and runs every test.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The style gates first, so that a failure says at once what to run.
echo "test.sh: cargo fmt --check (fix: cargo fmt)"
cargo fmt --all -- --check
echo "test.sh: cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
# Binaries first: full-stack tests start the real librarian, book-register and lfs-node.
# Libraries too: the nodes preload liblfs_preload.so (a cdylib that no binary links).
cargo build --workspace --bins --lib
cargo test --workspace --no-fail-fast -- --test-threads=2
