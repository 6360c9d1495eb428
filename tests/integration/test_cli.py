"""The operator CLI: check-config / run on bad configs, queue summary, hash-password."""

import os
import re
import subprocess
import tempfile
import shutil
import unittest
import uuid

from relayctl import (MXRELAY_BIN, Listener, RelayTestCase, free_port, make_message,
                      run_cli)


class ConfigErrorTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxrelay-cfg-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, text):
        path = os.path.join(self.dir, "bad-%s.toml" % uuid.uuid4().hex[:6])
        with open(path, "w") as f:
            f.write(text)
        return path

    def base(self):
        return ('hostname = "relay.test"\n'                      # 1
                'data_dir = "%s/data"\n'                          # 2
                'threads = 1\n'                                   # 3
                '\n'                                              # 4
                '[[listener]]\n'                                  # 5
                'port = %d\n'                                     # 6
                'mode = "plain"\n' % (self.dir, free_port()))     # 7

    CASES = [
        # (name, text appended after line 7, line, key, reason regex)
        ("type", '\n[limits]\nmax_message_size = "big"\n', 10, "limits.max_message_size",
         r"expected an integer"),
        ("range", '\n[auth]\nmax_failures = 0\n', 10, "auth.max_failures",
         r"must be between 1 and 100, got 0"),
        ("mode", '\n[[listener]]\nport = 2526\nmode = "smtps"\n', 11, "listener[1].mode",
         r"must be 'starttls', 'implicit_tls' or 'plain'"),
        ("timeout", '\n[timeouts]\ncommand = 0\n', 10, "timeouts.command",
         r"must be between 1 and 3600, got 0"),
        ("cidr", 'trusted_networks = ["300.0.0.0/8"]\n', 8, "trusted_networks", r".+"),
    ]

    def assert_config_error(self, args, path, line, key, reason_rx):
        p = subprocess.run([MXRELAY_BIN] + args, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, "exit code; stderr=%r stdout=%r" % (p.stderr, p.stdout))
        rx = r"config error: %s:%d: %s: %s" % (re.escape(path), line, re.escape(key), reason_rx)
        self.assertRegex(p.stderr, rx)
        return p

    def test_bad_values_exit_2_name_file_line_key(self):
        for name, extra, line, key, reason in self.CASES:
            text = self.base()
            if name == "cidr":  # a top-level key must come before the first table
                text = text.replace("threads = 1\n", "threads = 1\n" + extra)
                line = 4
            else:
                text += extra
            path = self.write(text)
            for cmd in (["check-config", "-c", path], ["run", "-c", path]):
                with self.subTest(case=name, cmd=cmd[0]):
                    self.assert_config_error(cmd, path, line, key, reason)
        # `run` on a bad config must not have started anything.
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data", "spool")))

    def test_ipv6_trusted_network_covering_ipv4_refused(self):
        """Issue 15, item 7: IPv4 clients are matched as ::ffff:a.b.c.d, so
        '::/64' used to trust every IPv4 client silently."""
        for net in ("::/64", "::/0"):
            text = self.base().replace("threads = 1\n", 'threads = 1\ntrusted_networks = ["%s"]\n' % net)
            path = self.write(text)
            for cmd in (["check-config", "-c", path], ["run", "-c", path]):
                with self.subTest(net=net, cmd=cmd[0]):
                    self.assert_config_error(cmd, path, 4, "trusted_networks",
                                             r"'%s' would trust every IPv4 client" % re.escape(net))

    def test_unknown_key_names_file_line_key(self):
        path = self.write(self.base() + "\n[timeouts]\ncomand = 5\n")  # typo, line 10
        for cmd in (["check-config", "-c", path], ["run", "-c", path]):
            with self.subTest(cmd=cmd[0]):
                p = subprocess.run([MXRELAY_BIN] + cmd, capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertRegex(p.stderr, r"config error: %s:10: .*'timeouts\.comand'"
                                 % re.escape(path))

    def test_toml_syntax_error_names_file_and_line(self):
        path = self.write(self.base() + "\n[limits\nmax_recipients = 5\n")  # line 9
        p = run_cli(["check-config", "-c", path])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertRegex(p.stderr, r"config error: %s:9: " % re.escape(path))

    def test_missing_file(self):
        p = run_cli(["check-config", "-c", os.path.join(self.dir, "nope.toml")])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("nope.toml", p.stderr)

    def test_valid_config_exit_0(self):
        path = self.write(self.base())
        p = run_cli(["check-config", "-c", path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("OK", p.stdout)


class QueueSummaryTest(RelayTestCase):

    def test_summary_counts(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        s = relay.queue_summary()
        self.assertEqual(s["messages"], 0)
        self.assertEqual(s["bytes"], 0)
        self.assertEqual(s["pending_recipients"], 0)
        c = self.client(relay.port("plain"))
        c.ehlo()
        ids = []
        for n in (1, 2, 3):
            t = uuid.uuid4().hex[:8]
            rcpts = ["r%d-%s@y.test" % (i, t) for i in range(n)]
            r = c.send_message("sum-%s@x.test" % t, rcpts, make_message("s@x.test", rcpts, t, t))
            self.assertIsNotNone(r.queue_id(), r)
            ids.append(r.queue_id())
        # A rejected transaction does not count.
        self.assertEqual(c.cmd("MAIL FROM:<big@x.test> SIZE=99999999").code, 552)
        lst = relay.queue_list()
        self.assertEqual(sorted(m["id"] for m in lst), sorted(ids))
        s = relay.queue_summary()
        self.assertEqual(s["messages"], 3)
        self.assertEqual(s["pending_recipients"], 6)
        self.assertEqual(s["bytes"], sum(m["size"] for m in lst))
        self.assertEqual(s["deferred"], 0)
        self.assertGreaterEqual(s["oldest_age_seconds"], 0)
        self.assertLess(s["oldest_age_seconds"], 120)
        # Oldest first in the listing.
        self.assertEqual([m["id"] for m in lst], ids)
        # Still the same after a clean restart.
        self.assertEqual(relay.stop(), 0)
        s2 = relay.queue_summary()
        self.assertEqual((s2["messages"], s2["pending_recipients"], s2["bytes"]),
                         (3, 6, s["bytes"]))


class HashPasswordTest(unittest.TestCase):

    def test_hash_password(self):
        p = run_cli(["hash-password"], stdin="p4ss word\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        h = p.stdout.strip()
        self.assertTrue(h.startswith("$y$"), h)
        p2 = run_cli(["hash-password"], stdin="p4ss word\n")
        self.assertNotEqual(p2.stdout.strip(), h, "each hash must use a fresh salt")
        p3 = run_cli(["hash-password"], stdin="")
        self.assertEqual(p3.returncode, 2)


if __name__ == "__main__":
    unittest.main()
