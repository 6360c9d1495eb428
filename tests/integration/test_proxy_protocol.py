"""PROXY protocol on a listener (issue 20): the client address a load balancer
puts in a v1 or v2 header is the one the relay uses everywhere (Received: at
the sink, session and queue logs, trusted_networks, the per-IP connection
limit); a header from a peer not in proxy_from, a malformed one, or none at
all closes the connection without an SMTP reply and logs event=proxy_refused.
The proxy is this test (127.0.0.1 is in proxy_from) or, when installed, a real
HAProxy with send-proxy-v2 in front (what the cluster test builds on).
"""

import email
import os
import shutil
import socket
import ssl
import smtplib
import struct
import subprocess
import tempfile
import time
import unittest

from relayctl import (HOST, Listener, RelayTestCase, free_port, make_message, read_until_closed,
                      stop_process, tls_client_context)
from sink import start_sinks

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
SENDER = "s@client.test"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def v1(src, dst="127.0.0.1", sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, dst=None, sport=40000, dport=25, tlvs=b""):
    if ":" in src:
        dst = dst or "::1"
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        dst = dst or "127.0.0.1"
        addrs = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
        fam = 0x11
    body = addrs + struct.pack(">HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack(">H", len(body)) + body


class ProxySMTP(smtplib.SMTP):
    """smtplib that sends `header` right after connecting (from `source`)."""

    def __init__(self, header, port, source=None, timeout=10):
        self._header, self._source = header, source
        super().__init__(HOST, port, local_hostname="client.test", timeout=timeout)

    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout,
                                     source_address=(self._source, 0) if self._source else None)
        s.sendall(self._header)
        return s


def raw(port, data, source=None, seconds=5):
    """Connects (from `source`), sends `data`, returns all bytes until the relay closes."""
    s = socket.create_connection((HOST, port), 10, source_address=(source, 0) if source else None)
    try:
        if data:
            s.sendall(data)
        return read_until_closed(s, seconds=seconds)
    finally:
        s.close()


class ProxyProtocolTest(RelayTestCase):
    def setUp(self):
        self.sink_port, (self.sink,) = start_sinks([("127.0.0.1", {})])
        self.addCleanup(self.sink.stop)

    def proxied_relay(self, limits=None, timeouts=None, listeners=None):
        pp = {"proxy_protocol": True, "proxy_from": ["127.0.0.1/32"]}
        listeners = listeners or [Listener("pp", "plain", extra=pp)]
        # 127.0.0.1 (the proxy) is not trusted: only the header's client can be.
        return self.new_relay(listeners=listeners, trusted_networks=["192.0.2.0/24", "2001:db8::/32"],
                              limits=limits, timeouts=timeouts,
                              delivery={"enabled": True, "port": self.sink_port, "retry_initial": 1},
                              routes=[{"domain": "*", "host": "127.0.0.1", "port": self.sink_port,
                                       "tls": "none"}])

    def send(self, relay, header, token, rcpt="r@sink.test"):
        with ProxySMTP(header, relay.port("pp")) as s:
            s.ehlo()
            code, resp = s.mail(SENDER)
            if code != 250:
                return code, resp
            code, resp = s.rcpt(rcpt)
            if code != 250:
                return code, resp
            code, resp = s.data(make_message(SENDER, [rcpt], token, token).encode())
            return code, resp

    def received_from(self, token):
        """The first (our) Received: field of the message carrying `token`, unfolded."""
        for m in self.sink.received():
            data = m.data if isinstance(m.data, bytes) else m.data.encode()
            if ("token: " + token).encode() in data:
                msg = email.message_from_bytes(data)
                return " ".join(str(msg.get_all("Received")[0]).split())
        return None

    def test_v1_and_v2_header_address_is_the_client(self):
        relay = self.proxied_relay()
        cases = [("v1-ipv4", v1("192.0.2.10"), "192.0.2.10"),
                 ("v2-ipv4", v2("192.0.2.11", tlvs=b"\x04\x00\x02ab"), "192.0.2.11"),
                 ("v1-ipv6", v1("2001:db8::7", "::1"), "2001:db8::7"),
                 ("v2-ipv6", v2("2001:db8::8"), "2001:db8::8")]
        for token, header, ip in cases:
            code, resp = self.send(relay, header, token)
            self.assertEqual(code, 250, (token, resp))
        self.sink.wait_messages(len(cases), timeout=30)
        for token, header, ip in cases:
            rcv = self.received_from(token)
            self.assertIsNotNone(rcv, token)
            self.assertIn("[%s]" % ip, rcv, (token, rcv))
            self.assertNotIn("127.0.0.1", rcv, (token, rcv))
            relay.wait_log(r"event=queued id=\S+ ip=%s " % ip.replace(".", r"\."), timeout=5)
        # trusted_networks sees the header's address: a client outside it may
        # not relay although the proxy (127.0.0.1) connected.
        code, resp = self.send(relay, v1("203.0.113.5"), "untrusted")
        self.assertEqual(code, 530, resp)  # AUTH required: not a trusted client
        m = relay.scrape()
        self.assertEqual(m.get('mxrelay_proxy_protocol_total{result="ok"}'), len(cases) + 1, m)

    def test_per_ip_limit_counts_the_header_address(self):
        relay = self.proxied_relay(limits={"max_connections_per_ip": 2})
        held = []
        try:
            for _ in range(2):
                s = socket.create_connection((HOST, relay.port("pp")), 10)
                held.append(s)
                s.sendall(v2("198.51.100.7"))
                self.assertTrue(s.recv(512).startswith(b"220 "))
            third = raw(relay.port("pp"), v2("198.51.100.7"))
            self.assertTrue(third.startswith(b"421 4.7.0 Too many connections from your address"), third)
            relay.wait_log(r"event=connection_refused reason=per_ip_limit ip=198\.51\.100\.7", timeout=5)
            # Another client behind the same proxy is not limited by the first one.
            s = socket.create_connection((HOST, relay.port("pp")), 10)
            held.append(s)
            s.sendall(v1("198.51.100.8"))
            self.assertTrue(s.recv(512).startswith(b"220 "))
        finally:
            for s in held:
                s.close()

    def test_untrusted_peer_malformed_and_missing_header_are_refused(self):
        relay = self.proxied_relay(timeouts={"proxy_header": 1})
        port = relay.port("pp")
        # A peer that is not a configured proxy: its header would spoof an address.
        self.assertEqual(raw(port, v1("192.0.2.10"), source="127.0.0.2"), b"")
        relay.wait_log(r"event=proxy_refused reason=untrusted_peer peer=127\.0\.0\.2 listener=pp", timeout=5)
        for data, reason in [(b"PROXY TCP4 192.0.2 127.0.0.1 1 25\r\n", "v1_address"),
                             (b"PROXY TCP4 192.0.2.1 127.0.0.1 1\r\n", "v1_syntax"),
                             (V2_SIG + b"\x21\x12\x00\x0c" + bytes(12), "v2_family"),
                             (b"PROXY " + b"x" * 120, "v1_too_long"),
                             (b"EHLO client.test\r\n", "not_proxy")]:
            self.assertEqual(raw(port, data), b"", reason)
            relay.wait_log(r"event=proxy_refused reason=%s peer=127\.0\.0\.1" % reason, timeout=5)
        # Nothing at all: closed after timeouts.proxy_header, still without a word.
        t0 = time.monotonic()
        self.assertEqual(raw(port, b"", seconds=8), b"")
        self.assertLess(time.monotonic() - t0, 6)
        relay.wait_log(r"event=proxy_refused reason=timeout peer=127\.0\.0\.1", timeout=5)
        m = relay.scrape()
        self.assertEqual(m.get('mxrelay_proxy_protocol_total{result="untrusted_peer"}'), 1, m)
        self.assertEqual(m.get('mxrelay_proxy_protocol_total{result="malformed"}'), 5, m)
        self.assertGreaterEqual(m.get('mxrelay_proxy_protocol_total{result="no_header"}'), 1, m)
        self.assertEqual(self.sink.received(), [])

    def test_implicit_tls_listener_reads_the_header_before_the_handshake(self):
        pp = {"proxy_protocol": True, "proxy_from": ["127.0.0.1/32"]}
        relay = self.proxied_relay(listeners=[Listener("pp", "implicit_tls", extra=pp)])
        s = socket.create_connection((HOST, relay.port("pp")), 10)
        try:
            s.sendall(v2("192.0.2.20"))
            t = tls_client_context().wrap_socket(s, server_hostname="relay.test")
            self.assertTrue(t.recv(512).startswith(b"220 "))
            t.sendall(b"EHLO client.test\r\n")
            reply = t.recv(4096)
            self.assertIn(b"[192.0.2.20]", reply)
            t.sendall(b"QUIT\r\n")
            t.recv(512)
            t.close()
        finally:
            s.close()
        relay.wait_log(r"event=session_end ip=192\.0\.2\.20 listener=pp .* tls=TLSv1\.[23]", timeout=5)


