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
IMAGE = os.environ.get("QEMU_TESTS_IMAGE", os.path.join(ROOT, "target", "image"))
RUNNER = os.path.join(ROOT, "tools", "runner", "qemu_run.py")
LOGS = os.path.join(ROOT, "target", "qemu-logs")
DIGEST_LINES = 25  # log lines per failed case in FAILED.txt
# QEMU_TESTS_SMP=N runs every case that does not choose its CPUs with `-smp N` (`make test` runs
# the combination cases again so; see SMP_CASES).
SMP = os.environ.get("QEMU_TESTS_SMP", "")
# The cases `make test` runs again with `-smp 4` (`--smp-cases`): the combinations (every swap,
# the storm, faults, recovery, WASM, namespaces), now with parked CPUs hashing at boot and
# every unmapping waiting for their TLB shootdowns. (The whole suite passes with
# QEMU_TESTS_SMP=4 too; twice the whole suite would take CI past its time.)
SMP_CASES = [
    "swap_matrix_every_crate_then_every_subsystem", "swap_storm_under_load", "recovery_combined_with_swaps_and_wasm",
    "namespaces_combined_with_recovery_swap_and_wasm", "recovery_after_swap_reloads_the_swapped_in_version",
    "wasm_wasi_program_and_symbols", "wasm_host_panic_unwinds_40_times", "faults_in_tasks_kill_only_the_task",
    "selftest_tasks_preemption_tls_sse",
    # Hundreds of modules compiled with the parked CPUs helping: every compile a round of jobs.
    "wasm_spec_subset_in_the_kernel",
]

# Pinned: every in-kernel test ran (a lost test must fail this, not pass as "0 passed").
KTESTS_OK = r"ktest result: 10 passed, 0 failed"
# matmul(16) of crates/wasm/programs/rust/kernels, computed natively (the same f64 loop on the
# host gives the same bits: IEEE-754 double, same order of operations).
MATMUL16 = r"wasm: kernels returned 1082712064\r?$"

# The swap storm: warm everything up, measure, run background work and 40 random swaps (seeded),
# let the work finish, reclaim, measure again, then the battery.
STORM_SCRIPT = ["wasm run hello.wasm w", "loadc hello.o w", "selftest", "wasm run kernels.wasm --invoke matmul 16", "echo warm",
                "swap echo echo_v2", "echo hi", "swap echo echo", "beat 1 1", "sleep 50", "crash null",
                "wasm run traps.wasm --invoke divide 0", "swap --reclaim", "mem",
                "beat 300 5 &", "wasm run kernels.wasm --invoke matmul 48 &", "loadc hello.o bg &", "selftest &",
                "swap --storm 40 --seed 7 echo=echo_v2 heartbeat=heartbeat_v2 scheduler=scheduler_v2",
                "sleep 3000", "swap --reclaim", "mem",
                "beat 100 5 &", "selftest &", "swap --storm 40 --seed 8 echo=echo_v2 heartbeat=heartbeat_v2 scheduler=scheduler_v2",
                "sleep 2000", "swap --reclaim", "mem", "loadc hello.o after", "ps", "poweroff"]


def storm_memory_check(text):
    """Crate memory after the second storm equals that after the first (a crate's first swap may
    change its layout once; a leak would grow it every time); retired leftovers are bounded: at
    most one retired version of any crate, each named with what still refers to it, 256 KiB in
    all. (80 storm swaps retire 80 versions; a leak would keep several of one crate. What is
    kept is a handful of single versions: a restarted shell running on the bottom frame of the
    unwind and task versions it was started under, holding a closure vtable of the latter, and
    stale words the conservative scan cannot tell from references: 3 or 4 of them per run.)"""
    import re
    rows = re.findall(r"^crates: (\d+) KiB mapped for loaded crates; (\d+) retired versions keep (\d+) KiB", text, re.M)
    if len(rows) != 3:
        return [f"expected 3 `mem` crate lines, found {len(rows)}"]
    (_, _, _), (first, _, _), (after, retired, kept) = rows
    problems = []
    if first != after:
        problems.append(f"memory of loaded crates {first} KiB after the first storm, {after} KiB after the second")
    last = text[text.rindex("swap --reclaim"):]
    held = re.findall(r"^swap: retired (\S+) \(crate#\d+, \d+ bytes\) is still referenced: ", last, re.M)
    if len(held) != int(retired):
        problems.append(f"{retired} retired versions kept, {len(held)} named with a holder by the last reclaim")
    if len(set(held)) != len(held) or int(kept) > 256:
        problems.append(f"retired versions kept after reclaim: {sorted(held)}, {kept} KiB (bound: one per crate, 256 KiB)")
    return problems


def rejoin_beats(text):
    """Puts back together a beat line that a fault report cut in two: a report from an NMI or a
    fault handler is written without the console's lock when the code it interrupted on the same
    CPU holds it (or a bounded wait for another CPU gave up), so it can land anywhere in a beat
    line (`heartb` ... report lines ... `eat v1: beat #7`). Only
    report lines (empty, or starting with four spaces or `!!!`) may lie between the pieces, and
    the pieces must make a whole beat line."""
    import re

    beat = re.compile(r"heartbeat v\d+: beat #\d+\r?")
    is_report = re.compile(r"(?:(?:    |!!! ).*)?\r?")
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        joined = None
        if not beat.fullmatch(line):
            # The report began mid-line (at four spaces) or at the next line.
            cuts = [k for k in range(len(line)) if line.startswith("    ", k)] + [len(line.rstrip("\r"))]
            for j in range(i + 1, min(i + 12, len(lines))):
                for k in cuts:
                    if line[:k] and beat.fullmatch(line[:k] + lines[j]):
                        joined = (k, j)
                        break
                if joined or not is_report.fullmatch(lines[j]):
                    break
        if joined:
            k, j = joined
            out.append(line[:k] + lines[j])
            out.append(line[k:])
            out.extend(lines[i + 1:j])
            i = j + 1
        else:
            out.append(line)
            i += 1
    return "\n".join(out)


def beats_exactly_once(first, last, version=r"v\d"):
    """A check: heartbeat beats #first..#last each appear exactly once (none lost, none
    repeated by a restarted task)."""
    import re

    def check(text):
        got = [int(n) for n in re.findall(r"heartbeat " + version + r": beat #(\d+)\r?$", rejoin_beats(text), re.M)]
        want = list(range(first, last + 1))
        return [] if sorted(got) == want else [f"beats {got}, expected each of {first}..{last} once"]
    return check


def beats_consecutive(at_least):
    """A check: heartbeat beats #1..#N appear once each, in order, N >= at_least (the count, a
    static, carried across swaps: no beat lost, none counted twice)."""
    import re

    def check(text):
        got = [int(n) for n in re.findall(r"heartbeat v\d: beat #(\d+)\r?$", rejoin_beats(text), re.M)]
        ok = got == list(range(1, len(got) + 1)) and len(got) >= at_least
        return [] if ok else [f"beats {got}: expected 1, 2, 3, ... up to at least {at_least}"]
    return check


def same_compiles(text, count):
    """Problems unless the log has `count` compiles of module kernels, all giving the same
    code size and IR instruction count (a compile with helpers is the serial one's code)."""
    import re
    got = re.findall(r"compiled kernels: (\d+) functions, (\d+) bytes of code, (\d+) IR instructions", text)
    if len(got) != count:
        return [f"{len(got)} compiles of kernels, expected {count}"]
    return [] if len(set(got)) == 1 else [f"compiles differ: {got}"]


def results_are(text, pattern, count):
    """Problems unless `pattern` matches exactly `count` lines."""
    import re
    n = len(re.findall(pattern, text, re.M))
    return [] if n == count else [f"{n} lines match {pattern!r}, expected {count}"]


