#!/usr/bin/env python3
"""Fault-injection campaign (make faults): flip one bit at a time in a running Delos and count
what Delos itself brings back.

One QEMU runs Delos with the gdb stub; the harness flips bits through the stub's memory-write
packet (a persistent connection: the VM is stopped only for the write). The workload is
`beat 100000000 10`: a restartable task calling `heartbeat::beat()` every 10 ms, each call
printing `heartbeat v1: beat #N` with N one more than the last.

Targets: the heartbeat crate and the core crates scheduler, exceptions, interrupts, task and
unwind; in each, "code" (text and read-only data: what the loader's integrity hash covers) or
"data" (writable data and bss). A trial picks a target, a byte uniformly among its sections'
bytes (as `ns -v` lists them) and a bit, flips it, and watches for 1.5 s.

Classes (the harness never repairs anything; it only observes and, when the system is not
healthy before a trial, reboots):
  - not manifested: beats go on, consecutive and correctly formatted, nothing is reported. The
    flip stays in place (the scrubber may repair code later; data stays flipped).
    Of these, "masked" counts the trials where Delos reported a repair meanwhile (a voted-back
    copy of a three-copy word, code restored by the scrubber before it ran): the flip was
    found and undone before anything could see it;
  - manifested: a fault or panic is reported, the beats stop, or they come out wrong (a
    malformed line or a number that is not the last one plus one);
  - contained (of the manifested): the kernel survives and no task other than the workload
    died: the shell answers and every long-lived task (idle, shell, supervisor, scrubber, push)
    `ps` listed before the trial is still there with the same id and no new restart;
  - recovered (of the manifested): within 8 s and with no action by the harness, the beats
    resume correct: 10 consecutive well-formed beats, the first numbered as an intact count
    would be (the last correct beat before the fault, plus the beat lines printed since,
    malformed ones included, plus one or two: the beat in flight may be lost). A beat counter
    whose value the flip changed therefore counts as manifested and not recovered: Delos
    cannot know the old value.

Before each trial the system must be healthy (5 consecutive correct beats in the last 0.5 s);
otherwise QEMU is restarted (counted as a reboot). Runs until --manifested faults manifested
(default 300) and prints the table per target and kind.
"""
import argparse
import os
import random
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)) + "/runner")
import qemu_run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("FAULTS_IMAGE", os.path.join(ROOT, "target", "image"))  # a copy lets you rebuild meanwhile
CRATES = ["heartbeat", "scheduler", "exceptions", "interrupts", "task", "unwind"]
KINDS = {"Text": "code", "Rodata": "code", "Data": "data", "Bss": "data"}
BEAT = re.compile(r"heartbeat v1: beat #(\d+)\r?$", re.M)
# The number of a beat, well-formed or not (`beat #` then digits, anywhere in a line).
BEAT_NUMBER = re.compile(r"beat.?#(\d+)")
# A line the workload printed, well-formed or not (a flip in its format string changes it).
# A beat line, well-formed or not: a flip in the format's read-only data can garble the text
# around the number (NUL bytes before the line, no digits after the '#').
BEATISH = re.compile(r"^[\x00\s]*heart|^.{0,24}beat.?#")
# The first word every beat prints (not the crate's name in Delos's own reports).
BEAT_WORD = re.compile(r"(?<!crate )(?<!verified )heartbeat ")
# Not manifested, but Delos said it repaired something: a word of a `Triple` voted back, code
# restored from its sealed copy (by the scrubber, before it ran).
MASKED = re.compile(r"^triple: copy \d|restored from its sealed copy|repaired", re.M)
REPORT = re.compile(r"CPU EXCEPTION|panicked|killed by|fault outside any task|PANIC|double fault")
# The tasks that live as long as the system: "contained" means none of them died or restarted
# (short-lived ones — commands, the swap reaper — come and go by themselves).
LONG_LIVED = ("idle", "shell", "supervisor", "scrubber", "push")
MACHINES = []  # stopped on exit, whatever happens


