#!/usr/bin/env python3
"""`make swapstorm [MINUTES=N]`: the long swap storm.

Boots Delos once and, for about N minutes, repeats rounds of: start background work (a task
calling heartbeat in a loop, a WASM computation, a C program, selftest), 50 random swaps among
every live crate and the alternative versions (a new seed each round), and a reclaim. Then it
reclaims, measures memory (against the level after the first round: a crate's first swap may
change its layout once), runs the subsystem battery and prints the figures. Exits 0 only if
the kernel powered off with its success code, every swap committed and the battery passed.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tools", "runner", "qemu_run.py")
IMAGE = os.path.join(ROOT, "target", "image")
ALTS = "echo=echo_v2 heartbeat=heartbeat_v2 scheduler=scheduler_v2"
SECONDS_PER_ROUND = 9  # measured on the 2-core build machine (TCG)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10)
    a = p.parse_args()
    rounds = max(1, int(a.minutes * 60 / SECONDS_PER_ROUND))
    lines = ["wasm run hello.wasm w", "loadc hello.o w", "selftest", "wasm run kernels.wasm --invoke matmul 16", "echo warm",
             "swap echo echo_v2", "swap echo echo", "beat 1 1", "swap --reclaim", "mem"]
    for r in range(rounds):
        lines += ["beat 200 5 &", "wasm run kernels.wasm --invoke matmul 48 &", "loadc hello.o bg &", "selftest &",
                  f"swap --storm 50 --seed {r + 1} {ALTS}", "sleep 2000"]
        if r == 0:
            lines += ["swap --reclaim", "mem"]  # the steady-state baseline: after one round
    lines += ["swap --reclaim", "mem", "crash null", "crash panic", "wasm run traps.wasm --invoke divide 0",
              "loadc hello.o after", "selftest", "poweroff"]
    os.makedirs(os.path.join(ROOT, "target", "qemu-logs"), exist_ok=True)
    script = os.path.join(ROOT, "target", "qemu-logs", "swapstorm.script")
    log = os.path.join(ROOT, "target", "qemu-logs", "swapstorm.log")
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, RUNNER, "--log", log, "--timeout", str(int(rounds * SECONDS_PER_ROUND * 3 + 120)), "--quiet",
                        "--expect-exit", "success", "--script", script, "--kernel", os.path.join(IMAGE, "nano_core"),
                        "--modules", os.path.join(IMAGE, "modules.tar"), "--append", ""])
    text = open(log, errors="replace").read()
    storms = re.findall(r"swap: storm: (\d+) swaps committed, (\d+) failed; (\d+) us per swap on average, slowest (\d+) us \((\S+)\)", text)
    ok = sum(int(s[0]) for s in storms)
    failed = sum(int(s[1]) for s in storms)
    avg = sum(int(s[0]) * int(s[2]) for s in storms) // max(ok, 1)
    slowest = max(storms, key=lambda s: int(s[3])) if storms else ("0", "0", "0", "0", "-")
    mem = re.findall(r"^crates: (\d+) KiB mapped for loaded crates; (\d+) retired versions keep (\d+) KiB", text, re.M)
    heap = re.findall(r"^heap: +(\d+) KiB used", text, re.M)
    battery = all(re.search(e, text, re.M) for e in [r"crash: cleanup ran \(null\)", r"trap: integer divide by zero",
                                                     r"argv\[1\]=after", r"selftest: 11 passed, 0 failed"])
    print(f"swapstorm: {len(storms)} rounds in {time.monotonic() - t0:.0f} s: {ok} swaps committed, {failed} failed; "
          f"{avg} us per swap on average, slowest {int(slowest[3])} us ({slowest[4]})")
    if len(mem) >= 3:
        print(f"swapstorm: loaded crates {mem[0][0]} KiB at boot, {mem[1][0]} KiB after round 1, {mem[-1][0]} KiB after the last round; "
              f"retired versions kept after reclaim: {mem[-1][1]} ({mem[-1][2]} KiB); heap in use {heap[1]} KiB after round 1, {heap[-1]} KiB at the end")
    print(f"swapstorm: battery after the storm: {'passed' if battery else 'FAILED'}; log {os.path.relpath(log, ROOT)}")
    good = r.returncode == 0 and failed == 0 and ok > 0 and battery and len(mem) >= 3 and mem[1][0] == mem[-1][0]
    print("swapstorm: " + ("ok" if good else "FAILED"))
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
