# gdb support for Delos (make gdb). nano_core's symbols come from its ELF; loaded crates are
# relocatable objects placed at run time, so their sections' addresses are printed by the
# kernel (`gdb` kernel option) as `gdb-load:` lines in the serial log, and `delos-load` turns
# them into add-symbol-file commands. It runs automatically whenever the target stops.
set confirm off
set pagination off
file target/image/nano_core
target remote localhost:1234

python
import os, gdb

DEPS = "target/kernel/x86_64-delos/release/deps"
LOG = os.environ.get("DELOS_SERIAL_LOG", "target/gdb-serial.log")
loaded = set()

class DelosLoad(gdb.Command):
    """Add the symbols of every crate the kernel has loaded so far."""
    def __init__(self):
        super().__init__("delos-load", gdb.COMMAND_FILES)

    def invoke(self, arg, from_tty):
        try:
            lines = open(LOG, errors="replace").read().splitlines()
        except OSError as e:
            print(f"delos-load: {e}")
            return
        for line in lines:
            if not line.startswith("gdb-load: "):
                continue
            parts = line[len("gdb-load: "):].split()
            if not parts or parts[0] in loaded:
                continue
            path = os.path.join(DEPS, parts[0])
            pairs = list(zip(parts[1::2], parts[2::2]))
            if not os.path.exists(path) or not pairs:
                continue
            args = " ".join(f"-s {name} {addr}" for name, addr in pairs)
            gdb.execute(f"add-symbol-file {path} {args}", to_string=True)
            loaded.add(parts[0])
            print(f"delos-load: {parts[0]} ({len(pairs)} sections)")

DelosLoad()
gdb.events.stop.connect(lambda ev: gdb.execute("delos-load", to_string=False))
end

delos-load
