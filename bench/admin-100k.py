#!/usr/bin/python3
"""An admin action on 100,000 queued messages must not stall ingress or
delivery (issue 18). One relay with delivery on; every message is for
d.test, which is suspended first (so they stay queued without attempts).

  1. inject N messages (HTTP API, one per recipient by substitution);
  2. baseline: mxr-loadgen open loop (--rate) for S seconds -> time to 250;
  3. the same while `retry --all` walks and hands N messages to the engine
     (each is activated and held again), then while `suspend --campaign`
     walks them: the action's duration, messages touched, and the SMTP
     latency during it. Every domain routes to 127.0.0.1:9 (nothing
     listens): nothing leaves the machine, no DNS is asked.

  bench/admin-100k.py --messages 100000
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MXRELAY_BIN", os.path.join(ROOT, "build/main/mxrelay"))
LOADGEN = os.path.join(ROOT, "build/bench/mxr-loadgen")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=500)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mxr-admin100k-")
    key = "mxr_" + secrets.token_urlsafe(32)
    with open(os.path.join(work, "tenants.toml"), "w") as f:
        f.write('[[tenant]]\nname = "bench"\napi_keys = ["sha256:%s"]\n' % hashlib.sha256(key.encode()).hexdigest())
    hashed = subprocess.run([BIN, "hash-password"], input="bench-pw\n", capture_output=True, text=True).stdout.strip()
    with open(os.path.join(work, "users"), "w") as f:
        f.write("bench:%s\n" % hashed)
    smtp, http_port, admin = free_port(), free_port(), free_port()
    cfg = os.path.join(work, "mxrelay.toml")
    with open(cfg, "w") as f:
        f.write('data_dir = "%s/data"\nthreads = 2\n[auth]\nusers_file = "%s/users"\n'
                '[limits]\nmax_recipients = 1000\nmax_connections_per_ip = 1000\n'
                '[[listener]]\nname = "sub"\naddress = "127.0.0.1"\nport = %d\nmode = "plain"\nauth_without_tls = true\n'
                '[delivery]\nenabled = true\ndeny_networks = []\nport = 9\nretry_initial = 3600\n'
                '[[route]]\ndomain = "*"\nhost = "127.0.0.1"\n'
                '[metrics]\nenabled = false\n[tenants]\nfile = "%s/tenants.toml"\n'
                '[http_api]\nenabled = true\nlisten = "127.0.0.1:%d"\nmax_recipients = 1000\n'
                '[admin_api]\nlisten = "127.0.0.1:%d"\n' % (work, work, smtp, work, http_port, admin))
    log_path = os.path.join(work, "relay.log")
    log = open(log_path, "w")
    relay = subprocess.Popen([BIN, "run", "-c", cfg], stdout=log, stderr=log)

    def wait_log(pat, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(log_path) as f:
                if re.search(pat, f.read()):
                    return
            time.sleep(0.1)
        raise SystemExit("no %s in the log" % pat)

    def admin_call(method, path, body=None):
        token = open(os.path.join(work, "data", "admin-token")).read().strip()
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=600)
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        return json.loads(r.read())

    def loadgen():
        r = subprocess.run([LOADGEN, "--server", "127.0.0.1:%d" % smtp, "--sessions", "8", "--pipelining",
                            "--auth", "bench:bench-pw", "--size", "1K", "--rcpts", "1", "--rate", str(a.rate),
                            "--seconds", str(a.seconds), "--json"], capture_output=True, text=True)
        j = json.loads(r.stdout.strip().splitlines()[-1])
        return {"acked": j["acknowledged"], "failed": j["failed"], "p50_us": j["time_to_250_us"].get("p50"),
                "p99_us": j["time_to_250_us"].get("p99"), "max_us": j["time_to_250_us"].get("max")}

    try:
        wait_log("event=ready")
        print("suspend d.test:", admin_call("POST", "/api/v1/queue/suspend", {"domain": "d.test"}))
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
        per = 1000
        for i in range(0, a.messages, per):
            body = json.dumps({"envelope_sender": "b@bench.test", "campaign": "big",
                               "recipients": [{"email": "u%d@d.test" % j, "substitutions": {"n": str(j)}}
                                              for j in range(i, i + per)],
                               "content": "From: b@bench.test\r\nSubject: {{n}}\r\n\r\n" + "x" * 900 + "\r\n"})
            c.request("POST", "/api/v1/messages", body=body, headers={"Authorization": "Bearer " + key})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
        print("injected %d messages in %.1f s" % (a.messages, time.monotonic() - t0))
        time.sleep(3)
        print("baseline SMTP (no action):", loadgen())
        for action, body in (("retry", {"all": True}), ("suspend", {"campaign": "big"})):
            out = {}
            th = threading.Thread(target=lambda: out.update(admin_call("POST", "/api/v1/queue/" + action, body)))
            res = {}
            lg = threading.Thread(target=lambda: res.update(loadgen()))
            lg.start()
            time.sleep(1)
            th.start()
            th.join()
            lg.join()
            print("%s: messages=%s duration_ms=%s; SMTP meanwhile: %s" % (action, out.get("messages"),
                                                                         out.get("duration_ms"), res))
        print("summary:", admin_call("GET", "/api/v1/queue/summary?by=campaign")["groups"])
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
