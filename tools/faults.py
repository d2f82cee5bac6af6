#!/usr/bin/env python3
"""Fault-injection campaign (make faults): flip bits in a running task's code and data and see
whether Delos survives.

One QEMU runs Delos with the gdb stub. The workload is `beat`: a task calling
`heartbeat::beat()` every 10 ms. Each trial flips one random bit in the heartbeat crate's
sections (code, constants, data, as `ns -v` lists them) through gdb, waits, and classifies:
  - not manifested: the beats go on, correctly formatted, and nothing is reported;
  - manifested: a fault or panic is reported, the beats stop or come out wrong;
  - survived (of the manifested): the shell still answers `echo`.
After each trial the heartbeat crate is replaced by a fresh copy of itself (`swap heartbeat
heartbeat`), which also undoes the flip, and the workload is restarted. If the system dies,
QEMU is restarted. Runs until N manifested faults (default 300) and prints the table.
"""
import argparse
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)) + "/runner")
import qemu_run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "target", "image")


class Machine:
    def __init__(self, port):
        self.port = port
        cmd = ["qemu-system-x86_64", "-m", "512M", "-display", "none", "-no-reboot", "-accel", "tcg", "-cpu", "qemu64",
               "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", os.path.join(IMAGE, "nano_core"),
               "-initrd", os.path.join(IMAGE, "modules.tar"), "-append", "log=warn",
               "-serial", "stdio", "-monitor", "none", "-gdb", f"tcp::{port}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.s = qemu_run.Session(self.proc)
        self.pos = 0

    def alive(self):
        return self.proc.poll() is None

    def run(self, line, expect=r"delos> ", timeout=5.0):
        """Types a line after the prompt; returns the output up to the next prompt (or None)."""
        start = len(self.s.buf)
        self.s.send(line.encode() + b"\r")
        end = self.s.wait_for(expect, start + len(line), time.monotonic() + timeout)
        return None if end is None else self.s.text(start)

    def wait_prompt(self, timeout=10.0):
        return self.s.wait_for(r"delos> ", 0, time.monotonic() + timeout) is not None

    def regions(self):
        out = self.run("ns -v", timeout=10) or ""
        lines = out.splitlines()
        regs = []
        take = False
        for l in lines:
            if re.match(r"^  \S", l):
                take = l.split()[0] == "heartbeat"
            elif take:
                # Sections, not whole regions: flips in page padding could never manifest.
                m = re.search(r"^\s+(0x[0-9a-f]+)\s+(\d+) (Text|Rodata|Data|Bss) ", l)
                if m and int(m.group(2)) > 0:
                    regs.append((int(m.group(1), 16), int(m.group(2)), m.group(3)))
        return regs

    def flip(self, addr, bit):
        r = subprocess.run(["gdb", "-q", "-batch", "-ex", f"target remote localhost:{self.port}",
                            "-ex", f"set *(unsigned char *){addr:#x} ^= {1 << bit}", "-ex", "detach"],
                           capture_output=True, text=True, timeout=20)
        return r.returncode == 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def start(port):
    m = Machine(port)
    if not m.wait_prompt(20):
        m.stop()
        return None
    m.run("echo warm up")
    m.run("beat 100000000 10")
    time.sleep(0.3)
    return m


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifested", type=int, default=300)
    p.add_argument("--max-trials", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=12345)
    a = p.parse_args()
    rng = random.Random(a.seed)
    counts = {"trials": 0, "not manifested": 0, "manifested": 0, "survived": 0, "died": 0}
    by_kind = {}
    m = None
    regions = []
    t0 = time.monotonic()
    while counts["manifested"] < a.manifested and counts["trials"] < a.max_trials:
        if m is None or not m.alive():
            if m:
                m.stop()
            m = start(a.port)
            if m is None:
                print("faults: Delos did not boot", file=sys.stderr)
                sys.exit(1)
            regions = m.regions()
            if not regions:
                print("faults: heartbeat's regions not found", file=sys.stderr)
                sys.exit(1)
        base, size, perms = rng.choice(regions)
        addr = base + rng.randrange(size)
        bit = rng.randrange(8)
        mark = len(m.s.buf)
        if not m.flip(addr, bit):
            continue
        counts["trials"] += 1
        time.sleep(0.4)
        after = m.s.text(mark)
        beats = re.findall(r"heartbeat v1: beat #(\d+)\r?\n", after)
        reported = re.search(r"CPU EXCEPTION|panicked|killed by", after)
        garbage = re.search(r"heartbeat(?! v1: beat #\d+\r?$)", after, re.M)
        manifested = bool(reported) or len(beats) < 5 or bool(garbage) or not m.alive()
        if not manifested:
            counts["not manifested"] += 1
        else:
            counts["manifested"] += 1
            kind = "exception" if "CPU EXCEPTION" in after else "panic" if "panicked" in after else "silent (beats stopped or wrong)"
            ok = m.alive() and m.run(f"echo alive {counts['trials']}", expect=rf"^alive {counts['trials']}", timeout=5) is not None
            by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += 1
            if ok:
                counts["survived"] += 1
                by_kind[kind][1] += 1
            else:
                counts["died"] += 1
                m.stop()
                m = None
                continue
        # Undo the flip with a fresh copy of the crate and restart the workload if it died.
        if m.run("swap heartbeat heartbeat", timeout=10) is None:
            m.stop()
            m = None
            continue
        # The fresh copy lives elsewhere: flips must follow it, not land in the freed old one.
        regions = m.regions() or regions
        if manifested:
            m.run("beat 100000000 10")
        if counts["trials"] % 20 == 0:
            print(f"faults: {counts['trials']} trials, {counts['manifested']} manifested, {counts['survived']} survived "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    if m:
        m.stop()
    man = max(counts["manifested"], 1)
    print(f"faults: {counts['trials']} injections into heartbeat's code and data; {counts['manifested']} manifested, "
          f"{counts['not manifested']} did not")
    print(f"faults: survived {counts['survived']} of {counts['manifested']} manifested ({100.0 * counts['survived'] / man:.1f}%; "
          f"Theseus: 69%, goal >= 90%)")
    for k, (n, s) in sorted(by_kind.items()):
        print(f"   {k:<34} {n:>5} manifested, {s:>5} survived")


if __name__ == "__main__":
    main()
