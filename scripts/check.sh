#!/usr/bin/env bash
# The static gate, the same for `just check` and the test command: formatting, clippy with warnings as
# errors, and the docs built with warnings as errors (broken intra-doc links, bad HTML in doc comments).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
