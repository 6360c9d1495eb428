"""MTA-STS (RFC 8461) on outbound delivery, with real parts on loopback:

- dnsmasq serves the `_mta-sts.<domain>` TXT records, the MX records and
  the addresses (every `mta-sts.<domain>` is 127.0.0.1, each MX host its
  own 127.0.0.x);
- a Python HTTPS server (ssl + http.server) serves each domain's policy at
  /.well-known/mta-sts.txt with a certificate from a test CA the test makes
  with openssl; the relay trusts that CA for the policy fetch
  (delivery.mta_sts_ca_file) and for the MX certificates (tls_ca_file);
- sinks play the MX hosts: one with STARTTLS and a CA-issued certificate
  for its name, others without STARTTLS.

What it proves: enforce + a sink without STARTTLS -> deferred (4.7.5),
nothing ever delivered in clear; enforce + a matching MX with a valid
certificate -> delivered over verified TLS; enforce + no matching MX ->
deferred without a connection; testing + no STARTTLS -> delivered and the
failure counted for TLS-RPT (metric and log); a domain without the TXT
record is delivered as before (opportunistic).
"""

import base64
import email
import email.policy
import gzip
import http.server
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time

from dnsserver import DnsServer
from relayctl import free_port
from sink import start_sinks
from test_delivery import DeliveryBase, SENDER, WAIT

ENF_TLS, ENF_PLAIN, ENF_WRONG, TST_PLAIN, NOSTS = ("127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24",
                                                  "127.0.0.25")
MX = {
    "enf.test": [(10, "mx.enf.test")],            # enforce, STARTTLS + valid certificate
    "enfplain.test": [(10, "mx.enfplain.test")],  # enforce, no STARTTLS
    "enfwrong.test": [(10, "mx.elsewhere.test")], # enforce, MX not in the policy
    "tst.test": [(10, "mx.tst.test")],            # testing, no STARTTLS
    "nosts.test": [(10, "mx.nosts.test")],        # no policy at all
    "senders.test": [(10, "mx.senders.test")],
}
HOSTS = {
    "mx.enf.test": ENF_TLS, "mx.enfplain.test": ENF_PLAIN, "mx.elsewhere.test": ENF_WRONG,
    "mx.tst.test": TST_PLAIN, "mx.nosts.test": NOSTS, "mx.senders.test": "127.0.0.7",
}
for d in ("enf.test", "enfplain.test", "enfwrong.test", "tst.test"):
    HOSTS["mta-sts." + d] = "127.0.0.1"
HOSTS["rpt.sts.test"] = "127.0.0.1"   # the https: TLS-RPT receiver (the policy server)
TXT = {"_mta-sts.%s" % d: "v=STSv1; id=20261206a" for d in ("enf.test", "enfplain.test", "enfwrong.test",
                                                             "tst.test")}
POLICIES = {
    "mta-sts.enf.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.enf.test\r\nmax_age: 86400\r\n",
    "mta-sts.enfplain.test": "version: STSv1\r\nmode: enforce\r\nmx: *.enfplain.test\r\nmax_age: 86400\r\n",
    "mta-sts.enfwrong.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.enfwrong.test\r\nmax_age: 86400\r\n",
    "mta-sts.tst.test": "version: STSv1\r\nmode: testing\r\nmx: mx.tst.test\r\nmax_age: 86400\r\n",
}


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def make_ca(d):
    """A test CA and a function issuing (cert, key) for a list of DNS names."""
    ca, cakey = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=mxrelay test CA", "-keyout", cakey, "-out", ca,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(name, dns_names):
        key, csr, cert = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=" + dns_names[0], "-keyout", key, "-out", csr)
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                    % ",".join("DNS:" + n for n in dns_names))
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey, "-CAcreateserial", "-days", "2",
                "-out", cert, "-extfile", ext)
        return cert, key
    return ca, issue


