""""Why is my mail not sent?" (issue 21): each mistake a user makes, made with
a real client (swaks, curl, Python smtplib, openssl s_client), gives a reply
that says what to fix and a log line that names it; a message's queue id
tells its whole story in the log; `queue list`, `queue summary` and the
metrics agree on what "deferred" means.

docs/CLIENTS.md (and CLIENTS.fr.md) are written from what these tests show.
"""

import base64
import json
import os
import re
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from relayctl import HOST, Listener, Relay, RelayTestCase, free_port, make_message, read_until_closed, run_cli
from sink import Sink

USER, PASSWORD = "alice@example.test", "alice-secret"
CLIENT_TIMEOUT = 30  # seconds; far above implicit_tls_wait (3 s), below the handshake timeout (60 s)


def run(cmd, stdin=None, timeout=60):
    """A real client, bounded in time; returns (exit code, stdout + stderr)."""
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def token():
    return uuid.uuid4().hex[:10]


class DiagnosticsBase(RelayTestCase):
    """One relay with the usual three listeners: STARTTLS, implicit TLS, plain."""

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(listeners=[Listener("sub", "starttls"), Listener("smtps", "implicit_tls"),
                                     Listener("plain", "plain")],
                          users={USER: PASSWORD, "bob": "bob-secret"},
                          auth={"max_failures": 5, "max_failures_per_ip": 0},
                          timeouts={"tls_handshake": 60})
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def log_since(self, mark):
        return self.relay.log_text()[mark:]

    def mark(self):
        return len(self.relay.log_text())

    def swaks(self, port, *extra, user=USER, password=PASSWORD, tls="--tls", auth="PLAIN"):
        t = token()
        cmd = ["swaks", "--server", HOST, "--port", str(port), "--from", "app-%s@example.test" % t,
               "--to", "r-%s@dest.test" % t, "--helo", "client.test", "--timeout", str(CLIENT_TIMEOUT)]
        if tls:
            cmd.append(tls)
        if auth:
            cmd += ["--auth", auth, "--auth-user", user, "--auth-password", password]
        return run(cmd + list(extra))

    def wait_line(self, mark, pattern, timeout=10.0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(mark)
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() > deadline:
                self.fail("no log line matching %r; log since the test began:\n%s" % (pattern, text[-3000:]))
            time.sleep(0.05)


class AuthMistakesTest(DiagnosticsBase):
    """Every failed login is one event=auth_failed line with the name tried
    (never the password), the mechanism, the listener and a reason."""

    def test_wrong_password(self):
        m = self.mark()
        rc, out = self.swaks(self.relay.port("sub"), password="not-the-password")
        self.assertNotEqual(rc, 0)
        self.assertIn("535 5.7.8 Authentication credentials invalid", out)
        line = self.wait_line(m, r"event=auth_failed ip=127\.0\.0\.1 listener=sub port=%d tls=TLSv1\.[23] "
                                 r"mech=PLAIN user=\"alice@example\.test\" reason=bad_password failures=1"
                              % self.relay.port("sub"))
        self.assertNotIn("not-the-password", self.relay.log_text(), "a password reached the log")
        self.assertTrue(line)

    def test_local_part_instead_of_full_address(self):
        m = self.mark()
        rc, out = self.swaks(self.relay.port("sub"), user="alice", auth="LOGIN")
        self.assertNotEqual(rc, 0)
        self.assertIn("535 5.7.8", out)
        self.wait_line(m, r"event=auth_failed .*mech=LOGIN user=\"alice\" reason=unknown_user")

    def test_domain_part_in_capitals_logs_in_local_part_does_not(self):
        m = self.mark()
        rc, out = self.swaks(self.relay.port("sub"), user="alice@EXAMPLE.Test")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as [0-9a-f]{24}")
        # Logged (and stored) under the name the users file writes.
        self.wait_line(m, r"event=queued id=[0-9a-f]{24} ip=127\.0\.0\.1 listener=sub user=alice@example\.test ")
        rc, out = self.swaks(self.relay.port("sub"), user="Alice@example.test")
        self.assertNotEqual(rc, 0)
        self.wait_line(m, r"event=auth_failed .*user=\"Alice@example\.test\" reason=unknown_user")

    def test_authorization_identity_mismatch(self):
        m = self.mark()
        s = smtplib.SMTP(HOST, self.relay.port("sub"), timeout=CLIENT_TIMEOUT)
        self.addCleanup(s.close)
        s.starttls(context=ssl._create_unverified_context())
        s.ehlo("client.test")
        resp = base64.b64encode(b"bob\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
        code, msg = s.docmd("AUTH", "PLAIN " + resp)
        self.assertEqual((code, msg[:5]), (535, b"5.7.8"), msg)
        self.assertIn(b"Authorization identity differs", msg)
        self.wait_line(m, r"event=auth_failed .*mech=PLAIN user=\"alice@example\.test as bob\" "
                          r"reason=authzid_mismatch")

    def test_auth_before_starttls(self):
        m = self.mark()
        s = smtplib.SMTP(HOST, self.relay.port("sub"), timeout=CLIENT_TIMEOUT)
        self.addCleanup(s.close)
        s.ehlo("client.test")
        self.assertNotIn("auth", s.esmtp_features, "AUTH offered in clear")
        code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())
        self.assertEqual(code, 538)
        self.assertIn(b"5.7.11", msg)
        self.assertIn(b"STARTTLS", msg, "the reply must say what to do")
        code, msg = s.docmd("MAIL", "FROM:<a@example.test>")
        self.assertEqual((code, msg), (530, b"5.7.0 Must issue a STARTTLS command first"))
        self.wait_line(m, r"event=auth_failed .*listener=sub .*tls=no mech=PLAIN user=\"-\" reason=tls_required")
        self.wait_line(m, r"event=rejected ip=127\.0\.0\.1 listener=sub port=%d user=- cmd=mail "
                          r"arg=\"FROM:<a@example\.test>\" code=530 enhanced=5\.7\.0 "
                          r"reply=\"Must issue a STARTTLS command first\"" % self.relay.port("sub"))

    def test_no_auth_port_names_the_tls_ports(self):
        s = smtplib.SMTP(HOST, self.relay.port("plain"), timeout=CLIENT_TIMEOUT)
        self.addCleanup(s.close)
        s.ehlo("client.test")
        code, msg = s.docmd("MAIL", "FROM:<a@example.test>")
        self.assertEqual(code, 530)
        self.assertIn(("use port %d (STARTTLS) or %d (implicit TLS)"
                       % (self.relay.port("sub"), self.relay.port("smtps"))).encode(), msg)


class LocalPartLoginTest(RelayTestCase):

    def test_local_part_login_when_enabled(self):
        relay = self.new_relay(users={USER: PASSWORD, "bob@a.test": "x", "bob@b.test": "y"},
                               auth={"local_part_login": True})
        rc, out = run(["swaks", "--server", HOST, "--port", str(relay.port("sub")), "--tls",
                       "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORD,
                       "--from", "a@example.test", "--to", "r@dest.test", "--timeout", "30"])
        self.assertEqual(rc, 0, out)
        relay.wait_log(r"event=queued id=[0-9a-f]{24} ip=127\.0\.0\.1 listener=sub user=alice@example\.test ")
        # Two users share the local part "bob": only the full address works.
        rc, out = run(["swaks", "--server", HOST, "--port", str(relay.port("sub")), "--tls",
                       "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "x",
                       "--from", "a@example.test", "--to", "r@dest.test", "--timeout", "30"])
        self.assertNotEqual(rc, 0, out)
        relay.wait_log(r"event=auth_failed .*user=\"bob\" reason=unknown_user")
        self.assertIn("event=users_local_part_ambiguous count=1", relay.log_text())


class AuthBlockTest(RelayTestCase):

    def test_blocked_address_is_told_for_how_long(self):
        relay = self.new_relay(users={USER: PASSWORD},
                               auth={"max_failures_per_ip": 2, "ip_block_seconds": 120})
        for _ in range(2):
            rc, out = run(["swaks", "--server", HOST, "--port", str(relay.port("sub")), "--tls",
                           "--auth", "PLAIN", "--auth-user", USER, "--auth-password", "wrong",
                           "--from", "a@example.test", "--to", "r@dest.test", "--timeout", "30"])
            self.assertIn("535 5.7.8", out)
        rc, out = run(["swaks", "--server", HOST, "--port", str(relay.port("sub")), "--tls",
                       "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                       "--from", "a@example.test", "--to", "r@dest.test", "--timeout", "30"])
        self.assertNotEqual(rc, 0)
        m = re.search(r"421 4\.7\.0 \S+ Too many failed authentications from your address; "
                      r"try again in (\d+) seconds", out)
        self.assertIsNotNone(m, out)
        self.assertTrue(100 <= int(m.group(1)) <= 120, m.group(0))
        relay.wait_log(r"event=auth_failed .*user=\"alice@example\.test\" reason=blocked")
        self.assertIn("event=auth_ip_blocked ip=127.0.0.1", relay.log_text())


class RejectionTest(DiagnosticsBase):

    def test_message_too_big_states_the_limit(self):
        m = self.mark()
        s = smtplib.SMTP(HOST, self.relay.port("sub"), timeout=CLIENT_TIMEOUT)
        self.addCleanup(s.close)
        s.starttls(context=ssl._create_unverified_context())
        s.login(USER, PASSWORD)
        big = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 1100  # ~1.1 MB > 1 MiB
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:  # smtplib declares SIZE=
            s.sendmail("a@example.test", ["r@dest.test"], big)
        self.assertEqual(cm.exception.smtp_code, 552)
        self.assertEqual(cm.exception.smtp_error,
                         b"5.3.4 Message size exceeds fixed maximum message size of 1048576 bytes (1 MiB)")
        self.wait_line(m, r"event=rejected ip=127\.0\.0\.1 listener=sub port=\d+ user=alice@example\.test "
                          r"cmd=mail arg=\"FROM:<a@example\.test> size=\d+\" code=552 enhanced=5\.3\.4 "
                          r"reply=\"Message size exceeds fixed maximum message size of 1048576 bytes")

    def test_rejections_per_session_are_bounded(self):
        m = self.mark()
        c = self.client(self.relay.port("plain"))
        c.ehlo()
        for _ in range(30):
            self.assertEqual(c.cmd("MAIL FROM:<x@example.test>").code, 530)
        c.cmd("QUIT")
        end = self.wait_line(m, r"event=session_end ip=127\.0\.0\.1 listener=plain port=\d+ mode=plain user=- "
                                r"tls=no .*rejected=30 ")
        self.assertTrue(end)
        self.assertEqual(self.log_since(m).count("event=rejected ip=127.0.0.1 listener=plain"), 20)


class WrongPortTest(DiagnosticsBase):
    """The most common setup mistake: the TLS mode does not match the port."""

    def test_implicit_tls_client_on_starttls_port_curl(self):
        m = self.mark()
        with tempfile.NamedTemporaryFile("w", suffix=".eml") as f:
            f.write("Subject: curl\r\n\r\nhello\r\n")
            f.flush()
            rc, out = run(["curl", "-sS", "--max-time", "30", "-k",
                           "smtps://%s:%d" % (HOST, self.relay.port("sub")),
                           "--user", "%s:%s" % (USER, PASSWORD), "--mail-from", "a@example.test",
                           "--mail-rcpt", "r@dest.test", "-T", f.name])
        self.assertNotEqual(rc, 0, out)
        self.wait_line(m, r"event=tls_on_plain_port ip=127\.0\.0\.1 listener=sub port=%d hint=\"client uses "
                          r"implicit TLS \(SSL\); use port %d or switch it to STARTTLS\""
                       % (self.relay.port("sub"), self.relay.port("smtps")))
        self.wait_line(m, r"event=session_end ip=127\.0\.0\.1 listener=sub port=\d+ mode=starttls .*"
                          r"reason=tls_on_plain_port")
        self.assertNotIn("NUL character", self.log_since(m), "answered the ClientHello with 500s")

    def test_implicit_tls_client_on_starttls_port_s_client(self):
        m = self.mark()
        rc, out = run(["openssl", "s_client", "-connect", "%s:%d" % (HOST, self.relay.port("sub")),
                       "-brief"], stdin=b"", timeout=30)
        self.assertNotEqual(rc, 0, out)
        self.wait_line(m, r"event=tls_on_plain_port ip=127\.0\.0\.1 listener=sub")

    def test_starttls_client_on_implicit_tls_port_swaks(self):
        m = self.mark()
        rc, out = self.swaks(self.relay.port("smtps"))  # --tls = STARTTLS: waits for a greeting
        self.assertNotEqual(rc, 0)
        self.assertIn("421 4.7.0 relay.test Port %d expects TLS from the first byte (implicit TLS, \"SSL\"); "
                      "use port %d with STARTTLS" % (self.relay.port("smtps"), self.relay.port("sub")), out)
        self.wait_line(m, r"event=plain_on_tls_port ip=127\.0\.0\.1 listener=smtps port=%d client=silent "
                          r"hint=\"client expects plaintext SMTP" % self.relay.port("smtps"))

    def test_plaintext_client_on_implicit_tls_port_smtplib(self):
        m = self.mark()
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP(HOST, self.relay.port("smtps"), timeout=CLIENT_TIMEOUT)
        self.assertEqual(cm.exception.smtp_code, 421)
        self.assertIn(b"expects TLS from the first byte", cm.exception.smtp_error)
        self.wait_line(m, r"event=plain_on_tls_port .*client=silent")

    def test_client_talking_first_in_clear_on_implicit_tls_port(self):
        m = self.mark()
        s = socket.create_connection((HOST, self.relay.port("smtps")), timeout=CLIENT_TIMEOUT)
        self.addCleanup(s.close)
        s.sendall(b"EHLO client.test\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        self.assertTrue(got.startswith(b"421 4.7.0 "), got)
        # What the client sends next is never answered (no session runs).
        try:
            s.sendall(b"NOOP\r\nEHLO again.test\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # already closed: fine
        got += read_until_closed(s, 10)
        self.assertEqual(got.count(b"\r\n"), 1, got)
        self.wait_line(m, r"event=plain_on_tls_port .*client=plaintext")

    def test_right_port_still_works(self):
        """The detection leaves real TLS clients alone (implicit TLS via swaks)."""
        rc, out = self.swaks(self.relay.port("smtps"), tls="--tlsc")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as [0-9a-f]{24}")


class CertificateTest(DiagnosticsBase):

    def test_generated_certificate_names_host_and_listening_address(self):
        cert = os.path.join(self.relay.data_dir, "tls", "selfsigned-cert.pem")
        for name in ("127.0.0.1", "relay.test"):
            ctx = ssl.create_default_context(cafile=cert)  # verification and name check on
            with socket.create_connection((HOST, self.relay.port("smtps")), timeout=CLIENT_TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname=name) as s:
                    self.assertTrue(s.recv(100).startswith(b"220 "), name)
        rc, out = run(["openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName"])
        self.assertEqual(rc, 0, out)
        self.assertIn("DNS:relay.test", out)
        self.assertIn("IP Address:127.0.0.1", out)


class TraceTest(DiagnosticsBase):
    """`mxrelay trace`: the conversation of matching sessions, redacted."""

    def start_trace(self, *filters):
        """`mxrelay trace` in the background; its stdout lines are collected."""
        p = subprocess.Popen([os.environ.get("MXRELAY_BIN", "mxrelay"), "trace", *filters, "--seconds", "60",
                              "-c", self.relay.config_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.lines = []
        p.reader = threading.Thread(target=lambda: p.lines.extend(iter(p.stdout.readline, b"")), daemon=True)
        p.reader.start()

        def cleanup():
            if p.poll() is None:
                p.kill()  # by PID
            p.wait(10)
            p.reader.join(10)
            p.stdout.close()
            p.stderr.close()
        self.addCleanup(cleanup)
        self.relay.wait_log(r"event=trace_started", count=self.traces_started + 1)
        type(self).traces_started += 1
        return p

    traces_started = 0

    def wait_trace(self, p, needle, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in l.decode("utf-8", "replace") for l in list(p.lines)):
                return
            time.sleep(0.05)
        self.fail("%r not in the trace: %r" % (needle, p.lines))

    def stop_trace(self, p):
        p.terminate()  # by PID
        p.wait(10)
        p.reader.join(10)
        return b"".join(p.lines).decode("utf-8", "replace"), p.stderr.read().decode("utf-8", "replace")

    def test_trace_by_address_and_by_user(self):
        by_ip = self.start_trace("--ip", "127.0.0.1")
        by_bob = self.start_trace("--user", "bob")
        t = token()
        rc, out = run(["swaks", "--server", HOST, "--port", str(self.relay.port("sub")), "--tls",
                       "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                       "--from", "app@example.test", "--to", "r@dest.test", "--helo", "trace.test",
                       "--header", "Subject: secret-subject-" + t, "--body", "secret-body-" + t,
                       "--timeout", "30"])
        self.assertEqual(rc, 0, out)
        qid = re.search(r"queued as ([0-9a-f]{24})", out).group(1)
        self.wait_trace(by_ip, "* session end: quit")
        text, err = self.stop_trace(by_ip)
        self.assertIn("mxrelay: tracing ip=127.0.0.1 user=*", err)
        for want in ("> 220 relay.test ESMTP", "< EHLO trace.test", "< STARTTLS", "* TLS established: TLSv1.",
                     "< AUTH PLAIN <redacted>", "> 235 2.7.0", "* authenticated as alice@example.test",
                     "< MAIL FROM:<app@example.test>", "< <message content: ",
                     "> 250 2.0.0 Ok: queued as " + qid, "< QUIT", "* session end: quit"):
            self.assertIn(want, text)
        auth_b64 = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
        for never in (PASSWORD, auth_b64, "secret-subject-" + t, "secret-body-" + t):
            self.assertNotIn(never, text, "leaked into the trace")
        bob_text, _ = self.stop_trace(by_bob)
        self.assertNotIn("trace.test", bob_text, "a session of another user was traced")

    def test_trace_needs_a_filter_and_a_running_relay(self):
        p = run_cli(["trace", "-c", self.relay.config_path])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--ip", p.stderr)
        other = Relay(users={USER: PASSWORD})  # configured, never started
        self.addCleanup(other.cleanup)
        other.write_config()
        p = run_cli(["trace", "--ip", "127.0.0.1", "--seconds", "1", "-c", other.config_path])
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot connect to the relay's admin socket", p.stderr)


class QueueStoryTest(RelayTestCase):
    """One grep of the queue id; and list, summary and metrics agree."""

    def test_queue_id_tells_the_story_delivered(self):
        sink = Sink().start()
        self.addCleanup(sink.stop)
        relay = self.new_relay(users={USER: PASSWORD},
                               delivery={"port": sink.port, "retry_initial": 1, "retry_max": 2},
                               routes=[{"domain": "dest.test", "host": "127.0.0.1"}])
        rc, out = run(["swaks", "--server", HOST, "--port", str(relay.port("sub")), "--tls",
                       "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                       "--from", "app@example.test", "--to", "story@dest.test", "--timeout", "30"])
        self.assertEqual(rc, 0, out)
        qid = re.search(r"queued as ([0-9a-f]{24})", out).group(1)
        sink.wait_messages(1)
        relay.wait_log(r"event=delivered id=%s " % qid)
        story = [l for l in relay.log_text().splitlines() if qid in l]
        self.assertRegex(story[0], r"event=queued id=%s ip=127\.0\.0\.1 listener=sub user=alice@example\.test "
                                   r"sender=<app@example\.test> rcpts=1 size=\d+" % qid)
        self.assertRegex(story[-1], r"event=delivered id=%s rcpt=<story@dest\.test> site=\S+ mx=127\.0\.0\.1 "
                                    r"ip=127\.0\.0\.1 tls=\S+ code=250 enhanced=\S+ reply=\".*\" attempt=1" % qid)

    def test_deferral_list_summary_metrics_agree(self):
        dead = free_port()  # nothing listens: connection refused
        relay = self.new_relay(users={USER: PASSWORD},
                               delivery={"port": dead, "retry_initial": 60, "retry_max": 60,
                                         "site_backoff_initial": 60, "site_backoff_max": 60},
                               routes=[{"domain": "dead.test", "host": "127.0.0.1"}])
        c = self.client(relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.auth_plain(USER, PASSWORD), 235)
        r = c.send_message("app@example.test", ["nobody@dead.test"],
                           make_message("app@example.test", ["nobody@dead.test"], "dead", token()))
        qid = r.queue_id()
        self.assertIsNotNone(qid, r)
        relay.wait_log(r"event=deferred id=%s " % qid, timeout=30)
        relay.wait_log(r"event=rescheduled id=%s pending=1 " % qid)
        # The metric is refreshed on the engine's tick: bounded wait for it.
        deadline = time.monotonic() + 10
        while True:
            gauge = relay.scrape().get("mxrelay_queue_deferred_messages")
            if gauge == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(gauge, 1)
        q = relay.queue_by_id()[qid]
        self.assertEqual(q["state"], "deferred")
        self.assertGreater(q["next_attempt_in_seconds"], 0)
        (rc,) = q["recipients"]
        self.assertEqual(rc["state"], "pending")
        self.assertEqual(rc["last_code"], 451)
        self.assertIn("Connection to 127.0.0.1 [127.0.0.1]:%d failed: Connection refused" % dead,
                      rc["last_reply"])
        s = relay.queue_summary()
        self.assertEqual((s["messages"], s["deferred"], s["queued"]), (1, 1, 0))
        # Text list and show: the reason and the next attempt in words.
        p = run_cli(["queue", "list", "-c", relay.config_path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"%s +\S+ +\d+ deferred +\d+ +in \S+ <app@example\.test>" % qid)
        self.assertIn("nobody@dead.test", p.stdout)
        self.assertIn("Connection refused", p.stdout)
        p = run_cli(["queue", "show", qid, "-c", relay.config_path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("state:       deferred", p.stdout)
        self.assertIn("Connection refused", p.stdout)
        self.assertRegex(p.stdout, r"history:     \d+ event\(s\)")
        self.assertIn('"outcome":"deferred"', p.stdout)
        p = run_cli(["queue", "show", "0" * 24, "-c", relay.config_path])
        self.assertEqual(p.returncode, 1)
        self.assertIn("not in the queue", p.stdout)
        p = run_cli(["queue", "show", "nonsense", "-c", relay.config_path])
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
