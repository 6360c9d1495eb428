"""Submission over STARTTLS / implicit TLS with AUTH, and the access rules.

Clients: smtplib, swaks, `openssl s_client` and a raw-socket client.
"""

import queue
import re
import smtplib
import ssl
import subprocess
import threading
import time
import unittest
import uuid

from relayctl import (HOST, Listener, RelayTestCase, Relay, b64, make_message,
                      openssl_sha512_hash, tls_client_context)

ALICE, ALICE_PW = "alice", "alice-secret"
CAROL, CAROL_PW = "carol", "c4rol-sha512"


def token():
    return uuid.uuid4().hex[:12]


class SubmissionTest(RelayTestCase):
    """One relay for the class: a STARTTLS and an implicit-TLS listener, untrusted clients."""

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(users={ALICE: ALICE_PW},
                          listeners=[Listener("sub", "starttls"), Listener("smtps", "implicit_tls")])
        cls.addClassCleanup(cls.relay.cleanup)
        # A second user whose hash comes from `openssl passwd -6` (SHA-512 crypt).
        with open(cls.relay.users_file, "a") as f:
            f.write("%s:%s\n" % (CAROL, openssl_sha512_hash(CAROL_PW)))
        cls.relay.start()

    def queued(self, qid):
        by_id = self.relay.queue_by_id()
        self.assertIn(qid, by_id, "queue id %s not in `queue list --json`" % qid)
        return by_id[qid]

    def senders_in_queue(self):
        return [m["sender"] for m in self.relay.queue_list()]

    def smtplib_submit(self, mechanism):
        t = token()
        sender, rcpts = "sender-%s@example.test" % t, ["r1-%s@dest.test" % t, "r2-%s@dest.test" % t]
        s = smtplib.SMTP(HOST, self.relay.port("sub"), local_hostname="client.test", timeout=10)
        self.addCleanup(s.close)
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"), "AUTH must not be offered before TLS")
        code, _ = s.starttls(context=tls_client_context())
        self.assertEqual(code, 220)
        s.ehlo()
        self.assertIn(mechanism, s.esmtp_features.get("auth", "").upper().split())
        s.user, s.password = ALICE, ALICE_PW
        auth_fn = s.auth_plain if mechanism == "PLAIN" else s.auth_login
        code, resp = s.auth(mechanism, auth_fn)
        self.assertEqual((code, resp[:5]), (235, b"2.7.0"))
        self.assertEqual(s.mail(sender)[0], 250)
        for r in rcpts:
            self.assertEqual(s.rcpt(r)[0], 250)
        code, resp = s.data(make_message(sender, rcpts, "smtplib " + t, t))
        self.assertEqual(code, 250, resp)
        m = re.match(rb"2\.0\.0 Ok: queued as ([0-9a-f]{24})$", resp)
        self.assertIsNotNone(m, resp)
        s.quit()
        qid = m.group(1).decode()
        msg = self.queued(qid)
        self.assertEqual(msg["sender"], sender)
        self.assertEqual([r["address"] for r in msg["recipients"]], rcpts)
        self.assertEqual([r["state"] for r in msg["recipients"]], ["pending", "pending"])
        self.assertEqual(msg["auth_user"], ALICE)
        self.assertEqual(msg["client_ip"], "127.0.0.1")
        self.assertEqual(msg["state"], "queued")
        self.assertEqual(msg["attempts"], 0)
        self.assertGreater(msg["size"], len(make_message(sender, rcpts, "smtplib " + t, t)))

    # ------------------------------------------------------------- smtplib

    def test_smtplib_starttls_auth_plain(self):
        self.smtplib_submit("PLAIN")

    def test_smtplib_starttls_auth_login(self):
        self.smtplib_submit("LOGIN")

    def test_smtplib_implicit_tls_auth_plain(self):
        t = token()
        sender, rcpt = "ssl-%s@example.test" % t, "r-%s@dest.test" % t
        s = smtplib.SMTP_SSL(HOST, self.relay.port("smtps"), local_hostname="client.test",
                             timeout=10, context=tls_client_context())
        self.addCleanup(s.close)
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"), "no STARTTLS inside implicit TLS")
        s.user, s.password = ALICE, ALICE_PW
        self.assertEqual(s.auth("PLAIN", s.auth_plain)[0], 235)
        s.mail(sender)
        s.rcpt(rcpt)
        code, resp = s.data(make_message(sender, [rcpt], "ssl " + t, t))
        self.assertEqual(code, 250, resp)
        qid = resp.decode().rsplit(" ", 1)[1]
        s.quit()
        msg = self.queued(qid)
        self.assertEqual((msg["sender"], msg["auth_user"]), (sender, ALICE))
        self.assertEqual([r["address"] for r in msg["recipients"]], [rcpt])

    # --------------------------------------------------- raw AUTH dialogues

    def test_auth_login_without_initial_response(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH LOGIN")
        self.assertEqual((r.code, r.lines), (334, ["VXNlcm5hbWU6"]))  # "Username:"
        r = c.cmd(b64(ALICE))
        self.assertEqual((r.code, r.lines), (334, ["UGFzc3dvcmQ6"]))  # "Password:"
        self.assertReply(c.cmd(b64(ALICE_PW)), 235, "2.7.0")
        # Authenticated: AUTH is no longer advertised and a second AUTH is refused.
        self.assertNotIn("AUTH", c.extensions(c.ehlo()))

    def test_auth_plain_empty_initial_response(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH PLAIN")
        self.assertEqual(r.code, 334)
        self.assertReply(c.cmd(b64("\0%s\0%s" % (ALICE, ALICE_PW))), 235, "2.7.0")
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE, ALICE_PW))), 503, "5.5.1")

    def test_pipelined_commands_after_failed_auth_stay_unauthenticated(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        t = token()
        sender = "pipeauth-%s@example.test" % t
        c.send("AUTH PLAIN %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<r@dest.test>\r\nNOOP\r\n"
               % (b64("\0%s\0wrong" % ALICE), sender))
        r = [c.reply() for _ in range(4)]
        self.assertEqual([x.first[:9] for x in r],
                         ["535 5.7.8", "530 5.7.0", "503 5.5.1", "250 2.0.0"], r)
        # And with the right password the same pipeline works.
        c.send("AUTH PLAIN %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<r@dest.test>\r\nRSET\r\n"
               % (b64("\0%s\0%s" % (ALICE, ALICE_PW)), sender))
        r = [c.reply() for _ in range(4)]
        self.assertEqual([x.first[:9] for x in r],
                         ["235 2.7.0", "250 2.1.0", "250 2.1.5", "250 2.0.0"], r)
        self.assertNotIn(sender, self.senders_in_queue())

    def test_auth_plain_authzid(self):
        c = self.client(self.relay.port("smtps"), implicit_tls=True)
        c.ehlo()
        # authzid different from authcid: refused even with the right password.
        self.assertReply(c.cmd("AUTH PLAIN " + b64("bob\0%s\0%s" % (ALICE, ALICE_PW))), 535, "5.7.8")
        # authzid equal to authcid: fine.
        self.assertReply(c.cmd("AUTH PLAIN " + b64("%s\0%s\0%s" % (ALICE, ALICE, ALICE_PW))),
                         235, "2.7.0")

    def test_starttls_twice_refused(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        self.assertNotIn("STARTTLS", c.extensions(c.ehlo()))
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250)
        # STARTTLS on the implicit-TLS port is not available either.
        c2 = self.client(self.relay.port("smtps"), implicit_tls=True)
        c2.ehlo()
        self.assertEqual(c2.cmd("STARTTLS").code, 502)

    def test_sha512_crypt_user_from_openssl_passwd(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.auth_plain(CAROL, CAROL_PW), 235, "2.7.0")
        t = token()
        r = c.send_message("carol-%s@example.test" % t, ["x@dest.test"],
                           make_message("carol@example.test", ["x@dest.test"], "carol", t))
        self.assertIsNotNone(r.queue_id(), r)
        self.assertEqual(self.queued(r.queue_id())["auth_user"], CAROL)

    # ------------------------------------------------------------- swaks

    def swaks(self, *extra):
        t = token()
        sender, rcpt = "swaks-%s@example.test" % t, "r-%s@dest.test" % t
        cmd = ["swaks", "--server", HOST, "--from", sender, "--to", rcpt, "--helo", "client.test",
               "--header", "Subject: swaks " + t, "--timeout", "10"] + list(extra)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        out = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, out)
        m = re.search(r"<~  250 2\.0\.0 Ok: queued as ([0-9a-f]{24})", out)
        self.assertIsNotNone(m, out)
        msg = self.queued(m.group(1))
        self.assertEqual(msg["sender"], sender)
        self.assertEqual([r["address"] for r in msg["recipients"]], [rcpt])
        self.assertEqual(msg["auth_user"], ALICE)
        return out

    def test_swaks_starttls_auth_plain(self):
        out = self.swaks("--port", str(self.relay.port("sub")), "--tls", "--auth", "PLAIN",
                         "--auth-user", ALICE, "--auth-password", ALICE_PW)
        self.assertIn("<-  220 2.0.0 Ready to start TLS", out)
        self.assertIn("=== TLS started", out)
        self.assertIn("235 2.7.0 Authentication successful", out)

    def test_swaks_starttls_auth_login(self):
        out = self.swaks("--port", str(self.relay.port("sub")), "--tls", "--auth", "LOGIN",
                         "--auth-user", ALICE, "--auth-password", ALICE_PW)
        self.assertIn("235 2.7.0 Authentication successful", out)

    def test_swaks_tls_on_connect(self):
        self.swaks("--port", str(self.relay.port("smtps")), "--tls-on-connect", "--auth", "PLAIN",
                   "--auth-user", ALICE, "--auth-password", ALICE_PW)

    # ---------------------------------------------------- openssl s_client

    def test_openssl_s_client_implicit_tls_transaction(self):
        t = token()
        sender, rcpt = "sclient-%s@example.test" % t, "r-%s@dest.test" % t
        p = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (HOST, self.relay.port("smtps")),
                              "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        lines = queue.Queue()

        def reader():
            for raw in iter(p.stdout.readline, b""):
                lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
            lines.put(None)

        th = threading.Thread(target=reader, daemon=True)
        th.start()

        def cleanup():
            if p.poll() is None:
                p.kill()  # by PID (Popen object)
            p.wait(timeout=10)
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        self.addCleanup(cleanup)
        transcript = []

        def expect(code, timeout=10):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    l = lines.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    self.fail("no %d reply within %ds; transcript %r" % (code, timeout, transcript))
                self.assertIsNotNone(l, "s_client ended early; transcript %r" % transcript)
                transcript.append(l)
                if len(l) >= 4 and l[3] == "-":
                    continue
                self.assertTrue(l.startswith(str(code)), "expected %d, got %r (transcript %r)"
                                % (code, l, transcript))
                return l

        def send(s):
            transcript.append(">> " + s)
            p.stdin.write((s + "\r\n").encode())
            p.stdin.flush()

        expect(220)
        send("EHLO client.test")
        expect(250)
        send("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE, ALICE_PW)))
        expect(235)
        send("MAIL FROM:<%s>" % sender)
        expect(250)
        send("RCPT TO:<%s>" % rcpt)
        expect(250)
        send("DATA")
        expect(354)
        for l in make_message(sender, [rcpt], "s_client " + t, t).split("\r\n")[:-1]:
            send(l)
        send(".")
        final = expect(250)
        m = re.match(r"250 2\.0\.0 Ok: queued as ([0-9a-f]{24})$", final)
        self.assertIsNotNone(m, final)
        send("QUIT")
        expect(221)
        p.stdin.close()
        # s_client ends once the server closed (its exit status depends on the TLS
        # close_notify, checked separately in TlsCloseTest).
        p.wait(timeout=10)
        th.join(timeout=5)
        msg = self.queued(m.group(1))
        self.assertEqual((msg["sender"], msg["auth_user"]), (sender, ALICE))
        self.assertEqual([r["address"] for r in msg["recipients"]], [rcpt])

    # ----------------------------------------------------------- failures

    def test_wrong_password_535(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.auth_plain(ALICE, "wrong-password"), 535, "5.7.8")
        self.assertReply(c.auth_plain("nobody", ALICE_PW), 535, "5.7.8")
        # Still unauthenticated after the failure.
        self.assertReply(c.cmd("MAIL FROM:<x@example.test>"), 530, "5.7.0")
        # The session survives a failure below max_failures: the right password works.
        # (max_failures = 3, two failures so far)
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 235, "2.7.0")

    def test_auth_login_wrong_password_535(self):
        c = self.client(self.relay.port("smtps"), implicit_tls=True)
        c.ehlo()
        self.assertEqual(c.cmd("AUTH LOGIN " + b64(ALICE)).code, 334)
        self.assertReply(c.cmd(b64("nope")), 535, "5.7.8")

    def test_repeated_auth_failures_421_after_max_failures(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.auth_plain(ALICE, "bad1"), 535, "5.7.8")
        self.assertReply(c.auth_plain(ALICE, "bad2"), 535, "5.7.8")
        self.assertReply(c.auth_plain(ALICE, "bad3"), 421, "4.7.0")  # max_failures = 3
        self.assertEqual(c.read_until_closed(timeout=5), b"", "server must close after 421")
        # The limit is per session: a new session may authenticate.
        c2 = self.client(self.relay.port("sub"))
        c2.ehlo()
        c2.starttls()
        c2.ehlo()
        self.assertReply(c2.auth_plain(ALICE, ALICE_PW), 235, "2.7.0")

    def test_unauthenticated_mail_530_nothing_queued(self):
        t = token()
        sender = "unauth-%s@example.test" % t
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        # Before TLS: told to STARTTLS.
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 530, "5.7.0")
        c.starttls()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 530, "5.7.0")
        # No transaction: RCPT, DATA and BDAT are out of sequence (503 5.5.1).
        self.assertReply(c.cmd("RCPT TO:<victim@dest.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        # BDAT with its chunk: also refused, the chunk is consumed.
        chunk = b"Subject: x\r\n\r\nbody\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250)  # the chunk was not read as commands
        self.assertReply(c.cmd("QUIT"), 221)
        # Implicit TLS too.
        c2 = self.client(self.relay.port("smtps"), implicit_tls=True)
        c2.ehlo()
        self.assertReply(c2.cmd("MAIL FROM:<%s>" % sender), 530, "5.7.0")
        self.assertNotIn(sender, self.senders_in_queue())

    def test_auth_before_starttls_not_offered_538(self):
        c = self.client(self.relay.port("sub"))
        ext = c.extensions(c.ehlo())
        self.assertIn("STARTTLS", ext)
        self.assertNotIn("AUTH", ext)
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 538, "5.7.11")
        self.assertReply(c.cmd("AUTH LOGIN"), 538, "5.7.11")
        # The plaintext credentials did not authenticate the session.
        self.assertReply(c.cmd("MAIL FROM:<x@example.test>"), 530, "5.7.0")
        c.starttls()
        ext = c.extensions(c.ehlo())
        self.assertIn("AUTH", ext)
        self.assertNotIn("STARTTLS", ext)


class TlsCloseTest(RelayTestCase):
    """After QUIT the server must end TLS with a close_notify alert (RFC 8446 6.1,
    RFC 5246 7.2.1) before closing TCP; otherwise clients see a truncated stream."""

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(users={ALICE: ALICE_PW},
                          listeners=[Listener("sub", "starttls"), Listener("smtps", "implicit_tls")])
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def quit_and_expect_close_notify(self, c):
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0")
        c.sock.settimeout(5)
        try:
            data = c.sock.recv(4096)
        except ssl.SSLError as e:  # UNEXPECTED_EOF_WHILE_READING
            self.fail("server closed the TCP connection without a TLS close_notify: %s" % e)
        self.assertEqual(data, b"")

    def test_tls_close_notify_after_quit(self):
        with self.subTest("implicit TLS, python ssl"):
            c = self.client(self.relay.port("smtps"), implicit_tls=True, suppress_ragged_eofs=False)
            c.ehlo()
            self.quit_and_expect_close_notify(c)
        with self.subTest("STARTTLS, python ssl"):
            c = self.client(self.relay.port("sub"), suppress_ragged_eofs=False)
            c.ehlo()
            c.starttls()
            c.ehlo()
            self.quit_and_expect_close_notify(c)
        with self.subTest("implicit TLS, openssl s_client exit status"):
            p = subprocess.run(["openssl", "s_client", "-connect",
                                "%s:%d" % (HOST, self.relay.port("smtps")), "-quiet"],
                               input=b"EHLO client.test\r\nQUIT\r\n", capture_output=True,
                               timeout=30)
            self.assertIn(b"221 2.0.0", p.stdout)
            self.assertEqual(p.returncode, 0, "s_client failed after 221: %s"
                             % p.stderr.decode("utf-8", "replace").strip().splitlines()[-1:])


class AuthDelayTest(RelayTestCase):

    def test_failure_delay_applied_to_failed_auth(self):
        relay = self.new_relay(users={ALICE: ALICE_PW}, listeners=[Listener("smtps", "implicit_tls")],
                               auth={"failure_delay_ms": 600, "max_failures": 5})
        c = self.client(relay.port("smtps"), implicit_tls=True)
        c.ehlo()
        t0 = time.monotonic()
        self.assertReply(c.auth_plain(ALICE, "wrong"), 535, "5.7.8")
        failed = time.monotonic() - t0
        self.assertGreaterEqual(failed, 0.55, "failed AUTH answered after %.3fs" % failed)
        t0 = time.monotonic()
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 235)
        ok = time.monotonic() - t0
        self.assertLess(ok, failed, "successful AUTH must not get the failure delay")


