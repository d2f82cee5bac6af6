#!/usr/bin/env python3
"""Send a crate object to a running Delos over its second serial port (make push).

The kernel's push task stores it among the updates of a namespace, where `swap` finds it:
    DELOS-PUSH 1 <namespace> <file> <length> <crc32>\\n<bytes>
--corrupt flips a byte after the checksum is computed and --truncate N sends only N bytes
(with a header announcing N), to test that the kernel rejects or refuses such objects.
"""
import argparse
import os
import socket
import sys
import time
import zlib


def send(sock_path, namespace, name, data, corrupt=False, truncate=None, linger=1.0):
    """Sends one object; returns (length, crc, socket). With linger=None the socket stays open
    (the caller keeps it until the guest has confirmed): closing early may drop bytes QEMU has
    not handed to the guest's UART yet."""
    if truncate is not None:
        data = data[:truncate]
    crc = zlib.crc32(data) & 0xFFFFFFFF
    if corrupt and data:
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
        data = bytes(data)
    header = f"DELOS-PUSH 1 {namespace} {name} {len(data)} {crc:08x}\n".encode()
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
    a = p.parse_args()
    data = open(a.file, "rb").read()
    name = a.name or os.path.basename(a.file)
    try:
        n, crc, _ = send(a.socket, a.namespace, name, data, a.corrupt, a.truncate, linger=2.0)
    except OSError as e:
        print(f"push: cannot reach {a.socket} ({e}); is Delos running (make run)?", file=sys.stderr)
        sys.exit(1)
    print(f"push: sent {name} ({n} bytes, crc {crc:08x}) to namespace {a.namespace}")


if __name__ == "__main__":
    main()
