"""Abuse and limits (issue 6, item 4): many idle connections, slow clients,
pipelining floods, hostile input, open-relay probes, old TLS versions, the
per-IP and global connection limits and AUTH brute force across sessions.

Results and numbers: docs/RELIABILITY.md. Tests marked expectedFailure
document a gap in the relay (the comment says what and why); they turn into
"unexpected success" once the relay is fixed.

Already covered elsewhere, not repeated here:
  - command line over the limit -> 500 5.5.2, the session continues:
      test_protocol.ProtocolTest.test_100kb_command_line, test_line_length_limit_boundary
  - SIZE= declared over the limit at MAIL -> 552 5.3.4:
      test_protocol.ProtocolTest.test_mail_from_size_over_limit
  - undeclared body over the limit (DATA and BDAT) -> 552 5.3.4, nothing queued:
      test_protocol.ProtocolTest.test_body_over_limit_rejected_nothing_queued
  - valid UTF-8 address without SMTPUTF8 -> 553 5.6.7:
      test_protocol.ProtocolTest.test_smtputf8_required_for_utf8_address
  - too many protocol errors -> 421 4.7.0:
      test_protocol.ProtocolTest.test_too_many_protocol_errors_421
  - N+1th connection from one IP -> 421 4.7.0 (both listeners; implicit TLS sends no
    cleartext; slots released after abrupt closes): test_limits.PerIpLimitTest
  - idle clients in every state -> 421 4.4.2: test_limits.TimeoutTest
  - per-session AUTH failures -> 421 4.7.0:
      test_smtp.SubmissionTest.test_repeated_auth_failures_421_after_max_failures
  - unauthenticated MAIL -> 530 5.7.0:
      test_smtp.SubmissionTest.test_unauthenticated_mail_530_nothing_queued,
      test_smtp.TrustedNetworksTest.test_untrusted_plain_client_refused
  - STARTTLS command injection, SMTP smuggling: test_protocol.ProtocolTest

Rules: loopback only (client addresses spread over 127.0.0.x), every loop
bounded in count and time, relays stopped by PID (relayctl), no timed
assertions of performance (time bounds are generous upper bounds).
"""

import errno
import os
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
import uuid
import warnings

from relayctl import (HOST, Listener, Relay, RelayTestCase, SmtpClient, b64,
                      make_message, tls_client_context)

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LIMIT = 1048576  # limits.max_message_size of the relays below


def token():
    return uuid.uuid4().hex[:12]


def rss_bytes(pid):
    """Resident set size of a process from /proc/<pid>/status (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def sanitizer(pid):
    """"asan", "tsan" or None: which sanitizer runtime the process has mapped."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    if "libasan" in maps:
        return "asan"
    if "libtsan" in maps:
        return "tsan"
    return None


