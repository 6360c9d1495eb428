"""Independent DKIM verifiers for the integration tests: Debian's dkimpy
(python3-dkim) and OpenDKIM's opendkim-testmsg (opendkim-tools), both fetching
the public keys as TXT records from a loopback dnsmasq (dnsserver.py).

    v = Verifiers(dns, txt)                  # dns: the test's DnsServer; txt: {name: text}
    sigs = signatures(data)                  # [(d, s, a), ...] in field order
    ok, why = v.dkimpy(data, index)          # one signature, by its index
    results = v.opendkim([data, ...])        # [(ok, output), ...], one signature per message

dkimpy is given a DNS function that asks the test's dnsmasq (its port is not
53). opendkim-testmsg has no resolver option: it reads /etc/resolv.conf
(port 53 only). It therefore runs in a private network and mount namespace
(`unshare --net --mount`, nothing on the machine changes): its own loopback,
a dnsmasq on 127.0.0.1:53 serving the same TXT records, and a resolv.conf
naming it bind-mounted over /etc/resolv.conf. It checks the first signature
that verifies, so each message given to it carries one signature
(only_signature()). Debian's build also checks RFC 5322 header rules
(DKIM_LIBFLAGS_STRICTHDRS: a From: and a Date:), which relayed mail meets.

Rules kept: loopback only, every wait bounded, processes stopped by PID.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"
PYTHON = "/usr/bin/python3"   # Debian's: the one with python3-dkim
NETNS_TIMEOUT = 120.0

_SIG_RX = re.compile(rb"^DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n", re.I | re.M)


def signature_fields(data):
    """The DKIM-Signature fields of the header section (raw, with their CRLF)."""
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return [m.group(0) for m in _SIG_RX.finditer(head)]


def tags(field):
    value = field.split(b":", 1)[1]
    out = {}
    for spec in re.sub(rb"\s+", b"", value).split(b";"):
        if b"=" in spec:
            k, v = spec.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def signatures(data):
    """[(d, s, a), ...] of the message's DKIM-Signature fields, in order."""
    return [(t.get("d"), t.get("s"), t.get("a")) for t in map(tags, signature_fields(data))]


def only_signature(data, index):
    """The message with every DKIM-Signature field but the index-th removed."""
    fields = signature_fields(data)
    head, sep, body = data.partition(b"\r\n\r\n")
    head += b"\r\n"
    for i, f in enumerate(fields):
        if i != index:
            head = head.replace(f, b"", 1)
    return head[:-2] + sep + body


class Verifiers:
    def __init__(self, dns, txt):
        self.dns = dns
        self.txt = dict(txt)

    # ------------------------------------------------------------ dkimpy

    def _dnsfunc(self, name, timeout=5):
        import dns.resolver
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.dns.port
        r.lifetime = timeout
        if isinstance(name, bytes):
            name = name.decode()
        try:
            answer = r.resolve(name.rstrip("."), "TXT")
        except Exception:  # NXDOMAIN, NoAnswer: dkimpy treats "" as no key
            return b""
        return b"".join(b"".join(rr.strings) for rr in answer)

    def dkimpy(self, data, index):
        """(verified, detail) for the index-th signature, by dkimpy (python3-dkim)."""
        try:
            import dkim
        except ImportError:
            raise AssertionError("dkimpy missing: run with Debian's python3 and python3-dkim "
                                 "(scripts/install-deps.sh)")
        try:
            return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=self._dnsfunc)), ""
        except Exception as e:  # dkimpy raises on malformed input
            return False, repr(e)

    # ------------------------------------------------------------ opendkim

    def opendkim(self, messages):
        """[(verified, output), ...]: opendkim-testmsg on each message (one signature each)."""
        if not os.path.exists(TESTMSG):
            raise AssertionError("opendkim-testmsg missing (scripts/install-deps.sh installs opendkim-tools)")
        work = tempfile.mkdtemp(prefix="mxrelay-opendkim-")
        try:
            files = []
            for i, m in enumerate(messages):
                p = os.path.join(work, "m%d.eml" % i)
                with open(p, "wb") as f:
                    f.write(m)
                files.append(p)
            job = {"txt": self.txt, "files": files, "work": work}
            with open(os.path.join(work, "job.json"), "w") as f:
                json.dump(job, f)
            cmd = ["unshare", "--net", "--mount", "--propagation", "private"]
            if os.geteuid() != 0:
                cmd.append("--map-root-user")
            cmd += [PYTHON, os.path.abspath(__file__), "--netns", os.path.join(work, "job.json")]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=NETNS_TIMEOUT)
            if r.returncode != 0:
                raise AssertionError("opendkim namespace run failed (rc=%d):\n%s\n%s"
                                     % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
            res = json.loads(r.stdout.strip().splitlines()[-1])
            return [(x["rc"] == 0, x["out"]) for x in res]
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _netns_main(job_path):
    """Inside `unshare --net --mount`: loopback up, dnsmasq on :53, resolv.conf, testmsg."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dnsserver import DnsServer
    with open(job_path) as f:
        job = json.load(f)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    dns = DnsServer(txt=job["txt"])
    dns.start(port=53)
    try:
        resolv = os.path.join(job["work"], "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True, timeout=30)
        out = []
        for path in job["files"]:
            with open(path, "rb") as f:
                r = subprocess.run([TESTMSG], stdin=f, capture_output=True, text=True, timeout=60)
            out.append({"rc": r.returncode, "out": (r.stdout + r.stderr).strip()})
    finally:
        dns.cleanup()
    print(json.dumps(out))


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--netns":
    _netns_main(sys.argv[2])
