#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Binaries first: full-stack tests start the real librarian, book-register and lfs-node.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2
