#!/usr/bin/env python3
"""`make bench`'s idle step: the host CPU time QEMU uses while Delos sits at its prompt.

Boots the image, waits until the prompt has been idle for a few seconds, then reads the QEMU
process's CPU time (user + system, /proc/PID/stat) over a fixed window. The baseline, in the
same run and interleaved round by round, is the same boot with `serial_poll` on the kernel
command line: the shell then polls the UART (its 16-byte FIFO must be read before it fills), so
the boot CPU never halts, which is how every wait in Delos worked before `task::wait_until`.

Prints one line per configuration: the median CPU seconds per second of idle, and the ratio.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based); after the ")" they are 12 and 13.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(image, smp, append, window):
    """Host CPU seconds per second QEMU used over `window` seconds of an idle prompt."""
    with tempfile.TemporaryDirectory() as d:
        pidfile, script, log = (os.path.join(d, n) for n in ("pid", "script", "log"))
        settle = 3.0
        with open(script, "w") as f:
            f.write(f"echo idle\n@pause {settle + window + 1}\npoweroff\n")
        runner = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "runner", "qemu_run.py"),
                                   "--kernel", os.path.join(image, "nano_core"), "--modules", os.path.join(image, "modules.tar"),
                                   "--append", append, "--script", script, "--quiet", "--timeout", str(int(window + 90)),
                                   "--log", log, "--qemu-arg=-smp", f"--qemu-arg={smp}", "--qemu-arg=-pidfile", f"--qemu-arg={pidfile}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The boot takes well under a second; the runner's @pause starts once the prompt is back.
        time.sleep(settle)
        try:
            pid = int(open(pidfile).read())
            a = cpu_seconds(pid)
            time.sleep(window)
            b = cpu_seconds(pid)
        except (OSError, ValueError) as e:
            runner.kill()
            raise SystemExit(f"idlebench: QEMU did not come up or ended early: {e}")
        if runner.wait() != 0:
            raise SystemExit(f"idlebench: the session failed (log {log} is gone; run it by hand)")
        return (b - a) / window


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=os.path.join(ROOT, "target", "image"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--smp", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    for smp in args.smp:
        waiting, polling = [], []
        for r in range(args.rounds):
            # Alternate which goes first, so that a drift of the host's load hits both alike.
            order = [("", waiting), ("serial_poll", polling)]
            for append, into in (order if r % 2 == 0 else order[::-1]):
                into.append(idle_cpu(args.image, smp, append, args.window))
        w, p = statistics.median(waiting), statistics.median(polling)
        print(f"   -smp {smp}: {w:.3f} host CPU s per s idle (waits halt the CPU) vs {p:.3f} with the shell polling "
              f"(serial_poll): {w / p:.2f}x; medians of {args.rounds} interleaved rounds of {args.window:.0f} s, "
              f"host has {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
