#!/usr/bin/env python3
r"""Boot Delos in QEMU, optionally type a script into the serial console, and judge the outcome.

The verdict is strict: the run passes only if QEMU exits with the kernel's explicit exit code
(success = 33 from isa-debug-exit value 0x10; `--expect-exit failure` wants 35) before the
timeout, every --expect regex appeared in the serial log and no --reject regex did. A triple
fault under -no-reboot makes QEMU exit with 0, which therefore always fails.

Routes: `--kernel K --modules M` boots the ELF with `qemu -kernel` (multiboot1, a.out kludge)
and the module archive as -initrd; `--iso ISO` boots a GRUB multiboot2 image.

Script lines (--script FILE) are typed one at a time, each after the prompt regex (--prompt)
has appeared in the output since the previous line was sent, followed by Enter. Lines starting
with '#' are skipped. `\xNN` in a line stands for that byte (e.g. `\x1b[D` is Left, `\x7f`
Backspace). `{NAME}` or `{NAME+N}` stands for a number captured earlier (printed in hex).
Directives:
  @send TEXT            send TEXT (escapes decoded) at once, without waiting and without Enter
  @expect REGEX         wait until REGEX appears in the output since the last line was sent
  @await REGEX          wait until REGEX appears anywhere in the output (a background job's end)
  @pause SECONDS        once the prompt is back, send nothing for that long (idle time)
  @capture NAME REGEX   wait for REGEX since the last line; its first group (a number, 0x-hex
                        or decimal) becomes NAME
  @push NS FILE NAME [corrupt|truncate=N|unsigned|badsig]
                        send object FILE as NAME into namespace NS's updates over the second
                        serial port (needs --push-socket), like `make push`

Exit status: 0 pass, 1 fail, 2 usage error. The serial log is written to --log (if given) and,
with --print-log, to stdout.
"""
import argparse
import os
import re
import subprocess
import sys
import threading
import time

SUCCESS_CODE = 33
FAILURE_CODE = 35


