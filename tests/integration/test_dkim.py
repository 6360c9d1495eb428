"""DKIM signing (issue 16): mail relayed to a loopback sink carries signatures
that independent verifiers accept, with the public keys served as TXT records
by the loopback dnsmasq: Debian's dkimpy (python3-dkim) and OpenDKIM's
opendkim-testmsg (dkimcheck.py says how each is run).

- every message shape the relay accepts (folded and very long headers, 8-bit
  and SMTPUTF8 headers, empty body, header-only message, body of CRLFs,
  trailing whitespace, dot-stuffed lines, BDAT without a final CRLF, a message
  already signed upstream), RSA-2048 and Ed25519 side by side plus a
  platform's second domain: every signature verifies with both verifiers;
- altering one body byte or one signed header makes both verifiers fail;
- DSNs are signed with the relay's own domain;
- no rule: unsigned (metric, log) or deferred 451 4.7.0; a key unusable after
  SIGHUP: the rule's other keys sign, or 451 4.7.5;
- a key readable by others, missing or unparsable: the relay does not start
  (and check-config says why);
- SIGHUP rotation: the new selector signs the next message;
- `mxrelay dkim keygen` (0600 key, TXT record), `mxrelay dkim check`
  (through delivery.resolver: OK, MISMATCH, MISSING) and `mxrelay dkim sign`.
"""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from dkimcheck import Verifiers, only_signature, signatures
from dnsserver import DnsServer
from relayctl import MXRELAY_BIN, Listener, Relay, RelayTestCase, SmtpClient, dot_stuff, run_cli, submit
from sink import start_sinks

DEST, SENDERS, BOUNCE = "127.0.0.41", "127.0.0.42", "127.0.0.43"
MX = {"dest.test": [(10, "mx.dest.test")], "senders.test": [(10, "mx.senders.test")],
      "bounce.test": [(10, "mx.bounce.test")]}
HOSTS = {"mx.dest.test": DEST, "mx.senders.test": SENDERS, "mx.bounce.test": BOUNCE}
WAIT = 30.0

# name -> (domain, selector, algorithm for keygen)
KEYS = {
    "cust_rsa": ("customer.test", "rsa2026", "rsa2048"),
    "cust_ed": ("customer.test", "ed2026", "ed25519"),
    "platform": ("platform.test", "p1", "ed25519"),
    "relay": ("relay.test", "dsn", "ed25519"),
    "rot_a": ("rotate.test", "a2026", "ed25519"),
    "rot_b": ("rotate.test", "b2026", "rsa2048"),
    "upstream": ("upstream.test", "up", "rsa2048"),
}
CUSTOMER_SIGNERS = {("customer.test", "rsa2026"), ("customer.test", "ed2026"), ("platform.test", "p1")}


def keygen(workdir, domain, selector, algorithm):
    """`mxrelay dkim keygen`: (key path, TXT name, TXT text)."""
    path = os.path.join(workdir, "%s.%s.pem" % (domain, selector))
    r = run_cli(["dkim", "keygen", "--domain", domain, "--selector", selector, "--algorithm", algorithm,
                 "--out", path])
    if r.returncode != 0:
        raise AssertionError("keygen failed: %r %r" % (r.stdout, r.stderr))
    zone = [l for l in r.stdout.splitlines() if " IN TXT (" in l]
    assert len(zone) == 1, r.stdout
    name = zone[0].split()[0].rstrip(".")
    text = "".join(re.findall(r'"([^"]*)"', zone[0]))
    return path, name, text


def key_toml(k):
    return '{ domain = "%s", selector = "%s", key_file = "%s" }' % (k["domain"], k["selector"], k["path"])


class DkimRelay(Relay):
    """A Relay whose configuration ends with a [dkim] section."""

    def __init__(self, dkim_toml, **kw):
        super().__init__(**kw)
        self.dkim_toml = dkim_toml

    def config_text(self):
        return super().config_text() + "\n" + self.dkim_toml + "\n"


