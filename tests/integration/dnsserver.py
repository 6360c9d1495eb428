"""A real DNS server for the delivery tests: dnsmasq on a free loopback port.

    dns = DnsServer(mx={"a.test": [(10, "mx1.a.test"), (20, "mx2.a.test")]},
                    hosts={"mx1.a.test": "127.0.0.2", "mx2.a.test": "127.0.0.3"},
                    nullmx=["nullmx.test"],
                    txt={"s1._domainkey.a.test": "v=DKIM1; k=ed25519; p=..."})
    dns.start()                      # waits (bounded) until it answers
    ... delivery.resolver = dns.resolver ("127.0.0.1:PORT") ...
    dns.stop()                       # SIGTERM by PID, SIGKILL after a bounded wait

dnsmasq is authoritative-ish for the local domains only (`--local=/test/`,
`--no-resolv`, `--no-hosts`): names it does not know there are NXDOMAIN, a
name with an A record but no MX answers NODATA (implicit MX), and a null MX
(`MX 0 .`, RFC 7505) is served as `--mx-host=domain,.,0`, a TXT record (DKIM
keys) as `--txt-record`, its text cut into strings of at most 255 bytes (a
TXT record may hold several; verifiers join them). It never forwards
anything. query() is a minimal stdlib DNS client to check what it serves.
"""

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from relayctl import HOST, free_port

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

QTYPE = {"A": 1, "MX": 15, "AAAA": 28}
RCODE_NOERROR, RCODE_NXDOMAIN = 0, 3


def _qname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def _skip_name(buf, pos):
    for _ in range(128):
        l = buf[pos]
        if l & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + l
        if l == 0:
            return pos
    raise ValueError("name too long")


def _read_name(buf, pos):
    labels = []
    for _ in range(128):
        l = buf[pos]
        if l & 0xC0 == 0xC0:
            rest = _read_name(buf, (l & 0x3F) << 8 | buf[pos + 1])
            return ".".join(labels + ([rest] if rest else []))
        pos += 1
        if l == 0:
            return ".".join(labels)
        labels.append(buf[pos:pos + l].decode("ascii"))
        pos += l
    raise ValueError("name too long")


