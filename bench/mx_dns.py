#!/usr/bin/env python3
"""Static loopback DNS server for bench/shaping-scale.sh: thousands of MX
domains without losing queries to a burst.

  dN.<zone>       MX 10 mx.dN.<zone>        (1 <= N <= --domains)
  mx.dN.<zone>    A 127.0.3.(1 + (N-1) % --spread); AAAA: no data
  anything else   NXDOMAIN

Why not dnsmasq (bench/campaign.sh uses it for 200 domains): a relay that
starts on a queue of 10,000 due sites sends ~10,000 MX queries at once;
dnsmasq's UDP socket keeps the kernel's default receive buffer (~500
datagrams here) and drops the rest, so most domains time out (4.4.3) and are
retried minutes later. Here the socket gets a 64 MB buffer (SO_RCVBUFFORCE,
root), and replies are paced to --rate per second so the relay's own socket
(default buffer) is not flooded either. Counts per query type go to stderr
at exit (SIGTERM), to show each name was asked about once (no retries).
"""
import argparse
import signal
import socket
import struct
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.2.117")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--zone", default="bench.test")
    ap.add_argument("--domains", type=int, required=True)
    ap.add_argument("--spread", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20000, help="replies per second at most")
    ap.add_argument("--ttl", type=int, default=3600)
    a = ap.parse_args()
    zone = tuple(a.zone.lower().split("."))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind((a.listen, a.port))
    counts = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    s.settimeout(0.2)
    gap = 1.0 / a.rate if a.rate > 0 else 0.0
    next_t = time.monotonic()

    def encode(labels):
        return b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\x00"

    def index(label):  # "d123" -> 123 within range, else 0
        if len(label) > 1 and label[0] == "d" and label[1:].isdigit():
            n = int(label[1:])
            if 1 <= n <= a.domains:
                return n
        return 0

    while not stop:
        try:
            q, peer = s.recvfrom(4096)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if len(q) < 17:
            continue
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1 or flags & 0x8000:
            continue
        pos, labels = 12, []
        while pos < len(q) and q[pos] != 0 and len(labels) < 64:
            ln = q[pos]
            labels.append(q[pos + 1:pos + 1 + ln].decode("ascii", "replace").lower())
            pos += 1 + ln
        pos += 1
        if pos + 4 > len(q):
            continue
        qtype, qclass = struct.unpack("!HH", q[pos:pos + 4])
        question = q[12:pos + 4]
        counts[qtype] = counts.get(qtype, 0) + 1
        rcode, answers = 3, []
        name = tuple(labels)
        if len(name) == len(zone) + 1 and name[1:] == zone and index(name[0]):
            rcode = 0
            if qtype == 15:
                rd = struct.pack("!H", 10) + encode(("mx",) + name)
                answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 15, 1, a.ttl, len(rd)) + rd)
        elif len(name) == len(zone) + 2 and name[0] == "mx" and name[2:] == zone and index(name[1]):
            rcode = 0
            if qtype == 1:
                n = index(name[1])
                rd = bytes([127, 0, 3, 1 + (n - 1) % a.spread])
                answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, a.ttl, 4) + rd)
        rflags = 0x8400 | (flags & 0x0100) | 0x0080 | rcode  # QR AA, RD copied, RA
        resp = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0) + question + b"".join(answers)
        if gap:
            now = time.monotonic()
            if next_t > now:
                time.sleep(next_t - now)
            next_t = max(next_t, now) + gap
        try:
            s.sendto(resp, peer)
        except OSError:
            pass
    names = {1: "A", 28: "AAAA", 15: "MX", 16: "TXT"}
    print("mx_dns: queries " + " ".join("%s=%d" % (names.get(k, str(k)), v) for k, v in sorted(counts.items())),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
