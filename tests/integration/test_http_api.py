"""HTTP injection API (issue 18), driven by real clients (curl and Python's
urllib / http.client) against the real relay, delivering to loopback sinks:

- raw RFC 5322 content and structured parts (text, html, attachments, extra
  headers, a UTF-8 subject) arrive as valid MIME (parsed back with Python's
  email package: attachments byte-identical, subject decoded);
- {{name}} substitution per recipient; identical renderings share a message;
- invalid JSON, unknown fields, missing recipients, oversize body, too many
  recipients, wrong or missing key, sender binding, rate: the right status
  and a JSON error naming the field;
- keep-alive: several requests on one connection, over plain HTTP and over
  HTTPS (http_api.tls: the relay's certificate, api/tls_proxy.h);
- SIGKILL right after a 200 loses nothing (the ids are in the spool after
  the restart);
- the campaign from the API field or the X-MxRelay-Campaign header (removed).
"""

import base64
import email
import email.header
import email.policy
import json
import os
import signal
import ssl
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from cp_helpers import CpRelay, new_key
from relayctl import Listener, RelayTestCase
from sink import start_sinks

KEY, STORED = new_key()
KEY2, STORED2 = new_key()
TENANTS = """
[[tenant]]
name = "shop"
api_keys = ["%s"]
sender_domains = ["shop.test"]
pool = "p1"

[[tenant]]
name = "slow"
api_keys = ["%s"]
rate = "2/1h"
rate_burst = 2
""" % (STORED, STORED2)