def query(server, name, qtype, timeout=2.0):
    """(rcode, [answer, ...]) for one UDP query; MX answers are (pref, host), A answers dotted quads."""
    qid = random.randrange(1 << 16)
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _qname(name) + \
        struct.pack(">HH", QTYPE[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(pkt, server)
        for _ in range(10):
            buf, _ = s.recvfrom(4096)
            if len(buf) >= 12 and struct.unpack(">H", buf[:2])[0] == qid:
                break
        else:
            raise socket.timeout("no matching DNS reply")
    finally:
        s.close()
    rcode = buf[3] & 0x0F
    qd, an = struct.unpack(">HH", buf[4:8])
    pos = 12
    for _ in range(qd):
        pos = _skip_name(buf, pos) + 4
    answers = []
    for _ in range(an):
        pos = _skip_name(buf, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", buf[pos:pos + 10])
        pos += 10
        rdata = pos
        if rtype == QTYPE["MX"]:
            answers.append((struct.unpack(">H", buf[rdata:rdata + 2])[0], _read_name(buf, rdata + 2)))
        elif rtype == QTYPE["A"]:
            answers.append(socket.inet_ntoa(buf[rdata:rdata + 4]))
        pos = rdata + rdlen
    return rcode, answers


class DnsServer:
    """dnsmasq serving MX / A / null MX records for local test domains only."""

    def __init__(self, mx=None, hosts=None, nullmx=(), local_domains=("test",), txt=None):
        self.mx = dict(mx or {})          # domain -> [(pref, host), ...]
        self.txt = dict(txt or {})        # name -> text (one TXT record)
        self.hosts = dict(hosts or {})    # name -> IPv4 address (A record)
        self.nullmx = list(nullmx)
        self.local_domains = list(local_domains)
        self.workdir = tempfile.mkdtemp(prefix="mxrelay-dns-")
        self.log_path = os.path.join(self.workdir, "dnsmasq.log")
        self.port = None
        self.proc = None
        self._log = None

    @property
    def resolver(self):
        """The value for delivery.resolver."""
        return "%s:%d" % (HOST, self.port)

    def args(self):
        a = [DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
             "--pid-file", "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
             "--listen-address=" + HOST, "--port=%d" % self.port, "--cache-size=0",
             "--log-queries"]
        if os.geteuid() == 0:
            a.append("--user=root")  # no privilege drop: it has nothing to protect here
        a += ["--local=/%s/" % d for d in self.local_domains]
        for domain, records in self.mx.items():
            for pref, host in records:
                a.append("--mx-host=%s,%s,%d" % (domain, host, pref))
        for domain in self.nullmx:
            a.append("--mx-host=%s,.,0" % domain)
        for name, ip in self.hosts.items():
            a.append("--host-record=%s,%s" % (name, ip))
        for name, text in self.txt.items():
            # dnsmasq splits its argument at commas into strings (quotes would
            # be kept as data outside a config file): no commas in the text.
            assert "," not in text, "TXT text with a comma: %r" % text
            parts = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
            a.append("--txt-record=%s,%s" % (name, ",".join(parts)))
        return a

    def start(self, tries=3, port=None):
        """Starts dnsmasq on `port` (one try) or on a free port (`tries` tries)."""
        if not os.path.exists(DNSMASQ):
            raise RuntimeError("dnsmasq not found (scripts/install-deps.sh installs dnsmasq-base)")
        last = ""
        for _ in range(1 if port else tries):
            self.port = port or free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=self._log, start_new_session=True)
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    query((HOST, self.port), "ready-probe.invalid", "A", timeout=0.2)
                    return self
                except OSError:
                    time.sleep(0.05)
            last = self.log_text()
            self.stop()
        raise RuntimeError("dnsmasq did not start; log:\n%s" % last)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        if self._log is not None and not self._log.closed:
            self._log.close()

    def cleanup(self):
        self.stop()
        if os.environ.get("MXRELAY_KEEP_TMP") is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def query(self, name, qtype):
        return query((HOST, self.port), name, qtype)


class HoldingProxy:
    """A UDP DNS proxy in front of a DnsServer that counts the queries it sees
    and can hold the answers to one query type until release().

        proxy = HoldingProxy(dns, hold_qtype="MX").start()
        ... delivery.resolver = proxy.resolver ...
        proxy.queries("alpha.test", "MX")   # how many reached the server side
        proxy.release()                     # answer the held ones, pass later ones through
        proxy.stop()

    One thread serves it; every wait is bounded (a held query is answered at
    the latest by stop(), and the thread ends by itself after `lifetime`).
    """

    def __init__(self, upstream, hold_qtype="MX", lifetime=120.0):
        self.upstream = (HOST, upstream.port)
        self.hold_qtype = QTYPE[hold_qtype]
        self.lifetime = lifetime
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._seen = []          # (name lowercased, qtype) in arrival order
        self._held = []          # (packet, client address)
        self._holding = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-proxy", daemon=True)

    @property
    def resolver(self):
        return "%s:%d" % (HOST, self.port)

    def start(self):
        self._thread.start()
        return self

    def queries(self, name, qtype):
        with self._lock:
            return sum(1 for n, t in self._seen if n == name.lower() and t == QTYPE[qtype])

    def held(self):
        with self._lock:
            return len(self._held)

    def release(self):
        with self._lock:
            self._holding = False

    def stop(self):
        self.release()
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()

    def _forward(self, pkt, client):
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            up.settimeout(2.0)
            up.sendto(pkt, self.upstream)
            answer, _ = up.recvfrom(4096)
            self.sock.sendto(answer, client)
        except OSError:
            pass  # no answer: the relay's own timeout handles it
        finally:
            up.close()

    def _serve(self):
        deadline = time.monotonic() + self.lifetime
        self.sock.settimeout(0.05)
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                due = [] if self._holding else self._held
                if due:
                    self._held = []
            for pkt, client in due:
                self._forward(pkt, client)
            try:
                pkt, client = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                name = _read_name(pkt, 12).lower()
                qtype = struct.unpack(">H", pkt[_skip_name(pkt, 12):][:2])[0]
            except (IndexError, ValueError, struct.error):
                continue
            with self._lock:
                self._seen.append((name, qtype))
                hold = self._holding and qtype == self.hold_qtype
                if hold:
                    self._held.append((pkt, client))
            if not hold:
                self._forward(pkt, client)
        with self._lock:
            due, self._held = self._held, []
        for pkt, client in due:
            self._forward(pkt, client)
