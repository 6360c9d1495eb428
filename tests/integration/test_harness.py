"""The test harness's own end-of-run checks (relayctl.Relay.cleanup, issue 23):
a relay that ends in a way its test did not ask for fails that test, also
when the test itself never looks (a crash at shutdown, a sanitizer report
written at exit, e.g. LeakSanitizer's).

    cd tests/integration && MXRELAY_BIN=../../build/main/mxrelay python3 runtests.py test_harness

Each test provokes one kind of end and calls cleanup() itself, expecting an
AssertionError (or none, for the ends a test asks for).
"""

import os
import signal
import stat
import tempfile
import unittest

import relayctl
from relayctl import Listener, Relay


class CleanupChecksTest(unittest.TestCase):

    def relay(self, **kw):
        r = Relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"], **kw)
        self.addCleanup(self.stop_quietly, r)
        return r

    @staticmethod
    def stop_quietly(r):
        """A second cleanup after the test's own: never raises, removes what is left."""
        try:
            r.cleanup()
        except AssertionError:
            pass

    def assertCleanupFails(self, r, *needles):
        with self.assertRaises(AssertionError) as cm:
            r.cleanup()
        for n in needles:
            self.assertIn(n, str(cm.exception))
        return str(cm.exception)

    def test_clean_stop_passes(self):
        r = self.relay()
        r.start()
        self.assertEqual(r.stop(), 0)
        r.cleanup()  # no exception

    def test_a_signal_the_test_did_not_send_fails(self):
        # What abort_on_error=1 makes of a sanitizer report: SIGABRT.
        r = self.relay()
        r.start()
        os.kill(r.pid, signal.SIGABRT)
        r.proc.wait(timeout=10)
        self.assertCleanupFails(r, "ended by signal %d (SIGABRT)" % signal.SIGABRT)

    def test_our_own_sigkill_and_a_refused_start_pass(self):
        r = self.relay()
        r.start()
        r.kill()
        r.start()  # and a later run that stops cleanly
        self.assertEqual(r.stop(), 0)
        r.cleanup()
        bad = self.relay()
        bad.extra_top_level = 'user = "no-such-user-mxrelay"'
        with self.assertRaises(RuntimeError):
            bad.start()
        bad.cleanup()

    def test_nonzero_exit_after_a_successful_start_fails(self):
        # A wrapper that passes SIGTERM on and then exits 3, as a relay would
        # that failed its shutdown (e.g. a leak report with exitcode=3).
        d = tempfile.mkdtemp(prefix="mxrelay-harness-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, True))
        wrapper = os.path.join(d, "exit3.sh")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\n"%s" "$@" &\nchild=$!\n'
                    'trap \'kill -TERM $child; wait $child; exit 3\' TERM\n'
                    'wait $child\nexit 3\n' % relayctl.MXRELAY_BIN)
        os.chmod(wrapper, stat.S_IRWXU)
        real = relayctl.MXRELAY_BIN
        relayctl.MXRELAY_BIN = wrapper
        try:
            r = self.relay()
            r.start()
        finally:
            relayctl.MXRELAY_BIN = real
        self.assertEqual(r.stop(), 3)
        self.assertCleanupFails(r, "exited with status 3")

    def test_a_sanitizer_report_file_fails_even_after_exit_0(self):
        # LeakSanitizer writes at exit; with log_path the report is in
        # PREFIX.PID, not in the relay's log, and the exit status may be 0
        # (exitcode=0) or lost: the file alone must fail the test.
        d = tempfile.mkdtemp(prefix="mxrelay-harness-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, True))
        saved = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = "log_path=%s/asan" % d
        try:
            r = self.relay()
            r.start()
            self.assertEqual(r.stop(), 0)
            with open(os.path.join(d, "asan.%d" % r.pid), "w") as f:
                f.write("==%d==ERROR: LeakSanitizer: detected memory leaks\n" % r.pid)
            # Another process's report is not this relay's.
            with open(os.path.join(d, "asan.%d" % (r.pid + 100000)), "w") as f:
                f.write("not ours\n")
            text = self.assertCleanupFails(r, "LeakSanitizer: detected memory leaks", "exited 0")
            self.assertNotIn("not ours", text)
        finally:
            if saved is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = saved


if __name__ == "__main__":
    unittest.main()
