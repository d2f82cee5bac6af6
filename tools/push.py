#!/usr/bin/env python3
"""Send a crate object to a running Delos over its second serial port (make push).

The kernel's push task stores it among the updates of a namespace, where `swap` finds it:
    DELOS-PUSH 2 <namespace> <file> <length> <crc32> <signature>\\n<bytes>
The signature (ed25519 over the namespace, name and SHA-512; see nano_core/signing) comes from
`imgtool sign` with the image's key; the kernel refuses unsigned or badly signed objects.
--corrupt flips a byte after the checksum is computed and --truncate N sends only N bytes
(with a header announcing N); --unsigned and --bad-signature test the refusals.
"""
import argparse
import os
import socket
import subprocess
import sys
import time
import zlib


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def signature(path, namespace, name):
    """The hex signature of the file at `path` for `namespace`/`name`, from imgtool."""
    r = subprocess.run([os.path.join(ROOT, "target/release/imgtool"), "sign", path, "--namespace", namespace, "--name", name],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(f"imgtool sign: {r.stderr.strip()}")
    return r.stdout.strip()


def signature_of(data, namespace, name):
    """The hex signature of `data` (bytes) for `namespace`/`name`."""
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return signature(f.name, namespace, name)


def send(sock_path, namespace, name, data, corrupt=False, truncate=None, linger=1.0, sig="-"):
    """`sig`: a hex signature, "-" for none, or "sign" to sign exactly the bytes sent (after
    `truncate`, before `corrupt`: a corrupted transfer must still fail its checksum)."""
    """Sends one object; returns (length, crc, socket). With linger=None the socket stays open
    (the caller keeps it until the guest has confirmed): closing early may drop bytes QEMU has
    not handed to the guest's UART yet."""
    if truncate is not None:
        data = data[:truncate]
    if sig == "sign":
        sig = signature_of(data, namespace, name)
    crc = zlib.crc32(data) & 0xFFFFFFFF
    if corrupt and data:
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
        data = bytes(data)
    header = f"DELOS-PUSH 2 {namespace} {name} {len(data)} {crc:08x} {sig}\n".encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(header + data)
    if linger is None:
        return len(data), crc, s
    # Give the guest time to drain the UART before the connection closes.
    time.sleep(linger)
    s.close()
    return len(data), crc, None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("--socket", default="target/push.sock")
    p.add_argument("--namespace", default="applications")
    p.add_argument("--name", help="file name in the kernel (default: the file's name)")
    p.add_argument("--corrupt", action="store_true")
    p.add_argument("--truncate", type=int)
    p.add_argument("--unsigned", action="store_true")
    p.add_argument("--bad-signature", action="store_true")
    a = p.parse_args()
    data = open(a.file, "rb").read()
    name = a.name or os.path.basename(a.file)
    try:
        sig = "-" if a.unsigned else signature_of(data[:a.truncate] if a.truncate is not None else data, a.namespace, name)
        if a.bad_signature:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        n, crc, _ = send(a.socket, a.namespace, name, data, a.corrupt, a.truncate, linger=2.0, sig=sig)
    except OSError as e:
        print(f"push: cannot reach {a.socket} ({e}); is Delos running (make run)?", file=sys.stderr)
        sys.exit(1)
    print(f"push: sent {name} ({n} bytes, crc {crc:08x}) to namespace {a.namespace}")


if __name__ == "__main__":
    main()
