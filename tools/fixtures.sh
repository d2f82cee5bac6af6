#!/usr/bin/env bash
# Builds the loader's fixture objects (fixture crates plus core, alloc, compiler_builtins) with
# the kernel's exact flags into target/fixtures, and the other versions of fx_c used by the swap
# tests into target/fixtures-alt/<package>/. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p modtool
TD=target/modtool-build/fixtures
./target/release/modtool build mod_mgmt/tests/fixtures/fx_a --out target/fixtures --target-dir $TD
for alt in fx_c_v2 fx_c_bad fx_c_big; do
    ./target/release/modtool build mod_mgmt/tests/fixtures/$alt --out target/fixtures-alt/$alt --target-dir $TD
done