@unittest.skipUnless(os.path.exists(HAPROXY), "haproxy is not installed (scripts/install-deps.sh)")
class HaproxyFrontTest(RelayTestCase):
    """A real HAProxy (send-proxy-v2) in front: the relay sees the client's address."""

    def test_example_config_is_valid(self):
        cfg = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "haproxy", "haproxy.cfg")
        p = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(cfg) as f:
            text = f.read()
        self.assertIn("send-proxy-v2", text)
        self.assertIn("GET /readyz", text)

    def test_haproxy_send_proxy_v2(self):
        relay = self.new_relay(listeners=[Listener("pp", "plain", extra={"proxy_protocol": True,
                                                                         "proxy_from": ["127.0.0.1/32"]})],
                               trusted_networks=["127.0.0.3/32"])
        front = free_port()
        d = tempfile.mkdtemp(prefix="mxrelay-haproxy-")
        self.addCleanup(shutil.rmtree, d, True)
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 100\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
                    "frontend smtp\n  bind 127.0.0.1:%d\n  default_backend relays\n"
                    "backend relays\n  server r1 127.0.0.1:%d send-proxy-v2\n" % (front, relay.port("pp")))
        with open(os.path.join(d, "haproxy.log"), "wb") as log:
            proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True)
        self.addCleanup(stop_process, proc)
        for _ in range(100):  # bounded: 5 s
            try:
                socket.create_connection((HOST, front), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        # The client connects to HAProxy from 127.0.0.3 (trusted), HAProxy to
        # the relay from 127.0.0.1 (not trusted): relaying works only if the
        # relay believes the header.
        s = socket.create_connection((HOST, front), 10, source_address=("127.0.0.3", 0))
        with smtplib.SMTP(local_hostname="client.test", timeout=10) as c:
            c.sock = s
            c.file = None
            code, _ = c.getreply()
            self.assertEqual(code, 220)
            code, resp = c.ehlo()
            self.assertIn(b"[127.0.0.3]", resp)
            self.assertEqual(c.mail(SENDER)[0], 250)
            self.assertEqual(c.rcpt("r@elsewhere.test")[0], 250)
            code, resp = c.data(make_message(SENDER, ["r@elsewhere.test"], "haproxy", "haproxy").encode())
            self.assertEqual(code, 250, resp)
        relay.wait_log(r"event=queued id=\S+ ip=127\.0\.0\.3 ", timeout=5)


if __name__ == "__main__":
    unittest.main()
