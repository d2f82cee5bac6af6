#!/usr/bin/env python3
"""Live swap times per crate, in QEMU (TCG), for `make bench`.

For each crate X live in the system, `swap X X` twice; the second (warm: TCG has translated
the swap's code paths) is the figure. Two systems: *fresh* (just booted) and *loaded* (after a
WASM program, a C program, a panic, a background task and selftest ran, so the JIT, the C
library and the unwinder's crates are loaded too). Each row is the median over RUNS sessions,
matched by crate name (a label line precedes every swap). Also the alternative versions (a
changed command, a crate a task calls in a loop, the scheduler with a state hook).

Usage: swapbench.py [--runs N] [--json FILE]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tools", "runner", "qemu_run.py")
IMAGE = os.path.join(ROOT, "target", "image")
LOGS = os.path.join(ROOT, "target", "qemu-logs")
LOADED_WORK = ["wasm run hello.wasm w", "loadc hello.o w", "crash panic", "beat 100000 20", "selftest", "ns -n", "bt 1", "echo warm",
               "ps", "mem", "uptime", "sleep 1"]
ALTERNATIVES = [("echo", "echo_v2"), ("heartbeat", "heartbeat_v2"), ("scheduler", "scheduler_v2 --state scheduler::swap_hook")]
DONE = re.compile(r"swap: done: load (\d+) us, verify (\d+) us, relink (\d+) us, state (\d+) us, cleanup (\d+) us, total (\d+) us "
                  r"\((\d+) relocations")


def session(name, lines, timeout=600):
    script = os.path.join(LOGS, f"swapbench-{name}.script")
    log = os.path.join(LOGS, f"swapbench-{name}.log")
    with open(script, "w") as f:
        f.write("\n".join(lines + ["poweroff"]) + "\n")
    r = subprocess.run([sys.executable, RUNNER, "--log", log, "--timeout", str(timeout), "--quiet", "--expect-exit", "success",
                        "--script", script, "--kernel", os.path.join(IMAGE, "nano_core"), "--modules", os.path.join(IMAGE, "modules.tar"),
                        "--append", "log=warn"], capture_output=True, text=True)
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    if r.returncode != 0:
        sys.exit(f"swapbench: session {name} failed ({r.stderr.strip()[-200:]}); log {log}")
    return text


def live_crates(prefix):
    text = session("discover", prefix + ["ns -n"], timeout=300)
    names = []
    for ns in ("kernel", "applications"):
        lists = re.findall(rf"^crates of {ns}: (.*?)\r?$", text, re.M)
        names += [n for n in (lists[-1].split() if lists else []) if n != "nano_core" and not n.startswith("wasm:")]
    return names


def measure(tag, prefix, crates, alternatives):
    """label -> [load, verify, relink, state, cleanup, total, relocs] of the warm swap."""
    lines = list(prefix)
    for x in crates:
        lines += [f"echo BENCH {x}", f"swap {x} {x}", f"echo BENCH {x} warm", f"swap {x} {x}"]
    for old, new in alternatives:
        label = f"{old} -> {new.split()[0]}"
        lines += [f"echo BENCH {label}", f"swap {old} {new}", f"swap {old} {old}", f"echo BENCH {label} warm", f"swap {old} {new}",
                  f"swap {old} {old}"]
    text = session(tag, lines)
    out, label = {}, None
    for line in text.splitlines():
        m = re.match(r"^BENCH (.*?)\r?$", line)
        if m:
            label = m.group(1)
            continue
        d = DONE.search(line)
        if d and label and label.endswith(" warm") and label[:-5] not in out:
            out[label[:-5]] = [int(x) for x in d.groups()]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", default=os.path.join(ROOT, "target", "swapbench.json"))
    a = p.parse_args()
    os.makedirs(LOGS, exist_ok=True)
    fresh_crates = live_crates(["echo warm"])
    loaded_crates = live_crates(LOADED_WORK)
    runs = {"fresh": [], "loaded": []}
    for i in range(a.runs):
        runs["fresh"].append(measure(f"fresh-{i}", ["echo warm"], fresh_crates, []))
        runs["loaded"].append(measure(f"loaded-{i}", LOADED_WORK, loaded_crates, ALTERNATIVES))

    def med(state, label, col):
        vals = [r[label][col] for r in runs[state] if label in r]
        return int(statistics.median(vals)) if vals else None

    labels = loaded_crates + [f"{o} -> {n.split()[0]}" for o, n in ALTERNATIVES]
    print(f"   swap X X, warm (second of two), median of {a.runs} sessions, microseconds; fresh = just booted, "
          f"loaded = after WASM, C, a panic, a background task and selftest")
    print(f"   {'crate':<26} {'fresh':>8} {'loaded':>8} {'load':>8} {'verify':>7} {'relink+state':>12} {'cleanup':>8} {'relocs':>6}")
    table, totals, small = {}, [], []
    for label in labels:
        total = med("loaded", label, 5)
        if total is None:
            continue
        row = {c: med("loaded", label, i) for i, c in enumerate(["load", "verify", "relink", "state", "cleanup", "total", "relocs"])}
        row["fresh"] = med("fresh", label, 5)
        table[label] = row
        fresh = "-" if row["fresh"] is None else str(row["fresh"])
        print(f"   {label:<26} {fresh:>8} {total:>8} {row['load']:>8} {row['verify']:>7} {row['relink'] + row['state']:>12} "
              f"{row['cleanup']:>8} {row['relocs']:>6}")
        if "->" not in label:
            totals.append(total)
    with open(a.json, "w") as f:
        json.dump(table, f, indent=1)
    if totals:
        slowest = max((table[k]["total"], k) for k in table if "->" not in k)
        rs = sorted(table[k]["relink"] + table[k]["state"] for k in table if "->" not in k)
        print(f"   loaded system, over {len(totals)} crates: median {int(statistics.median(totals))} us (goal <= 5000), "
              f"slowest {slowest[0]} us ({slowest[1]}; goal <= 30000), relink+state median {int(statistics.median(rs))} us, "
              f"max {rs[-1]} us (goal <= 100)")
        small = [table[k]["total"] for k in ("echo", "heartbeat", "sleep", "ps", "mem", "uptime") if k in table]
        if small:
            print(f"   small crates (echo, heartbeat, sleep, ps, mem, uptime): median {int(statistics.median(small))} us, "
                  f"max {max(small)} us (goal <= 1000)")


if __name__ == "__main__":
    main()
