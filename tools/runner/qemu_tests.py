#!/usr/bin/env python3
"""QEMU integration tests: each case boots the image through qemu_run.py and checks the verdict.

A case says how to boot (route, kernel options, script), what qemu_run.py must conclude
(pass or fail), and what the serial log must and must not contain. Cases that expect the runner
to *fail* are the runner's own tests: a failing in-kernel test, a triple fault and a hang must
each make it fail.

Usage: qemu_tests.py [--filter SUBSTRING]   (prints one line per case and a summary)
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.path.join(ROOT, "target", "image")
RUNNER = os.path.join(ROOT, "tools", "runner", "qemu_run.py")
LOGS = os.path.join(ROOT, "target", "qemu-logs")

KTESTS_OK = r"ktest result: \d+ passed, 0 failed"

# name, options, runner verdict ("pass"/"fail"), expected regexes, rejected regexes
CASES = [
    dict(name="ktests_kernel_route", append="test", expect=[KTESTS_OK, "Multiboot1"], reject=["FAILED"]),
    dict(name="ktests_iso_route", iso="delos-test.iso", expect=[KTESTS_OK, "Multiboot2"], reject=["FAILED"], timeout=60),
    dict(name="ready_and_modules", append="poweroff",
         expect=["^nano_core ready", r"namespace kernel: .*core-[0-9a-f]+\.o", r"namespace applications: .*echo-[0-9a-f]+\.o",
                 r"boot stage paging: \d+ us"]),
    dict(name="fault_report_page_fault", append="fault=pagefault", exit="failure",
         expect=[r"CPU EXCEPTION in nano_core: page fault \(vector 14\)", "faulting address: 0xdeadb000",
                 r"error code: 0x2\b", r"rip: 0xffffffff8"]),
    dict(name="fault_report_invalid_opcode", append="fault=ud", exit="failure",
         expect=[r"CPU EXCEPTION in nano_core: invalid opcode \(vector 6\)"]),
    dict(name="fault_report_divide_error", append="fault=divide", exit="failure",
         expect=[r"CPU EXCEPTION in nano_core: divide error \(vector 0\)"]),
    dict(name="fault_report_stack_overflow_double_fault", append="fault=stack", exit="failure",
         expect=[r"CPU EXCEPTION in nano_core: double fault \(vector 8\)"]),
    dict(name="panic_report", append="fault=panic", exit="failure",
         expect=[r"PANIC in nano_core at nano_core/src/lib\.rs:\d+:\d+: deliberate panic"]),
    # The runner's own tests: each of these must make qemu_run.py fail.
    dict(name="runner_fails_on_failing_ktest", append="test test_fail", verdict="fail",
         expect=["ktest deliberate_failure ... FAILED"]),
    dict(name="runner_fails_on_triple_fault", append="fault=triple", verdict="fail", expect=["triggering fault"]),
    dict(name="runner_fails_on_hang", append="", verdict="fail", timeout=5, expect=["^nano_core ready"]),
    dict(name="runner_fails_on_missing_expectation", append="poweroff", verdict="fail",
         runner_expect=["this line is never printed"]),
]


def run_case(c):
    log = os.path.join(LOGS, c["name"] + ".log")
    cmd = [sys.executable, RUNNER, "--log", log, "--timeout", str(c.get("timeout", 30)), "--quiet",
           "--expect-exit", c.get("exit", "success")]
    if "iso" in c:
        cmd += ["--iso", os.path.join(IMAGE, c["iso"])]
    else:
        cmd += ["--kernel", os.path.join(IMAGE, "nano_core"), "--modules", os.path.join(IMAGE, "modules.tar"),
                "--append", c.get("append", "")]
    for e in c.get("runner_expect", []):
        cmd += ["--expect", e]
    r = subprocess.run(cmd, capture_output=True, text=True)
    verdict = "pass" if r.returncode == 0 else "fail"
    problems = []
    if r.returncode not in (0, 1):
        problems.append(f"runner error {r.returncode}: {r.stderr.strip()}")
    if verdict != c.get("verdict", "pass"):
        problems.append(f"runner said {verdict}, expected {c.get('verdict', 'pass')}: {r.stderr.strip()}")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    import re
    for e in c.get("expect", []):
        if not re.search(e, text, re.M):
            problems.append(f"log lacks {e!r}")
    for e in c.get("reject", []):
        if re.search(e, text, re.M):
            problems.append(f"log has {e!r}")
    return problems, log


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--filter", default="")
    a = p.parse_args()
    os.makedirs(LOGS, exist_ok=True)
    failed = []
    n = 0
    for c in CASES:
        if a.filter not in c["name"]:
            continue
        n += 1
        t0 = time.monotonic()
        problems, log = run_case(c)
        dt = time.monotonic() - t0
        if problems:
            failed.append(c["name"])
            print(f"qemu test {c['name']} ... FAILED ({dt:.1f} s, log {os.path.relpath(log, ROOT)})")
            for pr in problems:
                print(f"    {pr}")
        else:
            print(f"qemu test {c['name']} ... ok ({dt:.1f} s)")
    print(f"qemu tests: {n - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
