"""Metrics, health/readiness and reload, against the real binary.

- After a known workload the scraped counters equal exactly what happened
  (accepted, delivered, bounced, DSNs, refused AUTH, replies by command).
- The real Prometheus binary (Debian package) scrapes the relay on loopback
  and its HTTP API returns the expected counter value.
- Every metric name the dashboard and alert rules in deploy/ use is exported.
- /readyz is 503 while draining; a transfer in progress at SIGTERM completes
  and its message is kept.
- SIGHUP reloads routes and the TLS certificate without dropping sessions.

Loopback only: deliveries go to a local sink through a static route; the
resolver is pointed at a closed loopback port so nothing can reach the
system resolver.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from relayctl import Listener, RelayTestCase, free_port, make_message, stop_process, submit
from sink import Sink

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SENDER = "campaign@client.test"
NO_DNS = "127.0.0.1:9"  # never asked (routes use IP literals); never the system resolver
PROMETHEUS = shutil.which("prometheus")


def deliver_to(port):
    return [{"domain": "*", "host": "127.0.0.1", "port": port, "tls": "none"}]


def wait_for(fn, timeout, what):
    """Polls fn() until it returns a true value (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("%s not reached within %.0fs (last: %r)" % (what, timeout, last))


class MetricsTest(RelayTestCase):

    def sink(self, **kw):
        s = Sink("127.0.0.1", free_port(), **kw).start()
        self.addCleanup(s.stop)
        return s

    def delivering_relay(self, sink, **kw):
        delivery = {"retry_initial": 1, "retry_max": 2, "max_age": 120, "resolver": NO_DNS}
        return self.new_relay(listeners=[Listener("plain", "plain", auth_without_tls=True)],
                              trusted_networks=["127.0.0.0/8"], users={"alice": "alice-secret"},
                              delivery=delivery, routes=deliver_to(sink.port), **kw)

    def run_known_workload(self, relay, sink, good=7, bad=3, auth_failures=2):
        """good+bad messages (one recipient each; bad ones get 550 at RCPT) and
        `auth_failures` refused AUTH sessions. Waits until the sink has the good
        messages and one DSN per bad one, and the queue is empty."""
        port = relay.port("plain")
        for i in range(good):
            rc = "ok%d@dest.test" % i
            submit(port, SENDER, [rc], make_message(SENDER, [rc], "good %d" % i))
        for i in range(bad):
            rc = "bad%d@dest.test" % i
            submit(port, SENDER, [rc], make_message(SENDER, [rc], "bad %d" % i))
        for _ in range(auth_failures):
            c = self.client(port)
            c.ehlo()
            self.assertReply(c.auth_plain("alice", "wrong password"), 535, "5.7.8")
            c.close()
        sink.wait_messages(good + bad, 30)
        relay.wait_queue_empty(30)

    def test_counters_equal_a_known_workload(self):
        N_GOOD, N_BAD, J = 7, 3, 2
        N = N_GOOD + N_BAD
        sink = self.sink(rcpt=lambda a: "550 5.1.1 No such user" if a.startswith("bad") else "250 2.1.5 Ok")
        relay = self.delivering_relay(sink)
        self.run_known_workload(relay, sink, N_GOOD, N_BAD, J)
        import base64
        log = relay.log_text()
        self.assertNotIn("wrong password", log, "a password reached the log")
        self.assertNotIn(base64.b64encode(b"\0alice\0wrong password").decode(), log, "an AUTH payload reached the log")
        self.assertEqual(log.count("event=session_end ip=127.0.0.1"), N + J, "one session_end line per session")
        dsns = [m for m in sink.received() if m.mail_from == ""]
        self.assertEqual(len(dsns), N_BAD, "one DSN per bounced message, from the null sender")

        expect = {
            "mxrelay_messages_received_total": N,
            'mxrelay_connections_accepted_total{listener="plain"}': N + J,
            'mxrelay_auth_attempts_total{result="failure"}': J,
            'mxrelay_auth_attempts_total{result="success"}': 0,
            # The good messages and one DSN per bounced message were delivered.
            'mxrelay_delivery_attempts_total{outcome="delivered"}': N_GOOD + N_BAD,
            'mxrelay_delivery_attempts_total{outcome="bounced"}': N_BAD,
            'mxrelay_delivery_attempts_total{outcome="deferred"}': 0,
            'mxrelay_delivery_attempts_total{outcome="expired"}': 0,
            "mxrelay_delivery_dsns_total": N_BAD,
            "mxrelay_delivery_messages_completed_total": N + N_BAD,
            'mxrelay_site_attempts_total{site="route:*",outcome="delivered"}': N_GOOD + N_BAD,
            'mxrelay_site_attempts_total{site="route:*",outcome="bounced"}': N_BAD,
            'mxrelay_smtp_replies_total{command="connect",class="2xx"}': N + J,
            'mxrelay_smtp_replies_total{command="rcpt",class="2xx"}': N,
            'mxrelay_smtp_replies_total{command="data",class="3xx"}': N,
            'mxrelay_smtp_replies_total{command="dot",class="2xx"}': N,
            'mxrelay_smtp_replies_total{command="auth",class="5xx"}': J,
            "mxrelay_spool_committed_messages_total": N + N_BAD,
            "mxrelay_time_to_250_seconds_count": N,
            "mxrelay_message_size_bytes_count": N,
            "mxrelay_delivery_latency_seconds_count": N_GOOD + N_BAD,
            "mxrelay_spool_healthy": 1,
            "mxrelay_ready": 1,
            "mxrelay_connections_current": 0,
        }
        # Deliveries are counted when the engine finalises them and the
        # per-site figures are published once a second: poll (bounded) until
        # every figure is right, then show whatever is still wrong.
        deadline = time.monotonic() + 15
        while True:
            m = relay.scrape()
            wrong = {k: (m.get(k), v) for k, v in expect.items() if m.get(k) != v}
            if not wrong or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(wrong, {}, "metric: (scraped, expected)")
        # Gauges settle once the queue is empty and the deletes are committed.
        m = wait_for(lambda: (lambda x: x if x.get("mxrelay_queue_messages") == 0 else None)(relay.scrape()),
                     10, "queue gauge back to 0")
        self.assertEqual(m["mxrelay_queue_bytes"], 0)
        wait_for(lambda: relay.scrape().get("mxrelay_queue_oldest_message_age_seconds") == 0, 15,
                 "oldest message age back to 0 with an empty queue")
        self.assertGreater(m["mxrelay_received_bytes_total"], 0)
        self.assertEqual(m['mxrelay_message_size_bytes_bucket{le="+Inf"}'], N)
        # No label was made from client input: every site label is the route's or "other".
        sites = {k.split('site="')[1].split('"')[0] for k in m if k.startswith("mxrelay_site_")}
        self.assertEqual(sites, {"route:*", "other"})

    def test_queue_gauges_count_what_is_in_the_spool_across_a_restart(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"])
        for i in range(5):
            submit(relay.port("plain"), SENDER, ["q%d@dest.test" % i],
                   make_message(SENDER, ["q%d@dest.test" % i], "queued %d" % i))
        m = wait_for(lambda: (lambda x: x if x.get("mxrelay_queue_messages") == 5 else None)(relay.scrape()),
                     10, "5 queued")
        bytes_before = m["mxrelay_queue_bytes"]
        self.assertGreater(bytes_before, 5 * 200)
        self.assertEqual(relay.stop(), 0)
        relay.start()
        relay.wait_log(r"event=spool_counted messages=5 ", timeout=10)
        m = wait_for(lambda: (lambda x: x if x.get("mxrelay_queue_messages") == 5 else None)(relay.scrape()),
                     10, "5 queued after restart")
        self.assertEqual(m["mxrelay_queue_bytes"], bytes_before)

    def test_oldest_message_age_follows_the_oldest_queued_message(self):
        """mxrelay_queue_oldest_message_age_seconds (the alert rules' input) is the
        age of the oldest message still queued: it grows while that message is
        deferred, falls to the next one's age once it is delivered, and to 0
        when the queue is empty."""
        gauge = "mxrelay_queue_oldest_message_age_seconds"
        accepted = set()  # recipients the sink takes; the others get 451
        sink = self.sink(rcpt=lambda addr: None if addr.lower() in accepted else "451 4.3.0 Try again later")
        relay = self.delivering_relay(sink)
        port = relay.port("plain")
        self.assertEqual(relay.scrape().get(gauge), 0)
        t_old = time.time()
        submit(port, SENDER, ["old@dest.test"], make_message(SENDER, ["old@dest.test"], "old"))
        time.sleep(3)
        t_young = time.time()
        submit(port, SENDER, ["young@dest.test"], make_message(SENDER, ["young@dest.test"], "young"))
        # Both deferred: the gauge is the older one's age, not the younger's.
        m = wait_for(lambda: (lambda x: x if x.get(gauge, 0) >= 4 else None)(relay.scrape()),
                     15, "oldest age >= 4 s")
        self.assertLessEqual(m[gauge], time.time() - t_old + 1)
        self.assertEqual(m["mxrelay_queue_messages"], 2)
        # The old one delivered: the gauge drops to the young one's age.
        accepted.add("old@dest.test")
        sink.wait_messages(1, timeout=15)
        m = wait_for(lambda: (lambda x: x if x.get("mxrelay_queue_messages") == 1 and
                              x.get(gauge, 0) <= time.time() - t_young + 1 else None)(relay.scrape()),
                     15, "gauge at the younger message's age")
        self.assertGreater(m[gauge], 0)
        self.assertLess(m[gauge], time.time() - t_old - 2)
        # Both delivered: 0.
        accepted.add("young@dest.test")
        sink.wait_messages(2, timeout=15)
        wait_for(lambda: relay.scrape().get(gauge) == 0, 15, "gauge 0 with the queue empty")

    @unittest.skipIf(PROMETHEUS is None, "the prometheus binary is not installed (scripts/install-deps.sh installs it)")
    def test_real_prometheus_scrapes_the_relay(self):
        sink = self.sink()
        relay = self.delivering_relay(sink)
        self.run_known_workload(relay, sink, good=4, bad=0, auth_failures=0)
        work = tempfile.mkdtemp(prefix="mxrelay-prom-")
        self.addCleanup(shutil.rmtree, work, True)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: mxrelay\n    static_configs:\n"
                    "      - targets: ['%s']\n" % relay.metrics_address)
        web = "127.0.0.1:%d" % free_port()
        log = open(os.path.join(work, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen([PROMETHEUS, "--config.file=" + os.path.join(work, "prometheus.yml"),
                                 "--storage.tsdb.path=" + os.path.join(work, "data"),
                                 "--web.listen-address=" + web, "--log.level=warn"],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(stop_process, proc, 20)

        def query():
            if proc.poll() is not None:
                raise AssertionError("prometheus exited: " + open(log.name).read()[-2000:])
            url = "http://%s/api/v1/query?%s" % (web, urllib.parse.urlencode(
                {"query": 'mxrelay_messages_received_total{job="mxrelay"}'}))
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    res = json.load(r)["data"]["result"]
            except OSError:
                return None
            return res[0]["value"][1] if res else None

        value = wait_for(lambda: query() == "4" and "4", 60, "prometheus query result 4")
        self.assertEqual(value, "4")
        # The target is up (the scrape itself worked, not only the query).
        url = "http://%s/api/v1/query?%s" % (web, urllib.parse.urlencode({"query": 'up{job="mxrelay"}'}))
        with urllib.request.urlopen(url, timeout=5) as r:
            self.assertEqual(json.load(r)["data"]["result"][0]["value"][1], "1")

    def test_every_metric_used_in_deploy_is_exported(self):
        sys.path.insert(0, os.path.dirname(__file__))
        try:
            import deploy_check
        except ImportError:
            self.fail("tests/integration/deploy_check.py is missing")
        used = deploy_check.metric_names_in_deploy(ROOT)
        self.assertGreater(len(used), 10, "found almost no metric names in deploy/: parser broken?")
        sink = self.sink()
        relay = self.delivering_relay(sink)
        self.run_known_workload(relay, sink, good=2, bad=0, auth_failures=1)
        text = relay.http_get("/metrics")[1]
        exported = set()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                exported.add(name)
                if kind == "histogram":
                    exported.update({name + "_bucket", name + "_sum", name + "_count"})
        missing = sorted(n for n in used if n not in exported)
        self.assertEqual(missing, [], "used in deploy/ but not exported by the relay")

    def test_health_and_readiness_during_a_drain(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"])
        self.assertEqual(relay.http_get("/healthz"), (200, "ok\n"))
        self.assertEqual(relay.http_get("/readyz"), (200, "ready\n"))
        c = self.client(relay.port("plain"))
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<drain@dest.test>"), 250)
        relay.proc.send_signal(signal.SIGTERM)
        status = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(relay.http_get("/readyz")),
                          10, "readyz 503 while draining")
        self.assertIn("draining", status[1])
        self.assertEqual(relay.http_get("/healthz")[0], 200)
        # The transfer in progress completes and is acknowledged...
        self.assertReply(c.cmd("DATA"), 354)
        c.send(make_message(SENDER, ["drain@dest.test"], "during drain").encode() + b".\r\n")
        r = c.reply()
        self.assertReply(r, 250)
        qid = r.queue_id()
        # ...then the session is closed and the process exits cleanly.
        self.assertReply(c.cmd("NOOP"), 421)
        relay.proc.wait(timeout=40)
        self.assertEqual(relay.proc.returncode, 0)
        self.assertIn(qid, relay.queue_by_id(), "a message acknowledged during the drain was lost")


class IdleHttpConnectionsTest(RelayTestCase):
    """Issue 15, item 8: civetweb had 2 workers and a 10 s request timeout, so
    two idle TCP connections to the metrics port kept /healthz and /readyz
    from answering (Kubernetes then restarts a healthy relay)."""

    @staticmethod
    def is_open(s):
        """True while the server has not closed s (nothing to read, no EOF)."""
        s.setblocking(False)
        try:
            return s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            s.setblocking(True)

    def test_healthz_answers_while_20_idle_connections_are_held(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"])
        host, port = relay.metrics_address.rsplit(":", 1)
        idle = []
        try:
            for _ in range(20):
                idle.append(socket.create_connection((host, int(port)), timeout=5))
            time.sleep(0.2)
            for path, body in (("/healthz", "ok\n"), ("/readyz", "ready\n")):
                t0 = time.monotonic()
                got = relay.http_get(path, timeout=5)
                took = time.monotonic() - t0
                self.assertEqual(got, (200, body))
                # Answered while all 20 idle connections are still held, i.e.
                # not by a worker that the 2 s request timeout freed (order,
                # not wall time: a loaded machine may take a while to answer).
                still_open = sum(1 for s in idle if self.is_open(s))
                self.assertEqual(still_open, 20, "%s answered only after %d idle connection(s) "
                                 "were dropped (%.2fs)" % (path, 20 - still_open, took))
            # An idle connection is dropped after the request timeout (2 s).
            idle[0].settimeout(6)
            t0 = time.monotonic()
            self.assertEqual(idle[0].recv(100), b"")
            self.assertLess(time.monotonic() - t0, 5)
        finally:
            for s in idle:
                s.close()


class ReloadTest(RelayTestCase):

    def test_sighup_reloads_routes(self):
        a = Sink("127.0.0.1", free_port(), name="a").start()
        b = Sink("127.0.0.1", free_port(), name="b").start()
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        delivery = {"retry_initial": 1, "retry_max": 2, "max_age": 120, "resolver": NO_DNS}
        relay = self.new_relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"],
                               delivery=delivery, routes=deliver_to(a.port))
        session = self.client(relay.port("plain"))  # open across the reload
        session.ehlo()
        submit(relay.port("plain"), SENDER, ["r1@dest.test"], make_message(SENDER, ["r1@dest.test"], "before"))
        a.wait_messages(1, 20)
        relay.routes = deliver_to(b.port)
        relay.write_config()
        relay.hup()
        relay.wait_log(r"event=routes_loaded", timeout=10, count=2)
        submit(relay.port("plain"), SENDER, ["r2@dest.test"], make_message(SENDER, ["r2@dest.test"], "after"))
        b.wait_messages(1, 20)
        self.assertEqual(len(a.received()), 1, "a message went to the old route after the reload")
        self.assertReply(session.cmd("NOOP"), 250)  # not dropped by the reload

    def test_sighup_with_a_broken_config_keeps_running(self):
        relay = self.new_relay(listeners=[Listener("plain", "plain")], trusted_networks=["127.0.0.0/8"])
        with open(relay.config_path, "a") as f:
            f.write("\n[delivery]\nno_such_key = 1\n")
        relay.hup()
        relay.wait_log(r"event=config_reload_failed .*action=\"kept the running configuration\"", timeout=10)
        submit(relay.port("plain"), SENDER, ["x@dest.test"], make_message(SENDER, ["x@dest.test"], "still up"))

    def test_sighup_reloads_the_certificate_for_new_sessions(self):
        work = tempfile.mkdtemp(prefix="mxrelay-cert-")
        self.addCleanup(shutil.rmtree, work, True)
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")

        def make_cert(cn):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-days", "2", "-subj", "/CN=" + cn, "-keyout", key + ".new",
                            "-out", cert + ".new"], check=True, capture_output=True, timeout=30)
            os.replace(key + ".new", key)
            os.replace(cert + ".new", cert)

        def peer_cn(client):
            der = client.sock.getpeercert(binary_form=True)
            pem = ssl.DER_cert_to_PEM_cert(der)
            out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                                 capture_output=True, check=True, timeout=10).stdout.decode()
            return out.strip().split("CN", 1)[1].lstrip(" =")

        make_cert("first.test")
        relay = self.new_relay(listeners=[Listener("sub", "starttls")],
                               tls={"cert_file": cert, "key_file": key})
        old = self.client(relay.port("sub"))
        old.ehlo()
        self.assertReply(old.starttls(), 220)
        self.assertEqual(peer_cn(old), "first.test")
        make_cert("second.test")
        relay.hup()
        relay.wait_log(r"event=tls_reloaded", timeout=10)
        new = self.client(relay.port("sub"))
        new.ehlo()
        self.assertReply(new.starttls(), 220)
        self.assertEqual(peer_cn(new), "second.test")
        # The session opened before the reload keeps working.
        self.assertReply(old.ehlo(), 250)
        self.assertReply(old.auth_plain("alice", "alice-secret"), 235)


if __name__ == "__main__":
    unittest.main()
