"""SMTP protocol edge cases over raw sockets: long lines, SIZE, smuggling,
PIPELINING, CHUNKING (BDAT) and STARTTLS command injection."""

import unittest
import uuid

from relayctl import (ConnectionClosed, Listener, Relay, RelayTestCase, make_message,
                      tls_client_context)

LIMIT = 1048576  # limits.max_message_size


def token():
    return uuid.uuid4().hex[:12]


class ProtocolTest(RelayTestCase):
    """Loopback is trusted: the plain listener relays without AUTH."""

    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(listeners=[Listener("plain", "plain"), Listener("sub", "starttls")],
                          trusted_networks=["127.0.0.0/8"],
                          limits={"max_message_size": LIMIT, "max_line_length": 1000})
        cls.addClassCleanup(cls.relay.cleanup)
        cls.relay.start()

    def plain(self):
        c = self.client(self.relay.port("plain"))
        self.assertEqual(c.greeting.code, 220)
        return c

    def queue(self):
        return self.relay.queue_list()

    def senders(self):
        return [m["sender"] for m in self.queue()]

    def submit_ok(self, c, sender=None):
        t = token()
        sender = sender or "ok-%s@x.test" % t
        r = c.send_message(sender, ["r@y.test"], make_message(sender, ["r@y.test"], "ok " + t, t))
        self.assertIsNotNone(r.queue_id(), r)
        return r.queue_id()

    def assert_quiet(self, c, quiet=0.3):
        extra = c.drain(quiet)
        self.assertEqual(extra, b"", "unexpected extra bytes from the server: %r" % extra[:300])

    def assert_only_noop_reply(self, c):
        """After the handshake the first reply is NOOP's (an injected command
        would be answered first) and nothing follows it. The reply is awaited
        (c.timeout), not expected within a fixed quiet window: on a loaded
        machine the handshake and the reply may take longer than one."""
        r = c.reply()
        self.assertEqual(r.first, "250 2.0.0 OK", "expected NOOP's reply first after the handshake")
        self.assert_quiet(c, 0.5)

    # ------------------------------------------------------------ long lines

    def test_100kb_command_line(self):
        c = self.plain()
        c.ehlo()
        t = token()
        c.send(b"MAIL FROM:<" + b"a" * (100 * 1024) + b"-" + t.encode() + b"@x.test>\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        # The same connection keeps working, and the long line started no transaction.
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        qid = self.submit_ok(c)
        self.assert_quiet(c)
        self.assertReply(c.cmd("QUIT"), 221)
        # A new client is served.
        c2 = self.plain()
        c2.ehlo()
        qid2 = self.submit_ok(c2)
        ids = {m["id"] for m in self.queue()}
        self.assertLessEqual({qid, qid2}, ids)
        self.assertFalse(any(t in s for s in self.senders()))

    def test_line_length_limit_boundary(self):
        c = self.plain()
        c.ehlo()
        # max_line_length = 1000 including CRLF.
        line = b"NOOP " + b"x" * 993  # 998 + CRLF = 1000
        self.assertEqual(len(line) + 2, 1000)
        c.send(line + b"\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        c.send(line + b"y\r\n")  # 1001
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assert_quiet(c)

    def test_too_many_protocol_errors_421(self):
        c = self.plain()
        c.ehlo()
        c.send(b"BOGUS\r\n" * 25)  # limits.max_errors defaults to 20
        codes = []
        for _ in range(25):
            try:
                r = c.reply()
            except (ConnectionClosed, OSError):
                break
            codes.append(r.first[:9])
            if r.code == 421:
                break
        self.assertEqual(codes[-1], "421 4.7.0", codes)
        self.assertLessEqual(len(codes), 21)
        self.assertEqual(set(codes[:-1]), {"500 5.5.1"})
        self.assertEqual(c.read_until_closed(5), b"")

    def test_max_recipients(self):
        c = self.plain()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<many-%s@x.test>" % token()), 250)
        c.send("".join("RCPT TO:<r%d@y.test>\r\n" % i for i in range(101)))
        replies = [c.reply() for _ in range(101)]
        self.assertEqual({r.code for r in replies[:100]}, {250})
        self.assertReply(replies[100], 452, "4.5.3")  # limits.max_recipients = 100
        self.assertReply(c.cmd("RSET"), 250)

    def test_smtputf8_required_for_utf8_address(self):
        c = self.plain()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<j\u00f6rg@x.test>"), 553, "5.6.7")
        self.assertReply(c.cmd("MAIL FROM:<j\u00f6rg@x.test> SMTPUTF8"), 250)
        self.assertReply(c.cmd("RCPT TO:<\u00fcber@y.test>"), 250)
        self.assertReply(c.cmd("RSET"), 250)

    # ------------------------------------------------------------------ SIZE

    def test_mail_from_size_over_limit(self):
        c = self.plain()
        ext = c.ehlo()
        self.assertIn("SIZE %d" % LIMIT, ext.lines)
        t = token()
        self.assertReply(c.cmd("MAIL FROM:<size-%s@x.test> SIZE=%d" % (t, LIMIT + 1)), 552, "5.3.4")
        # No transaction was opened by the refused MAIL.
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 503, "5.5.1")
        # Exactly at the limit is fine.
        self.assertReply(c.cmd("MAIL FROM:<size-%s@x.test> SIZE=%d" % (t, LIMIT)), 250, "2.1.0")
        self.assertReply(c.cmd("RSET"), 250)

    def test_body_over_limit_rejected_nothing_queued(self):
        c = self.plain()
        c.ehlo()
        t = token()
        sender = "big-%s@x.test" % t
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 250)
        self.assertReply(c.cmd("DATA"), 354)
        line = b"X" * 998 + b"\r\n"
        body = b"Subject: big " + t.encode() + b"\r\n\r\n" + line * (LIMIT // len(line) + 100)
        self.assertGreater(len(body), LIMIT + 90 * 1000)
        c.send(body + b".\r\n")
        self.assertReply(c.reply(timeout=30), 552, "5.3.4")
        self.assertReply(c.cmd("NOOP"), 250)
        # BDAT over the limit as well.
        sender2 = "bigbdat-%s@x.test" % t
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender2), 250)
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 250)
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        self.assertReply(c.reply(timeout=30), 552, "5.3.4")
        self.assertReply(c.cmd("NOOP"), 250)
        senders = self.senders()
        self.assertNotIn(sender, senders)
        self.assertNotIn(sender2, senders)

    # -------------------------------------------------------------- smuggling

    SMUGGLED = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n"
                b"smuggled\r\n")

    def test_smtp_smuggling_variants(self):
        variants = {
            "LF.LF": b"\n.\n",
            "CR.CRLF": b"\r.\r\n",
            "LF.CRLF": b"\n.\r\n",
            "CRLF.LF": b"\r\n.\n",
            "CRLF.CR": b"\r\n.\r",
        }
        outer = {}
        for name, seq in variants.items():
            with self.subTest(variant=name):
                c = self.plain()
                c.ehlo()
                sender = "outer-%s@x.test" % token()
                outer[name] = sender
                self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
                self.assertReply(c.cmd("RCPT TO:<rcpt@y.test>"), 250)
                self.assertReply(c.cmd("DATA"), 354)
                c.send(b"Subject: smuggle\r\n\r\nouter body" + seq + self.SMUGGLED + b"\r\n.\r\n")
                self.assertReply(c.reply(), 550, "5.6.0")
                # Nothing of the smuggled commands was executed: the next reply is NOOP's.
                r = c.cmd("NOOP")
                self.assertEqual(r.first, "250 2.0.0 OK")
                self.assert_quiet(c)
                self.assertReply(c.cmd("QUIT"), 221)
        senders = self.senders()
        self.assertEqual([s for s in senders if s == "evil@x.test"], [],
                         "smuggled message(s) found in the queue")
        for name, sender in outer.items():
            self.assertNotIn(sender, senders, "outer message of variant %s was queued" % name)

    def test_smuggling_in_one_pipelined_packet(self):
        # The whole attack in one write, as an attacker's MTA would send it.
        c = self.plain()
        c.ehlo()
        sender = "outerpipe-%s@x.test" % token()
        c.send(b"MAIL FROM:<" + sender.encode() + b">\r\nRCPT TO:<rcpt@y.test>\r\nDATA\r\n"
               b"Subject: s\r\n\r\nhello\n.\n" + self.SMUGGLED + b"\r\n.\r\nNOOP\r\n")
        codes = [c.reply().code for _ in range(5)]
        self.assertEqual(codes, [250, 250, 354, 550, 250])
        self.assert_quiet(c)
        senders = self.senders()
        self.assertNotIn("evil@x.test", senders)
        self.assertNotIn(sender, senders)

    # ------------------------------------------------------------- pipelining

    def test_pipelining_whole_transaction_one_write(self):
        c = self.plain()
        t = token()
        sender = "pipe-%s@x.test" % t
        rcpts = ["p1-%s@y.test" % t, "p2-%s@y.test" % t]
        msg = make_message(sender, rcpts, "pipelined " + t, t).encode()
        c.send(b"EHLO client.test\r\n"
               b"MAIL FROM:<" + sender.encode() + b">\r\n"
               b"RCPT TO:<" + rcpts[0].encode() + b">\r\n"
               b"RCPT TO:<" + rcpts[1].encode() + b">\r\n"
               b"DATA\r\n" + msg + b".\r\n"
               b"QUIT\r\n")
        replies = []
        for _ in range(6):
            replies.append(c.reply())
        ehlo, mail, rc1, rc2, data, done = replies
        self.assertEqual(ehlo.code, 250)
        self.assertIn("PIPELINING", c.extensions(ehlo))
        self.assertReply(mail, 250, "2.1.0")
        self.assertReply(rc1, 250, "2.1.5")
        self.assertReply(rc2, 250, "2.1.5")
        self.assertEqual(data.code, 354)
        qid = done.queue_id()
        self.assertIsNotNone(qid, done)
        self.assertReply(c.reply(), 221, "2.0.0")
        self.assertEqual(c.read_until_closed(5), b"")
        m = self.relay.queue_by_id()[qid]
        self.assertEqual(m["sender"], sender)
        self.assertEqual([r["address"] for r in m["recipients"]], rcpts)

    def test_pipelining_errors_answered_in_order(self):
        c = self.plain()
        c.ehlo()
        t = token()
        c.send("MAIL FROM:<p-%s@x.test>\r\n"
               "RCPT TO:<not an address>\r\n"
               "RCPT TO:<ok-%s@y.test>\r\n"
               "NOOP\r\n"
               "RSET\r\n"
               "BOGUS\r\n"
               "NOOP\r\n" % (t, t))
        firsts = [c.reply().first for _ in range(7)]
        self.assertEqual([f[:9] for f in firsts],
                         ["250 2.1.0", "501 5.1.3", "250 2.1.5", "250 2.0.0", "250 2.0.0",
                          "500 5.5.1", "250 2.0.0"], firsts)
        self.assertEqual(firsts[4], "250 2.0.0 Reset OK")
        self.assert_quiet(c)

    # --------------------------------------------------------------- CHUNKING

    def test_bdat_two_chunks(self):
        c = self.plain()
        self.assertIn("CHUNKING", c.extensions(c.ehlo()))
        t = token()
        sender = "bdat-%s@x.test" % t
        head = ("From: <%s>\r\nSubject: bdat %s\r\nMessage-ID: <bdat-%s@client.test>\r\n"
                "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n" % (sender, t, t)).encode()
        chunk1 = head + b"CHUNK-ONE-" + t.encode() + b"\r\n"
        chunk2 = b"CHUNK-TWO-" + t.encode() + b"\r\n.leading dot stays\r\n"
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 250)
        c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        r = c.reply()
        self.assertReply(r, 250, "2.0.0")
        self.assertIn("%d octets" % len(chunk1), r.lines[0])
        c.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        r = c.reply()
        qid = r.queue_id()
        self.assertIsNotNone(qid, r)

        # Reference: the same content via DATA (same trace header length).
        sender_ref = "bdaf-%s@x.test" % t
        ref = head.replace(b"bdat-", b"bdaf-") + b"CHUNK-ONE-" + t.encode() + b"\r\n" + \
            b"CHUNK-TWO-" + t.encode() + b"\r\n.leading dot stays\r\n"
        r = c.send_message(sender_ref, ["r@y.test"], ref)
        ref_id = r.queue_id()
        self.assertIsNotNone(ref_id, r)
        self.assertReply(c.cmd("QUIT"), 221)

        q = self.relay.queue_by_id()
        self.assertEqual(q[qid]["sender"], sender)
        self.assertEqual([x["address"] for x in q[qid]["recipients"]], ["r@y.test"])
        self.assertEqual(q[qid]["size"], q[ref_id]["size"],
                         "BDAT message size differs from the same content sent with DATA")
        self.assertEqual(sum(1 for m in q.values() if m["sender"] == sender), 1)
        # The spool (uncompressed body column family) holds both chunks, contiguous.
        self.assertTrue(self.relay.spool_contains(chunk1 + chunk2),
                        "chunk1+chunk2 not found contiguously in the spool files")

    def test_bdat_pipelined_with_empty_last(self):
        c = self.plain()
        c.ehlo()
        t = token()
        sender = "bdat0-%s@x.test" % t
        chunk = ("Subject: %s\r\n\r\nbody %s\r\n" % (t, t)).encode()
        c.send(b"MAIL FROM:<" + sender.encode() + b">\r\nRCPT TO:<r@y.test>\r\n"
               b"BDAT %d\r\n" % len(chunk) + chunk + b"BDAT 0 LAST\r\nNOOP\r\n")
        replies = [c.reply() for _ in range(5)]
        self.assertEqual([r.code for r in replies], [250, 250, 250, 250, 250], replies)
        qid = replies[3].queue_id()
        self.assertIsNotNone(qid, replies)
        self.assertEqual(self.relay.queue_by_id()[qid]["sender"], sender)

    # ------------------------------------------------------ STARTTLS injection

    def test_starttls_injection_discarded(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")  # one packet: RSET must be dropped (RFC 3207 5)
        r = c.reply()
        self.assertReply(r, 220, "2.0.0")
        self.assertEqual(c.buf, b"", "server answered the injected command in plaintext")
        c.sock = tls_client_context().wrap_socket(c.sock)
        c.send(b"NOOP\r\n")
        self.assert_only_noop_reply(c)
        # And the session was reset by TLS: EHLO is needed again.
        self.assertReply(c.cmd("MAIL FROM:<x@x.test>"), 503, "5.5.1")

    def test_starttls_injection_after_pipelined_message(self):
        # STARTTLS + injected command buffered while the message commit is pending.
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        t = token()
        sender = "injwait-%s@x.test" % t
        c.send(("MAIL FROM:<%s>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n" % sender).encode()
               + make_message(sender, ["r@y.test"], t, t).encode() + b".\r\n"
               b"STARTTLS\r\nRSET\r\n")
        replies = [c.reply() for _ in range(5)]
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250, 220], replies)
        self.assertIsNotNone(replies[3].queue_id())
        self.assertEqual(c.buf, b"")
        c.sock = tls_client_context().wrap_socket(c.sock)
        c.send(b"NOOP\r\n")
        self.assert_only_noop_reply(c)

    def test_starttls_injection_mail_from(self):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        t = token()
        c.send(("STARTTLS\r\nEHLO inj\r\nMAIL FROM:<inject-%s@x.test>\r\n" % t).encode())
        self.assertReply(c.reply(), 220)
        c.sock = tls_client_context().wrap_socket(c.sock)
        c.send(b"NOOP\r\n")
        self.assert_only_noop_reply(c)
        c.ehlo()
        # If the injected MAIL had been kept, RCPT would be accepted here.
        self.assertReply(c.cmd("RCPT TO:<r@y.test>"), 503, "5.5.1")


if __name__ == "__main__":
    unittest.main()
