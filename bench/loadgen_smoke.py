#!/usr/bin/env python3
"""Smoke test for the load tools (ctest bench.loadgen_smoke).

Starts mxr-sink on a free loopback port, runs mxr-loadgen against it, and
checks that both sides count the same messages (and recipients), that every
message carried X-Mxr-Submitted, and that the JSON lines are well formed.

  1. --sessions 4 --messages 200 --pipelining --seconds 20 (the issue's case)
  2. lock-step (no pipelining) with STARTTLS + AUTH PLAIN, mixed sizes and
     recipient counts, one message per connection part of the time
  3. raw SMTP against the sink: DATA terminator and the header split across
     writes, dot-stuffing, BDAT, AUTH LOGIN
  4. a connection refused: loadgen must fail fast with a clear message
  5. open loop: --rate 400 for 1 s over 4 sessions (pipelined and lock-step):
     at most 402 started (the schedule), at least 200, every one
     acknowledged and delivered, start lag and scheduled-start latencies
     reported
With --relay BIN instead: loadgen -> mxrelay (plain listener, loopback
trusted, static route) -> sink; the sink must receive what the relay
acknowledged (ctest bench.loadgen_relay_smoke; exit 77 = skipped when the
relay binary is missing).

Every process is bounded (--seconds, subprocess timeouts) and stopped by its
own PID. Loopback only.

  loadgen_smoke.py --loadgen build/bench/mxr-loadgen --sink build/bench/mxr-sink
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Sink:
    def __init__(self, binary, args, workdir):
        self.port_file = os.path.join(workdir, "sink.port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file, "--json"] + args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("mxr-sink did not start: %s" % self.proc.stderr.read())

    def result(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("mxr-sink did not exit in %s s" % timeout)
        sys.stderr.write(err)
        lines = [l for l in out.splitlines() if l.strip()]
        if len(lines) != 1:
            raise RuntimeError("mxr-sink --json printed %d lines: %r" % (len(lines), out))
        return self.proc.returncode, json.loads(lines[0])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()  # by PID (Popen object)
            self.proc.wait(timeout=5)


def run_loadgen(binary, args, timeout=40):
    p = subprocess.run([binary, "--json"] + args, capture_output=True, text=True, timeout=timeout)
    sys.stderr.write(p.stderr)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if len(lines) != 1:
        raise RuntimeError("mxr-loadgen --json printed %d lines: %r" % (len(lines), p.stdout))
    return p.returncode, json.loads(lines[0]), p.stderr


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


def case_pipelined(a, workdir):
    sink = Sink(a.sink, ["--expect", "200", "--seconds", "25"], workdir)
    try:
        rc, lg, _ = run_loadgen(a.loadgen, [
            "--server", "127.0.0.1:%d" % sink.port, "--sessions", "4", "--messages", "200",
            "--pipelining", "--seconds", "20"])
        src, sk = sink.result(timeout=30)
    finally:
        sink.kill()
    print("loadgen:", json.dumps(lg))
    print("sink:   ", json.dumps(sk))
    check(rc == 0, "loadgen exit status 0 (got %d)" % rc)
    check(src == 0, "sink exit status 0 (got %d)" % src)
    check(lg["acknowledged"] == 200 and lg["failed"] == 0, "loadgen: 200 acknowledged, 0 failed")
    check(lg["pipelining_used"], "loadgen used PIPELINING")
    check(sk["messages"] == 200, "sink counted 200 messages (got %d)" % sk["messages"])
    check(sk["recipients"] == lg["recipients_accepted"] == 200, "recipients agree (200)")
    check(sk["missing_header"] == 0, "every message carried X-Mxr-Submitted")
    check(sk["latency_us"]["count"] == 200, "sink latency histogram has 200 samples")
    check(lg["time_to_250_us"]["count"] == 200, "loadgen time-to-250 has 200 samples")
    check(sk["connections"] == 4, "4 connections (reused), got %d" % sk["connections"])


def case_tls_auth_lockstep(a, workdir):
    sink = Sink(a.sink, ["--starttls", "--expect", "60", "--seconds", "25"], workdir)
    try:
        rc, lg, _ = run_loadgen(a.loadgen, [
            "--server", "127.0.0.1:%d" % sink.port, "--sessions", "3", "--messages", "60",
            "--messages-per-session", "7", "--starttls", "--auth", "bench:secret",
            "--size", "1K:50,40K:50", "--rcpts", "1:50,5:50",
            "--domains", "a.test,b.test", "--seconds", "20"])
        src, sk = sink.result(timeout=30)
    finally:
        sink.kill()
    print("loadgen:", json.dumps(lg))
    print("sink:   ", json.dumps(sk))
    check(rc == 0 and src == 0, "exit statuses 0 (loadgen %d, sink %d)" % (rc, src))
    check(lg["acknowledged"] == 60 == sk["messages"], "60 messages on both sides")
    check(not lg["pipelining_used"], "lock-step (no --pipelining)")
    check(sk["recipients"] == lg["recipients_accepted"], "recipients agree (%d)" % sk["recipients"])
    check(sk["tls_connections"] == sk["connections"] >= 9,
          "every connection used TLS, reconnected every 7 messages (%d)" % sk["connections"])
    check(abs(sk["bytes"] - lg["bytes_acknowledged"]) <= 3 * 60,
          "byte counts agree (sink %d, loadgen %d)" % (sk["bytes"], lg["bytes_acknowledged"]))


def case_sink_parser(a, workdir):
    """Raw SMTP against the sink: terminator and header split across writes,
    dot-stuffed lines, BDAT chunks, AUTH LOGIN, pipelined commands."""
    sink = Sink(a.sink, ["--expect", "3", "--seconds", "15"], workdir)
    replies = b""
    try:
        s = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
        parts = [
            b"EHLO t.test\r\nAUTH LOGIN\r\n", b"dXNlcg==\r\n",
            b"MAIL FROM:<a@t.test>\r\nRCPT TO:<b@t.test>\r\nRCPT TO:<c@t.test>\r\nDATA\r\n",
            b"Subject: x\r\nX-Mxr-Subm", b"itted: 1700000000000000\r\n\r\n",
            b"..leading dot\r\nnot the end\r\n.", b"\r", b"\n",
            # BDAT: 29 + 7 raw bytes, the header split across writes; dots mean nothing.
            b"MAIL FROM:<a@t.test>\r\nRCPT TO:<b@t.test>\r\nBDAT 29\r\nX-Mxr-Submitted: 17",
            b"\r\n\r\nbody\r\nBDAT 7 LAST\r\nx.\r\n.\r\n",
            b"MAIL FROM:<a@t.test>\r\nRCPT TO:<b@t.test>\r\nDATA\r\nno header\r\n.\r\nQUIT\r\n",
        ]
        for p in parts:
            s.sendall(p)
            time.sleep(0.02)
        s.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            replies += chunk
        s.close()
        src, sk = sink.result(timeout=20)
    finally:
        sink.kill()
    codes = [l[:3] for l in replies.decode().split("\r\n") if len(l) >= 4 and l[3] == " "]
    print("replies:", codes)
    check(codes == ["220", "250", "334", "235", "250", "250", "250", "354", "250", "250", "250",
                    "250", "250", "250", "250", "354", "250", "221"], "sink reply sequence")
    check(sk["messages"] == 3 and sk["recipients"] == 4, "sink: 3 messages, 4 recipients")
    check(sk["missing_header"] == 1 and sk["latency_us"]["count"] == 2,
          "X-Mxr-Submitted split across writes and in BDAT is parsed")
    check(src == 0, "sink exit status 0")


def case_rate(a, workdir):
    for extra in (["--pipelining"], []):
        sink = Sink(a.sink, ["--seconds", "15"], workdir)
        try:
            t0 = time.monotonic()
            rc, lg, _ = run_loadgen(a.loadgen, [
                "--server", "127.0.0.1:%d" % sink.port, "--sessions", "4", "--rate", "400",
                "--seconds", "1"] + extra)
            took = time.monotonic() - t0
            time.sleep(0.3)
            sink.proc.terminate()
            src, sk = sink.result(timeout=10)
        finally:
            sink.kill()
        print("loadgen:", json.dumps(lg))
        mode = "pipelined" if extra else "lock-step"
        check(rc == 0 and lg["failed"] == 0, "%s --rate: exit status 0, nothing failed" % mode)
        # Counts, not wall time: the schedule allows starts at k/400 s for
        # k/400 <= 1 (401; one more if the deadline passes in the middle of a
        # batch of replies); everything started is acknowledged. The lower
        # bound only says the open loop ran at all (a busy 2-core machine may
        # start fewer by the deadline: those show as start lag, not failures).
        check(lg["attempted"] <= 402,
              "%s --rate 400 for 1 s: at most 402 started (%d)" % (mode, lg["attempted"]))
        check(lg["attempted"] >= 200,
              "%s --rate 400 for 1 s: at least half started (%d)" % (mode, lg["attempted"]))
        check(lg["acknowledged"] == lg["attempted"],
              "%s: every started message acknowledged (%d)" % (mode, lg["acknowledged"]))
        check(sk["messages"] == lg["acknowledged"], "sink counted the same (%d)" % sk["messages"])
        check(lg["rate"] == 400 and lg["start_lag_us"]["count"] == lg["attempted"]
              and lg["scheduled_to_250_us"]["count"] == lg["acknowledged"],
              "%s: start lag and scheduled-start latency reported" % mode)
        check(took < 15, "%s: open-loop run ended (%.1f s; --seconds 1, drain)" % (mode, took))


def case_refused(a):
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    rc, lg, err = run_loadgen(a.loadgen, ["--server", "127.0.0.1:%d" % port, "--sessions", "2",
                                          "--messages", "10", "--seconds", "5"], timeout=20)
    check(rc == 1, "connection refused: exit status 1 (got %d)" % rc)
    check("Connection refused" in err and "Connection refused" in lg["fatal"],
          "connection refused is reported clearly")
    check(time.monotonic() - t0 < 4, "and fails fast")


RELAY_CONFIG = """\
hostname = "relay.smoke.test"
data_dir = "{workdir}/data"
threads = 1
trusted_networks = ["127.0.0.0/8"]
[log]
level = "warn"
[[listener]]
name = "bench"
address = "127.0.0.1"
port = {port}
mode = "plain"
[delivery]
deny_networks = []  # the sink is on loopback, which the default refuses
[[route]]
domain = "*"
host = "127.0.0.1"
port = {sink_port}
tls = "none"
"""


def case_relay(a, workdir):
    """loadgen -> mxrelay (plain listener, loopback trusted, static route) -> sink."""
    sink = Sink(a.sink, ["--expect", "200", "--seconds", "30"], workdir)
    relay = None
    relay_rc = None
    try:
        port = free_port()
        with open(os.path.join(workdir, "mxrelay.toml"), "w") as f:
            f.write(RELAY_CONFIG.format(workdir=workdir, port=port, sink_port=sink.port))
        log = open(os.path.join(workdir, "relay.log"), "w")
        relay = subprocess.Popen([a.relay, "run", "-c", os.path.join(workdir, "mxrelay.toml")],
                                 stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if relay.poll() is not None:
                    break
                time.sleep(0.1)
        rc, lg, _ = run_loadgen(a.loadgen, [
            "--server", "127.0.0.1:%d" % port, "--sessions", "4", "--messages", "200",
            "--pipelining", "--rcpts", "1:80,3:20", "--seconds", "20"])
        src, sk = sink.result(timeout=35)
    finally:
        sink.kill()
        if relay is not None:
            if relay.poll() is None:
                relay.terminate()  # SIGTERM by PID: graceful drain
                try:
                    relay.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    relay.kill()
                    relay.wait(timeout=5)
            relay_rc = relay.returncode
    print("loadgen:", json.dumps(lg))
    print("sink:   ", json.dumps(sk))
    check(rc == 0 and lg["acknowledged"] == 200, "relay acknowledged all 200 (rc %d)" % rc)
    check(lg["pipelining_used"], "relay offered PIPELINING")
    check(src == 0 and sk["messages"] >= 200,
          "sink received all 200 through the relay (%d)" % sk["messages"])
    check(sk["recipients"] == lg["recipients_accepted"],
          "recipients agree (%d)" % sk["recipients"])
    check(sk["missing_header"] == 0 and sk["latency_us"]["count"] == sk["messages"],
          "X-Mxr-Submitted survived the relay")
    check(relay_rc == 0, "the relay exited 0 after SIGTERM (got %r)" % relay_rc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--relay", help="mxrelay binary: run only the through-the-relay case")
    a = ap.parse_args()
    if a.relay and not os.access(a.relay, os.X_OK):
        print("SKIP: no relay binary at %s" % a.relay)
        sys.exit(77)
    workdir = tempfile.mkdtemp(prefix="mxr-loadgen-smoke-")
    try:
        if a.relay:
            case_relay(a, workdir)
        else:
            case_pipelined(a, workdir)
            case_tls_auth_lockstep(a, workdir)
            case_sink_parser(a, workdir)
            case_rate(a, workdir)
            case_refused(a)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