class Gdb:
    """A minimal GDB remote-protocol client: enough to write one byte into a running VM."""

    def __init__(self, port):
        for _ in range(100):
            try:
                self.s = socket.create_connection(("localhost", port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("gdb stub did not answer")
        self.buf = b""
        self.s.sendall(b"+")
        self._send("?")  # the VM is stopped on attach
        while not self._read_packet().startswith(("T", "S")):
            pass
        self.cont()

    def _read_packet(self):
        while True:
            i = self.buf.find(b"$")
            j = self.buf.find(b"#", i + 1) if i >= 0 else -1
            if i >= 0 and j >= 0 and len(self.buf) >= j + 3:
                body = self.buf[i + 1:j]
                self.buf = self.buf[j + 3:]
                self.s.sendall(b"+")
                return body.decode()
            chunk = self.s.recv(4096)
            if not chunk:
                raise RuntimeError("gdb stub closed")
            self.buf += chunk

    def _send(self, body):
        csum = sum(body.encode()) % 256
        self.s.sendall(f"${body}#{csum:02x}".encode())

    def packet(self, body):
        """Sends a command; returns its reply, skipping stop replies left over from a halt."""
        self._send(body)
        while True:
            r = self._read_packet()
            if not r.startswith(("T", "S")):
                return r

    def cont(self):
        self._send("c")

    def flip(self, addr, bit):
        """Stops the VM, flips the bit, lets it run on. False if the byte is not readable."""
        self.s.sendall(b"\x03")
        while not self._read_packet().startswith(("T", "S")):  # the stop reply
            pass
        old = self.packet(f"m{addr:x},1")
        ok = len(old) == 2 and not old.startswith("E")
        if ok:
            new = int(old, 16) ^ (1 << bit)
            ok = self.packet(f"M{addr:x},1:{new:02x}") == "OK"
        self.cont()
        return ok


class Machine:
    def __init__(self, port, smp=1):
        self.port = port
        accel = ["-accel", "tcg"] if smp == 1 else ["-smp", str(smp), "-accel", "tcg,thread=multi"]
        cmd = ["qemu-system-x86_64", "-m", "512M", "-display", "none", "-no-reboot", *accel,
               "-cpu", "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt",
               "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", os.path.join(IMAGE, "nano_core"),
               "-initrd", os.path.join(IMAGE, "modules.tar"), "-append", "log=warn",
               "-serial", "stdio", "-monitor", "none", "-gdb", f"tcp::{port}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.s = qemu_run.Session(self.proc)
        self.gdb = None
        MACHINES.append(self)

    def alive(self):
        return self.proc.poll() is None

    def run(self, line, expect=r"delos> ", timeout=5.0):
        """Types a line; returns the output up to the next prompt (or None)."""
        start = len(self.s.buf)
        self.s.send(line.encode() + b"\r")
        end = self.s.wait_for(expect, start + len(line), time.monotonic() + timeout)
        return None if end is None else self.s.text(start)

    def answers(self, tag):
        return self.alive() and self.run(f"echo {tag}", expect=rf"^{tag}\r?$", timeout=5) is not None

    def sections(self):
        """{crate: {kind: [(addr, size)]}} for the target crates, from `ns -v`."""
        out = self.run("ns -v", timeout=20) or ""
        found = {}
        cur = None
        for line in out.splitlines():
            m = re.match(r"^ +(\S+) +\d+ bytes", line)  # crates of child namespaces are indented deeper
            if m:
                cur = m.group(1) if m.group(1) in CRATES else None
                continue
            m = re.search(r"^\s+(0x[0-9a-f]+)\s+(\d+) (Text|Rodata|Data|Bss) ", line)
            if cur and m and int(m.group(2)) > 0:
                found.setdefault(cur, {}).setdefault(KINDS[m.group(3)], []).append((int(m.group(1), 16), int(m.group(2))))
        return found

    def tasks(self):
        """{id: (name, restarts)} from `ps` (asked again if the workload's output garbled it)."""
        found = {}
        for _ in range(3):
            out = self.run("ps", timeout=5) or ""
            found = {int(m.group(1)): (m.group(2), m.group(3))
                     for m in re.finditer(r"^ +(\d+)  (\S+) +\S+ +\d+ +(\S+)  ", out, re.M)}
            if re.search(r"^policy: ", out, re.M) and any(n == "idle" for n, _ in found.values()):
                break
        return found

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        if self in MACHINES:
            MACHINES.remove(self)


def beats_in(text):
    return [int(n) for n in BEAT.findall(text)]


def resumed(text, last):
    """Whether, after a fault, the output shows 10 consecutive correct beats whose first number
    is what an intact count would give. That is the last correct beat before the fault, plus
    the beats printed since, plus one (or two: the beat in flight may be lost). The beats
    printed since are known one of two ways:
    - by their numbers, when the malformed beats still print one (damaged text around an intact
      count: `...z: beat #11790`) and those numbers run on from the last correct beat without a
      gap (one malformed beat may span several lines, so its lines cannot be counted);
    - otherwise by counting the lines that look like a beat (malformed ones included: their
      beats happened);
    - or by counting the beats' first word, `heartbeat `, which each beat prints once whatever
      a damaged format does to the rest (seed 19, trial 20: each malformed beat printed
      read-only data with line breaks in it, running into the next beat's line, so neither
      its lines nor its number could be counted; Delos had repaired the format and the count
      went on).
    A count the flip changed never resumes either way."""
    if last is None:
        return False
    lines = text.splitlines()
    nums = [(i, int(m.group(1))) for i, l in enumerate(lines) if (m := BEAT.fullmatch(l.rstrip("\r")))]
    for k, (i, n) in enumerate(nums):
        run = [x for _, x in nums[k:k + 10]]
        if len(run) != 10 or any(y != x + 1 for x, y in zip(run, run[1:])):
            continue
        seen = sum(1 for l in lines[:i] if BEATISH.match(l))
        if last + seen + 1 <= n <= last + seen + 2:
            return True
        numbered = [int(x) for l in lines[:i] for x in BEAT_NUMBER.findall(l)]
        if numbered and numbered == list(range(last + 1, last + 1 + len(numbered))) and numbered[-1] + 1 <= n <= numbered[-1] + 2:
            return True
        words = len(BEAT_WORD.findall("\n".join(lines[:i])))
        if last + words + 1 <= n <= last + words + 2:
            return True
    return False


def healthy(m, window=0.5):
    """5 consecutive correct beats within `window` seconds, and nothing reported."""
    mark = len(m.s.buf)
    time.sleep(window)
    text = m.s.text(mark)
    b = beats_in(text)
    ok = len(b) >= 5 and all(y == x + 1 for x, y in zip(b, b[1:])) and not REPORT.search(text)
    return ok, (b[-1] if b else None)


def boot(port, smp=1):
    m = Machine(port, smp)
    if m.s.wait_for(r"delos> ", 0, time.monotonic() + 30) is None:
        m.stop()
        return None
    m.gdb = Gdb(port)
    # With more CPUs the workload runs on CPU 1, an AP: its faults, restarts and repairs happen
    # there, while the boot CPU runs the shell, the supervisor and the scrubber.
    m.run("beat 100000000 10" if smp == 1 else "on 1 beat 100000000 10")
    if smp > 1:
        time.sleep(0.3)
        listing = m.run("ps") or ""
        if not re.search(r"^\s*\d+\s+beat\s+\S+\s+\d+\s+\S+\s+1\s", listing, re.M):
            print(f"faults: the workload is not on CPU 1:\n{listing}", file=sys.stderr)
            m.stop()
            return None
    time.sleep(0.3)
    return m


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifested", type=int, default=300)
    p.add_argument("--max-trials", type=int, default=20000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=12345)
    p.add_argument("--smp", type=int, default=1, help="CPUs of the guest; with 2 or more the workload runs on CPU 1")
    p.add_argument("--targets", default=",".join(CRATES))
    p.add_argument("--kinds", default="code,data", help="code, data or both (comma-separated)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per trial")
    p.add_argument("--save", help="write the serial output of each manifested trial into this directory")
    p.add_argument("--table-from", metavar="LOG", help="print the table of a (possibly stopped) -v run's output and exit")
    a = p.parse_args()
    if a.table_from:
        return table_from(a.table_from)
    rng = random.Random(a.seed)
    targets = [(c, k) for c in a.targets.split(",") for k in a.kinds.split(",")]
    table = {t: {"trials": 0, "manifested": 0, "contained": 0, "recovered": 0, "masked": 0} for t in targets}
    totals = {"trials": 0, "manifested": 0, "reboots": 0}
    kinds = {}
    m = None
    secs = {}
    secs_mark = 0
    t0 = time.monotonic()
    while totals["manifested"] < a.manifested and totals["trials"] < a.max_trials:
        ok, last = (False, None) if m is None or not m.alive() else healthy(m)
        if not ok:
            if a.verbose:
                print("rebooting", flush=True)
            if m:
                m.stop()
                totals["reboots"] += 1
            m = boot(a.port, a.smp)
            if m is None:
                print("faults: Delos did not boot", file=sys.stderr)
                sys.exit(1)
            secs = {}
            ok, last = healthy(m)
            if not ok:
                print("faults: a fresh Delos is not healthy (no correct beats)", file=sys.stderr)
                sys.exit(1)
        # Section addresses change when recovery reloads a crate: list them again after that.
        if not secs or "reloaded" in m.s.text(secs_mark):
            secs = m.sections()
            secs_mark = len(m.s.buf)
            ok, last = healthy(m)
            if not ok:
                continue
        present = [t for t in targets if secs.get(t[0], {}).get(t[1])]
        for t in targets:
            if t not in present and t in table and not table[t]["trials"]:
                print(f"faults: {t[0]} has no {t[1]} sections; not a target")
                del table[t]
        targets = [t for t in targets if t in present]
        if not targets:
            print("faults: no target sections found", file=sys.stderr)
            sys.exit(1)
        crate, kind = rng.choice(targets)
        regions = secs[crate][kind]
        before = m.tasks()
        ok, last = healthy(m, 0.2)
        if not ok:
            continue
        pick = rng.randrange(sum(s for _, s in regions))
        for base, size in regions:
            if pick < size:
                addr = base + pick
                break
            pick -= size
        bit = rng.randrange(8)
        mark = len(m.s.buf)
        if not m.gdb.flip(addr, bit):
            continue
        totals["trials"] += 1
        row = table[(crate, kind)]
        row["trials"] += 1
        time.sleep(1.5)
        after = m.s.text(mark)
        b = beats_in(after)
        seq = [last] + b
        reported = REPORT.search(after)
        wrong = any(y != x + 1 for x, y in zip(seq, seq[1:])) or re.search(r"heartbeat(?! v1: beat #\d+\r?$)", after, re.M)
        stopped = len(beats_in(m.s.text(len(m.s.buf) - min(len(after), 400)))) == 0
        if not (reported or wrong or stopped or not m.alive()):
            masked = bool(MASKED.search(after))
            row["masked"] += masked
            if a.verbose:
                print(f"trial {totals['trials']}: {crate} {kind} {addr:#x} bit {bit}: not manifested"
                      f"{' (masked: Delos reported a repair)' if masked else ''}", flush=True)
            continue
        totals["manifested"] += 1
        row["manifested"] += 1
        what = ("kernel died" if not m.alive() else "exception" if "CPU EXCEPTION" in after else
                "panic" if "panicked" in after else "wrong output" if wrong else "beats stopped")
        # Recovered: correct beats resume, without the harness's help, numbered as if nothing
        # had happened to the count (see resumed()).
        deadline = time.monotonic() + 8.0
        recovered = False
        while m.alive() and time.monotonic() < deadline and not recovered:
            recovered = resumed(m.s.text(mark), last)
            if not recovered:
                time.sleep(0.2)
        contained = False
        harmed = f"QEMU exited with code {m.proc.poll()}" if not m.alive() else "the shell does not answer"
        if m.alive() and m.answers(f"alive{totals['trials']}"):
            now = m.tasks()
            harmed = [f"{tid} {name}" for tid, (name, r) in before.items()
                      if name in LONG_LIVED and (tid not in now or now[tid] != (name, r))]
            contained = not harmed
        row["contained"] += contained
        row["recovered"] += recovered
        if a.save:
            os.makedirs(a.save, exist_ok=True)
            with open(os.path.join(a.save, f"trial{totals['trials']:04d}-{crate}-{kind}.log"), "w") as f:
                f.write(f"flip {addr:#x} bit {bit}: {what}; contained {contained}, recovered {recovered}\n")
                f.write(m.s.text(mark))
        if a.verbose:
            print(f"trial {totals['trials']}: {crate} {kind} {addr:#x} bit {bit}: {what}; "
                  f"{'contained' if contained else f'NOT contained ({harmed})'}, {'recovered' if recovered else 'NOT recovered'}", flush=True)
        k = kinds.setdefault(what, [0, 0, 0])
        k[0] += 1
        k[1] += contained
        k[2] += recovered
        if totals["manifested"] % 10 == 0:
            print(f"faults: {totals['trials']} trials, {totals['manifested']} manifested, "
                  f"{sum(r['contained'] for r in table.values())} contained, {sum(r['recovered'] for r in table.values())} recovered, "
                  f"{totals['reboots']} reboots ({time.monotonic() - t0:.0f} s)", flush=True)
        if not (contained and recovered):
            m.stop()
            m = None
            totals["reboots"] += 1
    if m:
        m.stop()
    print(f"faults: {totals['trials']} single-bit flips, {totals['manifested']} manifested, {totals['reboots']} reboots, "
          f"{time.monotonic() - t0:.0f} s (seed {a.seed})")
    print(f"   {'target':<22} {'trials':>7} {'manifested':>11} {'contained':>10} {'recovered':>10} {'masked':>7}")
    sums = {"trials": 0, "manifested": 0, "contained": 0, "recovered": 0, "masked": 0}
    for (crate, kind), r in table.items():
        for key in sums:
            sums[key] += r[key]
        print(f"   {crate + ' ' + kind:<22} {r['trials']:>7} {r['manifested']:>11} {r['contained']:>10} {r['recovered']:>10} {r['masked']:>7}")
    man = max(sums["manifested"], 1)
    print(f"   {'all':<22} {sums['trials']:>7} {sums['manifested']:>11} {sums['contained']:>10} {sums['recovered']:>10} {sums['masked']:>7}")
    print(f"faults: contained {100.0 * sums['contained'] / man:.1f}%, recovered {100.0 * sums['recovered'] / man:.1f}% of manifested "
          f"(Theseus, same definitions: 69.4% of 617 recovered; goals: recovered >= 90%, contained >= 99%)")
    for what, (n, c, r) in sorted(kinds.items()):
        print(f"   {what:<22} {n:>5} manifested, {c:>5} contained, {r:>5} recovered")


def table_from(log):
    """The table of a -v run's trial lines (for a campaign stopped before its end)."""
    table, kinds = {}, {}
    trial = re.compile(r"^trial (\d+): (\S+) (code|data) \S+ bit \d: (.*)$")
    last = 0
    for line in open(log, errors="replace"):
        m = trial.match(line.strip())
        if not m:
            continue
        last = int(m.group(1))
        row = table.setdefault((m.group(2), m.group(3)), {"trials": 0, "manifested": 0, "contained": 0, "recovered": 0, "masked": 0})
        row["trials"] += 1
        rest = m.group(4)
        if rest.startswith("not manifested"):
            row["masked"] += "masked" in rest
            continue
        what = rest.split(";")[0]
        c = "NOT contained" not in rest
        r = "NOT recovered" not in rest
        row["manifested"] += 1
        row["contained"] += c
        row["recovered"] += r
        k = kinds.setdefault(what, [0, 0, 0])
        k[0] += 1
        k[1] += c
        k[2] += r
    print(f"faults: table of {log} ({last} trials)")
    print(f"   {'target':<22} {'trials':>7} {'manifested':>11} {'contained':>10} {'recovered':>10} {'masked':>7}")
    sums = {"trials": 0, "manifested": 0, "contained": 0, "recovered": 0, "masked": 0}
    for (crate, kind), r in sorted(table.items(), key=lambda t: (CRATES.index(t[0][0]) if t[0][0] in CRATES else 99, t[0][1])):
        for key in sums:
            sums[key] += r[key]
        print(f"   {crate + ' ' + kind:<22} {r['trials']:>7} {r['manifested']:>11} {r['contained']:>10} {r['recovered']:>10} {r['masked']:>7}")
    man = max(sums["manifested"], 1)
    print(f"   {'all':<22} {sums['trials']:>7} {sums['manifested']:>11} {sums['contained']:>10} {sums['recovered']:>10} {sums['masked']:>7}")
    print(f"faults: contained {100.0 * sums['contained'] / man:.1f}%, recovered {100.0 * sums['recovered'] / man:.1f}% of manifested")
    for what, (n, c, r) in sorted(kinds.items()):
        print(f"   {what:<22} {n:>5} manifested, {c:>5} contained, {r:>5} recovered")


if __name__ == "__main__":
    try:
        main()
    finally:
        for m in list(MACHINES):
            if m.alive():
                m.stop()