class TrustedNetworksTest(RelayTestCase):

    def plain_transaction(self, relay):
        t = token()
        sender, rcpt = "trusted-%s@example.test" % t, "r-%s@dest.test" % t
        c = self.client(relay.port("plain"))
        ext = c.extensions(c.ehlo())
        self.assertNotIn("STARTTLS", ext)
        self.assertNotIn("AUTH", ext)
        return c, sender, rcpt, t

    def test_trusted_network_relays_without_auth(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        c, sender, rcpt, t = self.plain_transaction(relay)
        r = c.send_message(sender, [rcpt], make_message(sender, [rcpt], "trusted " + t, t))
        self.assertIsNotNone(r.queue_id(), r)
        self.assertReply(c.cmd("QUIT"), 221)
        msg = relay.queue_by_id()[r.queue_id()]
        self.assertEqual(msg["sender"], sender)
        self.assertEqual([x["address"] for x in msg["recipients"]], [rcpt])
        self.assertEqual(msg["auth_user"], "")
        self.assertEqual(msg["client_ip"], "127.0.0.1")

    def test_untrusted_plain_client_refused(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["10.0.0.0/8"])
        c, sender, rcpt, t = self.plain_transaction(relay)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 530, "5.7.0")
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 538, "5.7.11")
        self.assertEqual(relay.queue_list(), [])


if __name__ == "__main__":
    unittest.main()
