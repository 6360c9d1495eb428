"""Signals: SIGHUP reloads the users file, SIGTERM drains and exits 0."""

import signal
import socket
import time
import unittest
import uuid

from relayctl import Listener, RelayTestCase, hash_password, make_message, read_until_closed

ALICE, ALICE_PW = "alice", "alice-secret"
BOB, BOB_PW = "bob", "bob-n3w-pass"


def token():
    return uuid.uuid4().hex[:12]


class SignalTest(RelayTestCase):

    def authed(self, relay, user, pw):
        c = self.client(relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        return c, c.auth_plain(user, pw)

    def submit(self, c, who):
        t = token()
        sender = "%s-%s@example.test" % (who, t)
        r = c.send_message(sender, ["r@dest.test"], make_message(sender, ["r@dest.test"], t, t))
        self.assertIsNotNone(r.queue_id(), r)
        return r.queue_id()

    def test_sighup_adds_user_and_open_session_keeps_working(self):
        relay = self.new_relay(users={ALICE: ALICE_PW},
                               listeners=[Listener("sub", "starttls")])
        old, r = self.authed(relay, ALICE, ALICE_PW)
        self.assertReply(r, 235)
        # An idle session that has not authenticated yet, opened before the reload.
        pending = self.client(relay.port("sub"))
        pending.ehlo()
        pending.starttls()
        pending.ehlo()
        # bob does not exist yet.
        c, r = self.authed(relay, BOB, BOB_PW)
        self.assertReply(r, 535, "5.7.8")
        c.close()

        relay.append_user(BOB, BOB_PW)
        relay.hup()
        relay.wait_log(r"event=users_reloaded .*users=2", timeout=10)
        self.assertTrue(relay.running())

        c, r = self.authed(relay, BOB, BOB_PW)
        self.assertReply(r, 235, "2.7.0")
        bob_id = self.submit(c, "bob")
        # The session opened before SIGHUP still works, as alice.
        self.assertReply(old.cmd("NOOP"), 250)
        alice_id = self.submit(old, "alice")
        # The idle session opened before SIGHUP sees the new users.
        self.assertReply(pending.auth_plain(BOB, BOB_PW), 235)
        # alice still works in new sessions.
        _, r = self.authed(relay, ALICE, ALICE_PW)
        self.assertReply(r, 235)
        q = relay.queue_by_id()
        self.assertEqual(q[bob_id]["auth_user"], BOB)
        self.assertEqual(q[alice_id]["auth_user"], ALICE)

    def test_sighup_password_change_and_removal_take_effect(self):
        relay = self.new_relay(users={ALICE: ALICE_PW, BOB: BOB_PW},
                               listeners=[Listener("sub", "starttls")])
        # Authenticate twice so that a verification cache, if any, is warm.
        for _ in range(2):
            _, r = self.authed(relay, ALICE, ALICE_PW)
            self.assertReply(r, 235)
            _, r = self.authed(relay, BOB, BOB_PW)
            self.assertReply(r, 235)
        with open(relay.users_file, "w") as f:
            f.write("%s:%s\n" % (ALICE, hash_password("alice-NEW")))
        relay.hup()
        relay.wait_log(r"event=users_reloaded .*users=1", timeout=10)
        _, r = self.authed(relay, ALICE, ALICE_PW)
        self.assertReply(r, 535, "5.7.8", "old password still accepted after reload")
        _, r = self.authed(relay, BOB, BOB_PW)
        self.assertReply(r, 535, "5.7.8", "removed user still accepted after reload")
        _, r = self.authed(relay, ALICE, "alice-NEW")
        self.assertReply(r, 235)

    def test_sighup_with_broken_users_file_keeps_previous_users(self):
        relay = self.new_relay(users={ALICE: ALICE_PW},
                               listeners=[Listener("sub", "starttls")])
        with open(relay.users_file, "a") as f:
            f.write("mallory:plaintext-password\n")
        relay.hup()
        relay.wait_log(r"event=users_reload_failed", timeout=10)
        self.assertTrue(relay.running())
        _, r = self.authed(relay, ALICE, ALICE_PW)
        self.assertReply(r, 235)
        _, r = self.authed(relay, "mallory", "plaintext-password")
        self.assertReply(r, 535)

    def test_sigterm_exits_0_and_closes_idle_sessions(self):
        relay = self.new_relay(users={ALICE: ALICE_PW},
                               listeners=[Listener("sub", "starttls"), Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        c = self.client(relay.port("plain"))
        c.ehlo()
        qid = self.submit(c, "beforeterm")
        idle = self.client(relay.port("plain"))
        idle.ehlo()
        rc, secs = relay.stop_timed(timeout=15)
        self.assertEqual(rc, 0, relay.log_tail())
        self.assertLess(secs, 10.0, "SIGTERM took %.1fs" % secs)
        self.assertIn("event=shutdown_complete", relay.log_text())
        # Idle sessions were told why they were closed.
        r = idle.reply(timeout=5)
        self.assertReply(r, 421, "4.3.2")
        # The queue survives a clean shutdown.
        self.assertIn(qid, relay.queue_by_id())
        # And the relay starts again on the same data_dir.
        relay.start()
        relay.wait_log(r"event=spool_counted messages=1 ", timeout=10)
        self.assertIn(qid, relay.queue_by_id())

    def test_sigterm_drains_transaction_in_progress(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        c = self.client(relay.port("plain"))
        c.ehlo()
        t = token()
        sender = "drain-%s@example.test" % t
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
        self.assertReply(c.cmd("RCPT TO:<r@dest.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send("Subject: %s\r\n\r\nfirst half\r\n" % t)
        relay.proc.send_signal(signal.SIGTERM)  # by PID
        relay.wait_log(r"event=shutdown_begin", timeout=5)
        time.sleep(0.3)
        self.assertTrue(relay.running(), "relay exited before the transaction finished")
        c.send("second half\r\n.\r\n")
        r = c.reply(timeout=10)
        qid = r.queue_id()
        self.assertIsNotNone(qid, "in-flight message not accepted during drain: %r" % r)
        # The next command, outside a transaction, is refused: the relay is shutting down.
        self.assertReply(c.cmd("NOOP"), 421, "4.3.2")
        rc, secs = relay.stop_timed(timeout=15)
        self.assertEqual(rc, 0, relay.log_tail())
        self.assertLess(secs, 10.0)
        self.assertEqual(relay.queue_by_id()[qid]["sender"], sender)

    def test_sigterm_with_stuck_clients_exits_0_within_grace(self):
        """Clients that never finish (mid-transaction, mid-AUTH) cannot hold the
        relay forever: it exits 0 after its 30 s drain grace."""
        relay = self.new_relay(users={ALICE: ALICE_PW},
                               listeners=[Listener("plain", "plain"), Listener("sub", "starttls")],
                               trusted_networks=["127.0.0.0/8"])
        mid_tx = self.client(relay.port("plain"))
        mid_tx.ehlo()
        self.assertReply(mid_tx.cmd("MAIL FROM:<stuck@example.test>"), 250)
        mid_auth = self.client(relay.port("sub"))
        mid_auth.ehlo()
        mid_auth.starttls()
        mid_auth.ehlo()
        self.assertEqual(mid_auth.cmd("AUTH PLAIN").code, 334)
        rc, secs = relay.stop_timed(timeout=45)
        self.assertEqual(rc, 0, "exit status %s after %.1fs; log:\n%s" % (rc, secs, relay.log_tail()))
        self.assertLess(secs, 40.0)
        self.assertIn("event=shutdown_complete", relay.log_text())
        for c in (mid_tx, mid_auth):
            c.read_until_closed(5)  # closed, not hanging

    def test_sigterm_before_implicit_tls_handshake_sends_no_plaintext(self):
        """On the implicit-TLS port everything must be TLS (RFC 8314 3.3): a client
        that has connected but not yet finished its handshake must not be sent a
        cleartext SMTP reply when the relay shuts down."""
        relay = self.new_relay(listeners=[Listener("smtps", "implicit_tls")])
        s = socket.create_connection(("127.0.0.1", relay.port("smtps")), timeout=10)
        self.addCleanup(s.close)
        time.sleep(0.3)  # accepted, handshake not started
        rc, secs = relay.stop_timed(timeout=45)
        self.assertEqual(rc, 0)
        data = read_until_closed(s, seconds=5)
        self.assertFalse(data[:1].isdigit(),
                         "cleartext SMTP sent on the implicit-TLS port: %r" % data[:120])


if __name__ == "__main__":
    unittest.main()
