#!/usr/bin/env bash
# Builds the loader's fixture objects (fixture crates plus core, alloc, compiler_builtins) with
# the kernel's exact flags into target/fixtures. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p modtool
./target/release/modtool build mod_mgmt/tests/fixtures/fx_a --out target/fixtures
