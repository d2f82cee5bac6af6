#!/usr/bin/env bash
# `make gdb`: boots Delos under QEMU with the gdb stub (TCG) and the `gdb` kernel option, then
# attaches gdb with tools/delos.gdb, which adds the symbols of every loaded crate at its load
# address (and again whenever the target stops). The serial console is on a Unix socket:
#     socat -,raw,echo=0 UNIX-CONNECT:target/serial.sock      (in another terminal)
# and logged to target/gdb-serial.log. Quitting gdb stops QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f target/serial.sock target/gdb-serial.log
qemu-system-x86_64 -m 512M -display none -no-reboot -accel tcg -cpu qemu64 \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel target/image/nano_core -initrd target/image/modules.tar -append "gdb ${CMDLINE:-}" \
    -chardev socket,id=s0,path=target/serial.sock,server=on,wait=off,logfile=target/gdb-serial.log \
    -serial chardev:s0 -monitor none -s ${QEMU_GDB_WAIT:+-S} &
QEMU=$!
trap 'kill $QEMU 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "delos> " target/gdb-serial.log 2>/dev/null && break; sleep 0.1; done
echo "[gdb] serial console: socat -,raw,echo=0 UNIX-CONNECT:target/serial.sock"
gdb -q -x tools/delos.gdb "$@"
