#!/usr/bin/env python3
"""The speed goals of `make bench` in one table: each figure measured in this run, its goal and
whether it is met. Reads what tools/bench.sh saved under target/ during the same run; a figure
whose step did not produce it is shown as "not measured", never guessed.

Usage: python3 tools/bench_goals.py [--target DIR]
"""
import argparse
import os
import re


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def first(regex, text, conv=float):
    m = re.search(regex, text, re.M)
    return conv(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target"))
    t = ap.parse_args().target
    # The boot's part of the log only (a later command may load more).
    shell = read(os.path.join(t, "bench-shell.log")).split("boot to shell:", 1)
    shell = shell[0] + "boot to shell:" + shell[1].split("\n", 1)[0] if len(shell) == 2 else shell[0]
    # Each crate's load is logged only in the boot with `log_loads` (the default boot above
    # gives the times without that output).
    loads_log = read(os.path.join(t, "bench-loads.log")).split("boot to shell:", 1)[0]
    loader = read(os.path.join(t, "bench-loader.txt"))
    prompt = read(os.path.join(t, "bench-prompt.txt"))
    wasm = read(os.path.join(t, "bench-wasm.log"))
    wasmhost = read(os.path.join(t, "bench-wasmhost.txt"))
    rows = []

    def row(what, now, goal, met):
        rows.append((what, now if now is not None else "not measured", goal, "—" if now is None else ("met" if met else "MISSED")))

    ratio = first(r"mod_mgmt [\d.]+ us, dlopen [\d.]+ us, ratio ([\d.]+)x", loader)
    row("mod_mgmt load+link of fx_a+fx_b+fx_c vs dlopen(RTLD_NOW)", ratio and f"{ratio:.2f}x", "<= 1.0x", ratio is not None and ratio <= 1.0)
    boot = first(r"boot to shell: (\d+) us from nano_core entry", shell)
    row("kernel clock, nano_core entry -> shell", boot and f"{boot / 1000:.0f} ms", "<= 40 ms", boot is not None and boot <= 40_000)
    imp = re.search(r"imported (\d+) nano_core symbols .* in (\d+) us", shell)
    row("of which: importing nano_core's symbols", imp and f"{int(imp.group(2)) / 1000:.1f} ms ({imp.group(1)} symbols)", "<= 3 ms",
        imp is not None and int(imp.group(2)) <= 3000)
    cap = first(r"crate captain loaded into kernel: .*, (\d+) us \(check", loads_log)
    row("of which: captain's own load (incl. the load-on-demand index)", cap and f"{cap / 1000:.1f} ms", "<= 2 ms", cap is not None and cap <= 2000)
    at_boot = [c for c in ("gimli", "debuginfo", "addr2line") if re.search(rf"crate {c} loaded into kernel", loads_log)]
    times = {c: first(rf"crate {c} loaded into kernel: .*, (\d+) us \(check", loads_log) for c in at_boot}
    lazy = [c for c in ("gimli", "debuginfo", "addr2line") if c not in at_boot]
    now = "; ".join([f"{c} {times[c] / 1000:.1f} ms at boot" for c in at_boot] + [f"{c} on first use" for c in lazy])
    row("gimli / debuginfo / addr2line at boot", now if loads_log else None, "on first use, or <= 2 ms",
        all(times[c] <= 2000 for c in at_boot))
    p = first(r"QEMU start -> prompt: median ([\d.]+) s", prompt)
    row("QEMU start -> prompt", p and f"{p:.3f} s", "<= 0.12 s", p is not None and p <= 0.12)
    # The first `wasm run` after boot loads the engine's crates: the loads logged after the command.
    after = wasm.split("wasm run kernels.wasm", 1)[1] if "wasm run kernels.wasm" in wasm else ""
    loads = [int(x) for x in re.findall(r"crate \S+ loaded into \S+: .*, (\d+) us \(check", after.split("wasm: compiled", 1)[0], re.M)]
    cg = first(r"crate cranelift_codegen loaded into kernel: .*, (\d+) us \(check", after)
    row("first `wasm run` after boot: loading the engine's crates", loads and f"{sum(loads) / 1000:.0f} ms ({len(loads)} crates; cranelift_codegen {cg / 1000:.0f} ms)" if cg else (loads and f"{sum(loads) / 1000:.0f} ms"),
        "<= 150 ms", bool(loads) and sum(loads) <= 150_000)
    gm = first(r"ours/wasmtime geometric mean: ([\d.]+)x", wasmhost)
    row("WASM vs wasmtime, geometric mean (host)", gm and f"{gm:.2f}x", "<= 1.0x", gm is not None and gm <= 1.0)
    guard = first(r"guard regions / explicit bounds checks, geometric mean .*?: ([\d.]+)x", wasmhost)
    row("WASM memories in the kernel", guard and f"guard regions (the kernel's default); host: {guard:.2f}x the time of explicit checks",
        "guard regions, as on the host", guard is not None)
    reused = re.search(r"^wasm: kernels: compiled code reused from the cache .*compiling took (\d+) us\); registered in (\d+) us", wasm, re.M)
    row("`wasm run` of a module compiled once", reused and f"no compile: cached (first run compiled in {int(reused.group(1)) / 1000:.0f} ms; second run registered in {int(reused.group(2)) / 1000:.1f} ms)",
        "no compile: cached", reused is not None)
    w = max(len(r[0]) for r in rows)
    print(f"   {'figure':<{w}}  {'goal':<28} {'':<7} this run")
    for what, now, goal, verdict in rows:
        print(f"   {what:<{w}}  {goal:<28} {verdict:<7} {now}")


if __name__ == "__main__":
    main()
