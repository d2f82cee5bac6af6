#!/usr/bin/env python3
"""The scrubber's cost to a CPU-bound workload (part of make bench).

Boots Delos with scrub_ms=0 (no scrubber: the baseline), 1000 (the default) and 100, in
interleaved rounds, and times the same workload in each: `wasm run kernels.wasm --invoke
matmul 24 --repeat 20` (the WASM engine is loaded by a first, untimed run). Reports the median
time per setting and its ratio to the baseline's median.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG = os.path.join(ROOT, "target", "image")
SETTINGS = [0, 1000, 100]
WORK = "wasm run kernels.wasm --invoke matmul 24 --repeat 20"


def once(scrub_ms):
    script = os.path.join(ROOT, "target", "bench-scrub-session.txt")
    with open(script, "w") as f:
        f.write(f"wasm run kernels.wasm --invoke matmul 8\n{WORK}\nverify\npoweroff\n")
    log = os.path.join(ROOT, "target", "bench-scrub-run.log")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools/runner/qemu_run.py"), "--kernel", os.path.join(IMG, "nano_core"),
                    "--modules", os.path.join(IMG, "modules.tar"), "--append", f"log=warn scrub_ms={scrub_ms}",
                    "--script", script, "--quiet", "--timeout", "300", "--log", log], check=True, capture_output=True)
    text = open(log, errors="replace").read()
    us = re.search(r"wasm: 20 runs of kernels .* in (\d+) us", text)
    passes = re.search(r"recovery: (\d+) scrub passes \((\d+) us hashing\)", text)
    if not us or not passes:
        raise SystemExit(f"scrubbench: no timing in {log}")
    return int(us.group(1)), int(passes.group(1)), int(passes.group(2))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    times = {s: [] for s in SETTINGS}
    scrub = {s: [] for s in SETTINGS}
    for _ in range(a.rounds):
        for s in SETTINGS:
            us, n, hashing = once(s)
            times[s].append(us)
            if n:
                scrub[s].append(hashing / n)
    base = statistics.median(times[0])
    print(f"   workload: `{WORK}`, {a.rounds} interleaved rounds, medians")
    for s in SETTINGS:
        med = statistics.median(times[s])
        what = "no scrubber (baseline)" if s == 0 else f"scrub_ms={s}"
        per_pass = f"; {statistics.median(scrub[s]):.0f} us hashing per pass" if scrub[s] else ""
        print(f"   {what:<24} {med / 1000:8.1f} ms  ratio {med / base:.3f}{per_pass}")


if __name__ == "__main__":
    main()
