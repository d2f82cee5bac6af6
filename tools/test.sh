#!/usr/bin/env bash
# `make test`: host tests for every host-testable crate and tool, then the QEMU tests.
# Ends with one summary line; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
HOST_ONLY=${1:-}
results=()
fail=0
rm -f target/qemu-logs/FAILED*.txt  # written by the QEMU tests of this run only

step() { # name, command...
    local name=$1; shift
    local t0=$SECONDS
    echo "=== $name"
    if "$@"; then results+=("$name: ok ($((SECONDS - t0)) s)"); else results+=("$name: FAILED"); fail=1; fi
}

step "loader fixtures (modtool build with the kernel's flags)" bash tools/fixtures.sh
step "host tests (boot_info, leakcheck, byte_ring, signing, mod_mgmt incl. fixture loads, line_edit, tools)" cargo test -q -p boot_info -p leakcheck -p byte_ring -p signing -p mod_mgmt -p path -p line_edit -p imgtool -p modtool -p objbuild
step "tlibc host tests (against the host libc)" cargo test -q -p tlibc --no-default-features
step "WASM engine: host tests and the spec suite (per-file table in target/wasm-spec.txt)" cargo test -q -p wasm_runtime --features std
step "WASM spec suite again with guard-region memories (no bounds checks in compiled code)" env WASM_SPEC_GUARD=1 cargo test -q -p wasm_runtime --features std --test spec
step "loader fuzz smoke (20000 mutated objects)" ./target/release/modtool fuzz --iters 20000
step "fault campaign judgement (tools/test_faults.py)" python3 tools/test_faults.py
step "QEMU tests' own checks (tools/runner/test_checks.py)" python3 tools/runner/test_checks.py
if [[ "$HOST_ONLY" != "--host-only" ]]; then
    step "image build" bash -c 'cargo build --release -q -p imgtool -p modtool && ./target/release/imgtool build && ./target/release/imgtool iso --cmdline "test" --out target/image/delos-test.iso && ./target/release/imgtool iso --cmdline "" --out target/image/delos.iso'
    step "static-link check (no loadable crate inside nano_core)" ./target/release/imgtool check-static
    step "QEMU tests" python3 tools/runner/qemu_tests.py
    step "QEMU combination tests again with -smp 4" env QEMU_TESTS_SMP=4 python3 tools/runner/qemu_tests.py --smp-cases
    step "gdb: breakpoint in a loaded crate" bash tools/gdb_test.sh
fi

echo
echo "=== summary"
printf '  %s\n' "${results[@]}"
for f in target/qemu-logs/FAILED*.txt; do
    [[ -f "$f" ]] || continue
    echo
    echo "=== failed QEMU tests ($f)"
    cat "$f"
done
if ((fail)); then echo "make test: FAILED"; exit 1; fi
echo "make test: all passed"
