#!/usr/bin/env python3
"""Host tests of the fault campaign's judgement (tools/faults.py): when a trial counts as
recovered. Run by `make test`."""
import importlib.util
import os
import unittest

_spec = importlib.util.spec_from_file_location("faults", os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults.py"))
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)


def good(first, n):
    return [f"heartbeat v1: beat #{k}\r" for k in range(first, first + n)]


def garbled_with_number(k):
    # One beat printed through a damaged format: three lines, the count still intact (seen in
    # campaign seed 12, trial 59, a flip in the heartbeat's code).
    return ["heartbeat v1\x00\x00\x00\x000\r", "heartbeat \ufffd\x08: beat #\ufffd\x01\r", f"\x00\x00\x00\x00\x14\x00\x00\x01z: beat #{k}\r"]


class Resumed(unittest.TestCase):
    def test_garbled_beats_that_keep_their_numbers(self):
        lines = [l for k in range(101, 131) for l in garbled_with_number(k)] + ["recovery: restored 1 bytes\r"] + good(131, 12)
        self.assertTrue(faults.resumed("\n".join(lines), 100))

    def test_garbled_numbers_that_skip_are_a_changed_count(self):
        lines = [l for k in (101, 102, 104) for l in garbled_with_number(k)] + good(105, 12)
        self.assertFalse(faults.resumed("\n".join(lines), 100))

    def test_a_count_that_restarted(self):
        lines = garbled_with_number(101) + good(1, 12)
        self.assertFalse(faults.resumed("\n".join(lines), 100))

    def test_malformed_lines_without_numbers_are_counted(self):
        lines = ["heartbeat \ufffd: beat #\ufffd\r"] * 3 + good(104, 10)
        self.assertTrue(faults.resumed("\n".join(lines), 100))
        self.assertFalse(faults.resumed("\n".join(lines), 90))

    def test_garbled_beats_counted_by_their_first_word(self):
        # Seed 19, trial 20: each beat printed its damaged format's read-only data, with line
        # breaks in it, and the next beat began on the garbage's last line; then the scrubber
        # repaired the format and the count went on.
        garbage = "\x00\x00\x14\x00\x00\x01zR\x00\x01x\x10\x01"
        lines = ["heartbeat \x08: beat #\ufffd\x01\r"] + [garbage + "heartbeat \x08: beat #\ufffd\x01\r"] * 4
        lines += [garbage + "[  43.1] WARN  recovery: crate heartbeat was corrupted; restored 1 bytes", "recovery: the scrubber found crate heartbeat corrupted"]
        self.assertTrue(faults.resumed("\n".join(lines + good(106, 10)), 100))
        self.assertTrue(faults.resumed("\n".join(lines + good(107, 10)), 100))
        self.assertFalse(faults.resumed("\n".join(lines + good(108, 10)), 100))
        self.assertFalse(faults.resumed("\n".join(lines + good(104, 10)), 100))

    def test_ten_beats_are_needed(self):
        self.assertFalse(faults.resumed("\n".join(good(101, 9)), 100))
        self.assertTrue(faults.resumed("\n".join(good(101, 10)), 100))

    def test_the_beat_in_flight_may_be_lost(self):
        self.assertTrue(faults.resumed("\n".join(good(102, 10)), 100))
        self.assertFalse(faults.resumed("\n".join(good(103, 10)), 100))


if __name__ == "__main__":
    unittest.main()