# name, options, runner verdict ("pass"/"fail"), expected regexes, rejected regexes
CASES = [
    dict(name="ktests_kernel_route", append="test", expect=[KTESTS_OK, "Multiboot1"], reject=["FAILED"]),
    dict(name="ktests_iso_route", iso="delos-test.iso", expect=[KTESTS_OK, "Multiboot2"], reject=["FAILED"], timeout=60),
    dict(name="ready_and_modules", append="poweroff log=debug",
         expect=["^nano_core ready", r"namespace kernel: .*core-[0-9a-f]+\.o", r"namespace applications: .*echo-[0-9a-f]+\.o",
                 r"boot stage paging: \d+ us"]),
    # The loadable kernel and its shell, driven through scripted sessions.
    dict(name="boot_to_shell_summary", script=["poweroff"],
         expect=[r"imported \d+ nano_core symbols", r"loaded captain-[0-9a-f]+\.o: \d+ crates",
                 r"exceptions: IDT with every CPU exception \(vectors 0-21, 28-30\) loaded", r"task: tasking started",
                 r"boot to shell: \d+ us from nano_core entry; \d+ crates loaded, \d+ sections, \d+ symbols, \d+ relocations applied",
                 "^powering off"]),
    dict(name="shell_via_iso_route", iso="delos.iso", script=["echo iso route works", "poweroff"], timeout=60,
         expect=["Multiboot2", "^iso route works"]),
    dict(name="shell_echo_and_quotes", script=["echo plain  \"double quoted\" 'single quoted' esc\\ aped", "poweroff"],
         expect=["^plain double quoted single quoted esc aped\r?$"]),
    dict(name="shell_unknown_command_then_next_works", script=["frobnicate --now", "echo still alive", "poweroff"],
         expect=[r"shell: unknown command: frobnicate \(try `help`\)", "^still alive"]),
    # `help` describes every command from the image's table, loading none of them (it used to
    # load every command crate, the WASM engine and Cranelift among them).
    dict(name="shell_help_lists_commands", append="log_loads", script=["help", "poweroff"],
         expect=[r"^  addr2sym +name addresses", r"^  ns +namespaces as a tree, crates, retired versions", r"^  poweroff +power off", r"^  sym2addr +find symbols",
                 r"^  wasm +WebAssembly", r"crate shell loaded into applications: \d+ sections"],
         # Loads are logged (`log_loads`): the shell's own load shows, and no command's.
         reject=[r"crate (addr2sym|wasm|wasm_runtime|cranelift_codegen|ns|sym2addr) loaded into", r"^  (heartbeat|tlibc|path|vfs|wasm_runtime) "]),
    dict(name="sym2addr_then_addr2sym_plus_5", script=[
            "sym2addr shell::run", r"@capture A ^(0x[0-9a-f]+) +\d+ shell::run",
            "addr2sym {A+5}",
            "sym2addr nano_core::kernel::start", r"@capture B ^(0x[0-9a-f]+) +\d+ nano_core::kernel::start",
            "addr2sym {B+5}",
            "sym2addr task::sched*", "poweroff"],
         expect=[r"^0x[0-9a-f]+: shell::run \+ 0x5 \[crate shell in applications", r"^    at \S*crates/shell/src/lib.rs:\d+:\d+",
                 r"^0x[0-9a-f]+: nano_core::kernel::start \+ 0x5 \[crate nano_core in kernel",
                 r"task\[[0-9a-f]+\]::schedule \[kernel/task\]"]),
    dict(name="addr2sym_unmapped_is_an_error", script=["addr2sym 0x1234", "addr2sym nonsense", "poweroff"],
         expect=[r"addr2sym: 0x1234 is not in nano_core or any loaded crate", r"addr2sym: not an address: nonsense",
                 r"shell: addr2sym exited with status"]),
    dict(name="sym2addr_missing_is_an_error", script=["sym2addr no::such::symbol", "poweroff"],
         expect=[r"sym2addr: no symbol matches no::such::symbol"]),
    dict(name="deps_shows_known_edges", script=["deps shell", "deps task", "sym2addr shell::run", r"@capture A ^(0x[0-9a-f]+) +\d+ shell::run", "deps {A}", "poweroff"],
         expect=[r"crate shell\r?\n  uses: .*\btask\b", r"crate task\r?\n  uses: .*\bnano_core\b.*\r?\n  used by: .*\bshell\b",
                 r"section shell: shell::run\r?\n  uses \(\d+\):(\r?\n    .*)*task: task::spawn_restartable"]),
    dict(name="ns_lists_namespaces_and_sections", script=["ns", "ns -v", "poweroff"],
         expect=[r"namespace kernel \(parent -\): \d+ crates", r"namespace applications \(parent kernel\)",
                 r"^  nano_core +0 bytes .*\(prelinked\)", r"^  task +\d+ bytes", r"region 0x[0-9a-f]+ \+0x[0-9a-f]+ r-x",
                 r"region 0x[0-9a-f]+ \+0x[0-9a-f]+ rw-", r"Text \.ltext\."]),
    dict(name="ps_kill_mem_uptime", script=["ps", "kill 999", "kill x", "mem", "uptime", "poweroff"],
         expect=[r"^address space: \d+ freed ranges \(\d+ KiB\) kept for reuse by crates, \d+ \(\d+ KiB\) by programs", r"^ +0  idle ", r"^ +1  shell ", r"policy: round-robin", "kill: no task 999", "kill: not a task id: x",
                 r"^frames: \d+ used of \d+", r"^heap: +\d+ KiB used", r"^up \d+\.\d{6} s; \d+ timer ticks at 100 Hz"]),
    # The line editor: each case's output line is what the command printed (the echo of the
    # edited line is checked by the history case, whose command runs twice).
    dict(name="line_editing_backspace_arrows_history", script=[
            "echo abX\\x7fc", "echo ac\\x1b[Db", "echo hist-one", "\\x1b[A", "echo x\\x1b[Dy", "\\x0c",
            "echo two", "echo three", "\\x1b[A\\x1b[A\\x1b[A\\x1b[B", "poweroff"],
         expect=["^abc\r?$", "^yx\r?$", "\x1b\\[2J"],
         counts=[("^abc\r?$", 2), ("^hist-one\r?$", 2), ("^two\r?$", 2), ("^three\r?$", 1)]),
    # Home/End as xterm, xterm's application mode, tmux/screen/the Linux console and rxvt send
    # them; Delete, Right; unknown sequences ignored whole; UTF-8 in and out, the cursor moving by
    # character.
    dict(name="line_editing_terminal_keys_and_utf8", script=[
            "cd\\x1b[Hecho ab\\x1b[Fe", "cd\\x1bOHecho ab\\x1bOFe", "cd\\x1b[1~echo ab\\x1b[4~e", "cd\\x1b[7~echo ab\\x1b[8~e",
            "cd\\x01echo ab\\x05e", "echo abXc\\x1b[D\\x1b[D\\x1b[3~", "echo ac\\x1b[D\\x1b[D\\x1b[Cb",
            "echo u1 a\\x1b[999Db\\x1b[15~c\\x1b[5~d\\x1bOPe", "echo \\xc3\\xa9\\xe2\\x98\\x83\\xf0\\x9d\\x84\\x9e",
            "echo \\xc3\\xa9\\x1b[D\\xe2\\x98\\x83", "echo v\\xe2\\x98w", "poweroff"],
         counts=[("^abcde\r?$", 5), ("^abc\r?$", 2)],
         expect=["^u1 abcde\r?$", "^é☃𝄞\r?$", "^☃é\r?$", "^vw\r?$"],
         reject=[r"\b999D", r"\b15~", r"\b5~", r"\bOPe", "unknown command"]),
    dict(name="ctrl_c_interrupts_foreground_command", script=["sleep 100000", "@send \\x03", "@expect was killed", "echo after", "poweroff"],
         expect=["shell: sleep was killed", "^after"]),
    dict(name="selftest_tasks_preemption_tls_sse", script=["selftest", "echo shell still alive", "poweroff"], timeout=60,
         expect=[r"selftest: 11 passed, 0 failed", r"task \d+ \(st-fault\) killed by page fault",
                 r"rip: 0x[0-9a-f]+ in .*selftest::fault_kills_only_the_task.* \(crate selftest, namespace applications\)",
                 "^shell still alive"], reject=["FAILED"]),
    # Live swap.
    dict(name="swap_changes_a_command_and_back", script=["echo hi", "swap echo echo_v2", "echo hi", "swap echo echo", "echo hi", "poweroff"],
         expect=[r"(?s)^hi\r?$.*swap: done: load \d+ us, verify \d+ us, relink \d+ us, state \d+ us, cleanup \d+ us, total \d+ us.*^echo v2: hi\r?$.*swap: done.*^hi\r?$"],
         reject=["CPU EXCEPTION"]),
    dict(name="swap_a_crate_a_running_task_calls_in_a_loop", script=[
            "beat 40 40", "sleep 300", "swap heartbeat heartbeat_v2 -v", "sleep 300", "swap heartbeat heartbeat", "sleep 300", "ps", "poweroff"],
         timeout=60,
         expect=[r"heartbeat v1: beat #\d+", r"state: heartbeat::BEATS \(24 bytes\) shared",
                 r"(?s)heartbeat v1: beat #(\d+)\r?\n.*?heartbeat v2: beat #\d+.*heartbeat v1: beat #\d+"],
         check=beats_consecutive(15), reject=["CPU EXCEPTION", "killed by"]),
    dict(name="swap_scheduler_policy_while_tasks_run", script=[
            "beat 60 20", "swap scheduler scheduler_v2 --state scheduler::swap_hook", "ps", "selftest",
            "swap scheduler scheduler --state scheduler::swap_hook", "ps", "echo still scheduling", "poweroff"],
         timeout=90,
         expect=[r"(?s)policy: round-robin-v2.*selftest: 11 passed, 0 failed.*policy: round-robin\r?$", "^still scheduling"],
         reject=["selftest .* FAILED", "fault outside any task"]),
    dict(name="swap_refusals_change_nothing", script=[
            "beat 1 10", "sleep 100",
            "sym2addr heartbeat::beat", r"@capture A ^(0x[0-9a-f]+) +\d+ heartbeat::beat",
            "swap heartbeat heartbeat_bad", "swap heartbeat heartbeat_big", "swap heartbeat nosuch", "swap nope echo_v2",
            "swap heartbeat heartbeat_v2 --dry-run", "swap scheduler scheduler_v2 --state no::such::hook",
            "addr2sym {A}", "deps heartbeat", "beat 1 10", "sleep 100", "poweroff"],
         timeout=60,
         expect=[r"swap: new version of heartbeat cannot replace the old one: missing `heartbeat::beat`",
                 r"swap: state of heartbeat cannot be transferred by name: heartbeat::BEATS \(old 24 bytes, new 48 bytes\) \(give a state hook\)",
                 r"swap: no object nosuch among the updates or in the directory of namespace applications",
                 r"swap: no crate nope is loaded", r"swap: dry run ok: load \d+ us, verify \d+ us; 1 relocations would be rewritten",
                 r"swap: no new version exports the state hook no::such::hook",
                 r"^0x[0-9a-f]+: heartbeat::beat \+ 0x0 \[crate heartbeat in applications", r"used by: beat",
                 r"heartbeat v1: beat #2\r?$"],
         reject=["heartbeat v2", "CPU EXCEPTION"]),
    dict(name="swap_1000_cycles_leak_nothing", script=["echo load echo first", "swap --cycles 1000 echo echo_v2", "poweroff"], timeout=240,
         expect=[r"swap: 1000 cycles \(2000 swaps\)", r"swap: leak: none"]),
    dict(name="push_then_swap_and_bad_transfers", push=True, needs_object="crates/alt/echo_v3", script=[
            "echo before", "@push applications {OBJECT} echo_v3.o", "@expect push: received echo_v3.o",
            "swap echo echo_v3", "echo after push",
            "@push applications {OBJECT} bad.o corrupt", "@expect push: rejected",
            "@push applications {OBJECT} trunc.o truncate=2000", "@expect push: received trunc.o",
            "swap echo trunc", "swap echo bad", "echo still v3", "cpus", "poweroff"],
         expect=[r"push: received echo_v3.o \(\d+ bytes in \d+ ms, crc [0-9a-f]{8}, signature verified\) into the updates of namespace applications",
                 "^echo v3: after push", r"push: rejected: bad.o: checksum mismatch",
                 r"swap: cannot load the new version trunc.o: trunc.o: malformed object",
                 r"swap: no object bad among the updates", "^echo v3: still v3",
                 # Both ports receive through the I/O APIC: every typed line and pushed byte came
                 # by interrupt (the pushes alone are over 10,000 bytes).
                 r"smp: COM2 receives by interrupt: ISA IRQ 3 at I/O APIC input \d+ \(GSI \d+\) as vector 0x63 to APIC 0",
                 r"serial input: COM1 by interrupt \(ISA IRQ 4 as GSI \d+ to APIC 0\): [1-9]\d* interrupts, [1-9]\d+ bytes",
                 r"serial input: COM2 by interrupt \(ISA IRQ 3 as GSI \d+ to APIC 0\): [1-9]\d* interrupts, [1-9]\d{4,} bytes, 0 pauses for a full ring, 0 bytes waiting"]),
    # `serial_poll` keeps the old way: readers poll the UARTs; pushes and typing still work.
    dict(name="push_with_polled_serial_input", push=True, needs_object="crates/alt/echo_v3", append="serial_poll", script=[
            "echo before", "@push applications {OBJECT} echo_v3.o", "@expect push: received echo_v3.o",
            "swap echo echo_v3", "echo after push", "cpus", "poweroff"],
         expect=[r"smp: serial input polled \(serial_poll\)", "^echo v3: after push", r"^serial input: polled"],
         reject=[r"serial input: COM\d by interrupt"]),
    # Issue 20: only objects signed with the kernel's key get in.
    dict(name="push_refuses_unsigned_and_badly_signed_objects", push=True, needs_object="crates/alt/echo_v3", script=[
            "echo start", "@push applications {OBJECT} evil.o unsigned", "@expect push: rejected: evil.o",
            "@push applications {OBJECT} evil2.o badsig", "@expect push: rejected: evil2.o",
            "swap echo evil", "swap echo evil2", "@push applications {OBJECT} good.o", "@expect push: received good.o",
            "swap echo good", "echo signed", "poweroff"],
         expect=[r"push: rejected: evil\.o: unsigned object \(crate and C objects must be signed with the kernel's key; make push signs them\)",
                 r"push: rejected: evil2\.o: signature: the signature does not match the key the kernel was built with",
                 r"swap: no object evil among the updates", r"swap: no object evil2 among the updates", "^echo v3: signed"]),
    dict(name="tampered_object_in_the_image_is_refused", tamper="namespaces/applications/echo-", script=[
            "echo nope", "loadc hello.o still", "poweroff"],
         expect=[r"trust: the boot image's manifest of \d+ files is the one this kernel was built with \(SHA-512\)",
                 r"shell: cannot load command echo: echo-[0-9a-f]+\.o: untrusted object: its SHA-512 is in no signed manifest or verified push \(altered or unsigned\)",
                 r"hello from C: argc=2 argv\[1\]=still"],
         reject=["^nope"]),
    # With a second CPU, the large objects are hashed ahead by the parked CPU (the loader takes
    # its verdict): an altered one is refused all the same, the others load, nothing is lost.
    dict(name="tampered_object_hashed_ahead_by_a_parked_cpu_is_refused", tamper="namespaces/kernel/wasmparser-", qemu_args=["-smp", "2"],
         script=["sleep 1500", "wasm run hello.wasm a", "mem", "loadc hello.o still", "cpus --ping 5", "poweroff"],
         expect=[r"wasmparser-[0-9a-f]+\.o: untrusted object: its SHA-512 is in no signed manifest or verified push \(altered or unsigned\)",
                 r"signatures: \d+ objects \(\d+ KiB\) checked against the signed manifest in \d+ us; [1-9]\d* of them hashed ahead by parked CPUs",
                 r"hello from C: argc=2 argv\[1\]=still", r"cpu 1: 5 of 5 pings answered"],
         reject=[r"^a\r?$", "CPU EXCEPTION"]),
    # The shell's wait for a key is idle time: it hashes the large objects ahead of their first
    # load, so after a pause the WASM engine's 9 MiB code generator loads with its check done
    # (before: about 140 ms of SHA-512 on that load alone).
    dict(name="idle_time_hashes_large_objects_ahead", append="log_loads",
         script=["@pause 3", "mem", "wasm run hello.wasm a", "mem", "poweroff"],
         expect=[r"signatures: .*; [1-9]\d* hashed ahead by the idle loop, 0 begun there and finished by the loader",
                 r"crate cranelift_codegen loaded into kernel: .* us \(check \d{1,3}, ", r"hello from WASM, argc=2"],
         reject=[r"untrusted object", r"CPU EXCEPTION"]),
    # Three pieces of idle hashing (`idle_hash=3`) leave the largest object begun: the loader
    # takes the partial digest over and finishes it. An altered object is refused all the same.
    # One CPU: with more, a parked CPU claims the largest object at boot, before the idle work.
    dict(name="a_digest_begun_in_idle_time_is_finished_by_the_loader", append="idle_hash=3", qemu_args=["-smp", "1"],
         script=["@pause 1", "wasm run hello.wasm a", "mem", "poweroff"],
         expect=[r"hello from WASM, argc=2", r"signatures: .*; 0 hashed ahead by the idle loop, 1 begun there and finished by the loader"],
         reject=[r"untrusted object", r"CPU EXCEPTION"]),
    dict(name="tampered_object_begun_in_idle_time_is_refused", append="idle_hash=3", qemu_args=["-smp", "1"], tamper="namespaces/kernel/cranelift_codegen-",
         script=["@pause 1", "wasm run hello.wasm a", "mem", "loadc hello.o still", "poweroff"],
         expect=[r"cranelift_codegen-[0-9a-f]+\.o: untrusted object: its SHA-512 is in no signed manifest or verified push \(altered or unsigned\)",
                 r"signatures: .*; 0 hashed ahead by the idle loop, 1 begun there and finished by the loader",
                 r"hello from C: argc=2 argv\[1\]=still"],
         reject=[r"^a\r?$", "CPU EXCEPTION"]),
    # The parked CPU's hashing job faults with the first (largest) module claimed: the job is
    # abandoned, and the loader, which would have waited for that module's verdict for ever
    # (with interrupts off), sees the CPU's abandoned-job count move and hashes it itself.
    dict(name="a_hashing_job_abandoned_on_a_parked_cpu_is_taken_over", qemu_args=["-smp", "2"], append="smp_hash_fault",
         script=["sleep 500", "wasm run hello.wasm a", "mem", "cpus --ping 5", "cpus --job-fault ud", "poweroff"],
         expect=[r"^!!! CPU 1: page fault \(vector 14, error code 0x0\) at 0x[0-9a-f]+, faulting address 0x8 in a job: the job is abandoned and the CPU parks again",
                 r"hello from WASM, argc=2",
                 r"signatures: \d+ objects \(\d+ KiB\) checked against the signed manifest in \d+ us; \d+ of them hashed ahead by parked CPUs \(waited \d+ us for them\), 1 taken over from an abandoned job",
                 r"cpu 1: 5 of 5 pings answered", r"^cpus: CPU 1 runs jobs again: result agrees"],
         reject=[r"HANG", r"system halted", r"untrusted object"]),
    dict(name="tampered_manifest_refuses_to_boot", tamper="manifest", exit="failure",
         expect=[r"hand-over to captain: the boot image is not trusted: the signature does not match the key the kernel was built with"]),
    # A kernel that does not carry its image's manifest digest (an image assembled for a kernel
    # built earlier) checks the manifest's signature instead; the built-in digest makes the
    # signature unnecessary, so a damaged one does not matter to the kernel built with the image.
    dict(name="manifest_signature_checked_without_a_built_in_digest", kernel_without_digest=True,
         script=["echo signed image", "poweroff"],
         expect=[r"trust: the boot image's manifest of \d+ files is signed with this kernel's key", r"^signed image"]),
    dict(name="manifest_bad_signature_refused_without_a_built_in_digest", kernel_without_digest=True, tamper="manifest.sig",
         exit="failure",
         expect=[r"hand-over to captain: the boot image is not trusted: (the signature does not match the key the kernel was built with|manifest\.sig is not 64 bytes of hex)"]),
    # The linker's nano_core, booted without imgtool's table written into it: refused by name.
    dict(name="kernel_without_its_symbol_table_is_refused_by_name", kernel_file="target/kernel/x86_64-delos/release/nano_core",
         exit="failure",
         expect=[r"trust: the boot image's manifest of \d+ files is signed with this kernel's key",
                 r"hand-over to captain: nano_core's symbol table was never written into this binary: boot target/image/nano_core"]),
    dict(name="manifest_signature_not_needed_with_the_built_in_digest", tamper="manifest.sig",
         script=["echo built-in digest", "poweroff"],
         expect=[r"trust: the boot image's manifest of \d+ files is the one this kernel was built with", r"^built-in digest"]),
    # C programs and the path-based file view.
    dict(name="loadc_runs_c_with_malloc_printf_mmap", script=['loadc hello.o alpha "beta gamma"', "loadc hello.o again", "echo shell ok", "poweroff"],
         expect=[r"hello from C: argc=3 argv\[1\]=alpha argv\[2\]=beta gamma", r"string: Delos runs C \(12 bytes\)",
                 r"snprintf: \[   42\|ab  \|0xff\|     007\] \(26\)", r"qsort: -7 -3 0 3 5 9 12",
                 r"mmap: 0x[0-9a-f]+ holds \"written to an mmap page\"", r"mmap rwx: refused \(Invalid argument\)",
                 r"setjmp/longjmp: came back with 7", r"(?s)hello.c: all checks passed.*loadc: hello.o exited with status 0.*argc=2 argv\[1\]=again.*hello.c: all checks passed",
                 "^shell ok"], reject=["FAILED:"]),
    dict(name="loadc_fault_and_exit_kill_only_the_program", script=["loadc faulty.o", "loadc exits.o", "loadc nosuch.o", "loadc asserts.o",
                                                                    "loadc asserts.o abort", "echo shell ok", "poweroff"],
         expect=[r"rip: 0x[0-9a-f]+ in main \+ 0x[0-9a-f]+ \(crate faulty, namespace applications\)", r"task \d+ \(faulty.o\) killed by page fault",
                 r"loadc: faulty.o died: page fault", r"exits.c: calling exit\(3\)", r"loadc: exits.o exited with status 3",
                 r"loadc: no object file nosuch.o among the updates or in the directory of namespace applications",
                 r"(?s)asserts.c: mode assert\r?\n[^\n]*crates/loadc/programs/asserts.c:15: main: Assertion `!asked && \"asked to fail\"' failed.\r?\nabort\(\) called\r?\nloadc: asserts.o exited with status 134",
                 r"(?s)asserts.c: mode abort\r?\nabort\(\) called\r?\nloadc: asserts.o exited with status 134", "^shell ok"],
         reject=["not reached"]),
    # Namespaces made at run time: two versions of heartbeat side by side (a: the shared v1 of
    # applications; b: its own v2 from its directory), each with its own count; a swap scoped
    # to b; a drop refused while b's job runs; everything freed on drop.
    dict(name="namespaces_two_versions_side_by_side_and_scoped_swap", script=[
            "ns new a", "ns new b --file heartbeat_v2.o", "run --ns a beat 2 20 &", "@expect job 0 finished 2 beats",
            "run --ns b beat 3 20 &", "@expect job 0 finished 3 beats", "ns", "sym2addr heartbeat::beat", "sym2addr --ns b heartbeat::beat",
            "deps --ns b beat",
            "swap --ns b heartbeat_v2 heartbeat", "swap --ns b nosuch heartbeat", "run --ns b beat 1 10", "@expect job 1 finished 1 beats",
            "beat 1 10", "@expect job 0 finished 1 beats", "run --ns b beat 3 300 &", "ns drop b", "@expect job 2 finished 3 beats",
            "ns drop b", "ns drop a", "ns drop applications", "ns drop b", "ns new a --parent nowhere", 'ns new "bad name"', "ns new kernel",
            "ns new x --dir nowhere/updates", "ns -n", "poweroff"],
         expect=[r"ns: namespace b created \(parent applications, 1 object files\)",
                 r"(?s)heartbeat v1: beat #1.*heartbeat v1: beat #2.*heartbeat v2: beat #1.*heartbeat v2: beat #2.*heartbeat v2: beat #3",
                 r"^    namespace a \(parent applications, made at run time\): 1 crates",
                 r"^    namespace b \(parent applications, made at run time\): 2 crates",
                 r"^      heartbeat_v2 +\d+ bytes",
                 r"^0x[0-9a-f]+ +\d+ heartbeat::beat \[applications/heartbeat\]", r"^0x[0-9a-f]+ +\d+ heartbeat::beat \[b/heartbeat_v2\]",
                 r"swap: done: ", r"swap: crate nosuch is not loaded in namespace b \(a scoped swap replaces only that namespace's own crates\); nothing was changed",
                 # b's new version continues b's count (3); applications' v1 continues its own (2).
                 r"(?s)swap: done: .*heartbeat v1: beat #4\r?\n.*beat: job 1 finished 1 beats.*heartbeat v1: beat #3\r?\n",
                 r"ns: namespace b cannot be dropped: task \d+ \(beat\) runs in it",
                 r"ns: namespace b dropped: 4 crates unloaded \(\d+ bytes\): beat deps heartbeat_v2 sym2addr",
                 r"crate beat\r?\n  uses: nano_core \[kernel\], task \[kernel\], command \[kernel\], heartbeat_v2\r?\n",
                 r"ns: namespace a dropped: 1 crates unloaded \(\d+ bytes\): beat",
                 r"ns: namespace applications cannot be dropped: it is one of the boot namespaces", r"ns: no namespace b",
                 r"ns: no namespace nowhere", r'ns: bad namespace name "bad name"', r"ns: a namespace named kernel already exists",
                 r"ns: --dir nowhere/updates: no namespace nowhere"],
         reject=[r"^crates of (a|b):", "heartbeat v2: beat #4"]),
    # Namespaces combined with the rest: a restartable job in a namespace panics and is restarted
    # there (its frames named with the namespace), a scoped swap under it carries its count,
    # the code stays verified, the namespace drops although the supervisor saw its task die,
    # and fresh namespaces work for WASM and after the shell itself was swapped.
    dict(name="namespaces_combined_with_recovery_swap_and_wasm", script=[
            "ns new b --file heartbeat_v2.o", "run --ns b beat 8 100 --panic-at 3 &", "@expect beat: job 0 resumes at beat 3 of 8",
            "swap --ns b heartbeat_v2 heartbeat", "@expect job 0 finished 8 beats", "verify", "ns drop b", "ns -n",
            "run --fresh wasm run hello.wasm w", "swap shell shell", "run --fresh loadc hello.o after-shell-swap", "poweroff"],
         expect=[r"#\d+ +0x[0-9a-f]+ beat::run \+ 0x[0-9a-f]+ \(crate beat, namespace b\)",
                 r"recovery: task \d+ \(beat\) died \(beat: job 0 panics before beat 3 \(--panic-at\).*restarted as task \d+ \(restart 1\)",
                 # The swap is typed once beat 3 is under way: which beat is the first of v1
                 # depends on how fast the host runs the swap (one run on an overloaded host
                 # swapped after #4), so any of #4..#8 may be; every beat once, in order.
                 r"(?s)heartbeat v2: beat #1.*heartbeat v2: beat #2.*heartbeat v2: beat #3\r?\n.*heartbeat v1: beat #[4-8]\r?\n.*heartbeat v1: beat #8\r?\nbeat: job 0 finished 8 beats", r"^swap: done: ",
                 r"verify: \d+ crates, .* 0 corrupted", r"ns: namespace b dropped: 2 crates unloaded \(\d+ bytes\): beat heartbeat_v2",
                 r"(?s)shell: running wasm in the new namespace fresh1.*hello from WASM.*ns: namespace fresh1 dropped: 1 crates unloaded",
                 r"shell: continuing in the new version",
                 r"(?s)shell: running loadc in the new namespace fresh2.*hello.c: all checks passed.*ns: namespace fresh2 dropped: 1 crates unloaded \(\d+ bytes\): loadc"],
         counts=[(r"^(delos> )?heartbeat v[12]: beat #", 8)], check=beats_consecutive(8),
         reject=[r"^crates of b:", "cannot be dropped", r"(?s)heartbeat v1: beat #.*heartbeat v2: beat #"]),
    dict(name="namespaces_fresh_runs_and_200_cycles_leak_nothing", script=[
            "run --fresh loadc hello.o fresh", "run --fresh wasm run hello.wasm fresh", "run --fresh --cycles 200 echo cycling",
            "run --fresh nosuchcmd", "run --ns nowhere echo x", "run --fresh", "run --fresh echo bg &",
            "ns new c", "loadc --ns c hello.o inc", "wasm --ns c run hello.wasm inc", "wasm run --ns c hello.wasm again", "wasm --ns nowhere run hello.wasm x", "loadc --ns",
            "ns drop c", "ns -n", "poweroff"],
         expect=[r"(?s)shell: running loadc in the new namespace fresh1\r?\n.*hello.c: all checks passed.*ns: namespace fresh1 dropped: 1 crates unloaded \(\d+ bytes\): loadc",
                 r"(?s)shell: running wasm in the new namespace fresh2\r?\n.*hello from WASM, argc=2.*ns: namespace fresh2 dropped: 1 crates unloaded \(\d+ bytes\): wasm",
                 r"run: 200 fresh namespaces made, used and dropped", r"^run: leak: none",
                 r"shell: unknown command: nosuchcmd \(not in namespace fresh203 or its parents\)", r"shell: no namespace nowhere",
                 r"usage: run --ns NAME CMD \[ARGS\] \| run --fresh", r"shell: run --fresh waits for its command",
                 r"(?s)delos> loadc --ns c hello.o inc\r?\n.*hello from C: argc=2 argv\[1\]=inc", r"(?s)delos> wasm --ns c run hello.wasm inc\r?\n.*hello from WASM, argc=2", r"(?s)delos> wasm run --ns c hello.wasm again\r?\n.*hello from WASM, argc=2\r?\nhello.wasm\r?\nagain",
                 r"wasm: no namespace nowhere", r"loadc: --ns needs a namespace name",
                 r"ns: namespace c dropped: 2 crates unloaded \(\d+ bytes\): loadc wasm"],
         counts=[(r"^cycling\r?$", 200)],
         reject=[r"^crates of fresh"]),
    # A third-party C library (LZ4, vendored unmodified), compiled by make cobj from three files,
    # pushed to the running kernel (not in the image) and run by loadc from the updates; its
    # output must equal, line for line, the same sources built for the host in this run.
    dict(name="loadc_third_party_c_library_matches_host", push=True,
         c_host=dict(srcs=["crates/loadc/programs/lz4demo.c", "crates/loadc/programs/third_party/lz4/lz4.c", "crates/loadc/programs/third_party/lz4/lz4hc.c"],
                     runs=[["65536", "50"], ["3000", "7"], ["200000", "500"]]),
         script=["echo ready", "@push applications {COBJ} lz4demo.o", "@expect push: received lz4demo.o", "loadc lz4demo.o 65536 50", "loadc lz4demo.o 3000 7",
                 "loadc lz4demo.o 200000 500", "@push applications {MISSING} missing.o", "@expect push: received missing.o", "loadc missing.o",
                 "loadc missing.o", "loadc hello.o after", "poweroff"],
         expect=[r"push: received lz4demo.o \(\d+ bytes in \d+ ms, crc [0-9a-f]{8}, signature verified\) into the updates of namespace applications",
                 r"loadc: crate missing: 3 unresolved symbols: `fseeko_nosuch`, `lgamma_nosuch`, `qsort_r_nosuch`\r?$",
                 r"hello from C: argc=2 argv\[1\]=after"],
         counts=[(r"^loadc: crate missing: 3 unresolved symbols", 2), (r"^loadc: lz4demo.o exited with status 0", 3)],
         reject=["not reached", "already loaded"]),
    dict(name="ls_and_cat_over_paths", script=["ls", "ls /namespaces", "ls /namespaces/kernel/updates", "cat /boot/namespaces/kernel.toml",
                                                "ls /namespaces/applications/../kernel/./crates", "cat /boot/nope", "cat /namespaces/kernel", "poweroff"],
         expect=["^boot/", "^namespaces/", "^kernel/", "^applications/", r"^scheduler_v2.o +\d+", r'^name = "kernel"', r"^task +\d+",
                 r"cat: /boot/nope: no such file or directory", r"cat: /namespaces/kernel: is a directory"]),
    # Fault recovery: each fault kills only its task, with a symbolized backtrace.
    # Ctrl-C ends a command and the helper task it waits for: `wasm run` runs the module in a
    # task of its own, which a WASM loop never leaves. Before, Ctrl-C ended only the command,
    # and the loop spun on for good (`ps` listed it, nothing could stop it but `kill ID`).
    dict(name="ctrl_c_kills_a_wasm_loop_and_the_task_it_runs_in", script=[
            "wasm run traps.wasm --invoke spin 0", "@expect compiled traps", "@send \\x03", "@expect was killed",
            "ps", "echo after", "poweroff"],
         expect=[r"^shell: wasm was killed", r"^after"], reject=[r"^\s+\d+\s+wasm\s"]),
    # Waiting tasks halt their CPU (`task::wait_until`): at an idle prompt the shell, the
    # supervisor and the scrubber all wait, so the boot CPU halts about once per tick (100 a
    # second). Before, every wait polled, and the boot CPU never halted: the line did not exist.
    # The typed lines after the pause check that a key still ends the halt.
    dict(name="an_idle_prompt_halts_the_cpu", script=["echo before", "@pause 3", "cpus", "echo typed after the pause", "sleep 30", "echo after", "poweroff"],
         expect=[r"^halts with every task waiting \(a CPU with no task halts in its idle task, not counted\): CPU 0 [1-9]\d{2,}",
                 r"^typed after the pause", r"^after"]),
    dict(name="faults_in_tasks_kill_only_the_task", script=["crash panic", "crash null", "crash ud", "crash divide", "crash stack", "ps", r"@capture SH ^ +(\d+)  shell ",
                                                         "bt {SH}", "bt -s {SH}", "bt x", "echo shell alive", "poweroff"],
         timeout=60,
         expect=[r"task \d+ \(crash\) panicked at crates/crash/src/lib.rs:\d+:\d+: deliberate panic: requested by crash",
                 r"#\d+ +0x[0-9a-f]+ crash::deliberate_panic \+ 0x[0-9a-f]+ \(crate crash, namespace applications\)",
                 r"#0  0x[0-9a-f]+ crash::null_write \+ 0x[0-9a-f]+ \(crate crash, namespace applications\) at \S*crates/crash/src/lib.rs:\d+:\d+",
                 r"#1  0x[0-9a-f]+ crash::opaque \+ 0x[0-9a-f]+", r"#2  0x[0-9a-f]+ crash::main \+ 0x[0-9a-f]+",
                 r"crash::deliberate_panic \+ 0x[0-9a-f]+ \(crate crash, namespace applications\) at \S*crates/crash/src/lib.rs:\d+:\d+",
                 r"__rustc::rust_begin_unwind \+ 0x[0-9a-f]+ \(crate nano_core, namespace kernel\) at \S*nano_core/src/panic.rs:\d+:\d+",
                 r"crash: cleanup ran \(panic\)",
                 r"killed by page fault; unwinding its stack", r"crash: cleanup ran \(null\)",
                 r"#0  0x[0-9a-f]+ crash::invalid_opcode \+", r"killed by invalid opcode; unwinding its stack", r"crash: cleanup ran \(ud\)",
                 r"#0  0x[0-9a-f]+ crash::divide_by_zero \+", r"killed by divide error; unwinding its stack", r"crash: cleanup ran \(divide\)",
                 r"faulting address: 0xffffd[0-9a-f]+\r?\n.*\r?\n.*rsp.*\r?\n.*backtrace:\r?\n.*crash::overflow_stack", r"killed by page fault \(not unwound\)",
                 r"shell: crash panicked: deliberate panic", r"shell: crash died: page fault",
                 # The shell's id: 1 with -smp 1, after the APs' idle tasks with more CPUs.
                 r"task \d+ \(shell\):\r?\n  #0  0x[0-9a-f]+ task::",
                 r"#\d+ +0x[0-9a-f]+ shell::run \+ 0x[0-9a-f]+ \(crate shell, namespace applications\) at \S*crates/shell/src/lib.rs:\d+:\d+",
                 r"#\d+ +0x[0-9a-f]+ shell::run \+ 0x[0-9a-f]+ \(shell\)\r?$", r"usage: bt \[-s\] \[ID\.\.\.\]", "^shell alive"],
         reject=["crash: still alive", "fault outside any task", r"cleanup ran \(stack\)", "could not unwind"]),
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
    dict(name="wasm_wasi_program_and_symbols", timeout=120,
         script=["wasm run hello.wasm one two", "wasm run rusty.wasm alpha", "wasm run kernels.wasm --invoke matmul 16",
                 "wasm load cmp compute.wasm", "wasm call cmp fib 20", "wasm list",
                 "sym2addr wasm::cmp::fib", "wasm call cmp show_backtrace", "ns", "wasm unload cmp",
                 "wasm run compute.wasm --invoke host_panic", "sym2addr wasm::compute::fib", "echo shell alive", "poweroff"],
         expect=[r"hello from WASM, argc=3\r?\nhello.wasm\r?\none\r?\ntwo", r"wasm: hello exited with status 0",
                 r"hello from Rust compiled to WebAssembly: 2 arguments\r?\n  argv\[0\] = rusty.wasm\r?\n  argv\[1\] = alpha",
                 r"wasm: rusty exited with status 7", MATMUL16,
                 r"wasm: compiled cmp: \d+ functions, \d+ bytes of code, \d+ IR instructions in \d+ us",
                 r"wasm: cmp returned 6765", r"0x[0-9a-f]+ +\d+  wasm::cmp::fib",
                 r"wasm::cmp::inner \+ 0x[0-9a-f]+ \(crate wasm:cmp, namespace applications\)",
                 r"wasm::cmp::middle \+", r"wasm::cmp::outer \+", r"wasm::cmp::<trampoline \d+> \+ 0x[0-9a-f]+ \(crate wasm:cmp",
                 r"task \d+ \(wasm\) panicked at \S*crates/wasm/src/lib.rs:\d+:\d+: deliberate panic in a host function called by WASM",
                 r"wasm: the task ended: Panicked", r"sym2addr: no symbol matches wasm::compute::fib", "wasm: unloaded cmp", "shell alive"],
         reject=["fault outside any task"]),
    dict(name="wasm_traps_are_named", timeout=120,
         script=["wasm run traps.wasm --invoke divide 0", "wasm run traps.wasm --invoke overflow",
                 "wasm run traps.wasm --invoke unreachable", "wasm run traps.wasm --invoke oob",
                 "wasm run traps.wasm --invoke null_call", "wasm run traps.wasm --invoke bad_sig",
                 "wasm run traps.wasm --invoke recurse 0", "wasm run traps.wasm --fuel 100000 --invoke spin 0",
                 "wasm run traps.wasm --invoke divide 5", "wasm run nosuch.wasm", "echo shell alive", "poweroff"],
         expect=[r"trap: integer divide by zero in wasm::traps::div at wasm offset 0x[0-9a-f]+",
                 r"trap: integer overflow in wasm::traps::overflow", r"trap: unreachable in wasm::traps::unreachable",
                 r"trap: out of bounds memory access in wasm::traps::oob", r"trap: uninitialized element in wasm::traps::null_call",
                 r"trap: indirect call type mismatch in wasm::traps::bad_sig", r"trap: call stack exhausted in wasm::traps::recurse",
                 r"trap: out of fuel in wasm::traps::spin", r"wasm: traps returned 20", r"nosuch.wasm: no such file", "shell alive"],
         reject=["fault outside any task", "killed by"]),
    dict(name="wasm_swap_relinks_importers", timeout=120,
         script=["wasm load counter counter_v1.wasm", "wasm load user counter_user.wasm", "wasm call user twice",
                 "wasm swap counter hello.wasm", "wasm call user twice", "wasm unload counter",
                 "wasm swap counter counter_v2.wasm", "wasm call user twice", "wasm call counter count",
                 "sym2addr wasm::counter::bump", "wasm list", "echo shell alive", "poweroff"],
         expect=[r"wasm: user returned 2\r?\n", r"swap refused: hello.wasm lacks export bump \(with the same type\) that user imports; counter is unchanged",
                 r"wasm: user returned 4\r?\n", r"wasm: counter is imported by user; unload those first",
                 r"wasm: swapped counter for counter_v2.wasm: 1 imports relinked in 1 modules, 65536 bytes of memory and 1 globals carried over",
                 r"wasm: user returned 24\r?\n", r"wasm: counter returned 6\r?\n",
                 r"0x[0-9a-f]+ +\d+ wasm::counter::bump \[applications/wasm:counter\]", "shell alive"],
         reject=["fault outside any task"]),
    dict(name="wasm_push_then_run_and_swap", push=True, timeout=120, script=[
            "wasm load counter counter_v1.wasm", "wasm load user counter_user.wasm", "wasm call user twice",
            "@push applications {WASMFILE} mine.wasm", "@expect push: received mine.wasm",
            "wasm swap counter mine.wasm", "wasm call user twice", "wasm run mine.wasm --invoke bump", "poweroff"],
         push_wasm="counter_v2.wasm",
         expect=[r"wasm: user returned 2\r?\n", r"wasm: swapped counter for mine.wasm", r"wasm: user returned 22\r?\n",
                 r"wasm: mine returned 10\r?\n"]),
    dict(name="wasm_spec_subset_in_the_kernel", timeout=300, script=["wasm spec", "echo shell alive", "poweroff"],
         expect=[r"i32.wast +\d+ passed +0 failed", r"f64.wast +\d+ passed +0 failed", r"memory_trap.wast +\d+ passed +0 failed",
                 r"wasm spec: [1-9]\d{3,} passed, 0 failed, \d+ skipped \(imports, references\) in 21 files", "shell alive"],
         reject=[r" [1-9]\d* failed", "wasm exited with status", "fault outside any task"]),
    dict(name="swap_refused_when_a_registration_would_dangle", script=[
            "swap interrupts interrupts_renamed", r"@capture A IDT vector 32 holds (0x[0-9a-f]+)",
            "sleep 30", "addr2sym {A}", "uptime", "ns", "poweroff"],
         expect=[r"swap: IDT vector 32 holds 0x[0-9a-f]+ \(interrupts::timer\) in the old version, and the new version has no such symbol; nothing was changed",
                 r"^0x[0-9a-f]+: interrupts::timer \+ 0x0 \[crate interrupts in kernel", r"^up \d+\.\d+ s; [1-9]\d* timer ticks",
                 r"retired versions: none"],
         reject=["swap: done", "CPU EXCEPTION"]),
    # The flaky hang of issue 13: a panic in a host function called by WASM, unwound through the
    # JIT frames, many times in one boot (a timer tick landing in the unwinder's context
    # restore used to hang about one run in thirty).
    dict(name="wasm_host_panic_unwinds_40_times", timeout=240,
         script=["wasm run compute.wasm --invoke host_panic"] * 40 + ["echo shell alive", "poweroff"],
         counts=[(r"wasm: the task ended: Panicked\(\"deliberate panic in a host function", 40)],
         expect=["^shell alive"], reject=["could not unwind", "fault outside any task", "died holding the loader"]),
    # Random swaps among every live crate and the alternative versions while a background task
    # beats, a WASM computation, a C program and selftest run; then reclaim and the battery.
    dict(name="swap_storm_under_load", timeout=300, script=STORM_SCRIPT,
         counts=[(r"selftest: 11 passed, 0 failed", 3), (r"hello.c: all checks passed", 3), (r"wasm: kernels returned 1086061312", 1),
                 (r"crash: cleanup ran \(null\)", 1), (r"trap: integer divide by zero in wasm::traps::div", 1)],
         expect=[r"(?s)swap: storm: 40 swaps committed, 0 failed.*swap: storm: 40 swaps committed, 0 failed", r"heartbeat v\d: beat #3\d\d", r"^echo v2: hi", r"^hello.c: all checks passed"],
         reject=["fault outside any task", "PANIC in nano_core", "could not unwind", "died holding the loader", r"selftest: \d+ passed, [1-9]"],
         check=lambda text: storm_memory_check(text)),
    # Issue 13: recovery brings the work back. (scrub_ms=0 where a test needs the damaged code
    # to run: the scrubber might repair it first.)
    # Damaged code whose damage is the faulting instruction: restored from the loader's sealed
    # copy and run again, in a task, inside the scheduler (task table held, interrupts off) and
    # in the timer's interrupt handler; nothing dies, the beats go on.
    dict(name="recovery_repairs_the_faulting_instruction_in_place", timeout=90, append="scrub_ms=0", script=[
            "beat 12 100", "sleep 350", "crash corrupt heartbeat::beat", "sleep 150", "crash corrupt scheduler::enqueue", "sleep 100",
            "crash corrupt interrupts::timer", "sleep 100", "@expect beat: job 0 finished 12 beats", "selftest", "verify", "poweroff"],
         counts=[(r"the faulting instruction was the damage: running it again", 3)],
         expect=[r"(?s)rip: 0x[0-9a-f]+ in heartbeat::beat \+ 0x0 [^!]*?    code of crate heartbeat was corrupted: 2 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy",
                 r"(?s)rip: 0x[0-9a-f]+ in scheduler::enqueue \+ 0x0 [^!]*?    code of crate scheduler was corrupted: 2 bytes",
                 r"(?s)rip: 0x[0-9a-f]+ in interrupts::timer \+ 0x0 [^!]*?    code of crate interrupts was corrupted: 2 bytes",
                 r"selftest: 11 passed, 0 failed", r"0 corrupted, 0 repaired",
                 r"recovery: 0 scrub passes \(0 us hashing\), 0 crates repaired, 0 tasks restarted, 3 faulting instructions repaired and run again; sealed copies [1-9]\d* KiB"],
         check=beats_exactly_once(1, 12), reject=[r"\((beat|shell|supervisor)\) killed by", "fault outside any task", "the damage ran before"]),
    # A wild jump out of damaged code: the fault (at address 0) shows no frame of the damaged
    # crate and cannot be run again; the task dies, the crates on its stack are intact, so the
    # supervisor verifies every crate, repairs heartbeat and restarts the task, which resumes
    # from its saved progress: every beat exactly once.
    dict(name="recovery_restarts_a_task_after_its_crate_is_repaired", timeout=90, append="scrub_ms=0", script=[
            "beat 12 100", "sleep 350", "crash wild heartbeat::beat", "@expect beat: job 0 finished 12 beats", "verify", "ps", "poweroff"],
         expect=[r"task \d+ \(beat\) killed by page fault", r"rip: 0x0 in not in any loaded section",
                 r"recovery: task \d+ \(beat\) died \(page fault at 0x0\); verified beat [a-z_ ]+ and then every crate \(repaired heartbeat\); restarted as task \d+ \(restart 1\)",
                 r"recovery: crate heartbeat was corrupted; restored 4 bytes in place from its sealed copy",
                 r"beat: job 0 resumes at beat \d+ of 12", r"verify: \d+ crates, \d+ KiB .* 0 corrupted, 0 repaired",
                 r"recovery: 0 scrub passes \(0 us hashing\), 1 crates repaired, 1 tasks restarted"],
         counts=[(r"killed by", 1)], check=beats_exactly_once(1, 12), reject=["fault outside any task", "given up"]),
    # A restartable task that panics is restarted and its output resumes where it stopped.
    dict(name="recovery_restarts_a_task_that_panicked", timeout=60, append="scrub_ms=0", script=[
            "beat 10 50 --panic-at 4", "@expect beat: job 0 finished 10 beats", "beat 1 10 --panic-at", "beat x", "poweroff"],
         expect=[r"task \d+ \(beat\) panicked at crates/beat/src/lib.rs:\d+:\d+: beat: job 0 panics before beat 4 \(--panic-at\)",
                 r"recovery: task \d+ \(beat\) died \(beat: job 0 panics before beat 4 .*\); verified [a-z_ ]*\bbeat\b[a-z_ ]* and then every crate \(all intact\); restarted as task \d+ \(restart 1\)",
                 r"beat: job 0 resumes at beat 4 of 10", r"usage: beat N \[MS\] \[--panic-at K\]"],
         counts=[(r"usage: beat", 2), (r"panicked at", 1)], check=beats_exactly_once(1, 10), reject=["fault outside any task", "given up"]),
    # A flipped bit in a function's own prologue ran before the fault (found in the fault
    # campaign): the function's frame no longer matches its unwind information, and unwinding
    # through it restored wrong registers into its callers, whose cleanup then wrote over code.
    # Such a task is ended without unwinding, and restarted on the repaired code; every beat
    # comes out once.
    dict(name="recovery_a_fault_after_damage_in_its_own_function_is_not_unwound", timeout=60, append="scrub_ms=0", script=[
            "beat 40 30", "sleep 300", "crash flip heartbeat::beat 2 5", "@expect beat: job 0 finished 40 beats", "echo alive", "verify", "poweroff"],
         expect=[r"code of crate heartbeat was corrupted: 1 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy",
                 r"the damage was in the faulting function itself: its frame cannot be trusted to unwind",
                 r"task \d+ \(beat\) killed by \S+ fault \(not unwound\)",
                 r"recovery: task \d+ \(beat\) died .*; restarted as task \d+ \(restart 1\)", r"beat: job 0 resumes at beat \d+ of 40",
                 r"^alive\r?$", r"0 corrupted, 0 repaired"],
         check=beats_exactly_once(1, 40), reject=["fault outside any task", "given up", "unwinding its stack"]),
    # The shell itself dies in its own damaged code: repaired and started again.
    dict(name="recovery_restarts_the_shell", timeout=60, append="scrub_ms=0", script=[
            "echo before", "crash wild shell::run_command", "echo lost", "@expect shell: started again", "echo back", "ps", "verify", "poweroff"],
         expect=[r"task 1 \(shell\) killed by page fault",
                 r"recovery: task 1 \(shell\) died \(page fault at 0x0\); verified shell .*\(repaired shell\); restarted as task \d+ \(restart 1\)",
                 r"^back\r?$", r"^ +\d+  shell +runnable +\d+ +1  ", r"0 corrupted, 0 repaired"],
         reject=[r"^lost\r?$", "fault outside any task"]),
    # A task that dies every time it starts is restarted, then given up (5 deaths in 10 s).
    dict(name="recovery_gives_up_on_a_task_that_keeps_dying", timeout=60, script=[
            "crash restartable", "@expect given up", "ps", "echo shell alive", "poweroff"],
         counts=[(r"recovery: task \d+ \(doomed\) died .*; restarted as task", 4), (r"recovery: task \d+ \(doomed\) died 5 times within 10 s .* given up", 1)],
         expect=["^shell alive"], reject=[r"^ +\d+  doomed ", "fault outside any task"]),
    # Corruption in code that has not run: the scrubber finds and repairs it before it runs
    # (a flipped bit, not ud2: whatever it would have done, it never runs).
    dict(name="recovery_scrubber_repairs_code_before_it_runs", timeout=60, append="scrub_ms=200", script=[
            "beat 1 10", "sleep 100", "crash flip heartbeat::beat 3 6", "sleep 1000", "beat 3 10", "@expect job 1 finished", "verify", "poweroff"],
         expect=[r"recovery: the scrubber found crate heartbeat corrupted: restored 1 bytes in place", r"0 corrupted, 0 repaired",
                 r"recovery: [1-9]\d* scrub passes \(\d+ us hashing\), 1 crates repaired, 0 tasks restarted"],
         check=beats_exactly_once(1, 4), reject=["killed by", "CPU EXCEPTION"]),
    # Flipped bits in the data of the beat count, the scheduler's run queue, the timer's hook,
    # the task layer's policy hook, task table address and id counter, mixed with swaps of each crate that owns them and a selftest:
    # three-copy words (nano_core::triple) are voted back, the run queue tolerates any value
    # (lost entries re-enqueued from the task table); the beats go on, none lost or repeated.
    # A fault or panic in the timer tick's own code (as damaged timer or scheduler code would
    # make) is the kernel's: the tick is unwound and abandoned, and the task it interrupted —
    # the idle task included — goes on. A jump to where there is no code cannot be unwound: the
    # tick is escaped (its saved registers put back). A fault in the timer's interrupt entry,
    # before the guarded step begins, abandons the tick there. Also after swapping the crates
    # involved (the guard is a registration that moves with them).
    dict(name="recovery_a_fault_in_the_timer_tick_ends_the_tick_not_the_task", timeout=90, script=[
            "crash tick", "crash tick --panic", "crash tick --idle", "crash tick --idle --panic", "crash tick --wild", "crash tick --entry",
            "crash tick --exit", "swap interrupts interrupts", "crash tick", "crash tick --entry", "crash tick --exit", "swap task task", "crash tick --idle", "crash tick --idle --wild",
            "swap unwind unwind", "crash tick --panic", "swap scheduler scheduler_v2 --state scheduler::swap_hook",
            "crash tick --idle --panic", "crash tick --wild", "selftest", "ps", "echo still here", "poweroff"],
         expect=[r"^crash: the tick's fault was contained; this task went on",
                 r"^crash: the tick's panic was contained; this task went on",
                 r"^crash: the tick's fault was contained; the idle task went on",
                 r"^crash: the tick's panic was contained; the idle task went on",
                 r"^crash: the tick's wild jump was contained; the idle task went on",
                 r"page fault in the kernel's step \(tick or scheduling\) while task 0 \(idle\) ran; unwinding the step",
                 r"page fault at 0x8 \(escaped: no unwind could start there\) was in the timer tick's code, not task \d+'s: the step is abandoned and task \d+ \(crash\) goes on",
                 r"the step is abandoned and task 0 \(idle\) goes on",
                 r"^swap: done: ", r"selftest: 11 passed, 0 failed",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+2\s+supervisor\s+\S+\s+\d+\s+0\s", r"^still here"],
         counts=[(r"^crash: the tick's wild jump was contained; this task went on", 2), (r"\(escaped: no unwind could start there\)", 3),
                 (r"^crash: the tick's entry fault was contained; the interrupted task went on", 2),
                 (r"^crash: the tick's exit fault was contained; the interrupted task went on", 2),
                 (r"page fault at 0x[0-9a-f]+ was in the timer's interrupt entry, not task \d+ \(crash\)'s: the tick is abandoned and the task goes on", 4)],
         reject=[r"task \d+ \((idle|shell|supervisor|scrubber|crash)\) killed by", r"system halted", r"no tick was abandoned",
                 r"^usage: swap", r"^swap: (?!done)"]),
    # A function that runs on past its end (its `ret` flipped into a prefix, as in campaign seed
    # 15, trial 86, where the kernel then halted): the code part's padding is `int3`, so it traps
    # at once, the beat task is restarted after the repair and the beats go on, each once. With
    # zero padding the run-on executed `add [r8], al`, broke the heap's bookkeeping and the
    # kernel halted with the heap's lock held.
    dict(name="recovery_code_that_runs_past_its_end_traps_on_padding", timeout=60, append="scrub_ms=0", script=[
            "beat 60 20", "sleep 300", "crash runon heartbeat::beat", "@expect beat: job 0 finished 60 beats", "crash runon nosuch::thing",
            "crash bad-free", "verify", "ps", "poweroff"],
         expect=[r"crash: damaged heartbeat::beat in crate heartbeat at 0x[0-9a-f]+ \(code\)",
                 r"(?s)breakpoint \(vector 3\).*task \d+ \(beat\) killed by breakpoint",
                 r"recovery: task \d+ \(beat\) died \(breakpoint at 0x[0-9a-f]+\); verified .*restarted as task \d+ \(restart 1\)",
                 r"^crash: no symbol nosuch::thing",
                 r"heap: a free of 0x1000 \(16 bytes, align 8\) is no block of the kernel's heaps: refused \(1 since boot\)",
                 r"^crash: the free of a pointer that is no heap block was refused",
                 r"verify: \d+ crates, .* 0 corrupted, 0 repaired", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s"],
         # (`crash bad-free`: a free of what is no heap block is refused, not handed to the
         # allocator, which would write its free-list links there.)
         # 61 numbers, each once: the call that trapped had printed its beat (and counted it)
         # before its `ret`; the restarted job makes that call again, with the next number.
         check=beats_exactly_once(1, 61),
         reject=[r"system halted", r"\((idle|shell|supervisor|scrubber)\) (killed|died)", r"NOT refused"]),
    # The supervisor itself dies (it takes every restartable task's death, its own included):
    # the scrubber finds it gone, takes the deaths and so restarts it; the new supervisor then
    # restarts a task that panics, and gives up one that keeps dying.
    dict(name="recovery_a_dead_supervisor_is_restarted_by_the_scrubber", timeout=60, script=[
            "crash supervisor", "sleep 2500", "ps", "crash restartable", "sleep 3000", "crash supervisor", "sleep 2500", "ps", "poweroff"],
         counts=[(r"^recovery: the supervisor \(task \d+\) is gone: the scrubber takes the deaths", 2),
                 (r"^recovery: task \d+ \(supervisor\) died \(injected into the supervisor \(crash supervisor\) at crates/recovery/src/lib.rs:\d+:\d+\); verified .*; restarted as task \d+ \(restart [12]\)", 2)],
         expect=[r"(?s)recovery: task \d+ \(doomed\) died.*given up, not restarted",
                 r"^\s+\d+\s+supervisor\s+\S+\s+\d+\s+2\s", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+3\s+scrubber\s+\S+\s+\d+\s+0\s"],
         reject=[r"system halted", r"\((shell|scrubber|idle)\) (killed|died)", r"fault outside any task"]),
    # A task faults in a function of the task crate that holds the task table (campaign seed
    # 29, trial 24: a flip in `has_exited`): the fault's unwind does not drop the faulting
    # frame's guard, and ending the task used to halt the kernel. The table is released now:
    # the task ends, and everything else goes on (the beats, the shell, swaps, spawns).
    dict(name="recovery_a_task_that_dies_holding_the_task_table_releases_it", timeout=60, script=[
            "beat 100 10 &", "sleep 200", "crash table", "ps", "swap task task", "@await beat: job 0 finished 100 beats", "echo alive", "poweroff"],
         expect=[r"crash: faulting with the task table held", r"task \d+ killed by invalid opcode; unwinding its stack", r"shell: crash panicked: invalid opcode",
                 r"the task table was held by this task's own frames, which never run again: released",
                 r"swap: done", r"^alive"],
         check=beats_exactly_once(1, 100), reject=[r"system halted", r"\((shell|supervisor|scrubber)\) (killed|died)"]),
    # Campaign seed 29, trial 197: a flipped displacement in `task::choose_next` (0xc0, bit 5:
    # `mov 0x8(%r14)` became `mov 0x28(%r14)`) read the wrong field for the task table's root,
    # so the decision saw no task at all and dropped every queued one; each task that switched
    # away stayed marked running, never queued again, and the kernel only idled — the watchdog
    # repaired the code, and nothing ran anyway. A task switched away is marked runnable now,
    # and the requeue pass brings every task back. (Bit 5 of that byte with this build's
    # layout; an edit of `choose_next` may move it, and the expectations then fail.)
    dict(name="recovery_a_decision_that_misreads_the_table_leaves_no_task_stranded", timeout=60, script=[
            "beat 200 10 &", "sleep 300", "crash flip task::choose_next 0x152 5", "@await beat: job 0 finished 200 beats", "ps", "poweroff"],
         # The displacement of `mov 0x8(%rbx),%rax` (the map's root) becomes 0x28.
         expect=[r"crash: damaged task::choose_next in crate task at 0x[0-9a-f]+ \(code, byte 0x08 -> 0x28\)",
                 r"code of crate task was corrupted: 1 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored|found crate task corrupted: restored 1 bytes in place",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+3\s+scrubber\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 200), reject=[r"killed by", r"died", r"system halted", r"HANG"]),
    # The supervisor and the scrubber die together (campaign seed 28, trial 57: a damaged timer
    # entry put back wrong registers into both): each used to restart the other, so nothing
    # was ever restarted again. Idle time (the shell waiting for a key) takes the deaths now,
    # the supervisor's first; the restarted pair recovers a later death as before.
    dict(name="recovery_a_dead_supervisor_and_scrubber_are_restarted_by_idle_time", timeout=60, script=[
            "crash supervisor --and-scrubber", "sleep 2500", "ps", "crash restartable", "sleep 3000", "ps", "poweroff"],
         counts=[(r"recovery: the supervisor \(task \d+\) is gone: and so is the scrubber: idle time takes the deaths", 1),
                 (r"^recovery: task \d+ \(supervisor\) died \(injected into the supervisor \(crash supervisor\) at crates/recovery/src/lib.rs:\d+:\d+\); verified .*; restarted as task \d+ \(restart 1\)", 1),
                 (r"^recovery: task \d+ \(scrubber\) died \(injected into the scrubber \(crash supervisor --and-scrubber\) at crates/recovery/src/lib.rs:\d+:\d+\); verified .*; restarted as task \d+ \(restart 1\)", 1)],
         expect=[r"crash: the supervisor and the scrubber will panic at their next rounds",
                 r"(?s)recovery: task \d+ \(doomed\) died.*given up, not restarted",
                 r"(?s)\s+\d+\s+supervisor\s+\S+\s+\d+\s+1\s.*\s+\d+\s+supervisor\s+\S+\s+\d+\s+1\s",
                 r"(?s)\s+\d+\s+scrubber\s+\S+\s+\d+\s+1\s.*\s+\d+\s+scrubber\s+\S+\s+\d+\s+1\s",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s"],
         reject=[r"system halted", r"\((shell|idle)\) (killed|died)", r"fault outside any task", r"the scrubber takes the deaths"]),
    # A load of the timer entry's register restore damaged: `mov rsi, [rsp + 72]` (at 0x94 of
    # `interrupts::timer`, its REX byte; a change to the entry's pushes or recording moves it)
    # flipped into `mov r14, [rsp + 72]`, as in campaign seed 15: the interrupted tasks got a
    # wrong callee-saved register and jumped to addresses with no code one after another (the
    # shell, the supervisor, the scrubber). The entry now checks every register against its slot
    # after the loads and loads them all again on a mismatch: no task notices, every beat comes
    # out once, and `verify` finds the flip (`--repair` repairs it; the scrubber is off here).
    dict(name="recovery_a_damaged_register_restore_is_redone", timeout=60, append="scrub_ms=0", script=[
            "beat 60 20", "sleep 200", "crash flip interrupts::timer 0x94 2", "@expect beat: job 0 finished 60 beats", "verify --repair", "verify", "ps", "poweroff"],
         # (The REX prefix's R bit: the load's register becomes r14.)
         expect=[r"crash: damaged interrupts::timer in crate interrupts at 0x[0-9a-f]+ \(code, byte 0x48 -> 0x4c\)",
                 r"(?s)verify: \d+ crates, .* 1 corrupted, 1 repaired.*verify: \d+ crates, .* 0 corrupted, 0 repaired",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+2\s+supervisor\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 60),
         reject=[r"killed by", r"died", r"system halted", r"CPU EXCEPTION"]),
    # A tick's step whose saved context is damaged (its stack pointer zeroed, as a task switch
    # sent astray left it in the fault campaign), then a wild jump in the tick: the step cannot
    # be escaped (escaping used to fault again in the escape itself, for good, and the kernel
    # died), so the task the tick interrupted — this command's — is ended; everything else goes on.
    dict(name="recovery_a_step_whose_context_is_damaged_ends_its_task", timeout=60, script=[
            "crash tick --wild --damaged-step", "echo still here", "crash tick --wild", "crash schedule --wild --damaged-step", "echo here too",
            "selftest", "ps", "poweroff"],
         expect=[r"the step's saved context is damaged \(not on this task's stack\): it cannot be escaped",
                 r"(?s)cannot be escaped\s+\(could not unwind the fault; ending the task without running destructors\)\s+shell: crash died: page fault at 0x8",
                 r"^still here",
                 r"^crash: the tick's wild jump was contained; this task went on", r"selftest: 11 passed, 0 failed",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+2\s+supervisor\s+\S+\s+\d+\s+0\s", r"^\s+3\s+scrubber\s+\S+\s+\d+\s+0\s",
                 # The same in a scheduling decision, which holds the task table: the table is
                 # released with the ending task (it used to halt the kernel: seed 20, trial 82).
                 r"(?s)cannot be escaped\s+\(could not unwind the fault; ending the task without running destructors\)\s+"
                 r"the task table was held by the abandoned step: released \(a step writes single fields of it\)\s+shell: crash died: page fault at 0x8",
                 r"^here too"],
         counts=[(r"cannot be escaped", 2)],
         reject=[r"system halted", r"\((idle|shell|supervisor|scrubber)\) killed", r"fault outside any task"]),
    # The timer entry's return damaged (`add rsp, 120` flipped into `add rsp, 112` — offset
    # 0x11d of `interrupts::timer` is that instruction's immediate; a change to the entry moves it,
    # and then `verify` below finds the flip unrepaired — so the
    # `iretq` takes a wrong frame and faults): the entry recorded where its return began, so the
    # fault finishes the return from there — and is not charged to the interrupted task (the
    # fault campaign saw the shell killed by a flipped pop of that return).
    # Twice, the second time after a swap of interrupts. Then the entry's recording of where it
    # saved the registers damaged (offset 0x1b: a bit of `ENTRY`'s address, so the store faults,
    # as in the fault campaign): the registers are at the faulting stack pointer, and the tick is
    # abandoned from there, not through the last tick's return (which took a stale frame and
    # killed the task in the campaign; a WASM job computing meanwhile is what the ticks
    # interrupt, each at another depth: with the old abandon this test failed 1 run in 3, the
    # WASM job killed, and a hand run of the same steps 2 in 3).
    # Then the watchdog NMI's path damaged (see below). Every beat once; no task dies.
    dict(name="recovery_a_fault_in_the_timer_entry_or_the_nmi_is_abandoned", timeout=60, append="scrub_ms=0", script=[
            "beat 40 20", "sleep 100", "crash flip interrupts::timer 0x11d 3", "sleep 300", "swap interrupts interrupts",
            "crash flip interrupts::timer 0x11d 3", "@expect beat: job 0 finished 40 beats",
            "wasm run kernels.wasm --invoke matmul 96 --repeat 100 &", "sleep 300", "crash flip interrupts::timer 0x1b 5", "@await wasm: 100 runs of kernels",
            "verify", "beat 100 20", "sleep 100",
            "crash wild interrupts::ticks", "sleep 1200", "crash corrupt interrupts::ticks", "@expect beat: job 1 finished 100 beats",
            "verify", "ps", "poweroff"],
         counts=[(r"at 0x[0-9a-f]+ was in the timer's interrupt entry, not task \d+( \(\S+\))?'s: the tick is abandoned and the task goes on", 3),
                 (r"code of crate interrupts was corrupted: 1 bytes at", 3)],
         expect=[r"verify: \d+ crates, .* 0 corrupted, 0 repaired", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s",
                 # The NMI's path damaged (the watchdog reads the tick count at every NMI): a wild
                 # jump abandons the NMI, and every crate is repaired then; an `ud2` is repaired
                 # and run again. An NMI that comes while `crash` still holds the loader (it writes
                 # the damage under it) cannot repair: it is abandoned all the same, and the next
                 # NMI, which faults again, repairs (seen once in 10 runs). Such an NMI may also run
                 # the damage half written (`xor eax, eax` and the old bytes after it: an invalid
                 # opcode further on), which is then the first abandon, the wild jump the second.
                 r"(?s)page fault \(vector 14\) at 0x0 in (not in any loaded section|\(loader busy; no symbol\)), while an NMI was handled\s+"
                 r"(code of crate interrupts was corrupted: 4 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy\s+)?"
                 r"the NMI is abandoned; the interrupted code goes on \([12] NMIs abandoned since boot\)",
                 r"code of crate interrupts was corrupted: 4 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy",
                 r"invalid opcode \(vector 6\) at 0x[0-9a-f]+ in interrupts::ticks \+ 0x0 .*, while an NMI was handled",
                 # The `ud2` is repaired by the first NMI that finds neither the loader nor the page
                 # tables held by the code it interrupted (the shell ending `crash` frees its stack).
                 r"code of crate interrupts was corrupted: 2 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy\s+"
                 r"the faulting instruction was the damage: running it again"],
         check=beats_exactly_once(1, 140), reject=[r"killed by", r"died", r"system halted", r"^swap: (?!done)"]),
    # An NMI whose path runs damaged code while the code it interrupted holds the page tables'
    # lock (mapping a stack, changing a permission): the repair, which changes permissions,
    # would wait for that lock for ever — the kernel hung so in CI (stop 32), after
    # `crash corrupt interrupts::ticks` above. The NMI is abandoned instead, and the first NMI
    # after the lock is released repairs the damage and runs the instruction again.
    dict(name="recovery_an_nmi_does_not_repair_while_the_interrupted_code_maps", timeout=60, append="scrub_ms=0", script=[
            "beat 60 20", "sleep 100", "crash corrupt interrupts::ticks --page-tables-held 300", "@expect beat: job 0 finished 60 beats",
            "crash corrupt interrupts::ticks --page-tables-held 0", "verify", "ps", "poweroff"],
         expect=[r"invalid opcode \(vector 6\) at 0x[0-9a-f]+ in (interrupts::ticks \+ 0x0 .*|\(loader busy; no symbol\)), while an NMI was handled",
                 # The abandons are counted by the kernel (a repeat of the same fault is reported
                 # once a second at most, so the report lines may be fewer, even none).
                 r"^crash: the page tables were held for 300 ms with the damage in place; \d+ NMIs abandoned meanwhile; the first NMI after repaired it",
                 r"code of crate interrupts was corrupted: 2 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy\s+"
                 r"the faulting instruction was the damage: running it again",
                 r"^usage: crash corrupt SYMBOL --page-tables-held MILLISECONDS \(1-1000\)",
                 r"verify: \d+ crates, .* 0 corrupted, 0 repaired", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 60), reject=[r"killed by", r"died", r"system halted"]),
    # A task that faults on its way out (its exit runs damaged code: here `exceptions::
    # forget_task`, a wild jump, hit by the `crash` command's own exit): every crate is checked
    # and repaired, and the task is ended again — once. Before, each fault ended the task again
    # through the same damaged code, one level deeper on its stack: 2,458 nested faults, until
    # the watchdog's NMI saw a hang and repaired (fault campaign seed 34, trial 227: four
    # supervisors restarted for one death, none of which ran).
    dict(name="recovery_a_task_that_faults_on_its_way_out_is_ended_once", timeout=60, script=[
            "beat 30 20", "sleep 100", "crash wild exceptions::forget_task", "echo still here",
            "@expect beat: job 0 finished 30 beats", "verify", "ps", "poweroff"],
         expect=[r"task \d+ \(crash\) faulted \(page fault\) on its way out: the way out ran damaged code; every crate checked\s+"
                 r"code of crate exceptions was corrupted: 4 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy",
                 r"^shell: crash died: page fault at 0x0", r"^still here",
                 r"verify: \d+ crates, .* 0 corrupted, 0 repaired", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+2\s+supervisor\s+\S+\s+\d+\s+0\s"],
         counts=[(r"!!! CPU EXCEPTION", 1), (r"on its way out", 1)],
         check=beats_exactly_once(1, 30), reject=[r"HANG", r"killed by", r"system halted"]),
    # A fault, a panic or a wild jump in the scheduler's decision, made with the task table held
    # (as a damaged policy would: it is called under the table), abandons the decision, not the
    # task that was scheduling: the table is released and that task goes on. It used to end
    # that task (the shell, in the fault campaign), and before that to halt the kernel.
    dict(name="recovery_a_fault_in_the_scheduler_abandons_the_decision_not_the_task", timeout=90, script=[
            "crash schedule", "crash schedule --panic", "crash schedule --wild", "swap scheduler scheduler_v2 --state scheduler::swap_hook",
            "beat 30 20", "crash schedule --switch", "crash schedule --switch --panic", "crash schedule", "swap task task", "crash schedule --panic",
            "crash schedule --wild", "crash schedule --switch --wild", "crash schedule --switch --panic", "@await beat: job 0 finished 30 beats",
            "selftest", "ps", "echo still here", "poweroff"],
         expect=[r"^swap: done: ", r"selftest: 11 passed, 0 failed",
                 r"injected into the scheduler, with the task table held \(crash --panic\) at crates/task/src/lib.rs:\d+:\d+ was in the scheduler's decision's code, not task \d+'s: the step is abandoned and task \d+ \(crash\) goes on",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+2\s+supervisor\s+\S+\s+\d+\s+0\s", r"^still here"],
         counts=[(r"^crash: the scheduler's fault was contained; this task went on", 2), (r"^crash: the scheduler's panic was contained; this task went on", 2),
                 (r"^crash: the scheduler's wild jump was contained; this task went on", 2),
                 # The same in the switch's bookkeeping after the decision, with a task beating
                 # beside it: the switch is abandoned, no beat is lost or repeated.
                 (r"^crash: the task switch's panic was contained; this task went on", 2),
                 (r"^crash: the task switch's fault was contained; this task went on", 1),
                 (r"^crash: the task switch's wild jump was contained; this task went on", 1),
                 (r"injected into the task switch's bookkeeping \(crash --panic\) at crates/task/src/lib.rs:\d+:\d+ was in the scheduler's decision's code, not task \d+'s: the step is abandoned and task \d+ \(crash\) goes on", 2)],
         check=beats_exactly_once(1, 30),
         reject=[r"system halted", r"\((crash|shell|supervisor|scrubber|idle|beat)\) killed by", r"crash: still alive", r"was not abandoned", r"^usage: swap", r"^swap: (?!done)", r"^shell: crash "]),
    # The scheduler policy's code damaged for good (pick_next jumps to address 0 every time):
    # each decision is escaped and made by the task layer's fallback (round robin over the task
    # table), so every task goes on, the supervisor among them, which verifies every crate after
    # an abandoned step and repairs the policy in place. No task dies; the beats go on, each once.
    dict(name="recovery_a_scheduler_damaged_for_good_is_bypassed_then_repaired", timeout=90, append="scrub_ms=0", script=[
            "beat 40 25", "sleep 200", "crash wild scheduler::pick_next", "@expect beat: job 0 finished 40 beats", "verify", "ps", "poweroff"],
         expect=[r"page fault at 0x0 \(escaped: no unwind could start there\) was in the scheduler's decision's code",
                 r"recovery: after an abandoned kernel step, crate scheduler was corrupted: restored 4 bytes in place",
                 r"verify: \d+ crates, .* 0 corrupted, 0 repaired", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 40), reject=[r"killed by", r"died", r"system halted", r"given up"]),
    # Hangs with interrupts off, which only the watchdog's NMI (the PIT's line through the I/O
    # APIC) can end: damaged code looping in the scheduler's policy and in the task switch's
    # decision (repaired in place; the looping code goes on), a scheduling decision and ticks
    # (the task's and the idle task's) looping in intact code (the step is abandoned), a command
    # looping in its own code (ended and unwound) — mixed with swaps of the watchdog, of the
    # crate that handles the NMI (exceptions), of smp (the I/O APIC) and of interrupts (the
    # tick count); then a tick that skips its body and its end of interrupt (the 8259 holds IRQ 0
    # in service: no tick comes, with interrupts on), ended by the watchdog sending the lost end
    # of interrupt; the heap's lock left held by no code (a wild store over its word), which an
    # allocation waits for until the watchdog releases it; then a policy that never picks a task (a stall: ticks come, no switch),
    # repaired by the watchdog's stall check. Every beat comes out once; no other task dies.
    dict(name="recovery_hangs_with_interrupts_off_are_ended_by_the_watchdog", timeout=120, append="scrub_ms=0", script=[
            "beat 50 25", "sleep 100", "crash loop scheduler::pick_next", "crash schedule --hang", "swap watchdog watchdog",
            "crash tick --hang", "swap exceptions exceptions", "crash loop task::choose_next", "swap smp smp", "crash hang",
            "swap interrupts interrupts", "crash tick --hang --idle", "cpus", "crash tick --no-eoi", "crash heap-lock", "@expect beat: job 0 finished 50 beats", "beat 20 20", "sleep 100",
            "crash ret0 scheduler::pick_next", "@expect beat: job 1 finished 20 beats", "selftest",
            "verify", "cpus --watchdog 0", "cpus --watchdog x", "poweroff"],
         # "requested 0x11": COM1's line (IRQ 4) stays latched at the masked 8259 once a byte was
         # received (the port's interrupt goes through the I/O APIC).
         counts=[(r"^!!! HANG: no timer interrupt for \d+ ms: the CPU runs with interrupts off \(watchdog NMI; 8259 master: in service 0x0[01], requested 0x[01]1, masked 0xfa\)", 7),
                 (r"^    the hung code goes on, repaired", 2), (r"^swap: done", 4)],
         expect=[r"code of crate scheduler was corrupted: 2 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy",
                 r"code of crate task was corrupted: 2 bytes at", r"^crash: the scheduler's hang was contained; this task went on",
                 r"^crash: the tick's hang was contained; this task went on", r"^crash: the tick's hang was contained; the idle task went on",
                 r"task \d+ \(crash\) killed by hang; unwinding its stack", r"^crash: cleanup ran \(hang\)",
                 r"watchdog: the PIT's IRQ 0 as an NMI to APIC 0 \(GSI 2\); a hang is 2000 ms without a timer interrupt; \d+ NMIs, longest stretch without a tick \d+ ms, 6 hangs",
                 r"^!!! HANG: no timer interrupt for \d+ ms: interrupts are on, but the 8259 still has the timer's IRQ 0 in service \(no end of interrupt was sent\) \(watchdog NMI; 8259 master: in service 0x01, requested 0x[01]1, masked 0xfa\)",
                 r"^    the timer's end of interrupt was lost: sent now; ticks resume and the interrupted code goes on",
                 r"^crash: the tick's lost end of interrupt was sent by the watchdog; ticks resumed",
                 r"selftest: 11 passed, 0 failed", r"verify: \d+ crates, .* 0 corrupted, 0 repaired", r"^watchdog: off \(8 hangs reported while it was on\)",
                 r"^    a heap's lock said held, but no code held it \(its word was overwritten\): released; the waiting code goes on",
                 r"^crash: the heap's lock, overwritten, was released by the watchdog; the allocation went on",
                 # A policy that never picks a task: the idle task runs on alone, ticks come but
                 # no switch; the stall check repairs the policy from the NMI.
                 r"(?s)!!! STALL: no task switch for \d+ ms \(watchdog NMI at 0x[0-9a-f]+\)\s+code of crate scheduler was corrupted: 3 bytes .*the stalled code goes on, repaired",
                 r"^usage: cpus --watchdog MS \(0 switches it off\)"],
         check=beats_exactly_once(1, 70),
         reject=[r"system halted", r"\((beat|shell|supervisor|scrubber|idle|push)\) killed", r"given up", r"^swap: (?!done)", r"within 10 s"]),
    # Healthy work that runs long with interrupts off: a fault report building a crate's DWARF
    # line tables was seen to take 3.7 s on an overloaded host, and the watchdog ended it as a
    # hang. Work marked as long (the loader held, or debug information being read) gets five
    # times the limit; the same stretch unmarked is still a hang.
    dict(name="recovery_watchdog_gives_marked_long_work_the_longer_limit", timeout=60, script=[
            "cpus --watchdog 300", "crash stall 800 --long-work", "crash stall 800", "cpus", "crash null", "poweroff"],
         counts=[(r"^!!! HANG: no timer interrupt for \d+ ms", 1)],
         expect=[r"^crash: stalled 800 ms with interrupts off \(marked as long work\) and came back",
                 r"task \d+ \(crash\) killed by hang; unwinding its stack",
                 r"a hang is 300 ms without a timer interrupt; \d+ NMIs, longest stretch without a tick \d+ ms, 1 hangs",
                 r"at .*crash/src/lib\.rs:\d+"],
         reject=[r"unmarked\) and came back", r"system halted", r"\((shell|supervisor|scrubber)\) killed"]),
    # A policy that drops some tasks: the flip of campaign seed 22, trial 30 (byte 88 of
    # `scheduler::enqueue` is the `cmp r10, rdi` of its duplicate check; bit 5 makes it an
    # `imul` that swallows the loop's branch, so enqueue returns without queueing some tasks).
    # The beat task and the shell's next command were never picked again, while the shell and
    # the supervisor, which yield, kept switching: no hang, no stall, and the scrubber, starved
    # too, never repaired it. The watchdog sees the scrubber make no pass for 3 periods, checks
    # every crate from the NMI, repairs the policy, and the requeue pass queues the dropped
    # tasks again: every beat once.
    dict(name="recovery_a_scheduler_that_drops_tasks_is_repaired_by_the_starvation_check", timeout=60, script=[
            "beat 200 10 &", "sleep 300", "crash flip scheduler::enqueue 88 5", "@await beat: job 0 finished 200 beats", "ps", "cpus", "poweroff"],
         expect=[r"^!!! STARVED: the scrubber has not run for \d+ ms while tasks switch \(watchdog NMI at 0x[0-9a-f]+\)",
                 r"(?s)STARVED.*code of crate scheduler was corrupted: 1 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy\s+"
                 r"the scheduler goes on, repaired; the tasks it dropped are queued again at the next requeue pass",
                 r"[1-9]\d* starvation checks \(no scrub pass for 3 periods\)",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+3\s+scrubber\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 200), reject=[r"killed by", r"died", r"system halted", r"HANG"]),
    # Campaign seed 23, trial 100: a flipped bit in the scheduler policy's table of function
    # addresses (read-only data) sends the tick's `should_preempt` call into the middle of
    # `scheduler::init`, whose prologue never ran. Unwinding that frame by its CFI restored
    # registers from the wrong slots and the kernel halted; damage found in read-only data now
    # marks the faulting frame untrusted, and the tick's step is escaped instead. (Bit 6 of
    # that byte lands 0x31 into `init` with this build's layout; an edit of the scheduler crate
    # may move it, and the expectations below then fail rather than pass by chance.)
    dict(name="recovery_a_damaged_code_address_in_read_only_data_escapes_the_step", timeout=60, script=[
            "beat 200 10 &", "sleep 300", "crash flip scheduler::ROUND_ROBIN 0x28 6", "@await beat: job 0 finished 200 beats", "ps", "poweroff"],
         expect=[r"crash: damaged scheduler::ROUND_ROBIN in crate scheduler at 0x[0-9a-f]+ \(read-only data\)",
                 r"(?s)code of crate scheduler was corrupted: 1 bytes at 0x[0-9a-f]+\.\.0x[0-9a-f]+ restored from its sealed copy\s+"
                 r"the damage ran before the fault: the fault takes its course\s+"
                 r"the damage was in read-only data \(code addresses, unwind tables\): the faulting frame cannot be trusted to unwind\s+"
                 r"page fault in the kernel's step \(tick or scheduling\) while task \d+ ran, and it cannot be unwound: escaping the step",
                 r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s", r"^\s+3\s+scrubber\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 200), reject=[r"killed by", r"died", r"system halted", r"HANG"]),
    dict(name="recovery_data_flips_in_kernel_state_are_repaired", timeout=90, script=[
            "beat 80 20", "sleep 200", "crash flip heartbeat::BEATS 0 3", "sleep 100", "swap heartbeat heartbeat_v2",
            "crash flip heartbeat::BEATS 16 6", "sleep 100", "crash flip scheduler::QUEUE 2056 7", "crash flip scheduler::QUEUE 2048 5",
            "sleep 100", "swap scheduler scheduler_v2 --state scheduler::swap_hook", "crash flip interrupts::TICK_HOOK 8 5", "sleep 100",
            "swap interrupts interrupts", "crash flip interrupts::TICK_HOOK 16 2", "crash flip task::POLICY 0 4", "crash flip task::TABLES 16 1", "crash flip task::NEXT_ID 8 2", "sleep 100",
            "swap heartbeat heartbeat", "selftest", "@await job 0 finished 80 beats", "ps", "poweroff"],
         counts=[(r"triple: copy \d of the word at 0x[0-9a-f]+ was 0x[0-9a-f]+, the other two 0x[0-9a-f]+: repaired", 7),
                 (r"crash: damaged \S+ in crate \S+ at 0x[0-9a-f]+ \(data\)", 9)],
         expect=[r"selftest: 11 passed, 0 failed", r"policy: round-robin-v2"],
         check=beats_consecutive(80), reject=[r"\((beat|shell|supervisor|scrubber|push)\) (killed|died|panicked)", "value lost", "fault outside any task", "selftest .* FAILED"]),
    # Campaign seed 43, trial 30: a flipped bit in the fault-handler registry (then a vector
    # under a lock) made a task's end walk off the heap with the lock held; that end was never
    # unwound and every later task end spun on the lock. The registry is a fixed table now:
    # bits flipped in the keys and handler addresses of a running WASM job's live slots lose
    # at most those slots; the job ends, WASM traps are still caught by the next programs'
    # handlers, tasks end, and selftest sees a task's handlers forgotten at its end.
    dict(name="recovery_a_damaged_fault_handler_registry_stops_no_task_end", timeout=90, append="scrub_ms=0", script=[
            "wasm run kernels.wasm --invoke matmul 96 --repeat 60 &", "sleep 300",
            "crash flip exceptions::registry::TABLE 5 7", "crash flip exceptions::registry::TABLE 29 7",
            "crash flip exceptions::registry::TABLE 40 3", "@await wasm: 60 runs of kernels",
            "wasm run traps.wasm --invoke oob", "wasm run traps.wasm --invoke divide 0", "beat 3 10",
            "@expect job 0 finished 3 beats", "selftest", "ps", "poweroff"],
         counts=[(r"crash: damaged exceptions::registry::TABLE in crate exceptions at 0x[0-9a-f]+ \(data\)", 3)],
         expect=[r"wasm: traps: trap: out of bounds memory access in wasm::traps::oob", r"wasm: traps: trap: integer divide by zero in wasm::traps::div",
                 r"selftest: 11 passed, 0 failed", r"^\s+1\s+shell\s+\S+\s+\d+\s+0\s"],
         check=beats_exactly_once(1, 3), reject=[r"\((beat|shell|wasm|supervisor)\) (killed|died|panicked)", "fault outside any task", r"HANG", "selftest .* FAILED"]),
    # Without a scrubber, `verify` finds the damage and `verify --repair` repairs it.
    dict(name="recovery_verify_finds_and_repairs", timeout=60, append="scrub_ms=0", script=[
            "beat 1 10", "sleep 100", "verify", "crash flip heartbeat::beat 3 6", "verify", "verify --repair", "verify", "verify --bogus",
            "beat 2 10", "@expect job 1 finished", "poweroff"],
         expect=[r"(?s)0 corrupted, 0 repaired.*verify: crate heartbeat: code differs from what was linked; not repaired \(verify --repair repairs it\).*"
                 r"1 corrupted, 0 repaired.*shell: verify exited with status 1.*verify: crate heartbeat: code differs from what was linked; restored 1 bytes in place.*"
                 r"1 corrupted, 1 repaired.*0 corrupted, 0 repaired",
                 r"verify: unknown option --bogus; usage: verify \[--repair\]", r"recovery: 0 scrub passes"],
         check=beats_exactly_once(1, 3), reject=["killed by", "CPU EXCEPTION", "the scrubber found"]),
    # Everything at once: damaged code repaired in place while a background WASM job compiles
    # and runs, a swap of the crate a running task calls, a wild jump in the swapped-in version
    # (the task restarts on v2), recovery swapping itself while it restarts that task, damage in
    # the WASM engine hit by the next instantiation; then the beats are all there, once each,
    # the WASM job finished, selftest passes and every crate verifies.
    dict(name="recovery_combined_with_swaps_and_wasm", timeout=120, append="scrub_ms=0", script=[
            "beat 40 25", "wasm run kernels.wasm --invoke matmul 96 --repeat 100 &", "sleep 200", "crash corrupt heartbeat::beat",
            "sleep 100", "swap heartbeat heartbeat_v2", "sleep 200", "crash wild heartbeat::beat", "swap recovery recovery",
            "crash corrupt wasm_runtime::wasi::resolve", "wasm run hello.wasm after", "@expect beat: job 0 finished 40 beats",
            "@await wasm: 100 runs of kernels", "selftest", "verify", "poweroff"],
         counts=[(r"the faulting instruction was the damage: running it again", 2), (r"killed by", 2)],
         expect=[r"code of crate heartbeat was corrupted: 2 bytes", r"code of crate wasm_runtime was corrupted: 2 bytes",
                 r"recovery: task \d+ \(beat\) died \(page fault at 0x0\); verified [a-z_ ]+ and then every crate \(repaired heartbeat\); restarted as task \d+ \(restart 1\)",
                 r"(?s)heartbeat v1: beat #\d+.*heartbeat v2: beat #40\r?$", r"^after\r?$", r"wasm: 100 runs of kernels \(compile",
                 r"selftest: 11 passed, 0 failed", r"0 corrupted, 0 repaired"],
         check=beats_exactly_once(1, 40), reject=["fault outside any task", "given up", "the damage ran before"]),
    # Combinations: a swapped-in version whose sealed copy is damaged too is reloaded from its
    # own object (v2 stays v2); recovery and task swapped, then recovering with the new versions.
    dict(name="recovery_after_swap_reloads_the_swapped_in_version", timeout=90, append="scrub_ms=0", script=[
            "beat 1 10", "@expect job 0 finished", "swap heartbeat heartbeat_v2", "beat 8 100", "sleep 350", "crash corrupt heartbeat::beat --with-copy",
            "@expect job 1 finished 8 beats", "swap recovery recovery", "swap task task", "sleep 300", "ps",
            "beat 8 100", "sleep 350", "crash wild heartbeat::beat", "@expect job 2 finished 8 beats",
            "swap heartbeat heartbeat", "beat 1 10", "@expect job 3 finished", "swap --reclaim", "ns -n", "poweroff"],
         expect=[r"heartbeat v1: beat #18\r?$", r"(?s)swap: done.*swap: done.*^ +\d+  supervisor +runnable",
                 r"recovery: crate heartbeat was corrupted and its sealed copy too; reloaded it from heartbeat_v2.o",
                 r"recovery: crate heartbeat was corrupted; restored 4 bytes in place"],
         counts=[(r"\(repaired heartbeat\); restarted as task", 2), (r"heartbeat v2: beat #", 16), (r"^ +\d+  scrubber ", 0), (r"^ +\d+  supervisor ", 1)],
         check=beats_exactly_once(1, 18), reject=["fault outside any task", "given up", "CPU EXCEPTION: page fault \(vector 14\)\r?\n.*\r?\n    faulting address: 0x[1-9]"]),
    # Every loaded crate swapped with itself, then every subsystem exercised (see swap_matrix_script).
    dict(name="swap_matrix_every_crate_then_every_subsystem", matrix="self", timeout=900),
    dict(name="swap_matrix_alternative_versions", matrix="alternatives", timeout=300),
    # Issue 15: compiled code is reused for the same bytes, options and engine; other options or
    # a swapped engine compile again; the cache can be listed and emptied.
    dict(name="wasm_code_cache_reuses_compiled_modules", timeout=180, script=[
            "wasm run hello.wasm a", "wasm run hello.wasm b", "wasm run hello.wasm --bounds-checks c", "wasm cache",
            "swap wasm_runtime wasm_runtime", "wasm run hello.wasm d", "wasm cache clear", "wasm run hello.wasm e", "wasm cache", "poweroff"],
         expect=[r"(?s)wasm: compiled hello: .*\r?\n^a\r?$.*wasm: hello: compiled code reused from the cache \(3 functions, \d+ bytes of code; compiling took \d+ us\).*\r?\n^b\r?$"
                 r".*wasm: compiled hello: .*\r?\n^c\r?$.*reused 1 times.*wasm: 2 compiled modules kept for reuse"
                 r".*swap: done.*wasm: compiled hello: .*\r?\n^d\r?$.*wasm: forgot 1 compiled modules.*wasm: compiled hello: .*\r?\n^e\r?$.*wasm: 1 compiled modules kept for reuse"],
         counts=[(r"reused from the cache", 1)], reject=["CPU EXCEPTION", "fault outside any task"]),
    # Issue 20: imports are capabilities; memory is limited and always returned.
    dict(name="wasm_imports_are_capabilities", timeout=120, script=[
            "wasm run memset.wasm --invoke smash", "wasm run trusted.wasm --invoke up", "wasm run trusted.wasm --trusted --invoke up",
            "wasm run print.wasm --invoke good", "wasm run print.wasm --invoke bad", "wasm run compute.wasm --invoke show_backtrace",
            "wasm run hello.wasm still", "verify", "echo kernel alive", "poweroff"],
         expect=[r"wasm: memset: import env\.memset refused: WASM modules may import WASI, the delos module \(print, uptime_ms, backtrace, panic\) and loaded modules' exports; env is neither \(kernel symbols are granted only to `wasm run --trusted`\); nothing was instantiated",
                 r"wasm: trusted: import env\.delos_wasm_uptime_ms refused",
                 r"wasm: trusted runs trusted: its imports may name any exported kernel function", r"wasm: trusted returned [1-9]\d*\r?$",
                 r"^hello through delos\.print\r?\n(.*\r?\n)?wasm: print returned 0", r"wasm: print returned 21\r?$",
                 r"wasm::compute::inner \+ 0x[0-9a-f]+ \(crate wasm:compute", r"^still\r?$", "^kernel alive",
                 # Kernel code and read-only data unharmed by the hostile calls.
                 r"verify: \d+ crates, \d+ KiB of code and read-only data hashed in \d+ us; 0 corrupted, 0 repaired"],
         reject=["CPU EXCEPTION", "fault outside any task", "wasm: memset returned"]),
    dict(name="wasm_memory_limited_and_returned", timeout=180, append="wasm_mem=16", script=[
            "mem", "wasm run grow.wasm --invoke huge --repeat 3", "wasm run grow.wasm --invoke table --repeat 3",
            "wasm run grow.wasm --invoke some --repeat 200", "wasm load g grow.wasm", "wasm call g some", "wasm list",
            "wasm unload g", "wasm list", "wasm run traps.wasm --invoke oob", "wasm run traps.wasm --bounds-checks --invoke oob", "poweroff"],
         counts=[(r"wasm: leak: none", 3), (r"wasm: grow returned -1", 4)],
         expect=[r"wasm: most in use during cycles 1-10: (\d+) frames, (\d+) heap bytes; during cycles 191-200: \1 frames, \2 heap bytes",
                 r"wasm: memories and tables use 6464 KiB of a 16384 KiB budget .*\r?\n(.*\r?\n)?g: \d+ bytes of code at 0x[0-9a-f]+, 6464 KiB of linear memory",
                 r"wasm: memories and tables use 0 KiB of a 16384 KiB budget",
                 r"(?s)trap: out of bounds memory access in wasm::traps::oob.*trap: out of bounds memory access in wasm::traps::oob"],
         reject=["CPU EXCEPTION", "fault outside any task", "wasm: leak: [1-9-]"]),
    # Multicore (issue 14): every CPU runs tasks. `on CPU CMD` puts a command's task on a CPU,
    # where it stays; each AP schedules its own tasks (round robin, its local APIC timer) and
    # its park loop is its idle task. A fault or a panic in a task on an AP unwinds that task
    # only; Ctrl-C kills a task running on another CPU; WASM compiles, runs and traps there;
    # selftest (TLS, SSE, preemption, unwinding) passes on an AP; heartbeats on CPU 1 survive a
    # swap storm (each swap stops the world), every beat exactly once; after swaps of smp, task
    # and exceptions, faults, a panic and a C program on the APs.
    dict(name="smp_tasks_run_on_every_cpu", timeout=180, qemu_args=["-smp", "4"], script=[
            "cpus", "on 1 ps", "cpus --tasks 2", "on 2 crash null", "on 3 crash panic", "echo alive",
            "on 1 selftest", "on 2 wasm run hello.wasm a", "on 3 wasm run traps.wasm --invoke oob",
            "on 2 wasm run traps.wasm --invoke spin 0", "@expect traps: compiled code reused from the cache", "@send \\x03", "@expect was killed", "on 2 echo after the kill", "on 3 crash hang", "on 3 echo CPU 3 back",
            "on 1 beat 60 20 &", "swap --storm 12 --seed 5 echo=echo_v2 heartbeat=heartbeat_v2", "sleep 1500",
            "swap smp smp", "swap task task", "swap exceptions exceptions", "on 3 crash ud", "on 1 crash panic", "on 2 loadc hello.o ap", "cpus --tasks 2", "selftest --cpus", "cpus --balance 2", "on 1 sleep 3000 &", "on 2 sleep 3000 &", "on any ps", "on 9 echo nowhere", "on x", "cpus", "poweroff"],
         expect=[r"4 CPUs: 4 run tasks, 3 APs up, 0 stopped, 0 failed",
                 r"^ +\d+  ps +running +\d+ +- +1  0x",
                 r"cpus: tasks of 2 units: one alone \d+ us, one on each of 4 CPUs \(\[0, 1, 2, 3\]\) at once \d+ us: throughput \d+\.\d+x of one CPU \(ideal 4x\); results agree",
                 r"shell: crash died: page fault", r"shell: crash panicked: ", r"^alive",
                 r"selftest: 11 passed, 0 failed", r"hello from WASM, argc=2",
                 r"trap: out of bounds memory access in wasm::traps::oob", r"shell: wasm was killed", r"^after the kill",
                 # A task looping with interrupts off on an AP: the boot CPU's watchdog sends that CPU an NMI.
                 r"!!! HANG on CPU 3: its timer stopped ticking", r"shell: crash died: hang at", r"^CPU 3 back",
                 r"(?s)swap: done.*swap: done.*swap: done.*shell: crash died: invalid opcode.*shell: crash panicked: deliberate panic.*hello.c: all checks passed",
                 r"(?s)swap: done.*cpus: tasks of 2 units: .* results agree",
                 r"selftest --cpus: preemption, TLS and SSE state of pinned tasks ok on each of 4 CPUs \[0, 1, 2, 3\]",
                 # Work stealing: movable tasks spawned on CPU 0 finish on APs too (the last CPU listed is one).
                 r"cpus: 4 movable tasks of 2 units spawned on CPU 0: finished on CPUs \{[0-3, ]*[1-3]\}, [1-9]\d* moves by idle CPUs; .* results agree",
                 # `on any` puts ps on CPU 3, the one CPU without a task of its own.
                 r"^ +\d+  ps +running +\d+ +- +3  0x",
                 r"shell: cannot start echo: CPU 9 runs no tasks", r"usage: on CPU\|any CMD \[ARGS\]",
                 # (A stop may be abandoned when a CPU stays in a long fault report with interrupts
                 # off, building DWARF line tables: that swap retries, that reclaim frees nothing.)
                 r"stop the world: [1-9]\d* times \(swap commits, reclaim scans\), \d+ abandoned because a CPU was late",
                 r"watchdog: 1 NMIs sent to parked CPUs whose timer stopped for the limit"],
         check=beats_exactly_once(1, 60),
         reject=[r"fault outside any task", r"system halted", r"PANIC", r"results DIFFER", r"CPU \d: .* in its idle task"]),
    # A restartable task that dies on an AP is restarted on that AP (the supervisor runs on the
    # boot CPU), its beats resuming once each; the fault is the one of the test above.
    # Campaign seed 44, trial 262: fault reports on the boot CPU (written without the console
    # lock) interleaved character by character with the beats CPU 1 printed. A report now waits
    # (bounded) for a lock another CPU holds, so every beat line and every report line comes out
    # whole; no rejoining of cut lines here.
    dict(name="smp_fault_reports_do_not_interleave_with_another_cpus_output", timeout=90, qemu_args=["-smp", "2"], append="scrub_ms=0", script=[
            "on 1 beat 150 4 &", "sleep 30"] + ["crash null", "crash ud"] * 5 + ["@await beat: job 0 finished 150 beats", "echo alive", "poweroff"],
         counts=[(r"^!!! CPU EXCEPTION: (page fault|invalid opcode) \(vector (14|6)\)\r?$", 10), (r"^(delos> )*[a-z ]*heartbeat v1: beat #\d+\r?$", 150)],
         # A beat may follow the prompt, or the echo of a command being typed, on its line (the
         # shell echoes each key as it comes); it is never cut, and never inside a report line.
         check=lambda text: [f"a line not whole: {l!r}" for l in text.splitlines() if ("beat #" in l or "CPU EXCEPTION" in l) and not __import__("re").fullmatch(
             r"((delos> )*[a-z ]*heartbeat v1: beat #\d+|(delos> )*beat: job 0 finished 150 beats|!!! CPU EXCEPTION: (page fault|invalid opcode) \(vector (14|6)\))\r?", l)][:3],
         expect=[r"^alive"], reject=[r"\((beat|shell)\) (killed|died)"]),
    # Work stealing takes only tasks that can resume on any CPU. A task the boot CPU's PIT tick
    # switched out holds that tick's interrupt entry on its stack, whose way back is the boot
    # CPU's; an AP that took it jumped to a garbage address (a `work` task killed, "results
    # DIFFER"; about 1 run in 10 of this script with a busy host, before the fix).
    dict(name="smp_work_stealing_leaves_tasks_the_pit_tick_switched_out", timeout=120, qemu_args=["-smp", "4"], script=[
            "cpus --balance 2"] * 12 + ["ps", "poweroff"],
         counts=[(r"cpus: 4 movable tasks of 2 units spawned on CPU 0: finished on CPUs \{[0-3, ]+\}, \d+ moves by idle CPUs; .* results agree", 12)],
         reject=[r"CPU EXCEPTION", r"DIFFER", r"killed by"]),
    # Damage in code every CPU runs (the scheduler's step) is hit by several CPUs at once: the
    # first repairs it and runs the instruction again; the others, which faulted on it before
    # the repair landed, find the code intact and run it again too. Before, their faults took
    # their course: beats and the crash task killed (campaign seed 45: the shell).
    dict(name="smp_damage_hit_by_several_cpus_at_once_runs_again_on_each", timeout=90, qemu_args=["-smp", "4"], append="scrub_ms=0", script=[
            "on 1 beat 100 5 &", "on 2 beat 100 5 &", "on 3 beat 100 5 &", "sleep 200", "crash corrupt task::step::run",
            "@await job 0 finished 100 beats", "@await job 1 finished 100 beats", "@await job 2 finished 100 beats",
            "verify --repair", "verify", "ps", "poweroff"],
         # Under TCG the written damage is sometimes never run: in about half the runs every CPU
         # went on running its translation of the old bytes (no fault at all; `verify` then finds
         # the damage, and `verify --repair` repairs it). So zero faults passes; every fault that
         # does come must run again, and no task may die. Before the remedy: 3 runs of 3 failed.
         check=lambda text: [] if (lambda e, r: e == r)(len(__import__("re").findall(r"^!!! CPU EXCEPTION", text, __import__("re").M)),
                                                                len(__import__("re").findall(r"running it again$", text, __import__("re").M)))
                             else ["every fault on the damage must run again (CPU EXCEPTION lines vs `running it again` lines differ)"],
         expect=[r"(?s)verify --repair.*verify: \d+ crates, .* 0 corrupted, 0 repaired"],
         reject=[r"killed by", r"died", r"restarted as task", r"HANG"]),
    dict(name="smp_a_task_that_dies_on_an_ap_restarts_there", timeout=60, qemu_args=["-smp", "2"], append="scrub_ms=0", script=[
            "on 1 beat 60 30", "sleep 300", "crash flip heartbeat::beat 2 5", "@expect restarted as task", "ps",
            "@await beat: job 0 finished 60 beats", "poweroff"],
         expect=[r"task \d+ \(beat\) killed by \S+ fault \(not unwound\)",
                 r"recovery: task \d+ \(beat\) died .*; restarted as task \d+ \(restart 1\)",
                 r"^ +\d+  beat +\S+ +\d+ +1 +1  0x"],
         check=beats_exactly_once(1, 60), reject=["fault outside any task", "given up", "system halted"]),
    # Multicore, first step (issue 14): every CPU in the MADT is started and parked; tasks,
    # swaps, faults and WASM keep working beside them; a CPU that does not come up is reported.
    dict(name="smp_four_cpus_come_up_and_park", timeout=120, qemu_args=["-smp", "4"], script=[
            "cpus", "cpus --ping 50", "selftest", "swap smp smp", "cpus --ping 50", "swap task task", "crash ud", "crash schedule --hang", "wasm run hello.wasm a", "cpus",
            "cpus --speedup 2", "cpus --bogus", "poweroff"],
         expect=[r"smp: 4 CPUs in the MADT: the boot CPU \(APIC 0\) runs tasks, 3 APs parked, 0 failed",
                 r"^ +1 +1  started, runs tasks \(`on CPU CMD`\) and jobs \(came up in \d+ us\)",
                 r"^ +3 +3  started, runs tasks", r"(?s)4 CPUs: 4 run tasks, 3 APs up, 0 stopped, 0 failed.*4 CPUs: 4 run tasks, 3 APs up, 0 stopped, 0 failed",
                 r"selftest: 11 passed, 0 failed", r"(?s)swap: done.*swap: done", r"killed by invalid opcode",
                 r"hello from WASM, argc=2", r"cpus: unknown argument --bogus \(usage: cpus \[--ping N \| --speedup UNITS \| --tasks UNITS \| --balance UNITS \| --tlb \[--no-shootdown\] \| --shootdowns N \| --watchdog MS \| --job-fault null\|ud\|wild\|panic \| --stop CPU\]\)",
                 r"^crash: the scheduler's hang was contained; this task went on", r"watchdog: the PIT's IRQ 0 as an NMI to APIC 0 \(GSI 2\); .* 1 hangs",
                 # Jobs run on every parked CPU and compute what the boot CPU computes (a figure,
                 # not a timed test: `make bench` reports the speed-up).
                 r"cpus: 2 units alone \d+ us, on 4 CPUs at once \d+ us: throughput \d+\.\d+x of one CPU \(ideal 4x\); results agree"],
         # Pings reach every parked CPU, before and after a swap of smp (whose handler the IDT names).
         counts=[(r"^cpu [123]: 50 of 50 pings answered, median round trip \d+ ns", 6)],
         reject=[r"fault outside any task", r"system halted", r"PANIC", r"pings answered.*\b0 of"]),
    # A fault or a panic in a job on a parked CPU abandons the job, not the machine: the exception
    # gates and the panic handler used to take it for the boot CPU's running task's and unwind
    # that task on the wrong CPU's stack. Each CPU reports it, the poster is told what and where
    # (named on the boot CPU), and the CPU runs the next job; before and after a swap of smp,
    # with a task's fault on the boot CPU between. A fault outside any job (in an IPI handler)
    # stops that CPU for good; shootdowns, pings and jobs go on with the others.
    # The parked CPUs compile a module's functions beside the task (`wasm` helpers): the same
    # code as a serial compile (its size and IR count compared across all five compiles), the
    # right result; helpers that fault are reported and the task compiles everything itself; a
    # stopped CPU is left out; a swap of `smp` in between.
    dict(name="smp_parked_cpus_help_compile_wasm", timeout=120, qemu_args=["-smp", "4"], script=[
            "wasm run kernels.wasm --invoke matmul 16", "wasm cache clear", "wasm run kernels.wasm --serial-compile --invoke matmul 16",
            "wasm cache clear", "wasm run kernels.wasm --fault-helpers --invoke matmul 16", "swap smp smp", "cpus --stop 2",
            "wasm cache clear", "wasm run kernels.wasm --invoke matmul 16", "wasm cache clear", "wasm run kernels.wasm --invoke matmul 16",
            "cpus --ping 10", "poweroff"],
         expect=[r"(?s)compiled kernels: \d+ functions, \d+ bytes of code, \d+ IR instructions in \d+ us \(\d+ us/function, [1-9]\d* of them by 3 parked CPUs\)"
                 r".*compiled kernels: \d+ functions, \d+ bytes of code, \d+ IR instructions in \d+ us \(\d+ us/function\); registered"
                 r".*compiled kernels: \d+ functions, \d+ bytes of code, \d+ IR instructions in \d+ us \(\d+ us/function\); registered"
                 r".*compiled kernels: .* \(\d+ us/function, [1-9]\d* of them by 2 parked CPUs\)"
                 r".*compiled kernels: .* \(\d+ us/function, [1-9]\d* of them by 2 parked CPUs\)",
                 r"^wasm: a compile helper failed \(CPU 1: the job was abandoned: page fault at 0x[0-9a-f]+ in smp::faulting_job \+ 0x[0-9a-f]+ .*\(faulting address 0x[0-9a-f]+\)\); the task compiles what it had claimed",
                 r"^wasm: a compile helper failed \(CPU 3: the job was abandoned: page fault",
                 r"cpu 1: 10 of 10 pings answered", r"cpu 3: 10 of 10 pings answered", r"swap: done"],
         check=lambda log: same_compiles(log, 5) + results_are(log, MATMUL16, 5),
         reject=[r"killed by", r"system halted", r"HANG", r"cpu 2: \d+ of 10 pings answered"]),
    dict(name="smp_a_fault_in_a_job_abandons_the_job_and_a_stopped_cpu_is_left_out", timeout=120, qemu_args=["-smp", "4"], script=[
            "cpus --job-fault null", "cpus --job-fault ud", "swap smp smp", "cpus --job-fault wild", "cpus --job-fault panic", "crash null",
            "cpus --stop 2", "cpus --tlb", "cpus", "cpus --ping 10", "cpus --job-fault null", "cpus --stop 2", "cpus --job-fault",
            "selftest", "wasm run hello.wasm a", "poweroff"],
         counts=[(r"^cpus: CPU [123] runs jobs again: result agrees", 14),
                 (r"^!!! CPU [123]: page fault \(vector 14, error code 0x0\) at 0x[0-9a-f]+, faulting address 0x8 in a job: the job is abandoned and the CPU parks again", 5),
                 (r"^cpus: CPU [123]: the job was abandoned: page fault at 0x[0-9a-f]+ in smp::faulting_job \+ 0x[0-9a-f]+ \(crate smp, namespace kernel\) at \S*crates/smp/src/lib.rs:\d+", 5),
                 (r"^cpus: CPU [123]: the job was abandoned: invalid opcode at 0x[0-9a-f]+ in smp::faulting_job", 3),
                 (r"^cpus: CPU [123]: the job was abandoned: page fault at 0x8 in not in any loaded section \(faulting address 0x8\)", 3),
                 (r"^!!! CPU [123]: panic at crates/smp/src/lib.rs:\d+:\d+: a job panics on purpose \(cpus --job-fault panic\) in a job: the job is abandoned", 3),
                 (r"^cpus: CPU [123]: the job was abandoned: panic$", 3),
                 (r"^cpu [13]: 10 of 10 pings answered", 2), (r"^cpu [13]: read 0x1111111111111111 before and 0x2222222222222222 after the remap: the new frame", 2)],
         expect=[r"^swap: done", r"task \d+ \(crash\) killed by page fault",
                 # A fault in the idle task of a CPU that runs tasks is reported like any (and
                 # checked for damage first), then stops that CPU.
                 r"(?s)faulting address: 0x8\r?\n    rip: 0x[0-9a-f]+ in smp::pong .*^!!! CPU 2: page fault at 0x[0-9a-f]+ in its idle task outside any job: CPU 2 stops; the others go on",
                 r"^cpus: CPU 2 stopped; 2 CPUs stay parked", r"^ +2 +2  stopped after an exception outside any job",
                 r"4 CPUs: 3 run tasks, 2 APs up, 1 stopped, 0 failed",
                 r"^tlb: \d+ mappings removed or reduced; [1-9]\d* shootdown rounds, (\d+) IPIs, \1 flushes, 0 timeouts",
                 r"^cpus: CPU 2 stopped after an exception outside any job", r"^usage: cpus --job-fault null\|ud\|wild\|panic",
                 r"selftest: 11 passed, 0 failed", r"hello from WASM, argc=2"],
         reject=[r"fault outside any task", r"system halted", r"PANIC in nano_core", r"the faulting job returned", r"^cpu 2: ", r"after the fault: ",
                 r"killed by .*\((shell|supervisor|scrubber)\)"]),
    dict(name="smp_a_cpu_that_does_not_start_is_reported", timeout=60, qemu_args=["-smp", "3"], append="smp_withhold=1",
         script=["cpus", "selftest", "cpus --tlb", "cpus", "poweroff"],
         expect=[r"smp: CPU 1 \(APIC 1\) did not arrive within 500 ms of its start-up IPIs; going on without it",
                 r"^ +1 +1  failed to start: did not arrive", r"^ +2 +2  started, runs tasks",
                 r"3 CPUs: 2 run tasks, 1 APs up, 0 stopped, 1 failed", r"selftest: 11 passed, 0 failed",
                 # Shootdowns go to the parked CPU only: the one that never arrived is not waited for.
                 r"^cpu 2: read 0x1111111111111111 before and 0x2222222222222222 after the remap: the new frame",
                 r"^tlb: \d+ mappings removed or reduced; [1-9]\d* shootdown rounds, (\d+) IPIs, \1 flushes, 0 timeouts"]),
    # TLB shootdowns: the boot CPU maps a page, a parked CPU reads it (and caches the
    # translation), the boot CPU maps the same address to another frame; the parked CPU must
    # read the new frame. Without the shootdown it reads the old one (QEMU's TCG keeps each vCPU's
    # translations as a CPU does): the check can fail. After a swap of smp (which sends the IPIs
    # and handles them) and of task, and with loads and unloads going on, still every round is
    # answered by every parked CPU, and no CPU times out.
    dict(name="smp_tlb_shootdown_drops_stale_translations", timeout=120, qemu_args=["-smp", "4"], script=[
            "cpus --tlb", "cpus --tlb --no-shootdown", "swap smp smp", "cpus --tlb", "swap task task", "loadc hello.o",
            "wasm run hello.wasm", "cpus --tlb", "cpus --tlb bogus", "cpus --shootdowns 50", "cpus", "poweroff"],
         counts=[(r"^cpu [123]: read 0x1111111111111111 before and 0x2222222222222222 after the remap: the new frame: its old translation was dropped", 9),
                 (r"^cpu [123]: read 0x1111111111111111 before and 0x1111111111111111 after the remap \(no shootdown sent\): the OLD frame: a stale translation", 3),
                 (r"^swap: done", 2)],
         expect=[r"hello.c: all checks passed", r"hello from WASM", r"cpus: unknown argument bogus \(usage: cpus --tlb \[--no-shootdown\]\)",
                 r"^cpus: 50 permission changes with a shootdown round to 3 parked CPUs \(50 rounds, 0 timeouts\): median \d+ ns a change; without the round \d+ ns",
                 r"^tlb: \d+ mappings removed or reduced; [1-9]\d* shootdown rounds, (\d+) IPIs, \1 flushes, 0 timeouts"],
         reject=[r"fault outside any task", r"system halted", r"PANIC", r"neither frame", r"^swap: (?!done)"]),
    dict(name="smp_one_cpu", qemu_args=["-smp", "1"], script=["cpus", "cpus --speedup 1", "cpus --shootdowns 10", "poweroff"],
         expect=[r"cpus: no parked CPU: a change sends no shootdown", r"smp: 1 CPUs in the MADT: the boot CPU \(APIC 0\) runs tasks, 0 APs parked, 0 failed",
                 r"1 CPUs: 1 run tasks, 0 APs up, 0 stopped, 0 failed", r"on 1 CPUs at once \d+ us: .*results agree"]),
    # The runner's own tests: each of these must make qemu_run.py fail.
    # Each asserts the runner's reason, so failing for another reason (a hang where a triple
    # fault was meant) does not count.
    dict(name="runner_fails_on_failing_ktest", append="test test_fail", verdict="fail",
         expect=["ktest deliberate_failure ... FAILED"], reason=r"kernel exited with failure code 35, expected success"),
    dict(name="runner_fails_on_triple_fault", append="fault=triple", verdict="fail", expect=["triggering fault"],
         reason=r"QEMU exited with 0: triple fault or reset"),
    dict(name="runner_fails_on_hang", append="", verdict="fail", timeout=5, expect=["^nano_core ready"],
         reason=r"timeout: QEMU still running after 5(\.0)? s"),
    dict(name="runner_fails_on_missing_expectation", append="poweroff", verdict="fail",
         runner_expect=["this line is never printed"], reason=r"expected output not seen: 'this line is never printed'"),
]


def _local_apic_tick_variant():
    """The watchdog's case again with the boot CPU's tick from its local APIC timer (the default
    since 2026-12-08); the case itself keeps the PIT's tick (`pit_tick`), so both paths of the
    tick's end of interrupt — the 8259's and the local APIC's — are tested: a lost one is found
    and sent by the watchdog in each."""
    import copy
    base = next(c for c in CASES if c["name"] == "recovery_hangs_with_interrupts_off_are_ended_by_the_watchdog")
    variant = copy.deepcopy(base)
    base["append"] = base["append"] + " pit_tick"
    base["expect"] = base["expect"] + [r"^boot CPU tick: the PIT through the 8259 \(kept by `pit_tick`\)"]
    variant["name"] = "recovery_hangs_with_the_local_apic_tick_are_ended_by_the_watchdog"
    # The PIT's IRQ 0 is masked at the 8259 too (0xfb), and nothing is in service there.
    swap = {
        r"in service 0x0[01], requested 0x[01]1, masked 0xfa\)": r"in service 0x00, requested 0x[01]1, masked 0xfb\)",
        r"interrupts are on, but the 8259 still has the timer's IRQ 0 in service \(no end of interrupt was sent\) \(watchdog NMI; 8259 master: in service 0x01, requested 0x[01]1, masked 0xfa\)":
            r"interrupts are on, but the local APIC still has the timer's vector 32 in service \(no end of interrupt was sent\) \(watchdog NMI; 8259 master: in service 0x00, requested 0x[01]1, masked 0xfb\)",
    }

    def change(rx):
        for old, new in swap.items():
            rx = rx.replace(old, new)
        return rx

    counts, expect = [(change(rx), n) for rx, n in variant["counts"]], [change(rx) for rx in variant["expect"]]
    changed = sum(a != b for a, b in zip(expect, variant["expect"])) + sum(a[0] != b[0] for a, b in zip(counts, variant["counts"]))
    assert changed == 2, f"the local APIC variant changed {changed} patterns, expected 2"
    variant["counts"] = counts
    variant["expect"] = expect + [r"^boot CPU tick: its local APIC timer at 100 Hz, as the APs' \(the PIT only drives the watchdog\)"]
    CASES.insert(CASES.index(base) + 1, variant)


_local_apic_tick_variant()


# What runs before the matrix: a WASM program, a C program, a panic, a background task.
MATRIX_EXERCISE = ["wasm run hello.wasm w", "loadc hello.o w", "crash panic", "beat 2 10", "sleep 50", "bt", "echo warm", "ns -n",
                   "swap --reclaim"]


def battery(x, new=None):
    """Swap X (for NEW, or itself), exercise every subsystem, then a second swap back."""
    return [f"swap {x} {new or x}", "crash null", "crash ud", "crash panic", "bt",
            "wasm run traps.wasm --invoke divide 0", "wasm run hello.wasm m", "loadc hello.o m",
            "selftest", "beat 2 1", "sleep 10", "echo hi", "ps", f"swap {x} {x}"]


# Crates a swap does not take, with why (the matrix checks that each is refused).
NOT_SWAPPED = {"nano_core": "the statically linked base every other crate is linked against"}


def discover_crates(c):
    """Boots once, loads everything the battery uses, and returns the live crates by namespace."""
    import re
    lines = MATRIX_EXERCISE + battery("echo")[1:-1] + ["ns -n", "poweroff"]
    script = os.path.join(LOGS, c["name"] + ".discover.script")
    log = os.path.join(LOGS, c["name"] + ".discover.log")
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([sys.executable, RUNNER, "--log", log, "--timeout", "120", "--quiet", "--expect-exit", "success",
                        "--script", script, "--kernel", os.path.join(IMAGE, "nano_core"),
                        "--modules", os.path.join(IMAGE, "modules.tar"), "--append", ""], capture_output=True, text=True)
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    if r.returncode != 0:
        return None, f"discovery boot failed: {r.stderr.strip()[-300:]}"
    found = []
    for ns in ("kernel", "applications"):
        lists = re.findall(rf"^crates of {ns}: (.*?)\r?$", text, re.M)
        if not lists:
            return None, f"discovery: no crate list for {ns}"
        found += [n for n in lists[-1].split() if not n.startswith("wasm:") and n not in NOT_SWAPPED]
    return found, None


def swap_matrix_script(c):
    """The matrix session: returns (script lines, expectations, counted expectations) or an error."""
    if c["matrix"] == "alternatives":
        pairs = [("echo", "echo_v2"), ("heartbeat", "heartbeat_v2"), ("scheduler", "scheduler_v2")]
        lines = list(MATRIX_EXERCISE)
        for old, new in pairs:
            lines += battery(old, new)
        n = len(pairs)
        expect = [r"^echo v2: hi", r"heartbeat v2: beat #", r"policy: round-robin-v2", r"(?s)policy: round-robin-v2.*policy: round-robin\r?$"]
        lines += ["ps", "ns", "swap --reclaim", "poweroff"]
        return lines, expect, n, None
    crates, err = discover_crates(c)
    if err:
        return None, None, 0, err
    lines = list(MATRIX_EXERCISE)
    for x in crates:
        lines += battery(x)
    lines += ["swap nano_core nano_core", "ns -n", "swap --reclaim", "mem", "poweroff"]
    c["crates"] = crates
    expect = [r"swap: new version of nano_core cannot replace the old one: nano_core is the statically linked base",
              r"shell: continuing in the new version", r"^crates: \d+ KiB mapped"]
    return lines, expect, len(crates), None


def tampered_archive(case, prefix):
    """A copy of the image's module archive with one byte changed in the member starting with
    `prefix` (an attacker's or a bit flip's work)."""
    import tarfile
    src = os.path.join(IMAGE, "modules.tar")
    out = os.path.join(LOGS, case + ".tar")
    with tarfile.open(src) as t, tarfile.open(out, "w") as o:
        done = False
        for m in t.getmembers():
            data = t.extractfile(m).read() if m.isfile() else None
            if data and not done and m.name.startswith(prefix):
                data = bytearray(data)
                data[len(data) // 2] ^= 0x01
                data = bytes(data)
                done = True
            import io
            o.addfile(m, io.BytesIO(data) if data is not None else None)
    return out


def kernel_without_digest(case):
    """A copy of the image's kernel with the manifest digest imgtool wrote into it zeroed, as in
    a kernel built before its image."""
    src = os.path.join(IMAGE, "nano_core")
    syms = subprocess.run(["nm", src], capture_output=True, text=True, check=True).stdout
    addr = next(int(l.split()[0], 16) for l in syms.splitlines() if l.endswith(" DELOS_MANIFEST_DIGEST"))
    hdrs = subprocess.run(["readelf", "-SW", src], capture_output=True, text=True, check=True).stdout
    sec = next(l for l in hdrs.splitlines() if " .imgtool " in l).split("]")[1].split()
    sh_addr, sh_off = int(sec[2], 16), int(sec[3], 16)
    data = bytearray(open(src, "rb").read())
    at = sh_off + addr - sh_addr
    assert any(data[at:at + 64]), "the image's kernel has no manifest digest to zero"
    data[at:at + 64] = bytes(64)
    out = os.path.join(LOGS, case + ".nano_core")
    with open(out, "wb") as f:
        f.write(data)
    return out


def c_host_build(c):
    """For a c_host case: the Delos objects (the program, and missing.c), and a check that each
    `loadc` run printed exactly what the host build of the same sources prints."""
    spec = c["c_host"]
    srcs = [os.path.join(ROOT, s) for s in spec["srcs"]]
    imgtool = os.path.join(ROOT, "target/release/imgtool")
    objects = []
    for group in (srcs, [os.path.join(ROOT, "crates/loadc/programs/missing.c")]):
        r = subprocess.run([imgtool, "cobj"] + group, capture_output=True, text=True)
        if r.returncode != 0:
            return f"make cobj of {group} failed: {r.stderr.strip()[-500:]}"
        objects.append(r.stdout.strip())
    host = os.path.join(LOGS, c["name"] + ".host")
    r = subprocess.run(["gcc", "-O2", "-o", host] + srcs, capture_output=True, text=True)
    if r.returncode != 0:
        return f"host build failed: {r.stderr.strip()[-500:]}"
    prog = os.path.basename(srcs[0])[:-2] + ".o"
    wanted = []
    for args in spec["runs"]:
        out = subprocess.run([host] + args, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return f"host run {args} exited with {out.returncode}"
        wanted.append((args, out.stdout.splitlines()))

    def check(text):
        problems = []
        lines = [l.rstrip("\r") for l in text.split("\n")]
        for args, want in wanted:
            cmd = "loadc " + " ".join([prog] + args)
            # The typed line; the prompt may have come before a push's message instead.
            at = [k for k, l in enumerate(lines) if l in (cmd, "delos> " + cmd)]
            if not at:
                problems.append(f"no {cmd!r} in the log")
                continue
            i = at[0] + 1
            got = []
            while i < len(lines) and not lines[i].startswith("loadc: " + prog):
                if not lines[i].startswith("["):  # kernel log lines (timestamped) are not the program's
                    got.append(lines[i])
                i += 1
            if got != want:
                diff = next((k for k in range(max(len(got), len(want))) if k >= len(got) or k >= len(want) or got[k] != want[k]), 0)
                problems.append(f"{cmd}: line {diff + 1} differs from the host's: "
                                f"{got[diff] if diff < len(got) else '(missing)'!r} vs {want[diff] if diff < len(want) else '(missing)'!r}")
        return problems
    return objects, check


def run_case(c):
    log = os.path.join(LOGS, c["name"] + (f"-smp{SMP}" if SMP else "") + ".log")
    cmd = [sys.executable, RUNNER, "--log", log, "--timeout", str(c.get("timeout", 30)), "--quiet",
           "--expect-exit", c.get("exit", "success")]
    if "matrix" in c:
        lines, expect, n, err = swap_matrix_script(c)
        if err:
            return [err], log
        c["script"] = lines
        c["expect"] = expect
        c["reject"] = [r"^swap: (?!done|reclaim|retired|reclaimed|dry run|new version of nano_core)", "fault outside any task", "PANIC in nano_core",
                       "could not unwind", "died holding the loader", "system halted", r"selftest: \d+ passed, [1-9]"]
        # Each battery item once per swapped crate (and once more for the exercise where it repeats).
        c["counts"] = [(r"swap: done: ", 2 * n), (r"crash: cleanup ran \(null\)", n), (r"killed by invalid opcode; unwinding", n),
                       (r"shell: crash panicked: deliberate panic", n + 1), (r"trap: integer divide by zero in wasm::traps::div", n),
                       (r"hello from WASM, argc=2", n + 1), (r"hello.c: all checks passed", n + 1),
                       (r"selftest: 11 passed, 0 failed", n), (r"beat: task \d+ started", n + 1)]
    if "script" in c:
        lines = c["script"]
        if "needs_object" in c:
            # Built exactly like the image (what `make push` does).
            r = subprocess.run([os.path.join(ROOT, "target/release/imgtool"), "object", os.path.join(ROOT, c["needs_object"])],
                               capture_output=True, text=True)
            if r.returncode != 0:
                return [f"building {c['needs_object']} failed: {r.stderr.strip()[-500:]}"], log
            lines = [l.replace("{OBJECT}", r.stdout.strip()) for l in lines]
        if "c_host" in c:
            built = c_host_build(c)
            if isinstance(built, str):
                return [built], log
            objects, c["check"] = built
            lines = [l.replace("{COBJ}", objects[0]).replace("{MISSING}", objects[1]) for l in lines]
        if "push_wasm" in c:
            # A WASM file from the image, sent again over the push port under another name.
            import tarfile
            with tarfile.open(os.path.join(IMAGE, "modules.tar")) as t:
                data = t.extractfile("wasm/" + c["push_wasm"]).read()
            path = os.path.join(LOGS, c["push_wasm"])
            with open(path, "wb") as f:
                f.write(data)
            lines = [l.replace("{WASMFILE}", path) for l in lines]
        script = os.path.join(LOGS, c["name"] + ".script")
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        cmd += ["--script", script]
    if c.get("push"):
        cmd += ["--push-socket", os.path.join(ROOT, "target", "test-push.sock")]
    modules = os.path.join(IMAGE, "modules.tar")
    if "tamper" in c:
        modules = tampered_archive(c["name"], c["tamper"])
    if "iso" in c:
        cmd += ["--iso", os.path.join(IMAGE, c["iso"])]
    else:
        kernel = kernel_without_digest(c["name"]) if c.get("kernel_without_digest") else os.path.join(IMAGE, "nano_core")
        if "kernel_file" in c:
            kernel = os.path.join(ROOT, c["kernel_file"])
        cmd += ["--kernel", kernel, "--modules", modules, "--append", c.get("append", "")]
    for e in c.get("runner_expect", []):
        cmd += ["--expect", e]
    qemu_args = list(c.get("qemu_args", []))
    if SMP and "-smp" not in qemu_args:
        qemu_args += ["-smp", SMP]
    for a in qemu_args:
        cmd += ["--qemu-arg=" + a]
    r = subprocess.run(cmd, capture_output=True, text=True)
    import re
    verdict = "pass" if r.returncode == 0 else "fail"
    problems = []
    if r.returncode not in (0, 1):
        problems.append(f"runner error {r.returncode}: {r.stderr.strip()}")
    if verdict != c.get("verdict", "pass"):
        problems.append(f"runner said {verdict}, expected {c.get('verdict', 'pass')}: {r.stderr.strip()}")
    if "reason" in c and not re.search(r"runner: FAIL: " + c["reason"], r.stderr):
        problems.append(f"runner failed, but not with {c['reason']!r}: {r.stderr.strip()}")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    import re
    for e in c.get("expect", []):
        if not re.search(e, text, re.M):
            problems.append(f"log lacks {e!r}")
    for e in c.get("reject", []):
        m = re.search(e, text, re.M)
        if m:
            line = text[text.rfind("\n", 0, m.start()) + 1:text.find("\n", m.end())].strip()
            problems.append(f"log has {e!r}: {line[:200]}")
    for e, n in c.get("counts", []):
        got = len(re.findall(e, text, re.M))
        if got != n:
            problems.append(f"log has {e!r} {got} times, expected {n}")
    if "check" in c:
        problems += c["check"](text)
    if "crates" in c:
        # Every crate live at the end was one of the swapped ones (nothing loaded later went untested).
        for m in re.finditer(r"^crates of (\w+): (.*?)\r?$", text, re.M):
            extra = [x for x in m.group(2).split() if not x.startswith("wasm:") and x not in NOT_SWAPPED and x not in c["crates"]]
            if extra:
                problems.append(f"crates loaded but not in the matrix: {extra}")
    return problems, log


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--filter", default="")
    p.add_argument("--smp-cases", action="store_true", help="only the cases of SMP_CASES (with QEMU_TESTS_SMP=4 in make test)")
    a = p.parse_args()
    unknown = [n for n in SMP_CASES if n not in {c["name"] for c in CASES}]
    if unknown:
        sys.exit(f"SMP_CASES names no case: {unknown}")
    os.makedirs(LOGS, exist_ok=True)
    failed = []
    n = 0
    for c in CASES:
        if a.filter not in c["name"] or (a.smp_cases and c["name"] not in SMP_CASES):
            continue
        n += 1
        t0 = time.monotonic()
        problems, log = run_case(c)
        dt = time.monotonic() - t0
        if problems:
            failed.append((c["name"], problems, log))
            print(f"qemu test {c['name']} ... FAILED ({dt:.1f} s, log {os.path.relpath(log, ROOT)})")
            for pr in problems:
                print(f"    {pr}")
        else:
            print(f"qemu test {c['name']} ... ok ({dt:.1f} s)")
    print(f"qemu tests: {n - len(failed)} passed, {len(failed)} failed")
    write_digest(failed)
    sys.exit(1 if failed else 0)


def write_digest(failed):
    """Writes target/qemu-logs/FAILED.txt: each failed case, its problems and its log's last
    lines. `make test` prints it after its summary, so the tail of a CI log (often all that is
    kept of it) names the case and shows how the kernel ended."""
    path = os.path.join(LOGS, f"FAILED-smp{SMP}.txt" if SMP else "FAILED.txt")
    if not failed:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path, "w") as out:
        for name, problems, log in failed:
            out.write(f"qemu test {name}{f' (-smp {SMP})' if SMP else ''} failed (log {os.path.relpath(log, ROOT)}):\n")
            for pr in problems:
                out.write(f"    {pr}\n")
            try:
                with open(log, errors="replace") as f:
                    tail = f.read().splitlines()[-DIGEST_LINES:]
            except OSError as e:
                tail = [f"(log unreadable: {e})"]
            out.write(f"  last {len(tail)} lines of its log:\n")
            for line in tail:
                out.write(f"    | {line}\n")


if __name__ == "__main__":
    main()