class PolicyServer:
    """HTTPS on 127.0.0.1:port serving POLICIES by Host header; counts requests."""

    def __init__(self, cert, key):
        self.requests = []
        self.posts = []               # (path, content type, body) of every POST
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                server.requests.append((host, self.path))
                body = POLICIES.get(host)
                if self.path != "/.well-known/mta-sts.txt" or body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(n, 1 << 20))
                server.posts.append((self.path, self.headers.get("Content-Type"), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.timeout = 1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class StsBase(DeliveryBase):
    """The CA, the policy/report HTTPS server and dnsmasq (no tests)."""
    ZONE_MX, ZONE_HOSTS, ZONE_NULLMX = MX, HOSTS, []

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mxrelay-sts-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.ca, issue = make_ca(cls.dir)
        cls.web_cert = issue("web", sorted(h for h in HOSTS if h.startswith("mta-sts.")) + ["rpt.sts.test"])
        cls.mx_cert = issue("mx", ["mx.enf.test"])
        cls.web = PolicyServer(*cls.web_cert).start()
        cls.addClassCleanup(cls.web.stop)
        txt = dict(TXT)
        # TLS-RPT: reports for tst.test by mail (to the senders.test sink),
        # for enfplain.test by HTTPS POST (to the policy server).
        txt["_smtp._tls.tst.test"] = "v=TLSRPTv1; rua=mailto:tlsrpt@senders.test"
        txt["_smtp._tls.enfplain.test"] = "v=TLSRPTv1; rua=https://rpt.sts.test:%d/tlsrpt" % cls.web.port
        cls.dns = DnsServer(mx=MX, hosts=HOSTS, txt=txt)
        cls.dns.start()
        cls.addClassCleanup(cls.dns.cleanup)

    def sts_relay(self, port, **kw):
        return self.relay(port, tls_ca_file=self.ca, mta_sts_ca_file=self.ca,
                          mta_sts_https_port=self.web.port, **kw)

    def metric(self, relay, mode, result):
        return relay.scrape().get('mxrelay_mta_sts_sessions_total{mode="%s",result="%s"}' % (mode, result), 0)


class MtaStsTest(StsBase):

    def test_enforce_without_starttls_is_deferred_never_sent_in_clear(self):
        port, (plain,) = self.sinks((ENF_PLAIN, {}))
        relay = self.sts_relay(port)
        self.send(relay, ["r@enfplain.test"], "enf-plain")
        relay.wait_log(r"event=deferred .*rcpt=<r@enfplain\.test>.*enhanced=4\.7\.5", timeout=WAIT)
        relay.wait_log(r"event=mta_sts_session_failed domain=enfplain\.test mode=enforce .*"
                       r"result=starttls-not-supported", timeout=WAIT)
        time.sleep(2)  # retries (every 1-2 s) go the same way
        self.assertEqual(plain.received(), [], "delivered in clear despite an enforce policy")
        self.assertGreaterEqual(plain.connections, 1)
        self.assertNotIn("MAIL", plain.commands)
        self.assertGreaterEqual(self.metric(relay, "enforce", "failure"), 1)
        self.assertIn(("mta-sts.enfplain.test", "/.well-known/mta-sts.txt"), self.web.requests)

    def test_enforce_matching_mx_with_valid_certificate_is_delivered(self):
        port, (mx,) = self.sinks((ENF_TLS, {"starttls": True, "tls_cert": self.mx_cert}))
        relay = self.sts_relay(port)
        self.send(relay, ["r@enf.test"], "enf-tls")
        mx.wait_messages(1, WAIT)
        self.assertIsNotNone(mx.received()[0].tls)
        relay.wait_queue_empty()
        self.assertEqual(self.metric(relay, "enforce", "success"), 1)
        self.assertEqual(self.metric(relay, "enforce", "failure"), 0)
        self.assertRegex(relay.log_text(), r"event=mta_sts_policy domain=enf\.test mode=enforce")

    def test_enforce_certificate_from_an_untrusted_ca_is_deferred(self):
        # The sink's default self-signed certificate: STARTTLS works, verification does not.
        port, (mx,) = self.sinks((ENF_TLS, {"starttls": True}))
        relay = self.sts_relay(port)
        self.send(relay, ["r@enf.test"], "enf-untrusted")
        relay.wait_log(r"event=mta_sts_session_failed domain=enf\.test mode=enforce .*"
                       r"result=certificate-(not-trusted|host-mismatch)", timeout=WAIT)
        time.sleep(1)
        self.assertEqual(mx.received(), [])

    def test_enforce_with_no_matching_mx_is_deferred_without_connecting(self):
        port, (wrong,) = self.sinks((ENF_WRONG, {}))
        relay = self.sts_relay(port)
        self.send(relay, ["r@enfwrong.test"], "enf-wrong")
        relay.wait_log(r"event=mta_sts_mx_mismatch domain=enfwrong\.test", timeout=WAIT)
        relay.wait_log(r"event=deferred .*rcpt=<r@enfwrong\.test>.*enhanced=4\.7\.5", timeout=WAIT)
        self.assertEqual(wrong.connections, 0)
        self.assertGreaterEqual(relay.scrape().get("mxrelay_mta_sts_mx_mismatch_total", 0), 1)

    def test_testing_mode_delivers_and_counts_the_failure(self):
        port, (tst, nosts) = self.sinks((TST_PLAIN, {}), (NOSTS, {}))
        relay = self.sts_relay(port)
        self.send(relay, ["r@tst.test"], "tst-plain")
        self.send(relay, ["r@nosts.test"], "no-sts")
        tst.wait_messages(1, WAIT)
        nosts.wait_messages(1, WAIT)
        relay.wait_queue_empty()
        self.assertIsNone(tst.received()[0].tls)
        self.assertEqual(self.metric(relay, "testing", "failure"), 1)
        self.assertEqual(self.metric(relay, "testing", "success"), 0)
        self.assertRegex(relay.log_text(), r"event=mta_sts_session_failed domain=tst\.test mode=testing "
                                           r"mx=mx\.tst\.test ip=127\.0\.0\.24 result=starttls-not-supported")
        # No TXT record: no fetch, no policy.
        self.assertNotIn("mta-sts.nosts.test", [h for h, _ in self.web.requests])

    def test_mta_sts_off(self):
        port, (plain,) = self.sinks((ENF_PLAIN, {}))
        relay = self.sts_relay(port, mta_sts=False)
        self.send(relay, ["r@enfplain.test"], "sts-off")
        plain.wait_messages(1, WAIT)


SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tlsrpt-schema.json")


class TlsRptTest(StsBase):
    """TLS-RPT (RFC 8460): the report period is shortened with
    delivery.tls_rpt_interval (2 s) instead of waiting a day; the reports are
    checked against the RFC's JSON schema (data/tlsrpt-schema.json, python3-jsonschema)."""

    def validate(self, raw_gz):
        import jsonschema
        with open(SCHEMA) as f:
            schema = json.load(f)
        report = json.loads(gzip.decompress(raw_gz))
        jsonschema.validate(report, schema)
        return report

    def test_reports_by_mail_and_https_validate_against_the_schema(self):
        port, (tst, plain, senders) = self.sinks((TST_PLAIN, {}), (ENF_PLAIN, {}), ("127.0.0.7", {}))
        relay = self.sts_relay(port, tls_rpt_interval=2, tls_rpt_contact="tls-admin@relay.test")
        self.send(relay, ["r@tst.test"], "rpt-tst")
        self.send(relay, ["r@enfplain.test"], "rpt-enf")
        tst.wait_messages(1, WAIT)
        relay.wait_log(r"event=mta_sts_session_failed domain=enfplain\.test", timeout=WAIT)
        # mailto: a message through our own queue to the senders.test sink.
        msgs = senders.wait_messages(1, timeout=WAIT)
        m = msgs[0]
        self.assertEqual(m.rcpts, ["tlsrpt@senders.test"])
        msg = email.message_from_bytes(m.data, policy=email.policy.compat32)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "tlsrpt")
        self.assertEqual(msg["TLS-Report-Domain"], "tst.test")
        att = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
        self.assertEqual(len(att), 1)
        self.assertRegex(att[0].get_filename(), r"^relay\.test!tst\.test!\d+!\d+!.+\.json\.gz$")
        report = self.validate(att[0].get_payload(decode=True))
        self.assertEqual(report["contact-info"], "tls-admin@relay.test")
        pol = report["policies"][0]
        self.assertEqual(pol["policy"]["policy-type"], "sts")
        self.assertEqual(pol["policy"]["policy-domain"], "tst.test")
        self.assertEqual(pol["policy"]["policy-string"],
                         ["version: STSv1", "mode: testing", "mx: mx.tst.test", "max_age: 86400"])
        self.assertEqual(pol["summary"], {"total-successful-session-count": 0, "total-failure-session-count": 1})
        self.assertEqual(pol["failure-details"],
                         [{"result-type": "starttls-not-supported", "receiving-ip": TST_PLAIN,
                           "receiving-mx-hostname": "mx.tst.test", "failed-session-count": 1}])
        # https: a POST of the gzip'd JSON.
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not self.web.posts:
            time.sleep(0.1)
        self.assertTrue(self.web.posts, "no HTTPS report")
        path, ctype, body = self.web.posts[0]
        self.assertEqual((path, ctype), ("/tlsrpt", "application/tlsrpt+gzip"))
        report = self.validate(body)
        pol = report["policies"][0]
        self.assertEqual(pol["policy"]["policy-domain"], "enfplain.test")
        self.assertGreaterEqual(pol["summary"]["total-failure-session-count"], 1)
        self.assertEqual(pol["failure-details"][0]["result-type"], "starttls-not-supported")
        self.assertEqual(plain.received(), [])
        relay.wait_log(r"event=tls_rpt_posted domain=enfplain\.test", timeout=WAIT)
        self.assertGreaterEqual(relay.scrape().get('mxrelay_tls_rpt_reports_total{result="sent"}', 0), 2)