def qemu_command(args):
    cmd = ["qemu-system-x86_64", "-m", args.memory, "-display", "none", "-no-reboot",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-cpu", args.cpu]
    if args.kvm:
        cmd += ["-enable-kvm"]
    else:
        cmd += ["-accel", "tcg,thread=multi"]
    if args.iso:
        cmd += ["-cdrom", args.iso, "-boot", "d"]
    else:
        cmd += ["-kernel", args.kernel]
        if args.modules:
            cmd += ["-initrd", args.modules]
        if args.append:
            cmd += ["-append", args.append]
    cmd += args.qemu_arg or []
    return cmd


class Session:
    def __init__(self, proc):
        self.proc = proc
        self.buf = bytearray()
        self.lock = threading.Condition()
        self.marks = {}
        self.t0 = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(1)
            if not chunk:
                break
            with self.lock:
                self.buf += chunk
                self.lock.notify_all()
        with self.lock:
            self.lock.notify_all()

    def text(self, start=0):
        with self.lock:
            return self.buf[start:].decode("utf-8", "replace")

    def wait_for(self, regex, start, deadline):
        """Waits until `regex` matches the output after byte `start`; returns the end offset."""
        pat = re.compile(regex, re.M)
        with self.lock:
            while True:
                m = pat.search(self.buf[start:].decode("utf-8", "replace"))
                if m:
                    return len(self.buf)
                if self.proc.poll() is not None and not self.reader.is_alive():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.lock.wait(min(remaining, 0.05))

    def send(self, data):
        # QEMU may exit as the last line arrives (`poweroff` read before the flush returned):
        # its closed input is no verdict; the exit code and the expectations are.
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass


def decode(text):
    """Turns `\\xNN` escapes into bytes; everything else is sent as UTF-8."""
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        if raw[i:i + 2] == b"\\x" and i + 4 <= len(raw):
            try:
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return bytes(out)


def run(args):
    if not args.iso and not args.kernel:
        print("runner: need --kernel or --iso", file=sys.stderr)
        return 2
    cmd = qemu_command(args)
    if args.interactive:
        cmd = [c for c in cmd] + ["-serial", "mon:stdio"]
        if args.push_socket:
            if os.path.exists(args.push_socket):
                os.unlink(args.push_socket)
            cmd += ["-serial", f"unix:{args.push_socket},server=on,wait=off"]
        os.execvp(cmd[0], cmd)
    cmd += ["-serial", "stdio", "-monitor", "none"]
    if args.push_socket:
        if os.path.exists(args.push_socket):
            os.unlink(args.push_socket)
        cmd += ["-serial", f"unix:{args.push_socket},server=on,wait=off"]
    script = []
    if args.script:
        with open(args.script) as f:
            script = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]
    deadline = time.monotonic() + args.timeout
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    s = Session(proc)
    problems = []
    pos = 0
    captured = {}
    open_sockets = []

    def substitute(text):
        def repl(m):
            v = captured.get(m.group(1))
            if v is None:
                raise KeyError(m.group(1))
            return hex(v + int(m.group(2) or 0))
        return re.sub(r"\{([A-Za-z_]\w*)([+-]\d+)?\}", repl, text)

    for line in script:
        try:
            line = substitute(line)
        except KeyError as e:
            problems.append(f"script: nothing captured as {e}")
            break
        if line.startswith("@capture "):
            _, name, regex = line.split(" ", 2)
            # Only a whole line counts: output arrives in pieces, and a match on a line still
            # arriving would capture a prefix of the value (`0xffffe0` of `0xffffe0000000c250`).
            regex = f"(?:{regex})(?=[^\n]*\n)"
            end = s.wait_for(regex, pos, deadline)
            m = re.search(regex, s.text(pos), re.M) if end is not None else None
            if not m:
                problems.append(f"script: {regex!r} did not appear (capturing {name})")
                break
            captured[name] = int(m.group(1), 0)
            continue
        if line.startswith("@push "):
            # Only once the last typed command has finished (its prompt is back): an object
            # arriving while a program still prints would put the receiver's line inside the
            # program's output. The prompt is not consumed; the next typed line waits for it too.
            if pos and s.wait_for(args.prompt, pos, deadline) is None:
                problems.append(f"prompt {args.prompt!r} did not appear before {line!r}")
                break
            sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            import push as pusher
            parts = line.split()
            opts = dict(corrupt=("corrupt" in parts[4:]), truncate=None)
            for o in parts[4:]:
                if o.startswith("truncate="):
                    opts["truncate"] = int(o.split("=", 1)[1])
            # QEMU serves one connection at a time: close the previous one (the script waited for
            # the guest to confirm it), and keep this one open until the next push or the end.
            for old in open_sockets:
                old.close()
            open_sockets.clear()
            try:
                # Signed with the image's key unless the script says `unsigned` or `badsig`.
                data = open(parts[2], "rb").read()
                sig = "-" if "unsigned" in parts[4:] else "sign"
                if "badsig" in parts[4:]:
                    sig = pusher.signature_of(data, parts[1], parts[3])
                    sig = ("0" if sig[0] != "0" else "1") + sig[1:]
                # Keep the connection open (see push.send).
                open_sockets.append(pusher.send(args.push_socket, parts[1], parts[3], data, linger=None, sig=sig, **opts)[2])
            except (OSError, IndexError, TypeError) as e:
                problems.append(f"script: {line!r} failed: {e}")
                break
            continue
        if line.startswith("@send "):
            s.send(decode(line[len("@send "):]))
            continue
        if line.startswith("@pause "):
            # A user who stops typing: once the prompt is back, nothing is sent for that many
            # seconds (the shell waits for a key: the system's idle time).
            if pos and s.wait_for(args.prompt, pos, deadline) is None:
                problems.append(f"prompt {args.prompt!r} did not appear before {line!r}")
                break
            time.sleep(float(line.split()[1]))
            continue
        if line.startswith("@await "):
            # Like @expect, but anywhere in the output so far: for a background job whose end
            # may come before or after the previous prompt.
            if s.wait_for(line[len("@await "):], 0, deadline) is None:
                problems.append(f"script: {line[len('@await '):]!r} did not appear")
                break
            continue
        if line.startswith("@expect "):
            # Waiting does not consume output: a prompt printed before the awaited text still
            # lets the next line be typed.
            if s.wait_for(line[len("@expect "):], pos, deadline) is None:
                problems.append(f"script: {line[len('@expect '):]!r} did not appear")
                break
            continue
        end = s.wait_for(args.prompt, pos, deadline)
        if end is None:
            problems.append(f"prompt {args.prompt!r} did not appear before typing {line!r}")
            break
        pos = end
        # A small pause lets the shell finish drawing the prompt before input arrives.
        time.sleep(0.02)
        s.send(decode(line) + b"\r")
    mark_times = {}
    for m in args.mark or []:
        if s.wait_for(m, 0, deadline) is not None:
            mark_times[m] = time.monotonic() - s.t0
    try:
        code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
        problems.append(f"timeout: QEMU still running after {args.timeout} s")
    s.reader.join(timeout=2)
    elapsed = time.monotonic() - s.t0
    log = s.text()
    if args.log:
        with open(args.log, "w") as f:
            f.write(log)
    if args.print_log:
        sys.stdout.write(log)
        if not log.endswith("\n"):
            sys.stdout.write("\n")
    want = {"success": SUCCESS_CODE, "failure": FAILURE_CODE}[args.expect_exit]
    if code is not None and code != want:
        if code == 0:
            problems.append("QEMU exited with 0: triple fault or reset, not an explicit kernel exit")
        elif code in (SUCCESS_CODE, FAILURE_CODE):
            problems.append(f"kernel exited with {'success' if code == SUCCESS_CODE else 'failure'} code {code}, expected {args.expect_exit}")
        else:
            problems.append(f"QEMU exited with {code}")
    for e in args.expect or []:
        if not re.search(e, log, re.M):
            problems.append(f"expected output not seen: {e!r}")
    for r in args.reject or []:
        if re.search(r, log, re.M):
            problems.append(f"rejected output seen: {r!r}")
    for m, t in mark_times.items():
        print(f"mark {t:.4f} {m}")
    if problems:
        for p in problems:
            print(f"runner: FAIL: {p}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"runner: PASS in {elapsed:.2f} s", file=sys.stderr)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel")
    p.add_argument("--modules")
    p.add_argument("--iso")
    p.add_argument("--append", default="")
    p.add_argument("--script")
    p.add_argument("--prompt", default=r"delos> ", help="regex marking the prompt; output after the previous line is searched, so a prompt followed by asynchronous output still counts")
    p.add_argument("--log")
    p.add_argument("--print-log", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--expect", action="append")
    p.add_argument("--reject", action="append")
    p.add_argument("--expect-exit", choices=["success", "failure"], default="success")
    p.add_argument("--mark", action="append", help="print the time from QEMU start to this regex")
    p.add_argument("--memory", default="512M")
    p.add_argument("--cpu", default="qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt")
    p.add_argument("--kvm", action="store_true")
    p.add_argument("--interactive", action="store_true", help="serial on the terminal (make run)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--qemu-arg", action="append")
    p.add_argument("--push-socket", help="attach COM2 to this Unix socket (for make push and @push)")
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
