#!/usr/bin/env python3
"""Memory per idle client connection (issue 5: <= 16 KB of RSS each, 20,000 open).

Starts mxrelay (plain listener on a free loopback port, delivery off,
limits.max_connections = N + 1000, max_connections_per_ip high enough) with
RLIMIT_NOFILE raised, opens N idle SMTP connections to it from 127.0.1.x
source addresses (--per-source each), waits for the 220 greeting on every
one, and prints the relay's VmRSS (/proc/PID/status) before and after, and
the difference per connection. Then closes them all and reads VmRSS again
(what is given back). Everything is bounded by --max-seconds; the relay is
stopped by its PID. Loopback only.

  bench/idle-conns.py --relay build/main/mxrelay --conns 20000

Needs a RLIMIT_NOFILE hard limit above N + a few hundred (root with
CAP_SYS_RESOURCE can raise it). Where the hard limit cannot be raised, N is
capped at the hard limit minus --fd-margin and the output says so (the relay
itself needs that many descriptors for the connections plus its own files).
"""

import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def mem(pid):
    return {k: status_kb(pid, k) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads")}


def raise_nofile(want):
    """Raises RLIMIT_NOFILE to `want` if possible; returns the limit set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    return max(soft, want)


def open_batch(sources, start, count, port, per_source, deadline):
    """Opens `count` connections (numbers start..start+count-1) and waits for
    each one's 220. Returns the list of sockets; exits on any failure."""
    sel = selectors.DefaultSelector()
    socks = []
    pending = {}
    for i in range(start, start + count):
        src = sources[i // per_source]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: pick the port at connect
        s.bind((src, 0))
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, 115):  # EINPROGRESS
            sys.exit("idle-conns: connect from %s failed: %s" % (src, os.strerror(err)))
        socks.append(s)
        pending[s.fileno()] = b""
        sel.register(s, selectors.EVENT_READ)
    while pending:
        if time.monotonic() > deadline:
            sys.exit("idle-conns: %d connections still without a greeting at the time limit" % len(pending))
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError as e:
                sys.exit("idle-conns: connection %s failed: %s" % (s.getsockname(), e))
            if not data:
                sys.exit("idle-conns: the relay closed a connection before/at the greeting: %r" % pending[s.fileno()])
            buf = pending[s.fileno()] + data
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0]
                if not line.startswith(b"220"):
                    sys.exit("idle-conns: greeting was not 220: %r" % line[:200])
                if line.startswith(b"220 ") or line.startswith(b"220\r"):
                    del pending[s.fileno()]
                    sel.unregister(s)
                    continue
            pending[s.fileno()] = buf
    sel.close()
    return socks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--relay", required=True, help="mxrelay binary")
    ap.add_argument("--conns", type=int, default=20000)
    ap.add_argument("--per-source", type=int, default=1000, help="connections per source address 127.0.1.x")
    ap.add_argument("--batch", type=int, default=500, help="connections opened before waiting for their 220s")
    ap.add_argument("--threads", type=int, default=0, help="relay threads (0: its default)")
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each RSS reading")
    ap.add_argument("--fd-margin", type=int, default=300,
                    help="descriptors kept for the relay's own files when N must be capped")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t_start = time.monotonic()
    deadline = t_start + args.max_seconds
    n = args.conns
    limit = raise_nofile(n + 1024)
    capped = ""
    if limit < n + args.fd_margin:
        capped = ("capped from %d: RLIMIT_NOFILE hard limit %d cannot be raised here (no CAP_SYS_RESOURCE)"
                  % (n, limit))
        n = limit - args.fd_margin
        print("idle-conns: " + capped, file=sys.stderr)
    nsrc = (n + args.per_source - 1) // args.per_source
    if nsrc > 250:
        sys.exit("idle-conns: too many source addresses; raise --per-source")
    sources = ["127.0.1.%d" % (i + 1) for i in range(nsrc)]

    work = tempfile.mkdtemp(prefix="mxr-idle-conns.")
    port = free_port()
    cfg = os.path.join(work, "mxrelay.toml")
    with open(cfg, "w") as f:
        f.write("""hostname = "relay.bench.invalid"
data_dir = "%s/data"
threads = %d
trusted_networks = ["127.0.0.0/8"]
[log]
level = "warn"
[limits]
max_connections = %d
max_connections_per_ip = %d
[[listener]]
name = "bench"
address = "127.0.0.1"
port = %d
mode = "plain"
[delivery]
enabled = false
[metrics]
enabled = false
""" % (work, args.threads, n + 1000, args.per_source + 100, port))
    log = open(os.path.join(work, "relay.log"), "w")

    def child_limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    relay = subprocess.Popen([args.relay, "run", "-c", cfg], stdout=log, stderr=subprocess.STDOUT,
                             preexec_fn=child_limits)
    socks = []
    rc = 1
    try:
        # Wait for the listener (bounded).
        while True:
            if relay.poll() is not None:
                sys.exit("idle-conns: relay exited: %s" % open(os.path.join(work, "relay.log")).read()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("idle-conns: relay did not listen in time")
                time.sleep(0.05)
        # Warm up: a few connections opened and closed, so one-time
        # allocations (first session, thread arenas) are in the baseline.
        warm = open_batch(sources, 0, min(10, n), port, args.per_source, deadline)
        for s in warm:
            s.close()
        time.sleep(args.settle)
        before = mem(relay.pid)
        t0 = time.monotonic()
        for start in range(0, n, args.batch):
            socks += open_batch(sources, start, min(args.batch, n - start), port, args.per_source, deadline)
        t_open = time.monotonic() - t0
        time.sleep(args.settle)
        if relay.poll() is not None:
            sys.exit("idle-conns: relay died with %d connections open" % len(socks))
        after = mem(relay.pid)
        for s in socks:
            s.close()
        socks = []
        time.sleep(args.settle)
        closed = mem(relay.pid)
        per = (after["VmRSS"] - before["VmRSS"]) * 1024.0 / n
        per_anon = (after["RssAnon"] - before["RssAnon"]) * 1024.0 / n
        if args.json:
            import json
            print(json.dumps({"connections": n, "capped": capped, "sources": nsrc, "open_seconds": round(t_open, 2),
                              "before_kb": before, "after_kb": after, "closed_kb": closed,
                              "bytes_per_conn": round(per), "anon_bytes_per_conn": round(per_anon),
                              "target_bytes": 16384, "ok": per <= 16384}))
        else:
            print("idle-conns: %d idle connections (from %d source addresses, %d each), all greeted with 220, "
                  "opened in %.1f s" % (n, nsrc, args.per_source, t_open))
            print("  relay VmRSS before %d KB, with %d open %d KB, after closing them %d KB (VmHWM %d KB, %d threads)"
                  % (before["VmRSS"], n, after["VmRSS"], closed["VmRSS"], after["VmHWM"], after["Threads"]))
            print("  RssAnon before %d KB, with them open %d KB; RssFile %d -> %d KB"
                  % (before["RssAnon"], after["RssAnon"], before["RssFile"], after["RssFile"]))
            print("  per idle connection: %.0f bytes of VmRSS (%.0f anonymous); target <= 16384: %s"
                  % (per, per_anon, "met" if per <= 16384 else "MISSED"))
            if capped:
                print("  note: N " + capped)
        rc = 0 if per <= 16384 else 1
    finally:
        for s in socks:
            s.close()
        if relay.poll() is None:
            relay.send_signal(signal.SIGTERM)
            try:
                relay.wait(timeout=20)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