class DkimBase(RelayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.keydir = tempfile.mkdtemp(prefix="mxrelay-dkim-keys-")
        cls.addClassCleanup(shutil.rmtree, cls.keydir, True)
        cls.keys = {}
        txt = {}
        for name, (domain, selector, alg) in KEYS.items():
            path, rec_name, text = keygen(cls.keydir, domain, selector, alg)
            cls.keys[name] = {"domain": domain, "selector": selector, "path": path, "txt": text}
            txt[rec_name] = text
        cls.txt = txt
        cls.dns = DnsServer(mx=MX, hosts=HOSTS, txt=txt)
        cls.dns.start()
        cls.addClassCleanup(cls.dns.cleanup)
        cls.verifiers = Verifiers(cls.dns, txt)

    def dkim_toml(self, **opts):
        k = self.keys
        lines = ["[dkim]"] + ["%s = %s" % (n, v if isinstance(v, int) else '"%s"' % v) for n, v in opts.items()]
        lines += ["[[dkim.rule]]", 'from_domain = "customer.test"',
                  "keys = [%s]" % ", ".join(key_toml(k[n]) for n in ("cust_rsa", "cust_ed", "platform")),
                  "[[dkim.rule]]", 'from_domain = "relay.test"', "keys = [%s]" % key_toml(k["relay"]),
                  "[[dkim.rule]]", 'from_domain = "rotate.test"', "keys = [%s]" % key_toml(k["rot_a"])]
        return "\n".join(lines)

    def sinks(self, *specs):
        port, sinks = start_sinks(list(specs))
        for s in sinks:
            self.addCleanup(s.stop)
        return port, sinks

    def relay(self, port, dkim_toml=None, start=True):
        delivery = {"port": port, "resolver": self.dns.resolver, "retry_initial": 1, "retry_max": 2,
                    "max_age": 120, "connect_timeout": 5, "banner_timeout": 10, "command_timeout": 10,
                    "data_timeout": 10}
        r = DkimRelay(dkim_toml if dkim_toml is not None else self.dkim_toml(),
                      listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"],
                      delivery=delivery, hostname="relay.test", limits={"max_connections_per_ip": 100})
        self.addCleanup(r.cleanup)
        if start:
            r.start()
        return r

    def verify_all(self, data, expect_signers):
        """Every signature of `data` verifies with dkimpy and with opendkim-testmsg."""
        sigs = signatures(data)
        self.assertEqual({(d, s) for d, s, _ in sigs}, set(expect_signers), data[:3000])
        isolated = []
        for i, (d, s, a) in enumerate(sigs):
            ok, why = self.verifiers.dkimpy(data, i)
            self.assertTrue(ok, "dkimpy rejects d=%s s=%s a=%s: %s\n%s" % (d, s, a, why, data[:4000]))
            isolated.append(only_signature(data, i))
        for (d, s, a), (ok, out) in zip(sigs, self.verifiers.opendkim(isolated)):
            self.assertTrue(ok, "opendkim-testmsg rejects d=%s s=%s a=%s: %s\n%s" % (d, s, a, out, data[:4000]))

    def assert_fails_everywhere(self, data, what):
        sigs = signatures(data)
        self.assertTrue(sigs)
        isolated = []
        for i in range(len(sigs)):
            ok, _ = self.verifiers.dkimpy(data, i)
            self.assertFalse(ok, "dkimpy accepts a message with %s (signature %d)" % (what, i))
            isolated.append(only_signature(data, i))
        for i, (ok, out) in enumerate(self.verifiers.opendkim(isolated)):
            self.assertFalse(ok, "opendkim-testmsg accepts a message with %s (signature %d): %s" % (what, i, out))

    @staticmethod
    def by_token(messages, token):
        found = [m for m in messages if (b"<%s@client.test>" % token.encode()) in m.data]
        assert len(found) == 1, "%d messages with token %s" % (len(found), token)
        return found[0]


def headers(token, frm="News <news@customer.test>", subject=None, date=True, extra=()):
    h = ["From: %s" % frm, "To: <r@dest.test>", "Subject: %s" % (subject or "shape " + token),
         "Message-ID: <%s@client.test>" % token, "MIME-Version: 1.0",
         "Content-Type: text/plain; charset=utf-8"]
    if date:
        h.append("Date: Sun, 22 Nov 2026 00:30:00 +0000")
    h += list(extra)
    return "\r\n".join(h) + "\r\n"


class DkimSigningTest(DkimBase):

    def send_raw(self, port, token, message, mail_params="", rcpt="r@dest.test"):
        c = SmtpClient(port)
        self.addCleanup(c.close)
        c.ehlo()
        r = c.cmd("MAIL FROM:<bounce@customer.test>%s" % (" " + mail_params if mail_params else ""))
        self.assertEqual(r.code, 250, r)
        self.assertEqual(c.cmd("RCPT TO:<%s>" % rcpt).code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(dot_stuff(message) + b".\r\n")
        r = c.reply()
        self.assertEqual(r.code, 250, "%s: %r" % (token, r))
        c.cmd("QUIT")

    def send_bdat(self, port, token, chunks):
        c = SmtpClient(port)
        self.addCleanup(c.close)
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<bounce@customer.test> BODY=8BITMIME").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<r@dest.test>").code, 250)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
            r = c.reply()
            self.assertEqual(r.code, 250, "%s chunk %d: %r" % (token, i, r))
        c.cmd("QUIT")

    def test_every_message_shape_verifies_with_dkimpy_and_opendkim(self):
        port, (dest,) = self.sinks((DEST, {}))
        relay = self.relay(port)
        p = relay.port("plain")
        long_subject = " ".join("word%d" % i for i in range(600))  # ~5 KB, folded below
        folded = "\r\n\t".join(long_subject[i:i + 70] for i in range(0, len(long_subject), 70))
        shapes = {
            "plain": headers("plain") + "\r\nHello.\r\n",
            "folded": headers("folded", subject=folded,
                              extra=["X-Long: " + "y" * 990,
                                     "Cc: <a@dest.test>,\r\n <b@dest.test>,\r\n\t<c@dest.test>",
                                     "X-Spaces:   lots \t of   space\t "]) + "\r\nbody\r\n",
            "utf8": headers("utf8", frm="=?utf-8?q?N=C3=A9ws?= J\u00f6rg <news@customer.test>",
                            subject="caf\u00e9 \u20ac \u65e5\u672c",
                            extra=["X-Utf8: \u00e9t\u00e9  \u00e0 la plage"]) +
                    "\r\n8-bit body: na\u00efve caf\u00e9 \u2014 \u65e5\u672c\u8a9e\r\n",
            "empty-body": headers("empty-body") + "\r\n",
            "header-only": headers("header-only"),
            "only-crlfs": headers("only-crlfs") + "\r\n\r\n\r\n\r\n",
            "trailing-ws": headers("trailing-ws") + "\r\nline one   \r\nline\ttwo\t\t\r\n  \r\n\t\r\n \r\n",
            "dots": headers("dots") + "\r\n.leading dot\r\n..two dots\r\n.\r\n. \r\nend\r\n",
        }
        for token, msg in shapes.items():
            params = "SMTPUTF8 BODY=8BITMIME" if token == "utf8" else ""
            self.send_raw(p, token, msg.encode("utf-8"), params)
        # BDAT: chunks cut mid-line and mid-CRLF; the last one ends without CRLF.
        bdat = (headers("bdat") + "\r\nfirst line\r\nsecond  line  \r\nno final CRLF  ").encode()
        self.send_bdat(p, "bdat", [bdat[:50], bdat[50:51], bdat[51:len(bdat) - 20], bdat[len(bdat) - 20:]])
        # Already signed upstream (dkimpy with upstream.test's key): we sign in addition.
        import dkim
        pre = (headers("presigned", frm="<news@customer.test>") + "\r\nsigned upstream\r\n").encode()
        with open(self.keys["upstream"]["path"], "rb") as f:
            up = dkim.sign(pre, b"up", b"upstream.test", f.read(), include_headers=[b"from", b"subject"])
        submit(p, "bounce@customer.test", ["r@dest.test"], up + pre)
        n = len(shapes) + 2
        got = dest.wait_messages(n, timeout=WAIT)
        self.assertEqual(len(got), n)
        for token in list(shapes) + ["bdat"]:
            with self.subTest(shape=token):
                self.verify_all(self.by_token(got, token).data, CUSTOMER_SIGNERS)
        with self.subTest(shape="presigned"):
            self.verify_all(self.by_token(got, "presigned").data, CUSTOMER_SIGNERS | {("upstream.test", "up")})
        m = relay.scrape()
        for d, a in (("customer.test", "rsa-sha256"), ("customer.test", "ed25519-sha256"),
                     ("platform.test", "ed25519-sha256")):
            self.assertEqual(m.get('mxrelay_dkim_signatures_total{domain="%s",algorithm="%s"}' % (d, a)), n, m)
        self.assertEqual(m.get('mxrelay_dkim_messages_total{result="signed"}'), n)
        self.assertEqual(m.get("mxrelay_dkim_signing_duration_seconds_count"), n)

    def test_altered_message_fails_verification(self):
        port, (dest,) = self.sinks((DEST, {}))
        relay = self.relay(port)
        self.send_raw(relay.port("plain"), "alter", (headers("alter") + "\r\nThe body.\r\n").encode())
        data = dest.wait_messages(1, timeout=WAIT)[0].data
        self.verify_all(data, CUSTOMER_SIGNERS)  # the verifiers accept the original...
        body_byte = data.replace(b"The body.", b"The bodY.")
        self.assertNotEqual(body_byte, data)
        self.assert_fails_everywhere(body_byte, "one body byte changed")  # ...and check what they accept
        header = data.replace(b"Subject: shape alter", b"Subject: shape altar")
        self.assertNotEqual(header, data)
        self.assert_fails_everywhere(header, "a signed header changed")

    def test_no_rule_is_sent_unsigned_and_counted(self):
        port, (dest,) = self.sinks((DEST, {}))
        relay = self.relay(port)
        self.send_raw(relay.port("plain"), "norule", headers("norule", frm="<x@other.test>").encode() + b"\r\nb\r\n")
        data = dest.wait_messages(1, timeout=WAIT)[0].data
        self.assertEqual(signatures(data), [])
        relay.wait_log(r"event=dkim_unsigned id=\S+ reason=no_rule .*From: domain other\.test", timeout=5)
        m = relay.scrape()
        self.assertEqual(m.get('mxrelay_dkim_failures_total{reason="no_rule"}'), 1)
        self.assertEqual(m.get('mxrelay_dkim_messages_total{result="unsigned"}'), 1)

    def test_no_rule_deferred_when_configured(self):
        port, (dest,) = self.sinks((DEST, {}))
        relay = self.relay(port, dkim_toml=self.dkim_toml(on_no_rule="defer"))
        c = SmtpClient(relay.port("plain"))
        self.addCleanup(c.close)
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<x@other.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<r@dest.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(dot_stuff(headers("defer", frm="<x@other.test>") + "\r\nb\r\n") + b".\r\n")
        r = c.reply()
        self.assertReply(r, 451, "4.7.0")
        self.assertIn("no DKIM signing rule for From: domain other.test", r.text)
        # The session goes on; a signable message is accepted on it.
        self.assertEqual(c.cmd("MAIL FROM:<bounce@customer.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<r@dest.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(dot_stuff(headers("after-defer") + "\r\nb\r\n") + b".\r\n")
        self.assertEqual(c.reply().code, 250)
        got = dest.wait_messages(1, timeout=WAIT)
        time.sleep(0.5)
        self.assertEqual(len(dest.received()), 1, "the deferred message must not be delivered")
        self.verify_all(got[0].data, CUSTOMER_SIGNERS)
        self.assertEqual(relay.scrape().get('mxrelay_dkim_messages_total{result="deferred"}'), 1)


class DkimDsnTest(DkimBase):

    def test_dsn_is_signed_with_the_relays_domain(self):
        port, (senders, bounce) = self.sinks((SENDERS, {}), (BOUNCE, {"rcpt": lambda a: "550 5.1.1 no such user"}))
        relay = self.relay(port)
        msg = headers("bounceme", frm="<s@senders.test>") + "\r\nwill bounce\r\n"
        submit(relay.port("plain"), "s@senders.test", ["gone@bounce.test"], msg)
        dsn = senders.wait_messages(1, timeout=WAIT)[0]
        self.assertEqual(dsn.mail_from, "")
        self.assertIn(b"From: Mail Delivery System <MAILER-DAEMON@relay.test>", dsn.data)
        self.verify_all(dsn.data, {("relay.test", "dsn")})


class DkimKeyErrorsTest(DkimBase):

    def start_fails(self, relay, rx):
        relay.write_config()
        r = run_cli(["check-config", "-c", relay.config_path])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertRegex(r.stderr, rx)
        with self.assertRaises(RuntimeError) as cm:
            relay.start(timeout=15)
        self.assertRegex(str(cm.exception), r"event=startup_failed error=\"[^\"]*" + rx)
        self.assertFalse(relay.running())

    def broken_copy(self, name, content=None, mode=0o600):
        d = tempfile.mkdtemp(prefix="mxrelay-dkim-bad-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "key.pem")
        if content is None:
            shutil.copy(self.keys[name]["path"], path)
        elif content is not False:
            with open(path, "w") as f:
                f.write(content)
        if os.path.exists(path):
            os.chmod(path, mode)
        return path

    def config_with(self, path, **opts):
        k = dict(self.keys["cust_rsa"], path=path)
        return "\n".join(["[dkim]"] + ['%s = "%s"' % kv for kv in opts.items()] +
                         ["[[dkim.rule]]", 'from_domain = "customer.test"',
                          "keys = [%s, %s]" % (key_toml(k), key_toml(self.keys["cust_ed"]))])

    def test_key_readable_by_others_refused_at_start(self):
        path = self.broken_copy("cust_rsa", mode=0o644)
        relay = self.relay(2525, dkim_toml=self.config_with(path), start=False)
        self.start_fails(relay, r"dkim\.rule\[0\]\.keys\[0\] \(d=customer\.test s=rsa2026\): %s: a private key must "
                                r"not be readable or writable by others \(mode 0644\); chmod 600" % re.escape(path))

    def test_missing_key_refused_at_start(self):
        path = self.broken_copy("cust_rsa", content=False)
        relay = self.relay(2525, dkim_toml=self.config_with(path), start=False)
        self.start_fails(relay, r"%s: cannot open: No such file or directory" % re.escape(path))

    def test_unparsable_key_refused_at_start(self):
        path = self.broken_copy("cust_rsa", content="-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        relay = self.relay(2525, dkim_toml=self.config_with(path), start=False)
        self.start_fails(relay, r"%s: not a PEM private key" % re.escape(path))

    def sighup_break(self, relay, path):
        with open(path, "w") as f:
            f.write("not a key any more\n")
        relay.hup()
        relay.wait_log(r"event=dkim_key_unusable error=\"dkim\.rule\[0\]\.keys\[0\] \(d=customer\.test s=rsa2026\)", 10)
        relay.wait_log(r"event=dkim_reloaded rules=1 keys=2 unusable=1", 10)

    def test_key_unusable_after_sighup_other_key_still_signs(self):
        port, (dest,) = self.sinks((DEST, {}))
        path = self.broken_copy("cust_rsa")
        relay = self.relay(port, dkim_toml=self.config_with(path))
        self.sighup_break(relay, path)
        submit(relay.port("plain"), "bounce@customer.test", ["r@dest.test"], headers("half") + "\r\nb\r\n")
        data = dest.wait_messages(1, timeout=WAIT)[0].data
        self.verify_all(data, {("customer.test", "ed2026")})
        relay.wait_log(r"event=dkim_key_skipped .*reason=key_unusable", 5)
        self.assertEqual(relay.scrape().get('mxrelay_dkim_failures_total{reason="key_unusable"}'), 1)

    def test_key_unusable_after_sighup_defers_when_configured(self):
        port, (dest,) = self.sinks((DEST, {}))
        path = self.broken_copy("cust_rsa")
        relay = self.relay(port, dkim_toml=self.config_with(path, on_key_error="defer"))
        self.sighup_break(relay, path)
        c = SmtpClient(relay.port("plain"))
        self.addCleanup(c.close)
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<bounce@customer.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<r@dest.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(dot_stuff(headers("deferkey") + "\r\nb\r\n") + b".\r\n")
        r = c.reply()
        self.assertReply(r, 451, "4.7.5")
        self.assertIn("DKIM key unusable (d=customer.test s=rsa2026", r.text)
        time.sleep(0.5)
        self.assertEqual(dest.received(), [])


class DkimRotationTest(DkimBase):

    def test_sighup_rotation_new_selector_signs_at_once(self):
        port, (dest,) = self.sinks((DEST, {}))
        relay = self.relay(port)
        submit(relay.port("plain"), "n@rotate.test", ["r@dest.test"], headers("rot1", frm="<n@rotate.test>") + "\r\nb\r\n")
        first = dest.wait_messages(1, timeout=WAIT)[0].data
        self.verify_all(first, {("rotate.test", "a2026")})
        # Rotate: the new selector (published beforehand) replaces the old one.
        relay.dkim_toml = relay.dkim_toml.replace(key_toml(self.keys["rot_a"]), key_toml(self.keys["rot_b"]))
        relay.write_config()
        relay.hup()
        relay.wait_log(r"event=dkim_reloaded rules=3 keys=5 unusable=0", 10)
        submit(relay.port("plain"), "n@rotate.test", ["r@dest.test"], headers("rot2", frm="<n@rotate.test>") + "\r\nb\r\n")
        got = dest.wait_messages(2, timeout=WAIT)
        second = self.by_token(got, "rot2").data
        self.verify_all(second, {("rotate.test", "b2026")})
        self.assertEqual(signatures(second)[0][2], "rsa-sha256")


class DkimCliTest(DkimBase):

    def test_keygen_writes_a_private_key_and_prints_the_record(self):
        path = self.keys["cust_ed"]["path"]
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertRegex(self.keys["cust_ed"]["txt"], r"^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$")
        self.assertRegex(self.keys["cust_rsa"]["txt"], r"^v=DKIM1; k=rsa; p=MIIB[A-Za-z0-9+/=]+$")
        # Never overwrites a key unless told to.
        d, s, _ = KEYS["cust_ed"]
        r = run_cli(["dkim", "keygen", "--domain", d, "--selector", s, "--algorithm", "ed25519", "--out", path])
        self.assertEqual(r.returncode, 2)
        self.assertIn("exists", r.stderr)
        r = run_cli(["dkim", "keygen", "--domain", d, "--selector", s, "--algorithm", "dsa", "--out", path + ".x"])
        self.assertEqual(r.returncode, 2)

    def test_sign_by_hand_verifies(self):
        k = self.keys["platform"]
        msg = (headers("byhand", frm="<n@platform.test>").replace("\r\n", "\n") + "\nbody  line\t\n\n").encode()
        r = subprocess.run([MXRELAY_BIN, "dkim", "sign", "--domain", k["domain"], "--selector", k["selector"],
                            "--key-file", k["path"]], input=msg, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=platform.test;"))
        self.assertNotIn(b"\n", r.stdout.replace(b"\r\n", b""), "LF line endings become CRLF")
        self.verify_all(r.stdout, {("platform.test", "p1")})
        # The same refusal as the relay's for a key others may read.
        loose = os.path.join(tempfile.mkdtemp(prefix="mxrelay-dkim-loose-"), "k.pem")
        self.addCleanup(shutil.rmtree, os.path.dirname(loose), True)
        shutil.copy(k["path"], loose)
        os.chmod(loose, 0o644)
        r = subprocess.run([MXRELAY_BIN, "dkim", "sign", "--domain", k["domain"], "--selector", k["selector"],
                            "--key-file", loose], input=msg, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"chmod 600", r.stderr)

    def test_check_through_the_configured_resolver(self):
        relay = self.relay(2525, start=False)
        relay.write_config()
        for name in ("cust_rsa", "cust_ed", "platform"):
            d, s = self.keys[name]["domain"], self.keys[name]["selector"]
            r = run_cli(["dkim", "check", "--domain", d, "--selector", s, "-c", relay.config_path])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertRegex(r.stdout, r"^OK: %s\._domainkey\.%s publishes the public key of " % (s, d))
        # A key whose selector publishes another key: MISMATCH, with the record to publish.
        other = tempfile.mkdtemp(prefix="mxrelay-dkim-other-")
        self.addCleanup(shutil.rmtree, other, True)
        wrong, _, _ = keygen(other, "customer.test", "ed2026", "ed25519")
        r = run_cli(["dkim", "check", "--domain", "customer.test", "--selector", "ed2026", "--key-file", wrong,
                     "-c", relay.config_path])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("MISMATCH: ed2026._domainkey.customer.test does not publish the public key", r.stdout)
        self.assertIn(self.keys["cust_ed"]["txt"].split("p=")[1], r.stdout)  # what is published
        # Nothing published under that selector: MISSING.
        r = run_cli(["dkim", "check", "--domain", "customer.test", "--selector", "nosuch", "--key-file", wrong,
                     "--resolver", self.dns.resolver])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("MISSING: nosuch._domainkey.customer.test", r.stdout)


if __name__ == "__main__":
    unittest.main()
