#!/usr/bin/env bash
# Checks `make gdb`'s machinery: boots with the gdb stub, lets tools/delos.gdb add the loaded
# crates' symbols, sets a breakpoint on a function of a loaded crate (task::yield_now, which every
# waiting task calls at each look: the idle shell, the supervisor, the scrubber) and expects gdb
# to stop there with a backtrace that shows the task crate's source lines, and, within a few
# hits (the waiting tasks take turns), the shell's (the objects carry line tables).
set -euo pipefail
cd "$(dirname "$0")/.."
# The task object the image carries (the deps directory may hold other builds of it).
obj=$(tar tf target/image/modules.tar | sed -n 's|^namespaces/kernel/\(task-[0-9a-f]*\.o\)$|\1|p' | head -n1 || true)
[[ -n "$obj" ]] || { echo "gdb test: no task object in the image"; exit 1; }
sym=$(nm "target/kernel/x86_64-delos/release/deps/$obj" | awk '/ T .*4task9yield_now$/{print $3}' | head -n1 || true)
[[ -n "$sym" ]] || { echo "gdb test: task::yield_now not found in the task object"; exit 1; }
hits=()
for ((i = 0; i < 12; i++)); do hits+=(-ex "continue" -ex "bt 8"); done
out=$(timeout 90 bash tools/gdb.sh -batch -ex "break $sym" "${hits[@]}" 2>&1 || true)
echo "$out" | grep -E "delos-load|Breakpoint|#[01]" || true
# With the objects' line tables, gdb names inlined frames and source lines too.
echo "$out" | grep -qE "^Breakpoint 1, " || { echo "gdb test: breakpoint in the loaded task crate was not hit"; exit 1; }
echo "$out" | grep -qE "^#[0-9]+ .*(yield_now|schedule).* at crates/task/src/lib.rs:[0-9]+" || { echo "gdb test: backtrace does not show the task crate's source"; exit 1; }
echo "$out" | grep -qE "^#[0-9]+ .* at crates/shell/src/[a-z]+.rs:[0-9]+" || { echo "gdb test: backtrace does not reach the shell's source"; exit 1; }
echo "gdb test: ok"