class HttpApiTest(RelayTestCase):

    def setUp(self):
        self.sink_port, (self.sink,) = start_sinks([("127.0.0.82", {})])
        self.addCleanup(self.sink.stop)
        self.relay = CpRelay(
            tenants_toml=TENANTS, listeners=[Listener("sub", "plain", auth_without_tls=True)],
            http_api={"max_body": 200000, "max_recipients": 50},
            delivery={"port": self.sink_port, "retry_initial": 1, "retry_max": 2},
            routes=[{"domain": "dest.test", "host": "127.0.0.82"}])
        self.addCleanup(self.relay.cleanup)
        self.relay.start()

    def urllib_post(self, payload, key=KEY, raw=None):
        req = urllib.request.Request(self.relay.api_url(), data=raw if raw is not None else json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer " + key},
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def curl(self, body, key=KEY, extra=()):
        r = subprocess.run(["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", "-H",
                            "Authorization: Bearer " + key, "-H", "Content-Type: application/json",
                            "--data-binary", "@-"] + list(extra) + [self.relay.api_url()],
                           input=body, capture_output=True, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr)
        text, _, code = r.stdout.decode().rpartition("\n")
        return int(code), json.loads(text)

    def test_raw_content_with_curl(self):
        body = json.dumps({"envelope_sender": "news@shop.test",
                           "recipients": [{"email": "a@dest.test"}, {"email": "b@dest.test"}],
                           "campaign": "launch",
                           "content": "From: News <news@shop.test>\nTo: you@dest.test\nSubject: raw\n\nline 1\n.dot\n"}).encode()
        code, resp = self.curl(body)
        self.assertEqual(code, 200, resp)
        self.assertEqual(resp["accepted_recipients"], 2)
        self.assertEqual(len(resp["messages"]), 1)  # same rendering: one message for both
        qid = resp["messages"][0]["id"]
        (m,) = self.sink.wait_messages(1, timeout=30)
        self.assertEqual(sorted(m.rcpts), ["a@dest.test", "b@dest.test"])
        self.assertEqual(m.mail_from, "news@shop.test")
        p = m.parsed()
        self.assertEqual(p["Subject"], "raw")
        self.assertIsNotNone(p["Message-ID"])  # added as for SMTP
        self.assertIsNotNone(p["Date"])
        self.assertIn("with HTTP", p["Received"])
        self.assertIn(b"line 1\r\n.dot\r\n", m.data)
        self.relay.wait_log(r"event=queued id=%s .*listener=http_api .*tenant=shop campaign=launch" % qid)
        self.relay.wait_log(r"event=delivered id=%s .*campaign=launch" % qid, timeout=30)

    def test_structured_content_attachments_utf8_with_urllib(self):
        blob = os.urandom(3000)
        subject = "Grüße aus Köln — ☃ {{name}}"
        status, resp = self.urllib_post({
            "envelope_sender": "news@shop.test",
            "recipients": [{"email": "x@dest.test", "substitutions": {"name": "Zoë"}},
                           {"email": "y@dest.test", "substitutions": {"name": "Yann"}}],
            "content": {"from": "Shop <news@shop.test>", "subject": subject,
                        "text": "Hallo {{name}}, ça va?", "html": "<p>Hallo <b>{{name}}</b></p>",
                        "headers": {"X-Order": "o-{{name}}", "X-MxRelay-Campaign": "hdr-camp"},
                        "attachments": [{"filename": "daten.bin", "content_type": "application/octet-stream",
                                         "data": base64.b64encode(blob).decode()},
                                        {"filename": "note.txt", "content_type": "text/plain; charset=utf-8",
                                         "data": base64.b64encode("Grüße".encode()).decode()}]}})
        self.assertEqual(status, 200, resp)
        self.assertEqual(len(resp["messages"]), 2)  # one per rendering
        self.assertEqual(resp["campaign"], "hdr-camp")
        msgs = self.sink.wait_messages(2, timeout=30)
        by = {m.rcpts[0]: m for m in msgs}
        for rcpt, name in (("x@dest.test", "Zoë"), ("y@dest.test", "Yann")):
            m = by[rcpt]
            for b in m.data:
                self.assertLess(b, 128, "8-bit byte in a built message")
            p = email.message_from_bytes(m.data, policy=email.policy.default)
            self.assertEqual(str(p["Subject"]), subject.replace("{{name}}", name))
            self.assertEqual(str(p["To"]), rcpt)
            self.assertEqual(str(p["X-Order"]), "o-" + name)
            self.assertIsNone(p["X-MxRelay-Campaign"])  # taken off, stored as the campaign
            self.assertEqual(p.get_content_type(), "multipart/mixed")
            self.assertEqual(p.get_body(("plain",)).get_content().strip(), "Hallo %s, ça va?" % name)
            self.assertIn("<b>%s</b>" % name, p.get_body(("html",)).get_content())
            atts = {a.get_filename(): a for a in p.iter_attachments()}
            self.assertEqual(atts["daten.bin"].get_content(), blob)
            self.assertEqual(atts["note.txt"].get_content().strip(), "Grüße")
            self.assertFalse(p.defects, p.defects)

    def test_bad_requests_name_the_field(self):
        cases = [
            (b"{not json", 400, "", "not valid JSON"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": ["a@dest.test"], "content": "x",
                         "colour": "red"}).encode(), 400, "colour", "unknown field"),
            (json.dumps({"envelope_sender": "a@shop.test", "content": "x"}).encode(), 400, "recipients", "required"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": [], "content": "x"}).encode(), 400,
             "recipients", "at least one"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": [{"email": "a@dest.test", "x": 1}],
                         "content": "x"}).encode(), 400, "recipients[0].x", "unknown field"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": ["a@dest.test"],
                         "content": {"from": "a@shop.test", "text": "hi {{who}}"}}).encode(), 400,
             "recipients[0].substitutions", "{{who}}"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": ["r%d@dest.test" % i for i in range(51)],
                         "content": "x"}).encode(), 413, "recipients", "at most 50"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": ["a@dest.test"],
                         "content": "x" * 250000}).encode(), 413, None, "max_body"),
            (json.dumps({"envelope_sender": "a@evil.test", "recipients": ["a@dest.test"],
                         "content": "From: a@shop.test\r\n\r\nx\r\n"}).encode(), 403, "envelope_sender",
             "sender_domains"),
            (json.dumps({"envelope_sender": "a@shop.test", "recipients": ["a@dest.test"],
                         "content": "From: a@evil.test\r\n\r\nx\r\n"}).encode(), 403, "content.from", "From: header"),
        ]
        for body, status, field, text in cases:
            code, resp = self.curl(body)
            self.assertEqual(code, status, (body[:80], resp))
            self.assertIn(text, resp["error"]["message"], resp)
            if field is not None:
                self.assertEqual(resp["error"].get("field", ""), field, resp)
        # Wrong and missing keys.
        code, resp = self.curl(b"{}", key="mxr_wrong")
        self.assertEqual(code, 401)
        self.assertIn("unknown API key", resp["error"]["message"])
        status, resp = self.relay.inject(None, {})
        self.assertEqual(status, 401)
        self.assertIn("Bearer", resp["error"]["message"])
        self.assertEqual(self.sink.received(), [])
        m = self.relay.scrape()
        self.assertEqual(m['mxrelay_http_api_requests_total{result="unauthorized"}'], 2)
        self.assertEqual(m['mxrelay_http_api_requests_total{result="refused"}'], 2)

    def test_rate_429(self):
        payload = {"envelope_sender": "a@slow.test", "recipients": ["a@dest.test"], "content": "Subject: r\r\n\r\nx\r\n"}
        for _ in range(2):
            status, resp = self.relay.inject(KEY2, payload)
            self.assertEqual(status, 200, resp)
        status, resp = self.relay.inject(KEY2, payload)
        self.assertEqual(status, 429, resp)
        self.assertIn('tenant "slow"', resp["error"]["message"])
        self.assertIn("rule: rate", resp["error"]["message"])

    def test_keep_alive_one_connection(self):
        import http.client
        conn = http.client.HTTPConnection(*self.relay.api_addr(), timeout=30)
        self.addCleanup(conn.close)
        socks = set()
        for i in range(5):
            payload = {"envelope_sender": "a@shop.test", "recipients": ["k%d@dest.test" % i],
                       "content": "From: a@shop.test\r\nSubject: k%d\r\n\r\nx\r\n" % i}
            status, resp = self.relay.inject(KEY, payload, conn=conn)
            self.assertEqual(status, 200, resp)
            socks.add(id(conn.sock))
        self.assertEqual(len(socks), 1, "the connection was not kept alive")
        self.sink.wait_messages(5, timeout=30)

    def test_https_keep_alive(self):
        self.relay.http_api["tls"] = True
        self.relay.stop()
        self.relay.start()
        body = json.dumps({"envelope_sender": "a@shop.test", "recipients": ["t@dest.test"],
                           "content": "From: a@shop.test\r\nSubject: tls\r\n\r\nx\r\n"}).encode()
        code, resp = self.curl(body, extra=["-k", "--tlsv1.2"])
        self.assertEqual(code, 200, resp)
        (m,) = self.sink.wait_messages(1, timeout=30)
        self.assertIn("with HTTPS", m.parsed()["Received"])
        # Several requests on one TLS connection (Python's client, the relay's certificate not checked).
        import http.client
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(*self.relay.api_addr(), timeout=30, context=ctx)
        self.addCleanup(conn.close)
        socks = set()
        for i in range(3):
            status, resp = self.relay.inject(KEY, {"envelope_sender": "a@shop.test", "recipients": ["s%d@dest.test" % i],
                                                   "content": "From: a@shop.test\r\n\r\nx\r\n"}, conn=conn)
            self.assertEqual(status, 200, resp)
            socks.add(id(conn.sock))
        self.assertEqual(len(socks), 1)
        self.assertIn("TLSv1.", conn.sock.version())
        self.sink.wait_messages(4, timeout=30)
        # Plain HTTP on the TLS port gets nothing useful.
        status = None
        try:
            status, _ = self.relay.inject(KEY, {})
        except Exception:
            pass
        self.assertNotEqual(status, 200)

    def test_sigkill_after_200_loses_nothing(self):
        self.relay.delivery = None  # keep everything queued
        self.relay.stop()
        self.relay.start()
        ids = []
        for i in range(20):
            status, resp = self.relay.inject(KEY, {
                "envelope_sender": "a@shop.test",
                "recipients": [{"email": "r%d-%d@dest.test" % (i, j), "substitutions": {"n": str(j)}} for j in range(5)],
                "content": "From: a@shop.test\r\nSubject: n={{n}}\r\n\r\nx\r\n"})
            self.assertEqual(status, 200, resp)
            ids += [m["id"] for m in resp["messages"]]
        self.relay.kill()  # SIGKILL right after the last 200
        self.relay.start()
        queued = self.relay.queue_by_id()
        missing = [i for i in ids if i not in queued]
        self.assertEqual(missing, [], "messages answered 200 were lost")
        self.assertEqual(len(ids), 100)
        self.assertEqual(queued[ids[0]]["tenant"], "shop")
        self.assertEqual(queued[ids[0]]["pool"], "p1")


if __name__ == "__main__":
    unittest.main()
