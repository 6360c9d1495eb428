#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (deterministic; re-run
after changing an input format). Seeds are real dialogues and answers, taken
from the unit tests, the RFCs' examples and docs/CONFIG.md.

  python3 fuzz/gen_corpus.py     # rewrites fuzz/corpus/*/seed-*

Files named crash-* / regress-* (inputs that once found a bug) are kept.
"""
import base64
import hashlib
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear(target):
    d = os.path.join(ROOT, target)
    if os.path.isdir(d):
        for n in os.listdir(d):
            if n.startswith("seed-"):
                os.remove(os.path.join(d, n))


# --------------------------------------------------------------- commands
def smtp_command():
    lines = [
        "EHLO client.example", "HELO client.example", "ehlo [192.0.2.1]",
        "MAIL FROM:<alice@example.com>", "mail from:<Alice@Example.COM>",
        "MAIL FROM: <a@b.c>", "MAIL FROM:<>", "RCPT TO:<>",
        "MAIL FROM:<a@b.c> SIZE=12345 BODY=8BITMIME SMTPUTF8 AUTH=<>",
        "MAIL FROM:<a@b.c> size=0 body=7bit smtputf8",
        "MAIL FROM:<a@b.c>    SIZE=18446744073709551615",
        "MAIL FROM:<a@b.c> SIZE=18446744073709551616", "MAIL FROM:<a@b.c> SIZE=",
        "MAIL FROM:<a@b.c> BODY=BINARYMIME", "MAIL FROM:<a@b.c> SMTPUTF8=yes",
        "MAIL FROM:<a@b.c> FOO=bar", "MAIL FROM:<a@b.c> RET=HDRS ENVID=x",
        "RCPT TO:<bob@example.org>", "rcpt to:<bob@example.org>   ",
        "RCPT TO:bob@example.org", "RCPT TO:<a@b.c> NOTIFY=NEVER",
        "RCPT TO:<@a.example,@b.example:u@c.example>", "MAIL FROM:<@a,@b:u@c>",
        'RCPT TO:<"john doe"@example.com>', 'RCPT TO:<"a>b"@example.com>',
        'RCPT TO:<"x@y"@example.com>', 'MAIL FROM:<"a\\"b\\>c"@example.com> SIZE=1',
        'RCPT TO:<"abc@example.com>', 'RCPT TO:<"ab\\"@example.com>',
        "RCPT TO:<first.last+tag@example.com>", "RCPT TO:<!#$%&'*+-/=?^_`{|}~@example.com>",
        "RCPT TO:<.a@example.com>", "RCPT TO:<a..b@example.com>", "RCPT TO:<a@>",
        "RCPT TO:<a@localhost>", "RCPT TO:<a@sub-domain.example-1.com>",
        "RCPT TO:<a@example.com.>", "RCPT TO:<a@-example.com>",
        "RCPT TO:<a@" + "x" * 63 + ".com>",
        "RCPT TO:<postmaster@[127.0.0.1]>", "RCPT TO:<postmaster@[IPv6:::1]>",
        "RCPT TO:<a@[IPv6:2001:db8::1]>", "RCPT TO:<a@[::1]>", "RCPT TO:<a@[256.0.0.1]>",
        "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8",
        "RCPT TO:<\u7528\u6237@\u4f8b\u5b50.\u516c\u53f8>", "RCPT TO:<\U0001F600@example.com>",
        'RCPT TO:<"\u00e9 x"@example.com>', "RCPT TO:<a\x01b@example.com>",
        "BDAT 100", "BDAT 0 LAST", "bdat 5 last", "BDAT 18446744073709551615 LAST", "BDAT x",
        "DATA", "RSET", "NOOP", "QUIT", "VRFY postmaster", "EXPN list", "HELP", "STARTTLS",
        "AUTH PLAIN " + base64.b64encode(b"\0alice\0secret").decode(), "AUTH LOGIN", "AUTH PLAIN =",
    ]
    clear("smtp_command")
    write("smtp_command", "all-lines", b"\x00" + "".join(l + "\r\n" for l in lines).encode())
    for i, l in enumerate(lines):
        h = hashlib.sha1(l.encode()).hexdigest()[:8]
        write("smtp_command", f"line-{i:02d}-{h}", b"\x00" + l.encode() + b"\r\n")
    write("smtp_command", "bare-lf", b"\x00MAIL FROM:<a@b.c>\nRCPT TO:<b@c.d>\r\n")
    write("smtp_command", "small-limit", b"\xd0" + b"EHLO " + b"x" * 100 + b"\r\nNOOP\r\n")
    write("smtp_command", "bad-utf8", b"\x00RCPT TO:<\xc0\xaf@example.com>\r\nRCPT TO:<\xed\xa0\x80@x.y>\r\n")


# ---------------------------------------------------------------- session
# Header: byte 0 flags (bit0 trusted, bits1-2 mode: 0 starttls, 2 plain, 3
# implicit TLS; bit3 auth_without_tls ...), byte 1 flags, bytes 2-3 split seed.
def hdr(trusted=False, mode=0, auth_without_tls=False, b1=0, seed=0x1234, b0_extra=0):
    b0 = (1 if trusted else 0) | (mode << 1) | (8 if auth_without_tls else 0) | b0_extra
    return bytes([b0, b1, seed >> 8, seed & 0xFF])


PLAIN_OK = base64.b64encode(b"\0alice\0secret").decode()
PLAIN_BAD = base64.b64encode(b"\0alice\0wrong").decode()
BODY = ("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\n"
        "Hello.\r\n..leading dot\r\n.\r\n")


def bdat(chunk, last=False):
    return "BDAT %d%s\r\n%s" % (len(chunk.encode()), " LAST" if last else "", chunk)


def session():
    clear("session")
    w = lambda n, h, s: write("session", n, h + s.encode("utf-8", "surrogateescape"))
    w("trusted-pipelined", hdr(trusted=True, mode=2),
      "EHLO client.example\r\nMAIL FROM:<alice@example.com> SIZE=200\r\n"
      "RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n" + BODY + "QUIT\r\n")
    w("auth-plain-pipelined", hdr(auth_without_tls=True, mode=2),
      "EHLO c\r\nAUTH PLAIN " + PLAIN_OK + "\r\nMAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@example.org>\r\nDATA\r\n" + BODY +
      "MAIL FROM:<>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nSubject: 2\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
    w("auth-login", hdr(auth_without_tls=True),
      "EHLO c\r\nAUTH LOGIN\r\n" + base64.b64encode(b"alice").decode() + "\r\n" +
      base64.b64encode(b"secret").decode() + "\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
      "DATA\r\nx\r\n.\r\nQUIT\r\n")
    w("auth-fail-then-ok", hdr(auth_without_tls=True),
      "EHLO c\r\nAUTH PLAIN " + PLAIN_BAD + "\r\nAUTH PLAIN\r\n" + PLAIN_OK +
      "\r\nAUTH PLAIN *\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRSET\r\nQUIT\r\n")
    w("starttls-auth", hdr(),
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN " + PLAIN_OK +
      "\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n")
    w("starttls-injection", hdr(seed=7),
      "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.y>\r\nEHLO c\r\nNOOP\r\n")
    w("implicit-tls-auth", hdr(mode=3),
      "EHLO c\r\nSTARTTLS\r\nAUTH PLAIN " + PLAIN_OK + "\r\nMAIL FROM:<a@b.c>\r\n"
      "RCPT TO:<d@e.f>\r\n" + bdat("hi\r\nyo\r\n", True) + "QUIT\r\n")
    w("bdat-chunks", hdr(trusted=True, mode=2),
      "EHLO c\r\nMAIL FROM:<a@b.c> BODY=8BITMIME\r\nRCPT TO:<d@e.f>\r\n"
      + bdat("Subject: x\r\n\r\nbody\r\n") + bdat(".line\r\n\r\n") + bdat("", True) + "QUIT\r\n")
    w("bdat-bare-lf", hdr(trusted=True, mode=2),
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n" + bdat("Subject: x\n\nbody\r\n", True) + "QUIT\r\n")
    w("bdat-errors", hdr(trusted=True, mode=2),
      "EHLO c\r\nBDAT 5\r\nhelloMAIL FROM:<a@b.c>\r\nBDAT 3 LAST\r\nabcRCPT TO:<d@e.f>\r\n"
      "DATA\r\nx\r\n.\r\nBDAT 2\r\nzzRSET\r\nQUIT\r\n")
    for i, (name, body) in enumerate([
            ("lf-dot-lf", "Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nevil\r\n.\r\n"),
            ("crlf-dot-lf", "x\r\n.\nMAIL FROM:<evil@x.y>\r\n.\r\n"),
            ("lf-dot-crlf", "x\n.\r\nMAIL FROM:<evil@x.y>\r\n.\r\n"),
            ("cr-dot-cr", "x\r.\rMAIL FROM:<evil@x.y>\r\n.\r\n"),
            ("dot-cr-lf-bare", "x\r\n.\r\r\n.\r\n")]):
        w("smuggle-" + name, hdr(trusted=True, mode=2, seed=100 + i),
          "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n" + body + "QUIT\r\n")
    w("smtputf8", hdr(trusted=True, mode=2),
      "EHLO c\r\nMAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\n"
      "RCPT TO:<\u7528\u6237@\u4f8b\u5b50.\u516c\u53f8>\r\nRCPT TO:<\"q u\"@[IPv6:::1]>\r\n"
      "RCPT TO:<@a,@b:c@d>\r\nDATA\r\nSubject: \u00e9\r\n\r\n\u00e9\r\n.\r\n"
      "MAIL FROM:<\u00e9@x.y>\r\nQUIT\r\n")
    w("oversize-small-limits", hdr(trusted=True, mode=2, b1=1),
      "EHLO c\r\nMAIL FROM:<a@b.c> SIZE=1000\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n" +
      "x" * 150 + "\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 150 LAST\r\n" + "y" * 150 +
      "QUIT\r\n")
    w("too-many-rcpts-errors", hdr(trusted=True, mode=2, b1=2),
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<1@e.f>\r\nRCPT TO:<2@e.f>\r\nRCPT TO:<3@e.f>\r\n"
      "FOO\r\nBAR\r\nBAZ\r\nQUIT\r\n")
    w("long-lines", hdr(trusted=True, mode=2, b1=3),
      "EHLO " + "a" * 100 + "\r\nNOOP " + "b" * 2000 + "\r\nNOOP\r\nAUTH PLAIN " + "A" * 80 + "\r\nQUIT\r\n")
    w("misc-commands", hdr(mode=2),
      "HELO c\r\nVRFY postmaster\r\nEXPN all\r\nHELP\r\nNOOP\r\nRSET\r\nDATA\r\nRCPT TO:<a@b.c>\r\n"
      "MAIL FROM:<a@b.c>\r\nAUTH PLAIN\r\nSTARTTLS x\r\nNUL\0 here\r\nEHLO\r\nQUIT\r\n")
    w("spool-fails", hdr(trusted=True, mode=2, b0_extra=16 | (2 << 5)),
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nDATA\r\nx\r\n.\r\n"
      "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n")
    w("shutdown-mid", hdr(trusted=True, mode=2, b1=8 | 16),
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nline\r\nline\r\n.\r\nNOOP\r\nNOOP\r\n")
    w("auth-blocked", hdr(auth_without_tls=True, b1=32 | 4, b0_extra=128),
      "EHLO c\r\nAUTH PLAIN " + PLAIN_OK + "\r\nNOOP\r\n")


# ------------------------------------------------------------ data reader
def data_reader():
    clear("data_reader")
    seeds = {
        "simple": b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n",
        "stuffed": b"..one\r\n...two\r\n.\r\n",
        "empty": b".\r\n",
        "lf-dot-lf": b"a\n.\nb\r\n.\r\n",
        "cr-dot-cr": b"a\r.\rb\r\n.\r\n",
        "dot-cr-x": b".\rx\r\n.\r\n",
        "incomplete": b"abc\r\n.\r",
        "crcrlf": b"a\r\r\n.\r\n",
        "long": b"x" * 3000 + b"\r\n.\r\n",
    }
    for i, (n, s) in enumerate(seeds.items()):
        write("data_reader", n, bytes([7 + i, 0x30 + i, 0x11 * i]) + s)
    write("data_reader", "tiny-limit", b"\x02\x01\x02" + b"abcdef\r\n.\r\n")


# ----------------------------------------------------------------- replies
EHLO_PIPE = ("250-mx.remote.example hello\r\n250-PIPELINING\r\n250-SIZE 10000\r\n"
             "250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n")


def rhdr(tls=0, auth=False, tls_fails=False, utf8=False, eight=False, msgs=1, rcpts=2, quit=True,
         body=1, seed=0x4321):
    b0 = tls | (4 if auth else 0) | (8 if tls_fails else 0) | (16 if utf8 else 0) | (32 if eight else 0) | ((msgs - 1) << 6)
    b1 = (rcpts - 1) | (8 if quit else 0) | (body << 4)
    return bytes([b0, b1, seed >> 8, seed & 0xFF])


def replies():
    clear("reply_parser")
    w = lambda n, h, s: write("reply_parser", n, h + s.encode())
    banner = "220 mx.remote.example ESMTP ready\r\n"
    w("pipelined-mixed", rhdr(rcpts=3),
      banner + EHLO_PIPE + "250 2.1.0 sender ok\r\n250 2.1.5 bob ok\r\n550 5.1.1 carol unknown\r\n"
      "451 4.2.0 dave later\r\n354 go ahead\r\n250 2.0.0 queued as 123\r\n221 2.0.0 bye\r\n")
    w("no-pipelining", rhdr(rcpts=2, msgs=2),
      banner + "250-mx\r\n250 ENHANCEDSTATUSCODES\r\n250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n"
      "250 queued\r\n250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n250 2.0.0 reset\r\n221 bye\r\n")
    w("helo-fallback", rhdr(),
      banner + "502 5.5.2 what is EHLO\r\n250 mx hello\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
    w("starttls-auth", rhdr(tls=2, auth=True),
      banner + "250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n220 2.0.0 go ahead\r\n"
      "250-mx\r\n250-AUTH LOGIN PLAIN\r\n250-PIPELINING\r\n250 SIZE\r\n235 2.7.0 ok\r\n"
      "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 ok\r\n")
    w("starttls-refused", rhdr(tls=1),
      banner + "250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n250 ok\r\n")
    w("tls-required-not-offered", rhdr(tls=3), banner + "250-mx\r\n250 8BITMIME\r\n")
    w("banner-reject", rhdr(), "554-5.7.1 go away\r\n554 5.7.1 really\r\n")
    w("421-mid", rhdr(), banner + EHLO_PIPE + "250 ok\r\n421 4.3.2 shutting down\r\n")
    w("data-rejected", rhdr(rcpts=1, body=2),
      banner + EHLO_PIPE + "250 ok\r\n250 ok\r\n554 5.5.1 no valid recipients\r\n250 2.0.0 reset\r\n")
    w("dot-rejected", rhdr(rcpts=1, body=3),
      banner + EHLO_PIPE + "250 ok\r\n250 ok\r\n354 go\r\n552 5.3.4 too big\r\n")
    w("size-too-small", rhdr(body=3), banner + "250-mx\r\n250 SIZE 10\r\nQUIT\r\n")
    w("malformed", rhdr(), banner + "250-mx\r\n251 wrong code\r\n")
    w("bare-lf-and-long", rhdr(), banner.replace("\r\n", "\n") + "250-" + "x" * 4200 + "\r\n250 y\r\n")
    w("no-crlf-at-end", rhdr(), banner + "250 mx")


# ----------------------------------------------------------------- DNS
def dns_name(name):
    if name in ("", "."):
        return b"\0"
    return b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"


def dns_msg(qname, qtype, answers, rcode=0, qd=1, flags=0x8180):
    hdr = struct.pack("!HHHHHH", 0xBEEF, flags | rcode, qd, len(answers), 0, 0)
    q = dns_name(qname) + struct.pack("!HH", qtype, 1)
    body = b""
    for (name, rtype, ttl, rdata) in answers:
        n = b"\xc0\x0c" if name is None else dns_name(name)
        body += n + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return hdr + (q if qd else b"") + body


def mx(pref, host):
    return struct.pack("!H", pref) + dns_name(host)


def dns():
    clear("dns_answer")
    MX, A, AAAA, CNAME = 15, 1, 28, 5
    w = lambda n, b: write("dns_answer", n, b)
    w("mx-two", dns_msg("example.com", MX, [(None, MX, 300, mx(10, "mx1.example.com")),
                                           (None, MX, 600, mx(20, "mx2.example.com"))]))
    w("mx-equal-prefs", dns_msg("example.org", MX, [(None, MX, 3600, mx(10, "a.example.org")),
                                                   (None, MX, 3600, mx(10, "b.example.org")),
                                                   (None, MX, 60, mx(10, "c.example.org")),
                                                   (None, MX, 3600, mx(5, "lo.example.org"))]))
    # Compression pointer into the question for the exchange's suffix.
    w("mx-compressed", dns_msg("example.net", MX, [(None, MX, 120, struct.pack("!H", 5) + b"\x04mail\xc0\x0c")]))
    w("null-mx", dns_msg("nomail.example", MX, [(None, MX, 86400, mx(0, "."))]))
    w("nodata", dns_msg("example.com", MX, []))
    w("nxdomain", dns_msg("nx.example", MX, [], rcode=3))
    w("servfail", dns_msg("sf.example", MX, [], rcode=2))
    w("cname-then-mx", dns_msg("alias.example", MX, [(None, CNAME, 30, dns_name("real.example")),
                                                     ("real.example", MX, 300, mx(1, "mx.real.example"))]))
    w("a-two", dns_msg("mx1.example.com", A, [(None, A, 300, bytes([192, 0, 2, 1])),
                                              (None, A, 100, bytes([192, 0, 2, 2]))]))
    w("aaaa", dns_msg("mx1.example.com", AAAA, [(None, AAAA, 200, bytes(15) + b"\x01")]))
    w("cname-a", dns_msg("www.example", A, [(None, CNAME, 50, dns_name("host.example")),
                                            ("host.example", A, 500, bytes([198, 51, 100, 7]))]))
    w("ttl-huge", dns_msg("example.com", MX, [(None, MX, 0xFFFFFFFF, mx(10, "mx.example.com"))]))
    w("truncated", dns_msg("example.com", MX, [(None, MX, 300, mx(10, "mx1.example.com"))])[:-5])
    w("pointer-loop", dns_msg("example.com", MX, [(None, MX, 300, struct.pack("!H", 1) + b"\xc0\x2b")]))


# ----------------------------------------------------------------- config
def config():
    clear("config")
    w = lambda n, s: write("config", n, s)
    w("readme-minimal", '''hostname = "smtp.example.com"
data_dir = "/var/lib/mxrelay"
[[listener]]
address = "0.0.0.0"
port = 587
mode = "starttls"
[[listener]]
address = "0.0.0.0"
port = 465
mode = "implicit_tls"
[tls]
cert_file = "/etc/mxrelay/fullchain.pem"
key_file = "/etc/mxrelay/privkey.pem"
[auth]
users_file = "/etc/mxrelay/users"   # lines "name:$y$..." from mkpasswd / mxrelay hash-password
''')
    w("config-md-production", '''hostname = "smtp.example.com"
data_dir = "/var/lib/mxrelay"
trusted_networks = ["10.20.0.0/16"]   # app servers that may relay without AUTH

[[listener]]
address = "0.0.0.0"
port = 587
mode = "starttls"

[[listener]]
address = "0.0.0.0"
port = 465
mode = "implicit_tls"

[tls]
cert_file = "/etc/mxrelay/fullchain.pem"
key_file = "/etc/mxrelay/privkey.pem"

[auth]
users_file = "/etc/mxrelay/users"
''')
    w("smarthost-route", '''[[route]]
domain = "*"
host = "smtp.provider.example"
port = 587
tls = "required_verify"
auth_user = "account@example.com"
auth_password = "secret"
''')
    w("every-section", '''hostname = "mx.test"
data_dir = "/tmp/x"
threads = 2
user = "nobody"
trusted_networks = ["127.0.0.1/32", "::1", "10.0.0.0/8"]
[log]
level = "debug"
[[listener]]
name = "sub"
address = "::"
port = 2525
mode = "plain"
auth_without_tls = true
[tls]
min_version = "1.3"
[auth]
max_failures = 5
failure_delay_ms = 0
max_failures_per_ip = 0
ip_block_seconds = 60
[limits]
max_message_size = 10485760
max_recipients = 50
max_connections = 100
max_connections_per_ip = 10
max_line_length = 2048
max_errors = 5
[timeouts]
greeting = 30
command = 60
data = 120
tls_handshake = 10
spool_write = 5
[spool]
path = "/tmp/spool"
write_buffer_size = 67108864
max_write_buffer_number = 4
max_total_wal_size = 1073741824
[delivery]
enabled = true
port = 2626
helo_name = "out.test"
source_address = "127.0.0.1"
resolver = "127.0.0.1:5353"
tls = "none"
max_connections_per_site = 10
initial_window = 2
max_messages_per_connection = 100
max_recipients_per_transaction = 50
idle_timeout = 5
retry_initial = 60
retry_max = 3600
max_age = 86400
site_backoff_initial = 30
site_backoff_max = 600
dns_ttl_min = 10
dns_ttl_max = 600
dns_timeout_ms = 2000
event_log = "/tmp/events.jsonl"
connect_timeout = 10
banner_timeout = 60
command_timeout = 60
data_timeout = 120
[metrics]
enabled = true
listen = "[::1]:0"
site_labels = 5
[[route]]
domain = "Example.COM"
host = "127.0.0.1"
port = 2626
tls = "none"
max_connections = 3
''')
    w("errors", '''[limits]
max_recipients = 0
''')
    w("dkim", '''[dkim]
canonicalization = "relaxed/relaxed"
expire_after = 864000
on_no_rule = "send_unsigned"
on_key_error = "defer"
oversign_headers = ["From", "Subject"]
[[dkim.rule]]
from_domain = "customer.example"
keys = [{ domain = "customer.example", selector = "s2026", key_file = "/etc/mxrelay/dkim/a.pem" },
        { domain = "platform.example", selector = "p1", algorithm = "ed25519-sha256", key_file = "/etc/mxrelay/dkim/p.pem" }]
[[dkim.rule]]
auth_user = "*"
keys = [{ domain = "platform.example", selector = "p1", key_file = "/etc/mxrelay/dkim/p.pem" }]
''')
    w("unknown-key", '''[limits]
max_recipent = 10
''')
    w("inline-tables", '''listener = [{address = "127.0.0.1", port = 2525}]
delivery = {retry_initial = 100, retry_max = 50}
''')
    docker = os.path.join(os.path.dirname(ROOT), "..", "deploy", "docker", "mxrelay.toml")
    if os.path.exists(docker):
        with open(docker, "rb") as f:
            write("config", "deploy-docker", f.read())


# --------------------------------------------------------------- dkim
def dkim_canon():
    clear("dkim_canon")
    w = lambda n, s: write("dkim_canon", n, s)
    w("rfc6376-example", "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
    w("rfc6376-message", "From: Joe SixPack <joe@football.example.com>\r\nTo: Suzie Q <suzie@shopping.example.net>\r\n"
      "Subject: Is dinner ready?\r\nDate: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
      "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n\r\nHi.\r\n\r\n"
      "We lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n\r\n")
    w("folded-long", "From: \"Doe, J.\" <j@x.test> (work)\r\nSubject: " + " ".join("w%d" % i for i in range(80))
      + "\r\n\t  more\r\n continued \r\nX-Empty:\r\n\r\nbody\r\n")
    w("utf8", "From: J\u00f6rg <j@b\u00fccher.test>\r\nSubject: caf\u00e9  \u20ac\r\n\r\nna\u00efve\t \r\n")
    w("empty-body", "From: a@x.test\r\n\r\n")
    w("header-only", "From: a@x.test\r\nSubject: no body")
    w("only-crlfs", "From: a@x.test\r\n\r\n\r\n\r\n\r\n")
    w("trailing-ws", "From: a@x.test\r\n\r\na  \r\n\t\r\n \r\nb\t\t\r\n   \r\n")
    w("no-final-crlf", "From: a@x.test\r\n\r\nlast line  ")
    w("bare-cr-lf", "From: a@x.test\r\nX: a\rb\r\n\r\nx \ry\n z\r\n")
    w("group-from", "From: Team: a@x.test, b@X.test;\r\nFrom: c@y.test\r\n\r\nb\r\n")
    w("route-from", "From: <@r1.test,@r2.test:j@x.test>\r\nDKIM-Signature: v=1; d=o.test; b=x\r\n\r\n.dot\r\n")
    w("no-headers", "\r\nbody only\r\n")
    w("long-ws-runs", "From: a@x.test\r\n\r\n" + "x" * 30 + " " * 40 + "y" + "\t" * 33 + "\r\n")


def proxy_protocol():
    """PROXY protocol v1 lines and v2 headers (relay/proxy_protocol.h)."""
    clear("proxy_protocol")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    w = lambda name, data: write("proxy_protocol", name, data)
    w("v1-tcp4", b"PROXY TCP4 192.0.2.10 198.51.100.1 54321 587\r\nEHLO x\r\n")
    w("v1-tcp6", b"PROXY TCP6 2001:db8::7 2001:db8::1 443 587\r\n")
    w("v1-unknown", b"PROXY UNKNOWN\r\n")
    w("v2-tcp4", sig + bytes([0x21, 0x11]) + struct.pack(">H", 12) + bytes([192, 0, 2, 10, 198, 51, 100, 1])
      + struct.pack(">HH", 54321, 587) + b"\x16\x03\x01")
    w("v2-tcp6-tlv", sig + bytes([0x21, 0x21]) + struct.pack(">H", 36 + 7) + bytes(32) + struct.pack(">HH", 1, 2)
      + b"\x04\x00\x04abcd")
    w("v2-local", sig + bytes([0x20, 0x00, 0, 0]))
    w("v2-unix", sig + bytes([0x21, 0x31]) + struct.pack(">H", 216) + bytes(216))


def main():
    proxy_protocol()
    smtp_command()
    session()
    data_reader()
    replies()
    dns()
    config()
    dkim_canon()
    for t in sorted(os.listdir(ROOT)):
        print(t, len(os.listdir(os.path.join(ROOT, t))), file=sys.stderr)


if __name__ == "__main__":
    main()
