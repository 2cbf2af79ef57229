#!/usr/bin/env python3
"""Tests of pollkill_run against the real pollkill binary (POLLKILL, default build/pollkill
of the checkout). As root, like the rest of the suite: pollkill needs a writable cgroup2."""
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pollkill_run  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
POLLKILL = os.path.abspath(os.environ.get("POLLKILL", os.path.join(ROOT, "build", "pollkill")))


def run(command, **kwargs):
    return pollkill_run.run(command, pollkill=POLLKILL, **kwargs)


def processes_matching(pattern):
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if re.search(pattern, line) and "ps -eo" not in line]


class PollkillRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(POLLKILL, os.X_OK):
            raise AssertionError(f"no pollkill binary at {POLLKILL}; build first or set POLLKILL")

    def test_ok_with_output(self):
        v = run(["sh", "-c", "echo hello; echo oops >&2"])
        self.assertEqual(v.status, "ok")
        self.assertTrue(v.ok)
        self.assertFalse(v.retryable)
        self.assertEqual((v.exit_code, v.signal, v.returncode), (0, None, 0))
        self.assertEqual(v.stdout, "hello\n")
        self.assertEqual(v.stderr, "oops\n")
        self.assertEqual(v.result["command"], ["sh", "-c", "echo hello; echo oops >&2"])

    def test_output_without_newline_does_not_disturb_the_result(self):
        v = run(["printf", "{not json"])
        self.assertEqual((v.status, v.stdout), ("ok", "{not json"))

    def test_failed_is_a_verdict_not_an_exception(self):
        v = run(["sh", "-c", "exit 3"])
        self.assertEqual((v.status, v.exit_code, v.returncode), ("failed", 3, 3))
        self.assertFalse(v.retryable)

    def test_crash(self):
        v = run(["sh", "-c", "kill -SEGV $$"])
        self.assertEqual((v.status, v.signal, v.returncode), ("crashed", 11, 139))
        self.assertTrue(v.retryable)

    def test_hang_is_detected_and_the_tree_reaped(self):
        start = time.monotonic()
        v = run(["sh", "-c", "setsid sleep 7401 & sleep 7402"], hang_after="1s", kill_grace="0")
        self.assertLess(time.monotonic() - start, 20)
        self.assertEqual((v.status, v.returncode), ("hung", 124))
        self.assertIn("no progress for 1s", v.reason)
        self.assertTrue(v.retryable)
        self.assertGreaterEqual(v.processes_reaped, 2)
        self.assertEqual(processes_matching(r"sleep 740[12]"), [])

    def test_wall_time(self):
        v = run(["sleep", "7403"], wall_time="500ms", kill_grace="0")
        self.assertEqual((v.status, v.returncode), ("timeout", 124))

    def test_missing_program(self):
        v = run(["/nonexistent/program"])
        self.assertEqual((v.status, v.exit_code, v.returncode), ("exec_error", 127, 127))

    def test_bytes_output_and_input(self):
        v = run(["cat"], text=False, input=b"\x00\xff")
        self.assertEqual(v.stdout, b"\x00\xff")

    def test_pollkill_error_raises(self):
        with self.assertRaises(pollkill_run.PollkillError) as caught:
            run(["true"], memory="lots")
        self.assertEqual(caught.exception.returncode, 125)
        self.assertIn("lots", caught.exception.stderr)

    def test_bad_arguments(self):
        with self.assertRaises(TypeError):
            run("echo hi")
        with self.assertRaises(TypeError):
            run(["true"], memroy="1GiB")


if __name__ == "__main__":
    unittest.main(verbosity=2)