def max_open_files(pid):
    """The soft 'Max open files' limit of a process (/proc/<pid>/limits)."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                v = line.split()[3]
                return float("inf") if v == "unlimited" else int(v)
    raise AssertionError("no Max open files for pid %d" % pid)


def report(msg):
    """A figure for the test output (not asserted)."""
    sys.stderr.write("\n    [abuse] %s\n" % msg)
    sys.stderr.flush()


def mib(n):
    return n / 1048576.0


def raw_connect(port, source=None, rcvbuf=None, timeout=10):
    """A plain TCP socket to the relay (optionally from `source`, with a small receive buffer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((HOST, port))
    except OSError:
        s.close()
        raise
    return s


def recv_until(s, marker, seconds=10, limit=1 << 20):
    """Bytes from `s` until `marker` was received (bounded in time, count and size)."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    for _ in range(1000000):
        left = deadline - time.monotonic()
        if left <= 0 or len(data) > limit:
            break
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        if marker in data[-(len(chunk) + len(marker)):]:
            break
    return bytes(data)


def flood_until_blocked(s, command, cap_bytes=64 << 20, blocked_seconds=2.0, seconds=30.0):
    """Sends `command` over and over without reading replies until the peer stops
    reading (no send progress for `blocked_seconds`), `cap_bytes` were sent or
    `seconds` passed. Returns (bytes sent, whether sending blocked)."""
    chunk = command * max(1, 65536 // len(command))
    ring = memoryview(chunk * 2)  # ring[pos:pos + len(chunk)] continues a partial send
    s.setblocking(False)
    sent = 0
    t0 = last = time.monotonic()
    blocked = False
    for _ in range(1000000):
        now = time.monotonic()
        if sent >= cap_bytes or now - t0 > seconds:
            break
        try:
            pos = sent % len(chunk)
            sent += s.send(ring[pos:pos + len(chunk)])
            last = time.monotonic()
        except (BlockingIOError, InterruptedError):
            if now - last > blocked_seconds:
                blocked = True
                break
            time.sleep(0.02)
    return sent, blocked


def trickle(sock, payload, interval=1.0, bound=12.0):
    """Sends `payload` one byte per `interval` seconds while collecting whatever the
    server sends; stops when the server closes, the payload ends or `bound` seconds
    pass. Returns (bytes received, seconds until the close or None if still open)."""
    got = b""
    t0 = time.monotonic()
    for i in range(len(payload)):
        if time.monotonic() - t0 > bound:
            break
        try:
            sock.sendall(payload[i:i + 1])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return got, time.monotonic() - t0
        end = time.monotonic() + interval
        for _ in range(100):
            left = end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError):
                return got, time.monotonic() - t0
            if not chunk:
                return got, time.monotonic() - t0
            got += chunk
    return got, None


# --------------------------------------------------------------- 1. idle connections

class IdleConnectionsTest(RelayTestCase):
    """10,000 idle connections from 127.0.0.2-250 (about 40 per address, under a
    per-IP limit of 100) while a new client is still served."""

    N = 10000
    SOURCES = ["127.0.0.%d" % n for n in range(2, 251)]
    BATCH = 500
    # docs/RELIABILITY.md: about 1 KB of relay RSS per idle connection
    # (983-1,095 bytes measured; the design target is <= 16 KiB). The bound is
    # about 4x the measurement, so a regression to a few KiB per connection
    # fails. ASan's allocator adds redzones and shadow memory per allocation:
    # its own bound from its own measurement (1,676 bytes), about 5x.
    PER_CONN_BOUND = 4096
    PER_CONN_BOUND_ASAN = 8192

    def raise_fd_limit(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = self.N + 1024  # the test process and the relay each hold N sockets
        if hard != resource.RLIM_INFINITY and hard < need and os.geteuid() == 0:
            # Root may raise the hard limit (up to fs.nr_open): do so rather than skip.
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
                self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
                soft = hard = need
            except (ValueError, OSError) as e:
                report("could not raise RLIMIT_NOFILE to %d as root: %s" % (need, e))
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest("RLIMIT_NOFILE hard limit %d < %d: cannot hold %d connections "
                          "(raise it with ulimit -Hn as root)" % (hard, need, self.N))
        new_soft = hard if hard != resource.RLIM_INFINITY else max(soft, 4 * need)
        if soft == resource.RLIM_INFINITY or soft >= need:
            new_soft = soft
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        # Runs last (cleanups are LIFO): after the sockets are closed.
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        return need

    def open_idle(self, port, n, deadline):
        """Opens n non-blocking connections in batches; returns the connected sockets."""
        socks, failed = [], 0
        self.addCleanup(lambda: [s.close() for s in socks])
        sel = selectors.DefaultSelector()  # epoll: no FD_SETSIZE limit
        self.addCleanup(sel.close)
        for b in range(0, n, self.BATCH):
            pending = {}
            for i in range(b, min(n, b + self.BATCH)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((self.SOURCES[i % len(self.SOURCES)], 0))
                err = s.connect_ex((HOST, port))
                if err not in (0, errno.EINPROGRESS):
                    s.close()
                    failed += 1
                    continue
                pending[s.fileno()] = s
                sel.register(s, selectors.EVENT_WRITE)
            for _ in range(10000):
                if not pending or time.monotonic() > deadline:
                    break
                for key, _ in sel.select(timeout=0.5):
                    s = pending.pop(key.fd)
                    sel.unregister(s)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        socks.append(s)
                    else:
                        s.close()
                        failed += 1
            for s in pending.values():
                sel.unregister(s)
                s.close()
                failed += 1
            if time.monotonic() > deadline:
                break
        return socks, failed

    def read_greetings(self, socks, deadline):
        """First bytes of every socket: {'220': n, '421': n, 'closed': n, 'none': n}."""
        sel = selectors.DefaultSelector()
        self.addCleanup(sel.close)
        waiting = {}
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
            waiting[s.fileno()] = s
        counts = {"220": 0, "421": 0, "closed": 0, "other": 0}
        for _ in range(100000):
            if not waiting or time.monotonic() > deadline:
                break
            for key, _ in sel.select(timeout=0.5):
                s = waiting.pop(key.fd)
                sel.unregister(s)
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    counts["closed"] += 1
                elif data[:3] in (b"220", b"421"):
                    counts[data[:3].decode()] += 1
                else:
                    counts["other"] += 1
        counts["none"] = len(waiting)
        return counts

    def test_10000_idle_connections_new_client_still_served(self):
        need = self.raise_fd_limit()
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"],
                               limits={"max_connections": 20000, "max_connections_per_ip": 100})
        # The relay inherits the raised limit from this process (subprocess.Popen).
        self.assertGreaterEqual(max_open_files(relay.pid), need,
                                "the relay did not inherit the raised RLIMIT_NOFILE")
        port = relay.port("plain")
        # Warm up (spool, allocator), then the baseline.
        with SmtpClient(port) as c:
            c.ehlo()
            self.assertIsNotNone(c.send_message("warm@x.test", ["r@y.test"],
                                                make_message("warm@x.test", ["r@y.test"], "warm"))
                                 .queue_id())
        time.sleep(0.5)
        rss0 = rss_bytes(relay.pid)
        metric_rss0 = relay.scrape().get("mxrelay_process_resident_memory_bytes")

        t0 = time.monotonic()
        socks, failed = self.open_idle(port, self.N, deadline=t0 + 90)
        connect_s = time.monotonic() - t0
        self.assertEqual(failed, 0, "%d connection(s) failed" % failed)
        self.assertEqual(len(socks), self.N)
        counts = self.read_greetings(socks, deadline=time.monotonic() + 60)
        self.assertEqual(counts["220"], self.N, "greetings: %r" % counts)

        # A fresh client (127.0.0.1) is greeted and relays a message; the reply
        # timeouts are upper bounds (SmtpClient raises socket.timeout beyond them).
        t1 = time.monotonic()
        fresh = self.client(port, timeout=10)
        greet_s = time.monotonic() - t1
        self.assertReply(fresh.greeting, 220)
        fresh.ehlo()
        sender = "fresh-%s@x.test" % token()
        r = fresh.send_message(sender, ["r@y.test"], make_message(sender, ["r@y.test"], "fresh"))
        qid = r.queue_id()
        self.assertIsNotNone(qid, r)

        m = relay.scrape()
        self.assertGreaterEqual(m["mxrelay_connections_current"], self.N)
        rss1 = rss_bytes(relay.pid)
        per_conn = (rss1 - rss0) / float(self.N)
        bound = self.PER_CONN_BOUND_ASAN if sanitizer(relay.pid) == "asan" else self.PER_CONN_BOUND
        report("idle connections: %d open (connect %.1fs), fresh client greeted in %.2fs; relay "
               "RSS %.1f MiB -> %.1f MiB (metric %.1f -> %.1f MiB): %.0f bytes per idle "
               "connection (asserted <= %d; target <= 16384)"
               % (self.N, connect_s, greet_s, mib(rss0), mib(rss1), mib(metric_rss0 or 0),
                  mib(m.get("mxrelay_process_resident_memory_bytes", 0)), per_conn, bound))
        self.assertLessEqual(per_conn, bound, "RSS per idle connection")
        self.assertEqual(relay.queue_by_id()[qid]["sender"], sender)

        # Closing them gives every slot back (bounded wait).
        for s in socks:
            s.close()
        fresh.close()
        deadline = time.monotonic() + 60
        cur = None
        for _ in range(600):
            cur = relay.scrape()["mxrelay_connections_current"]
            if cur == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(cur, 0, "connections still counted after all clients closed")


# ------------------------------------------------------------------ 2. slow clients

class SlowClientTest(RelayTestCase):
    """One byte per second: every state must end in a timeout (3 s here)."""

    BOUND = 12.0  # seconds: 3 s timeout + 1 s timer tick + generous slack

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(listeners=[Listener("plain", "plain", auth_without_tls=True),
                                     Listener("smtps", "implicit_tls")],
                          trusted_networks=["127.0.0.0/8"],
                          timeouts={"greeting": 3, "command": 3, "data": 3, "tls_handshake": 3})
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def assert_timed_out(self, got, elapsed, state):
        self.assertIsNotNone(elapsed, "%s: a 1 byte/s client was still connected after %.0fs "
                             "(received %r)" % (state, self.BOUND, got[-200:]))
        self.assertLessEqual(elapsed, self.BOUND)
        if state != "tls_handshake":  # nothing may be sent in clear there
            last = got.decode("utf-8", "replace").rstrip("\r\n").split("\r\n")[-1]
            self.assertTrue(last.startswith("421 4.4.2 "), "%s: last line %r" % (state, last))
            self.assertIn("Timeout", last)

    def client_hello(self):
        """The first flight of a TLS client (a ClientHello), from a memory BIO."""
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = tls_client_context().wrap_bio(inc, out)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        self.assertGreater(len(hello), 50)
        return hello

    def test_one_byte_per_second_in_command_states_times_out(self):
        """Before EHLO, in a command line, in an AUTH exchange and in a TLS handshake,
        concurrently: partial input does not extend the timeout."""
        port = self.relay.port("plain")

        def greeting_state():
            c = self.client(port, timeout=15)
            return trickle(c.sock, b"EHLO trickle.test" + b"x" * 64, bound=self.BOUND)

        def command_line():
            c = self.client(port, timeout=15)
            c.ehlo()
            return trickle(c.sock, b"MAIL FROM:<" + b"a" * 200, bound=self.BOUND)

        def auth_exchange():
            c = self.client(port, timeout=15)
            c.ehlo()
            self.assertReply(c.cmd("AUTH PLAIN"), 334)
            return trickle(c.sock, b64("\0alice\0alice-secret" + "x" * 100).encode(),
                           bound=self.BOUND)

        def tls_handshake():
            s = raw_connect(self.relay.port("smtps"), timeout=15)
            self.addCleanup(s.close)
            return trickle(s, self.client_hello(), bound=self.BOUND)

        cases = {"greeting": greeting_state, "command": command_line, "auth": auth_exchange,
                 "tls_handshake": tls_handshake}
        results = {}

        def run(name, fn):
            try:
                results[name] = fn()
            except Exception as e:  # reported in the main thread
                results[name] = e

        threads = [threading.Thread(target=run, args=kv) for kv in cases.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.BOUND + 30)
        for name in cases:
            with self.subTest(state=name):
                res = results.get(name)
                if isinstance(res, Exception) or res is None:
                    self.fail("%s: %r" % (name, res))
                got, elapsed = res
                self.assert_timed_out(got, elapsed, name)
                if elapsed is not None:
                    report("1 byte/s in state %s: closed after %.1fs" % (name, elapsed))

    # Was a gap (fixed): every read in DATA/BDAT restarted the data timeout, so
    # a trickle held the connection until max_message_size (1 MiB at 1 byte/s:
    # 12 days). Now the timeout restarts only per 1 KiB of message received.
    def test_one_byte_per_second_in_data_times_out(self):
        c = self.client(self.relay.port("plain"), timeout=15)
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<slow-%s@x.test>" % token()), 250)
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        got, elapsed = trickle(c.sock, b"Subject: slow\r\n\r\n" + b"x" * 64, bound=self.BOUND)
        report("1 byte/s in DATA: %s" % ("closed after %.1fs" % elapsed if elapsed is not None
                                         else "still open after %.0fs" % self.BOUND))
        self.assert_timed_out(got, elapsed, "data")


# --------------------------------------------------------------- 3. pipelining flood

class PipeliningFloodTest(RelayTestCase):
    """Clients that pipeline commands and never read the replies."""

    RSS_BOUND = 64 << 20       # 12 EHLO flooders: +34.5 MiB measured
    NOOP_RSS_BOUND = 24 << 20  # one NOOP flooder: +6-7 MiB measured
    NOOP_SENT_BOUND = 24 << 20  # the relay stops reading after 6-10 MiB (mostly socket buffers)

    def new_relay(self, **kw):
        # Under ASan freed memory sits in a 256 MiB quarantine, so RSS would
        # say nothing about what the relay holds: these relays run without it
        # (the variable is ignored by an uninstrumented binary).
        saved = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + "quarantine_size_mb=0"
        try:
            return super().new_relay(**kw)
        finally:
            if saved is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = saved

    def assertRssBound(self, relay, grown, bound):
        # ASan's redzones and shadow: half as much again (no quarantine, above).
        if sanitizer(relay.pid) == "asan":
            bound = bound * 3 // 2
        self.assertLessEqual(grown, bound, "relay RSS grew %.1f MiB (bound %.1f MiB)"
                             % (mib(grown), mib(bound)))

    def flooder(self, port, source):
        """A raw client past EHLO, with a 4 KiB receive buffer (the relay's replies pile up)."""
        s = raw_connect(port, source=source, rcvbuf=4096)
        self.addCleanup(s.close)
        s.sendall(b"EHLO flood.test\r\n")
        head = recv_until(s, b"250 HELP\r\n")
        self.assertIn(b"250 HELP\r\n", head)
        return s

    def test_noop_flood_without_reading_is_bounded_and_served_once_it_reads(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        port = relay.port("plain")
        rss0 = rss_bytes(relay.pid)
        s = self.flooder(port, "127.0.0.3")
        sent, blocked = flood_until_blocked(s, b"NOOP\r\n", cap_bytes=self.NOOP_SENT_BOUND)
        rss1 = rss_bytes(relay.pid)
        report("NOOP flood, never reading: %.1f MiB (%d commands) sent before the relay stopped "
               "reading; relay RSS %+.1f MiB" % (mib(sent), sent // 6, mib(rss1 - rss0)))
        self.assertTrue(blocked, "the relay read %.1f MiB of pipelined commands without "
                        "pausing" % mib(sent))
        self.assertGreaterEqual(sent, 50000 * 6)
        self.assertRssBound(relay, rss1 - rss0, self.NOOP_RSS_BOUND)

        # Another client is served meanwhile.
        other = self.client(port, timeout=10)
        self.assertReply(other.greeting, 220)
        other.ehlo()
        self.assertIsNotNone(other.send_message("other@x.test", ["r@y.test"],
                                                make_message("other@x.test", ["r@y.test"], "o"))
                             .queue_id())

        # The flooder starts reading: every command is answered, in order, then QUIT.
        received = []

        def reader():
            s.setblocking(True)
            received.append(recv_until(s, b"221 2.0.0", seconds=60, limit=1 << 30))

        t = threading.Thread(target=reader)
        t.start()
        s.setblocking(True)
        s.settimeout(60)
        tail = b"NOOP\r\n"[sent % 6:] if sent % 6 else b""  # completes a cut command
        s.sendall(tail + b"QUIT\r\n")
        t.join(90)
        self.assertFalse(t.is_alive())
        data = received[0] if received else b""
        n = (sent + len(tail)) // 6
        self.assertEqual(data.count(b"250 2.0.0 OK\r\n"), n)
        self.assertTrue(data.endswith(b" closing connection\r\n") and b"221 2.0.0" in data[-200:],
                        data[-200:])

    # Was a gap (fixed): the command timeout's 421 could never be sent and the
    # connection waited for that send forever. Now a send stalled for the
    # command timeout ends the connection (reason=send_timeout).
    def test_flooder_that_never_reads_is_disconnected_by_the_timeout(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"], timeouts={"command": 3})
        s = self.flooder(relay.port("plain"), "127.0.0.4")
        sent, blocked = flood_until_blocked(s, b"NOOP\r\n")
        self.assertTrue(blocked)
        deadline = time.monotonic() + 12  # 3 s timeout + tick + slack
        cur = None
        for _ in range(200):
            cur = relay.scrape()["mxrelay_connections_current"]
            if cur == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report("never-reading flooder: connections_current=%d 12 s after it stopped being read "
               "(command timeout 3 s)" % cur)
        self.assertEqual(cur, 0, "the never-reading flooder is still connected")
        # The 421 of the command timeout can never be sent: the stalled send
        # itself ends the connection (send_timeout = the command timeout).
        self.assertRegex(relay.log_text(), r"event=session_end ip=127\.0\.0\.4 .*reason=(send_)?timeout")

    # Was a gap (fixed): 8 never-reading EHLO flooders grew the relay by 89-207
    # MiB, 12 by up to 900 MiB. Causes: a stale "cancel sent" flag after a
    # multishot recv ended by ENOBUFS left reading on for good, and input kept
    # being processed while the output was full (EHLO answers ~25x its size).
    # The relay needs at most its recv buffer rings (2 x 16 MiB) plus ~1 MiB
    # per connection: 12 flooders stay under +64 MiB.
    def test_twelve_ehlo_flooders_stay_within_the_output_bound(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"])
        port = relay.port("plain")
        rss0 = rss_bytes(relay.pid)
        socks = [self.flooder(port, "127.0.0.%d" % (10 + i)) for i in range(12)]
        results = {}

        def run(i, s):
            results[i] = flood_until_blocked(s, b"EHLO flood.test\r\n")

        threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(socks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(1)
        rss1 = rss_bytes(relay.pid)
        report("12 EHLO flooders, never reading: %.1f MiB sent, relay RSS %+.1f MiB (%.1f MiB "
               "per connection)" % (mib(sum(v[0] for v in results.values())), mib(rss1 - rss0),
                                    mib(rss1 - rss0) / 12))
        # Other clients are still served.
        c = self.client(port, timeout=10)
        self.assertReply(c.greeting, 220)
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertTrue(all(blocked for _, blocked in results.values()), results)
        self.assertRssBound(relay, rss1 - rss0, self.RSS_BOUND)


# ------------------------------------------------------------------ 4. hostile input

class HostileInputTest(RelayTestCase):
    """What test_protocol does not cover: NUL bytes, invalid UTF-8 addresses, long
    header lines in DATA, a declared SIZE the body exceeds, an oversize AUTH line."""

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(listeners=[Listener("plain", "plain", auth_without_tls=True)],
                          trusted_networks=["127.0.0.0/8"],
                          limits={"max_message_size": LIMIT, "max_line_length": 1000})
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def plain(self):
        c = self.client(self.relay.port("plain"))
        self.assertReply(c.greeting, 220)
        c.ehlo()
        return c

    def senders(self):
        return [m["sender"] for m in self.relay.queue_list()]

    def test_nul_in_commands_500_5_5_2(self):
        c = self.plain()
        t = token()
        for line in (b"NOOP\0\r\n", b"\0\r\n", b"EHLO a\0b.test\r\n",
                     b"MAIL FROM:<nul\0" + t.encode() + b"@x.test>\r\n"):
            with self.subTest(line=line):
                c.send(line)
                self.assertReply(c.reply(), 500, "5.5.2")
        # No transaction was started by the MAIL with a NUL; the session goes on.
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<ok-%s@x.test>" % t), 250)
        c.send(b"RCPT TO:<r\0@y.test>\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.cmd("RSET"), 250)
        self.assertFalse(any(t in s for s in self.senders()))

    def test_nul_inside_data(self):
        """NUL octets in a message body (RFC 5322 forbids them): accepted (250)
        and stored byte for byte, neither refused nor stripped (docs/RELIABILITY.md);
        the session goes on."""
        c = self.plain()
        t = token()
        sender = "nulbody-%s@x.test" % t
        body = make_message(sender, ["r@y.test"], "nul " + t, t).encode()
        body += b"before\0after-" + t.encode() + b"\r\n"
        r = c.send_message(sender, ["r@y.test"], body)
        self.assertReply(r, 250, "2.0.0")
        self.assertIsNotNone(r.queue_id(), r)
        self.assertIn(sender, self.senders())
        self.assertTrue(self.relay.spool_contains(b"before\0after-" + t.encode()),
                        "NUL-bearing line not stored byte for byte")
        self.assertReply(c.cmd("NOOP"), 250)

    def test_header_line_longer_than_the_line_limit_inside_data(self):
        """A single 10,000-octet header line (max_line_length is 1000, RFC 5322 says 998):
        DATA content has no line-length limit, only max_message_size, so the message is
        accepted (250) and the line stored intact (docs/RELIABILITY.md)."""
        c = self.plain()
        t = token()
        sender = "longhdr-%s@x.test" % t
        long_hdr = b"X-Long-" + t.encode() + b": " + b"y" * 10000
        msg = long_hdr + b"\r\n" + make_message(sender, ["r@y.test"], "long " + t, t).encode()
        r = c.send_message(sender, ["r@y.test"], msg)
        self.assertReply(r, 250, "2.0.0")
        self.assertIsNotNone(r.queue_id(), r)
        self.assertIn(sender, self.senders())
        self.assertTrue(self.relay.spool_contains(long_hdr + b"\r\n"),
                        "long header line not stored intact")
        self.assertReply(c.cmd("NOOP"), 250)

    def test_body_larger_than_declared_size_552(self):
        c = self.plain()
        t = token()
        sender = "liar-%s@x.test" % t
        self.assertReply(c.cmd("MAIL FROM:<%s> SIZE=1000" % sender), 250)
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        line = b"Z" * 998 + b"\r\n"
        c.send(b"Subject: liar\r\n\r\n" + line * (LIMIT // len(line) + 10) + b".\r\n")
        self.assertReply(c.reply(timeout=30), 552, "5.3.4")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNotIn(sender, self.senders())

    def test_auth_line_longer_than_12288_500_5_5_2(self):
        c = self.plain()
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        c.send(b"A" * 20000 + b"\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250)

    def test_invalid_utf8_in_addresses_refused(self):
        """Invalid UTF-8 in a MAIL address is 501 5.1.7, in a RCPT address 501 5.1.3,
        with or without SMTPUTF8, in the local part or the domain (docs/RELIABILITY.md;
        valid UTF-8 without SMTPUTF8 is 553 5.6.7: test_protocol); nothing queued."""
        bad = {"0xff": b"\xff", "overlong": b"\xc0\xaf", "surrogate": b"\xed\xa0\x80",
               "truncated": b"\xe2\x82", "latin1": b"j\xf6rg"}
        t = token()
        for name, seq in bad.items():
            with self.subTest(sequence=name):
                c = self.plain()
                tried = [b"MAIL FROM:<bad%s-%s@x.test>" % (seq, t.encode()),
                         b"MAIL FROM:<bad%s-%s@x.test> SMTPUTF8" % (seq, t.encode()),
                         b"MAIL FROM:<bad-%s@x%s.test> SMTPUTF8" % (t.encode(), seq)]
                for line in tried:
                    c.send(line + b"\r\n")
                    self.assertReply(c.reply(), 501, "5.1.7", line)
                for smtputf8 in (b"", b" SMTPUTF8"):
                    self.assertReply(c.cmd(("MAIL FROM:<ok-%s@x.test>" % t) + smtputf8.decode()),
                                     250)
                    for rcpt in (b"r%s@y.test" % seq, b"r@y%s.test" % seq):
                        c.send(b"RCPT TO:<%s>\r\n" % rcpt)
                        self.assertReply(c.reply(), 501, "5.1.3", (smtputf8, rcpt))
                    self.assertReply(c.cmd("RSET"), 250)
        self.assertFalse(any(t in s for s in self.senders()))


# ---------------------------------------------------------------- 5. open-relay probes

TRICKY_RECIPIENTS = [
    "user%other.test@remote.test",   # percent hack
    "@a.test:user@b.test",           # source route
    '"user@other.test"@remote.test',  # quoted local part with an @
    "user@remote.test.",             # trailing dot
    "user@[127.0.0.1]",              # address literal (loopback)
    "other.test!user@remote.test",   # bang path
    "user@remote.test",              # plain remote recipient
    "postmaster",                    # no domain at all
]


class OpenRelayProbeTest(RelayTestCase):

    @classmethod
    def setUpClass(cls):
        # Trusts only 127.0.0.9: clients from 127.0.0.1 are untrusted.
        cls.relay = Relay(listeners=[Listener("plain", "plain"), Listener("sub", "starttls")],
                          users={"alice": "alice-secret"}, trusted_networks=["127.0.0.9/32"])
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def assert_nothing_queued_by(self, fn):
        """Runs fn(); no message may have been queued meanwhile (the relay is shared
        with the privileged probes, which do queue)."""
        before = set(self.relay.queue_by_id())
        fn()
        new = [m for i, m in self.relay.queue_by_id().items() if i not in before]
        self.assertEqual(new, [], "queued by an untrusted client")

    def probe_untrusted(self, c):
        """Every address trick, one at a time and one whole transaction pipelined."""
        out = []
        for i, rcpt in enumerate(TRICKY_RECIPIENTS):
            sender = "" if i % 2 else "probe@remote.test"  # null sender too (bounce-style)
            r_mail = c.cmd("MAIL FROM:<%s>" % sender)
            self.assertReply(r_mail, 530, "5.7.0")
            r_rcpt = c.cmd("RCPT TO:<%s>" % rcpt)  # each refused RCPT is a protocol error:
            self.assertReply(r_rcpt, 503, "5.5.1", (rcpt, r_rcpt))  # 8 + 6 below < 20
            out.append((rcpt, r_mail.first, r_rcpt.first))
            self.assertReply(c.cmd("RSET"), 250)
        c.send("MAIL FROM:<probe@remote.test>\r\nRCPT TO:<user%other.test@remote.test>\r\n"
               "DATA\r\nSubject: relay probe\r\n\r\nprobe\r\n.\r\nNOOP\r\n")
        codes = []
        for _ in range(10):
            r = c.reply()
            codes.append(r.code)
            if r.code == 250 or r.code == 421:
                break
        self.assertEqual(codes[:3], [530, 503, 503], codes)
        self.assertNotIn(354, codes)
        return out

    def test_untrusted_plain_client_relays_nothing(self):
        c = self.client(self.relay.port("plain"))
        c.ehlo()
        self.assert_nothing_queued_by(lambda: self.probe_untrusted(c))

    def test_untrusted_client_after_starttls_without_auth_relays_nothing(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assert_nothing_queued_by(lambda: self.probe_untrusted(c))

    def test_untrusted_client_after_failed_auth_relays_nothing(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.auth_plain("alice", "wrong"), 535, "5.7.8")
        self.assert_nothing_queued_by(lambda: self.probe_untrusted(c))

    # What an authenticated or trusted client gets for each trick
    # (docs/RELIABILITY.md): the opaque forms are accepted and queued verbatim;
    # a source route and a trailing dot are syntax errors; <postmaster> without
    # a domain is refused too, although RFC 5321 4.5.1 asks servers to accept it.
    PRIVILEGED_OUTCOMES = {
        "user%other.test@remote.test": (250, "2.1.5"),
        "@a.test:user@b.test": (501, "5.1.3"),
        '"user@other.test"@remote.test': (250, "2.1.5"),
        "user@remote.test.": (501, "5.1.3"),
        "user@[127.0.0.1]": (250, "2.1.5"),
        "other.test!user@remote.test": (250, "2.1.5"),
        "user@remote.test": (250, "2.1.5"),
        "postmaster": (501, "5.1.3"),
    }

    def probe_privileged(self, c, label):
        """Each trick gets exactly its documented reply; anything accepted must be
        queued as the very address given (an opaque string)."""
        self.assertEqual(set(self.PRIVILEGED_OUTCOMES), set(TRICKY_RECIPIENTS))
        seen = {}
        for rcpt in TRICKY_RECIPIENTS:
            t = token()
            sender = "%s-%s@x.test" % (label, t)
            self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
            r = c.cmd("RCPT TO:<%s>" % rcpt)
            seen[rcpt] = r.first
            code, enhanced = self.PRIVILEGED_OUTCOMES[rcpt]
            self.assertReply(r, code, enhanced, (label, rcpt, r))
            if r.code == 250:
                self.assertReply(c.cmd("DATA"), 354)
                c.send(make_message(sender, [rcpt], "probe " + t, t).encode() + b".\r\n")
                qid = c.reply().queue_id()
                self.assertIsNotNone(qid)
                q = self.relay.queue_by_id()[qid]
                self.assertEqual([x["address"] for x in q["recipients"]], [rcpt])
            else:
                self.assertReply(c.cmd("RSET"), 250)
        report("%s client, address tricks: %s" % (label, "; ".join(
            "<%s> -> %s" % (k, v[:9]) for k, v in seen.items())))
        return seen

    def test_authenticated_client_address_tricks_recorded(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.starttls()
        c.ehlo()
        self.assertReply(c.auth_plain("alice", "alice-secret"), 235)
        self.probe_privileged(c, "auth")

    def test_trusted_network_client_address_tricks_recorded(self):
        c = self.client(self.relay.port("plain"), source="127.0.0.9")
        c.ehlo()
        self.probe_privileged(c, "trusted")


# -------------------------------------------------------------------- 6. TLS versions

class TlsVersionTest(RelayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(listeners=[Listener("sub", "starttls"),
                                     Listener("smtps", "implicit_tls")])
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def context(self, version):
        """A client context offering exactly `version` (None if this Python/OpenSSL cannot)."""
        with warnings.catch_warnings():  # ssl.TLSVersion.TLSv1/TLSv1_1 are deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                ctx = tls_client_context()
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                ctx.minimum_version = version
                ctx.maximum_version = version
                return ctx
            except (ValueError, ssl.SSLError):
                return None

    def handshake(self, mode, version):
        """(True, negotiated version) or (False, error text) for one handshake."""
        ctx = self.context(version)
        if ctx is None:
            return None
        if mode == "implicit":
            s = raw_connect(self.relay.port("smtps"))
        else:
            c = SmtpClient(self.relay.port("sub"))
            c.ehlo()
            self.assertReply(c.cmd("STARTTLS"), 220)
            s = c.sock
        self.addCleanup(s.close)
        try:
            t = ctx.wrap_socket(s)
        except (ssl.SSLError, ConnectionResetError, OSError) as e:
            return False, str(e)
        self.addCleanup(t.close)
        if mode == "implicit":
            greeting = recv_until(t, b"\r\n", seconds=10)
            self.assertTrue(greeting.startswith(b"220 "), greeting)
        t.sendall(b"EHLO tls.test\r\n")
        self.assertIn(b"250 HELP\r\n", recv_until(t, b"250 HELP\r\n", seconds=10))
        return True, t.version()

    def s_client_refused(self, mode, flag):
        """`openssl s_client -tls1_1 -cipher DEFAULT@SECLEVEL=0` must fail on the
        relay's protocol_version alert."""
        args = ["openssl", "s_client", "-connect", "%s:%d" % (HOST, self.relay.port(
            "smtps" if mode == "implicit" else "sub")), flag, "-cipher", "DEFAULT@SECLEVEL=0"]
        if mode == "starttls":
            args += ["-starttls", "smtp"]
        p = subprocess.run(args, input="", capture_output=True, text=True, timeout=30)
        if "no protocols available" in p.stderr:
            self.skipTest("neither Python nor openssl s_client can offer %s here" % flag)
        self.assertNotEqual(p.returncode, 0, p.stdout[-500:])
        # The relay's protocol_version alert (70), not a local refusal.
        self.assertIn("alert protocol version", p.stderr, p.stderr[-500:])
        return p.stderr

    def test_tls_1_0_and_1_1_refused(self):
        failed_before = self.relay.scrape().get(
            'mxrelay_tls_handshakes_total{result="failed",version="none"}', 0)
        n = 0
        for name, version, flag in (("TLSv1", ssl.TLSVersion.TLSv1, "-tls1"),
                                    ("TLSv1.1", ssl.TLSVersion.TLSv1_1, "-tls1_1")):
            for mode in ("starttls", "implicit"):
                with self.subTest(version=name, mode=mode):
                    # Two independent clients, each must get the relay's
                    # protocol_version alert (not a local refusal).
                    res = self.handshake(mode, version)
                    if res is None:
                        self.skipTest("this Python cannot offer %s" % name)
                    ok, detail = res
                    self.assertFalse(ok, "%s negotiated over %s" % (detail, mode))
                    self.assertIn("PROTOCOL_VERSION", detail.upper(), detail)
                    n += 1
                    err = self.s_client_refused(mode, flag)
                    n += 1
                    report("%s over %s refused: Python: %s; s_client: %s"
                           % (name, mode, detail, err.strip().splitlines()[-1][-80:]))
        self.relay.wait_log(r"event=tls_handshake_failed ip=127\.0\.0\.1 error=\"[^\"]*"
                            r"unsupported protocol", count=n)
        failed_after = self.relay.scrape().get(
            'mxrelay_tls_handshakes_total{result="failed",version="none"}', 0)
        self.assertEqual(failed_after - failed_before, n)

    def test_tls_1_2_and_1_3_work(self):
        for name, version in (("TLSv1.2", ssl.TLSVersion.TLSv1_2),
                              ("TLSv1.3", ssl.TLSVersion.TLSv1_3)):
            for mode in ("starttls", "implicit"):
                with self.subTest(version=name, mode=mode):
                    res = self.handshake(mode, version)
                    self.assertIsNotNone(res, "this client cannot offer %s" % name)
                    self.assertEqual(res, (True, name))


# ------------------------------------------------------------ 7. connection limits

class ConnectionLimitTest(RelayTestCase):

    def test_per_ip_limit_refuses_that_ip_only(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"],
                               limits={"max_connections_per_ip": 3})
        port = relay.port("plain")
        held = [self.client(port) for _ in range(3)]
        for c in held:
            self.assertReply(c.greeting, 220)
        c4 = self.client(port, read_greeting=False)
        self.assertReply(c4.reply(), 421, "4.7.0")
        self.assertEqual(c4.read_until_closed(5), b"")
        # Another address is accepted and served while 127.0.0.1 is at its limit.
        other = self.client(port, source="127.0.0.2")
        self.assertReply(other.greeting, 220)
        other.ehlo()
        sender = "other-ip-%s@x.test" % token()
        self.assertIsNotNone(other.send_message(sender, ["r@y.test"],
                                                make_message(sender, ["r@y.test"], "o"))
                             .queue_id())
        m = relay.scrape()
        self.assertGreaterEqual(m['mxrelay_connections_refused_total{reason="per_ip_limit"}'], 1)
        self.assertIn("event=connection_refused reason=per_ip_limit ip=127.0.0.1", relay.log_text())

    def test_global_limit_421_4_3_2(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")],
                               trusted_networks=["127.0.0.0/8"],
                               limits={"max_connections": 4, "max_connections_per_ip": 100})
        port = relay.port("plain")
        held = [self.client(port, source="127.0.0.%d" % (20 + i)) for i in range(4)]
        for c in held:
            self.assertReply(c.greeting, 220)
        for src in ("127.0.0.30", "127.0.0.1"):
            with self.subTest(source=src):
                c = self.client(port, source=src, read_greeting=False)
                self.assertReply(c.reply(), 421, "4.3.2")
                self.assertEqual(c.read_until_closed(5), b"")
        # A slot given back is usable again (bounded retries: the close is asynchronous).
        self.assertReply(held[0].cmd("QUIT"), 221)
        held[0].read_until_closed(5)
        got = None
        deadline = time.monotonic() + 5
        for _ in range(50):
            c = self.client(port, source="127.0.0.30")
            if c.greeting.code == 220:
                got = c
                break
            c.close()
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertIsNotNone(got, "no connection accepted after a slot was freed")
        self.assertGreaterEqual(
            relay.scrape()['mxrelay_connections_refused_total{reason="global_limit"}'], 2)


# ----------------------------------------------------------------- 8. AUTH brute force

class AuthBruteForceTest(RelayTestCase):
    """Guessing passwords over many sessions from one address: auth.max_failures_per_ip
    failures within auth.ip_block_seconds block AUTH from that address (even with the
    right password, in new sessions) for ip_block_seconds; other addresses are not
    affected."""

    PER_IP = 5
    BLOCK = 8  # seconds: long enough to check the block on a slow machine

    def session(self, port, source=None):
        c = self.client(port, source=source)
        c.ehlo()
        return c

    def test_failures_across_sessions_block_the_address(self):
        relay = self.new_relay(listeners=[Listener("sub", "starttls", auth_without_tls=True)],
                               users={"alice": "alice-secret"},
                               auth={"max_failures": 3, "failure_delay_ms": 200,
                                     "max_failures_per_ip": self.PER_IP,
                                     "ip_block_seconds": self.BLOCK})
        port = relay.port("sub")
        t0 = time.monotonic()
        # Session 1: the per-session limit (3) closes it.
        c1 = self.session(port)
        self.assertReply(c1.auth_plain("alice", "guess1"), 535, "5.7.8")
        self.assertReply(c1.auth_plain("alice", "guess2"), 535, "5.7.8")
        self.assertReply(c1.auth_plain("alice", "guess3"), 421, "4.7.0")
        c1.read_until_closed(5)
        # Session 2: failures 4 and 5 reach the per-IP limit...
        c2 = self.session(port)
        self.assertReply(c2.auth_plain("alice", "guess4"), 535, "5.7.8")
        self.assertReply(c2.auth_plain("alice", "guess5"), 535, "5.7.8")
        # ... so even the right password is refused, unchecked, and the session closed.
        r = c2.auth_plain("alice", "alice-secret")
        self.assertReply(r, 421, "4.7.0")
        self.assertIn("from your address", r.lines[0])
        self.assertEqual(c2.read_until_closed(5), b"")
        # A new session from the same address: still blocked.
        c3 = self.session(port)
        self.assertReply(c3.auth_plain("alice", "alice-secret"), 421, "4.7.0")
        blocked_checked = time.monotonic()
        self.assertLess(blocked_checked - t0, self.BLOCK,
                        "the block was checked too late to mean anything")
        # Another address logs in meanwhile.
        other = self.session(port, source="127.0.0.2")
        self.assertReply(other.auth_plain("alice", "alice-secret"), 235, "2.7.0")
        relay.wait_log(r"event=auth_ip_blocked ip=127\.0\.0\.1 failures=%d" % self.PER_IP)
        m = relay.scrape()
        self.assertGreaterEqual(m['mxrelay_auth_attempts_total{result="blocked"}'], 2)
        # After ip_block_seconds the address may log in again (bounded wait).
        ok = None
        deadline = time.monotonic() + self.BLOCK + 15
        for _ in range(100):
            if time.monotonic() > deadline:
                break
            c = self.session(port)
            r = c.auth_plain("alice", "alice-secret")
            c.close()
            if r.code == 235:
                ok = time.monotonic() - blocked_checked
                break
            self.assertReply(r, 421, "4.7.0")
            time.sleep(0.5)
        self.assertIsNotNone(ok, "still blocked %ds after the block began" % (self.BLOCK + 15))
        report("AUTH brute force: blocked after %d failures from one IP across sessions; "
               "AUTH accepted again %.1fs after the block was last confirmed "
               "(ip_block_seconds=%d)" % (self.PER_IP, ok, self.BLOCK))


class ConcurrentAuthGuessingTest(RelayTestCase):
    """Issue 15, item 1: 200 connections from one address guess at the same
    moment. The per-IP limit used to be checked before a password was checked
    and a failure recorded only after the failure delay, so all 200 guesses were
    checked (~200 per window instead of auth.max_failures_per_ip). Checks in
    flight now count against the limit: the rest get 454 4.7.0 (then 421 once
    the address is blocked), unchecked. (IPv6 /64 aggregation: only loopback
    IPv4 here, so it is tested with synthetic addresses in
    relay/auth_limiter_test.cc.)"""

    GUESSERS = 200
    PER_IP = 10

    def test_200_simultaneous_guessers_get_at_most_max_failures_per_ip_checks(self):
        relay = self.new_relay(listeners=[Listener("sub", "plain", auth_without_tls=True)],
                               users={"alice": "alice-secret"},
                               auth={"max_failures": 3, "failure_delay_ms": 1000,
                                     "max_failures_per_ip": self.PER_IP, "ip_block_seconds": 120},
                               limits={"max_connections_per_ip": self.GUESSERS + 10})
        port = relay.port("sub")
        clients = []
        for _ in range(self.GUESSERS):
            c = self.client(port, timeout=90)
            c.ehlo()
            clients.append(c)
        go = threading.Barrier(self.GUESSERS)
        codes = [None] * self.GUESSERS
        errors = []

        def guess(i):
            try:
                go.wait(30)
                codes[i] = clients[i].auth_plain("alice", "guess-%d" % i)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(self.GUESSERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "a guesser hung")
        self.assertEqual(errors, [])
        by_code = {}
        for r in codes:
            by_code.setdefault((r.code, r.lines[0].split(" ")[0]), 0)
            by_code[(r.code, r.lines[0].split(" ")[0])] += 1
        m = relay.scrape()
        checks = m.get("mxrelay_auth_password_checks_total")
        failures = m['mxrelay_auth_attempts_total{result="failure"}']
        report("AUTH: %d simultaneous guessers from one address: replies %s; %s password checks, "
               "%d failures counted (auth.max_failures_per_ip = %d)"
               % (self.GUESSERS, sorted(by_code.items()), checks, failures, self.PER_IP))
        self.assertLessEqual(failures, self.PER_IP, by_code)
        self.assertIsNotNone(checks, "no mxrelay_auth_password_checks_total")
        self.assertLessEqual(checks, self.PER_IP, by_code)
        self.assertLessEqual(by_code.get((535, "5.7.8"), 0), self.PER_IP, by_code)
        # Every other guess was answered unchecked, with a temporary code.
        for (code, enh), n in by_code.items():
            self.assertIn((code, enh), [(535, "5.7.8"), (454, "4.7.0"), (421, "4.7.0")], by_code)
        # The address is blocked now, even with the right password...
        c = self.client(port)
        c.ehlo()
        self.assertReply(c.auth_plain("alice", "alice-secret"), 421, "4.7.0")
        # ... and another address logs in at once.
        other = self.client(port, source="127.0.0.2")
        other.ehlo()
        self.assertReply(other.auth_plain("alice", "alice-secret"), 235, "2.7.0")
        self.assertLessEqual(relay.scrape()["mxrelay_auth_password_checks_total"], self.PER_IP + 1)
        # The right password is cached now: the blocked address still gets no
        # answer from the cache (it would be an oracle past the limit).
        c = self.client(port)
        c.ehlo()
        self.assertReply(c.auth_plain("alice", "alice-secret"), 421, "4.7.0")

    def test_logins_answered_from_the_cache_are_not_limited(self):
        """A bulk sender opening many connections at once with the right
        password: after its first login, logins come from the cache and take no
        slot, so 100 simultaneous logins from one address all succeed."""
        relay = self.new_relay(listeners=[Listener("sub", "plain", auth_without_tls=True)],
                               users={"alice": "alice-secret"},
                               auth={"max_failures_per_ip": 2, "ip_block_seconds": 120},
                               limits={"max_connections_per_ip": 150})
        port = relay.port("sub")
        first = self.client(port)
        first.ehlo()
        self.assertReply(first.auth_plain("alice", "alice-secret"), 235, "2.7.0")
        self.assertEqual(self.simultaneous_logins(port, 100), [235] * 100)
        self.assertEqual(relay.scrape()["mxrelay_auth_password_checks_total"], 1)

    def simultaneous_logins(self, port, n):
        """n connections log in as alice at the same moment; their codes."""
        clients = []
        for _ in range(n):
            c = self.client(port, timeout=60)
            c.ehlo()
            clients.append(c)
        go = threading.Barrier(n)
        codes = [None] * n

        def login(i):
            go.wait(30)
            codes[i] = clients[i].auth_plain("alice", "alice-secret").code

        threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return codes

    def test_simultaneous_first_logins_wait_for_the_check_under_way(self):
        """The same at a cold start (nothing cached: an application restarted
        with a pool of 60 connections): the limiter admits 2 checks, the other
        identical logins wait for the check under way instead of getting
        454 4.7.0 (seen with bench/transactional.sh at 20-200 clients before)."""
        relay = self.new_relay(listeners=[Listener("sub", "plain", auth_without_tls=True)],
                               users={"alice": "alice-secret"},
                               auth={"max_failures_per_ip": 2, "ip_block_seconds": 120},
                               limits={"max_connections_per_ip": 150})
        port = relay.port("sub")
        self.assertEqual(self.simultaneous_logins(port, 60), [235] * 60)
        m = relay.scrape()
        report("AUTH: 60 simultaneous first logins, max_failures_per_ip 2: %s password checks, "
               "%s joined the check under way"
               % (m["mxrelay_auth_password_checks_total"], m.get("mxrelay_auth_joined_total")))
        self.assertLess(m["mxrelay_auth_password_checks_total"], 60)  # shared or cached, not one each
        self.assertEqual(m.get('mxrelay_auth_attempts_total{result="busy"}', 0), 0)
        # A wrong password does not ride on them: it is limited as before.
        bad = self.client(port)
        bad.ehlo()
        self.assertIn(bad.auth_plain("alice", "guess").code, (535, 454))


if __name__ == "__main__":
    unittest.main()
