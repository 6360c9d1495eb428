"""TLS suites: TLS 1.2 limited to AEAD suites with forward secrecy (ECDHE +
AES-GCM / ChaCha20-Poly1305) on every listener and on outbound delivery;
TLS 1.3 unchanged (common/tls_policy.h).

Inbound: `openssl s_client -tls1_2 -cipher <suite>` against the STARTTLS and
implicit-TLS listeners, with an RSA certificate (so the ECDHE-RSA suites are
the ones at stake) and with the generated ECDSA one. Outbound: a sink whose
STARTTLS accepts only a CBC suite gets no TLS session from the relay (the
handshake fails; opportunistic delivery then goes in clear, as documented),
and one that accepts GCM gets TLS 1.2 with an AEAD suite.
"""

import os
import ssl
import subprocess
import tempfile

from relayctl import RelayTestCase, make_message, submit, Listener
from sink import start_sinks

HOST = "127.0.0.1"
CBC = ["ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA", "AES128-SHA",
       "AES256-GCM-SHA384"]  # the last: AEAD but static RSA key exchange (no forward secrecy)


def rsa_cert(d):
    cert, key = os.path.join(d, "rsa.pem"), os.path.join(d, "rsa.key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=relay.test",
                        "-days", "1", "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cert, key


def s_client(port, cipher, starttls, tls13=False):
    args = ["openssl", "s_client", "-connect", "%s:%d" % (HOST, port)]
    args += ["-tls1_3", "-ciphersuites", cipher] if tls13 else ["-tls1_2", "-cipher", cipher]
    if starttls:
        args += ["-starttls", "smtp"]
    p = subprocess.run(args, input="", capture_output=True, text=True, timeout=30)
    return p


class InboundSuitesTest(RelayTestCase):

    def check_listener_refuses_cbc(self, relay, rsa):
        for name, starttls in (("sub", True), ("smtps", False)):
            port = relay.port(name)
            refused = CBC if rsa else ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"]
            for suite in refused:
                with self.subTest(listener=name, suite=suite):
                    p = s_client(port, suite, starttls)
                    self.assertNotEqual(p.returncode, 0, "negotiated %s:\n%s" % (suite, p.stdout[-400:]))
                    # The relay's handshake_failure alert, not a local refusal.
                    self.assertIn("handshake failure", p.stderr, p.stderr[-400:])
            ok = (["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]
                  if rsa else ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"])
            for suite in ok:
                with self.subTest(listener=name, suite=suite):
                    p = s_client(port, suite, starttls)
                    self.assertEqual(p.returncode, 0, p.stderr[-400:])
                    self.assertIn("Cipher is %s" % suite, p.stdout)
            p = s_client(port, "TLS_AES_128_GCM_SHA256", starttls, tls13=True)
            self.assertEqual(p.returncode, 0, p.stderr[-400:])
            self.assertIn("TLSv1.3", p.stdout)

    def test_rsa_certificate_listeners_refuse_cbc_and_static_rsa(self):
        d = tempfile.mkdtemp(prefix="mxrelay-suites-")
        self.addCleanup(__import__("shutil").rmtree, d, True)
        cert, key = rsa_cert(d)
        relay = self.new_relay(tls={"cert_file": cert, "key_file": key})
        self.check_listener_refuses_cbc(relay, rsa=True)

    def test_generated_ecdsa_certificate_listeners_refuse_cbc(self):
        relay = self.new_relay()
        self.check_listener_refuses_cbc(relay, rsa=False)


class OutboundSuitesTest(RelayTestCase):

    def deliver_to(self, sink_cipher):
        port, (sink,) = start_sinks([("127.0.0.1", {"starttls": True})])
        self.addCleanup(sink.stop)
        sink._ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        sink._ctx.set_ciphers(sink_cipher)
        relay = self.new_relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"],
                               delivery={"port": port, "connect_timeout": 5},
                               routes=[{"domain": "suites.test", "host": "127.0.0.1", "port": port}])
        submit(relay.port("plain"), "s@client.test", ["r@suites.test"],
               make_message("s@client.test", ["r@suites.test"], "suites"))
        sink.wait_messages(1, timeout=20)
        return relay, sink

    def test_outbound_refuses_a_cbc_only_server(self):
        relay, sink = self.deliver_to("ECDHE-ECDSA-AES128-SHA")
        # No TLS session came about (opportunistic: delivered in clear).
        self.assertEqual(sink.starttls_count, 0)
        self.assertIsNone(sink.received()[0].tls)
        self.assertRegex(relay.log_text(), r"(no shared cipher|handshake failure|sslv3 alert)")

    def test_outbound_uses_aead_with_tls12(self):
        relay, sink = self.deliver_to("ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual(sink.starttls_count, 1)
        self.assertEqual(sink.received()[0].tls, "TLSv1.2")
