"""Connection limits and timeouts."""

import time
import unittest

from relayctl import Listener, RelayTestCase


class PerIpLimitTest(RelayTestCase):

    def test_fourth_connection_refused_421(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain"), Listener("sub", "starttls")],
                               trusted_networks=["127.0.0.0/8"],
                               limits={"max_connections_per_ip": 3})
        port = relay.port("plain")
        held = [self.client(port) for _ in range(3)]
        for c in held:
            self.assertReply(c.greeting, 220)
        # The 4th, on either listener (the limit is per IP, not per listener).
        for p in (port, relay.port("sub")):
            c4 = self.client(p, read_greeting=False)
            r = c4.reply()
            self.assertReply(r, 421, "4.7.0")
            self.assertEqual(c4.read_until_closed(5), b"", "refused connection must be closed")
        # The held sessions are unaffected.
        for c in held:
            self.assertReply(c.cmd("NOOP"), 250)
        # Once one closes, a new connection is accepted again (bounded retries).
        self.assertReply(held[0].cmd("QUIT"), 221)
        held[0].read_until_closed(5)
        held[0].close()
        deadline = time.monotonic() + 5
        got = None
        for _ in range(50):
            c = self.client(port)
            if c.greeting.code == 220:
                got = c
                break
            c.close()
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertIsNotNone(got, "no connection accepted after a slot was freed")
        self.assertEqual(got.ehlo().code, 250)


class TimeoutTest(RelayTestCase):

    def test_idle_client_gets_421_4_4_2(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"], timeouts={"command": 2})
        c = self.client(relay.port("plain"), timeout=15)
        c.ehlo()
        t0 = time.monotonic()
        r = c.reply(timeout=12)
        elapsed = time.monotonic() - t0
        self.assertReply(r, 421, "4.4.2")
        self.assertIn("Timeout", r.lines[0])
        self.assertGreaterEqual(elapsed, 1.5, "timed out too early (%.2fs)" % elapsed)
        self.assertLessEqual(elapsed, 6.0, "timed out too late (%.2fs)" % elapsed)
        self.assertEqual(c.read_until_closed(5), b"")
        self.assertIn("reason=timeout", relay.log_text())

    def test_active_client_not_timed_out(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"], timeouts={"command": 2})
        c = self.client(relay.port("plain"))
        c.ehlo()
        for _ in range(6):  # 6 x 0.8 s > 2 x the timeout
            time.sleep(0.8)
            self.assertReply(c.cmd("NOOP"), 250)


if __name__ == "__main__":
    unittest.main()
