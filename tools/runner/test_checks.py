#!/usr/bin/env python3
"""Host tests of the QEMU tests' own checks (tools/runner/qemu_tests.py): a check must accept
what a passing kernel prints and refuse what a failing one does. Run by `make test`."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_tests  # noqa: E402


def beats(*ns):
    return "".join(f"heartbeat v1: beat #{n}\r\n" for n in ns)


class BeatsExactlyOnce(unittest.TestCase):
    def test_every_beat_once(self):
        self.assertEqual(qemu_tests.beats_exactly_once(1, 3)(beats(1, 2, 3)), [])

    def test_a_lost_or_repeated_beat_fails(self):
        self.assertNotEqual(qemu_tests.beats_exactly_once(1, 3)(beats(1, 3)), [])
        self.assertNotEqual(qemu_tests.beats_exactly_once(1, 3)(beats(1, 2, 2, 3)), [])

    def test_a_beat_cut_by_a_fault_report_counts_once(self):
        # Seen in recovery_an_nmi_does_not_repair_while_the_interrupted_code_maps: an NMI's
        # report, written without the console's lock, between a beat's two pieces.
        cut = (beats(1) + "heartbeat v1:    code of crate interrupts was corrupted: 2 bytes\r\n"
               "    the faulting instruction was the damage: running it again\r\n beat #2\r\n" + beats(3))
        self.assertEqual(qemu_tests.beats_exactly_once(1, 3)(cut), [])
        newline_first = beats(1) + "heartbeat v1:\r\n!!! CPU EXCEPTION: x\r\n    y\r\n beat #2\r\n" + beats(3)
        self.assertEqual(qemu_tests.beats_exactly_once(1, 3)(newline_first), [])

    def test_a_beat_cut_inside_a_word(self):
        cut = (beats(1) + "heartb    code of crate interrupts was corrupted: 2 bytes\r\n"
               "    the faulting instruction was the damage: running it again\r\neat v1: beat #2\r\n" + beats(3))
        self.assertEqual(qemu_tests.beats_exactly_once(1, 3)(cut), [])

    def test_only_report_lines_may_cut_a_beat(self):
        other = beats(1) + "heartbeat v1:\r\ndelos> ps\r\n beat #2\r\n" + beats(3)
        self.assertNotEqual(qemu_tests.beats_exactly_once(1, 3)(other), [])


if __name__ == "__main__":
    unittest.main()
