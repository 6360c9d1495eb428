#!/usr/bin/python3
"""HTTP injection vs SMTP pipelined injection of the same work (issue 18).

One relay (delivery disabled, plain listener with AUTH, http_api on), then
in the same run:
  1. SMTP: mxr-loadgen --pipelining --auth, 1 KB messages, 100 recipients each;
  2. HTTP: POST /api/v1/messages over keep-alive connections (--procs client
     processes x 1 connection each), 1 KB raw content, 100 recipients per
     request (one message of 100 recipients per request, as in SMTP).
Reports recipients accepted per second and the relay's CPU (utime+stime from
/proc/PID/stat) per recipient for each phase.

  bench/http-vs-smtp.py --seconds 15 --sessions 8 --procs 8
"""

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MXRELAY_BIN", os.path.join(ROOT, "build/main/mxrelay"))
LOADGEN = os.environ.get("MXR_LOADGEN", os.path.join(ROOT, "build/bench/mxr-loadgen"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def http_worker(args):
    port, key, seconds, body = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.request("POST", "/api/v1/messages", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit("HTTP %d: %s" % (r.status, data[:200]))
        n += 1
    conn.close()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--rcpts", type=int, default=100)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="mxr-httpbench-")
    key = "mxr_" + secrets.token_urlsafe(32)
    with open(os.path.join(work, "tenants.toml"), "w") as f:
        f.write('[[tenant]]\nname = "bench"\napi_keys = ["sha256:%s"]\n' % hashlib.sha256(key.encode()).hexdigest())
    hashed = subprocess.run([BIN, "hash-password"], input="bench-pw\n", capture_output=True, text=True).stdout.strip()
    with open(os.path.join(work, "users"), "w") as f:
        f.write("bench:%s\n" % hashed)
    smtp_port, http_port = free_port(), free_port()
    with open(os.path.join(work, "mxrelay.toml"), "w") as f:
        f.write('data_dir = "%s/data"\nthreads = 2\n[auth]\nusers_file = "%s/users"\n'
                '[limits]\nmax_recipients = 1000\nmax_connections_per_ip = 1000\n'
                '[[listener]]\nname = "sub"\naddress = "127.0.0.1"\nport = %d\nmode = "plain"\nauth_without_tls = true\n'
                '[delivery]\nenabled = false\n[metrics]\nenabled = false\n[tenants]\nfile = "%s/tenants.toml"\n'
                '[http_api]\nenabled = true\nlisten = "127.0.0.1:%d"\nthreads = %d\nmax_recipients = 1000\n'
                '[admin_api]\nenabled = false\n' % (work, work, smtp_port, work, http_port, max(16, a.procs)))
    log = open(os.path.join(work, "relay.log"), "w")
    relay = subprocess.Popen([BIN, "run", "-c", os.path.join(work, "mxrelay.toml")], stdout=log, stderr=log)
    try:
        for _ in range(100):
            with open(os.path.join(work, "relay.log")) as f:
                if "event=ready" in f.read():
                    break
            time.sleep(0.1)
        results = {}
        # SMTP pipelined, same message size and recipients.
        c0, t0 = cpu_seconds(relay.pid), time.monotonic()
        lg = subprocess.run([LOADGEN, "--server", "127.0.0.1:%d" % smtp_port, "--sessions", str(a.sessions),
                             "--pipelining", "--auth", "bench:bench-pw", "--size", "1K", "--rcpts", str(a.rcpts),
                             "--seconds", str(a.seconds), "--json"], capture_output=True, text=True)
        t1, c1 = time.monotonic(), cpu_seconds(relay.pid)
        out = json.loads(lg.stdout.strip().splitlines()[-1])
        results["smtp"] = (out["acknowledged"] * a.rcpts, t1 - t0, c1 - c0,
                           {k: out[k] for k in ("acknowledged", "failed", "recipients_accepted", "msgs_per_s")})
        # HTTP keep-alive, 1 KB raw content, rcpts recipients per request.
        filler = "x" * 76 + "\r\n"
        content = "From: bench@bench.test\r\nTo: list@bench.test\r\nSubject: bench\r\n\r\n"
        while len(content) < 1024:
            content += filler
        body = json.dumps({"envelope_sender": "bench@bench.test",
                           "recipients": ["u%d@dest%d.test" % (i, i % 10) for i in range(a.rcpts)],
                           "content": content[:1024]}).encode()
        c0, t0 = cpu_seconds(relay.pid), time.monotonic()
        with multiprocessing.Pool(a.procs) as pool:
            counts = pool.map(http_worker, [(http_port, key, a.seconds, body)] * a.procs)
        t1, c1 = time.monotonic(), cpu_seconds(relay.pid)
        results["http"] = (sum(counts) * a.rcpts, t1 - t0, c1 - c0, {"requests": sum(counts)})
        for name, (rcpts, secs, cpu, extra) in results.items():
            print("%-5s recipients=%d seconds=%.1f recipients_per_s=%.0f relay_cpu_s=%.2f relay_cpu_us_per_rcpt=%.2f %s"
                  % (name, rcpts, secs, rcpts / secs, cpu, cpu * 1e6 / max(1, rcpts),
                     json.dumps(extra)))
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
