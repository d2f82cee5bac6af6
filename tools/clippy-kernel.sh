#!/usr/bin/env bash
# Clippy on every crate that runs in the kernel (nano_core and crates/*, not the alternative
# versions under crates/alt), built as the image builds them: nightly, build-std, our target.
# Warnings are errors; the workspace lints include `undocumented_unsafe_blocks`.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(-p nano_core)
for d in crates/*/; do
    name=$(basename "$d")
    [ "$name" = alt ] && continue
    pkgs+=(-p "$name")
done
RUSTFLAGS="-Z share-generics=no" CARGO_TARGET_DIR=target/clippy-kernel \
    cargo +nightly clippy -q --release \
    -Z build-std=core,alloc -Z build-std-features=compiler-builtins-mem -Z json-target-spec \
    --target nano_core/x86_64-delos.json "${pkgs[@]}" -- -D warnings
