"""Delivery core defects (issue 14): each test reproduces a scenario that went
wrong before the delivery engine's second edition.

- an unreadable body is never sent (empty or partial): the recipients are
  deferred with a local error (4.3.0), logged and counted;
- a site's policy (TLS, AUTH credentials) is part of its identity: two domains
  sharing MX hosts with different policies, or two smarthost routes to one
  host:port with different credentials, never borrow each other's;
- memory stays bounded with one large message to many destinations that stall
  after 354 (bodies stream to the socket in chunks);
- the body and the final reply run under delivery.data_timeout, extended while
  bytes move;
- SIGTERM during a steady delivery lets the transactions in flight finish
  (delivery.drain_timeout) and records them: no duplicate after the restart.

The DNS zone, sinks and relay helpers are test_delivery's (DeliveryBase).
"""

import os
import shutil
import subprocess
import time
import unittest

from relayctl import MXRELAY_BIN, Listener, make_message, submit
from sink import start_sinks
from test_delivery import MX, HOSTS, NULLMX, SENDER, WAIT, DeliveryBase

LDB = shutil.which("ldb") or "/usr/bin/ldb"  # rocksdb-tools

# Extra zone: two domains sharing one MX host (policy tests) and many domains
# whose MX hosts are distinct names on one stalling address (memory test).
CORE_MX = dict(MX)
CORE_HOSTS = dict(HOSTS)
CORE_MX["strict.test"] = [(10, "mx.shared.test")]
CORE_MX["loose.test"] = [(10, "mx.shared.test")]
CORE_HOSTS["mx.shared.test"] = "127.0.0.21"
SHARED = "127.0.0.21"
SMARTHOST = "127.0.0.22"
STALL = "127.0.0.23"
SLOW = "127.0.0.24"
CORE_MX["loop.test"] = [(10, "mx.loop.test")]
CORE_HOSTS["mx.loop.test"] = "127.0.0.1"
CORE_MX["slow.test"] = [(10, "mx.slow.test")]
CORE_HOSTS["mx.slow.test"] = SLOW
STALL_DOMAINS = 60
for i in range(STALL_DOMAINS):
    CORE_MX["stall%d.test" % i] = [(10, "mx.stall%d.test" % i)]
    CORE_HOSTS["mx.stall%d.test" % i] = STALL


def rss_kib(pid, field="VmHWM"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


class DeliveryCoreTest(DeliveryBase):
    ZONE_MX, ZONE_HOSTS, ZONE_NULLMX = CORE_MX, CORE_HOSTS, NULLMX

    # ------------------------------------------------- unreadable body

    def test_unreadable_body_is_deferred_never_sent_empty(self):
        if not os.path.exists(LDB):
            self.fail("RocksDB's ldb tool is missing (scripts/install-deps.sh installs rocksdb-tools)")
        port, (alpha,) = self.sinks(("127.0.0.2", {}))
        relay = self.relay(port)
        relay.delivery["enabled"] = False  # queue only
        relay.stop()
        relay.start()
        qid = self.send(relay, ["a@alpha.test"], "unreadable-body")
        relay.stop()
        spool = os.path.join(relay.data_dir, "spool")
        r = subprocess.run([LDB, "--db=" + spool, "--column_family=body", "--key_hex", "delete",
                            "0x" + qid.upper()], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        relay.delivery["enabled"] = True
        relay.start()
        ev = relay.wait_events(lambda e: e["recipient"] == "a@alpha.test", timeout=WAIT)[0]
        self.assertEqual((ev["outcome"], ev["code"], ev["enhanced"]), ("deferred", 451, "4.3.0"), ev)
        self.assertIn("body", ev["response"])
        relay.wait_log(r"event=body_read_failed id=%s" % qid, timeout=5)
        time.sleep(1.0)
        self.assertEqual(alpha.received(), [], "a message was sent without its body")
        self.assertEqual(alpha.stats()["messages"], 0)
        q = relay.queue_by_id()
        self.assertIn(qid, q, "the message must stay queued")
        m = relay.scrape()
        self.assertGreaterEqual(m.get("mxrelay_delivery_body_read_failures_total", 0), 1, m)

    # ------------------------------------------------- policy per site

    def _shared_mx(self, first, second):
        port, (shared,) = self.sinks((SHARED, {"starttls": True}))
        relay = self.relay(port, routes=[{"domain": "strict.test", "tls": "required_verify"}])
        first_rcpt, second_rcpt = "u@%s.test" % first, "u@%s.test" % second
        self.send(relay, [first_rcpt], "shared-" + first)
        relay.wait_events(lambda e: e["recipient"] == first_rcpt, timeout=WAIT)
        self.send(relay, [second_rcpt], "shared-" + second)
        relay.wait_events(lambda e: e["recipient"] == second_rcpt, timeout=WAIT)
        time.sleep(0.5)
        got = {m.rcpts[0] for m in shared.received()}
        # loose.test: opportunistic, the sink's self-signed certificate is fine.
        # strict.test: required_verify, the certificate cannot verify: never sent.
        self.assertEqual(got, {"u@loose.test"}, "strict.test delivered with a weaker policy")
        strict = [e for e in relay.events() if e["recipient"] == "u@strict.test"]
        self.assertEqual(strict[0]["outcome"], "deferred", strict)
        self.assertEqual(strict[0]["enhanced"], "4.7.0", strict)
        self.assertIn("verify", strict[0]["response"])
        loose = [e for e in relay.events() if e["recipient"] == "u@loose.test"]
        self.assertEqual(loose[0]["outcome"], "delivered", loose)

    def test_shared_mx_policy_loose_first(self):
        self._shared_mx("loose", "strict")

    def test_shared_mx_policy_strict_first(self):
        self._shared_mx("strict", "loose")

    def test_two_smarthost_routes_keep_their_own_credentials(self):
        port, (smart,) = self.sinks((SMARTHOST, {"starttls": True, "auth": ("user-b", "pw-b")}))
        # The sink's certificate is self-signed: AUTH over unverified TLS is
        # allowed only with the explicit key.
        routes = [{"domain": "alpha.test", "host": SMARTHOST, "port": port, "tls": "required",
                   "auth_over_unverified_tls": True, "auth_user": "user-a", "auth_password": "pw-a"},
                  {"domain": "beta.test", "host": SMARTHOST, "port": port, "tls": "required",
                   "auth_over_unverified_tls": True, "auth_user": "user-b", "auth_password": "pw-b"}]
        relay = self.relay(port, routes=routes)
        self.send(relay, ["x@alpha.test"], "cred-a")
        relay.wait_events(lambda e: e["recipient"] == "x@alpha.test", timeout=WAIT)
        self.send(relay, ["y@beta.test"], "cred-b")
        smart.wait_messages(1, WAIT)
        time.sleep(0.5)
        users = {u for u, _, _, _ in smart.auth_log}
        self.assertEqual(users, {"user-a", "user-b"}, smart.auth_log)
        self.assertEqual([m.rcpts for m in smart.received()], [["y@beta.test"]])
        self.assertEqual(smart.received()[0].auth, ("user-b", "pw-b"))
        a = [e for e in relay.events() if e["recipient"] == "x@alpha.test"]
        self.assertEqual(a[0]["outcome"], "deferred", a)

    # ------------------------------------------------- bounded memory

    def test_large_message_to_many_stalling_sites_keeps_memory_bounded(self):
        size = 16 << 20
        port, (stall,) = self.sinks((STALL, {"stall_in_data": True, "rcvbuf": 32768}))
        # Sanitizer builds measure their own shadow memory too. ASan: freed
        # memory sits in a 256 MiB quarantine and allocations have redzones:
        # no quarantine for this relay, and half as much again on the bound.
        # TSan: its shadow of every touched byte: three times the bound. The
        # unfixed code needed ~1 GiB even without a sanitizer, so the check
        # still tells the two apart in every stage.
        with open(MXRELAY_BIN, "rb") as f:
            binary = f.read()
        asan, tsan = b"__asan_init" in binary, b"__tsan_init" in binary
        del binary
        saved = os.environ.get("ASAN_OPTIONS")
        if asan:
            os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + "quarantine_size_mb=0"
        try:
            relay = self.new_relay(listeners=[self.listener()], trusted_networks=["127.0.0.0/8"],
                                   delivery=self.delivery_cfg(port, drain_timeout=1),
                                   limits={"max_connections_per_ip": 100, "max_message_size": 32 << 20})
        finally:
            if asan:
                if saved is None:
                    del os.environ["ASAN_OPTIONS"]
                else:
                    os.environ["ASAN_OPTIONS"] = saved
        rcpts = ["r@stall%d.test" % i for i in range(STALL_DOMAINS)]
        body = ("x" * 998 + "\r\n") * (size // 1000)
        submit(relay.port("plain"), SENDER, rcpts, make_message(SENDER, rcpts, "big", body=body),
               timeout=120)
        deadline = time.monotonic() + 60
        while stall.stalled < STALL_DOMAINS and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(stall.stalled, STALL_DOMAINS, "not every site reached DATA")
        time.sleep(2.0)  # let every connection push what its socket takes
        hwm = rss_kib(relay.pid) * 1024
        print("\n[memory] peak RSS %.0f MiB, %d transactions of %d MiB stalled after 354"
              % (hwm / 2**20, STALL_DOMAINS, size >> 20), flush=True)
        # Bound (README): base + one copy of the body + 2 x 256 KiB per
        # connection; before the fix each connection held its own stuffed copy
        # (60 x 16 MiB ~ 1 GB).
        bound = 160 * (1 << 20) + 2 * size
        if asan:
            # ASan's allocator (redzones, the shadow of every touched byte,
            # per-thread caches) on a binary that now also links RE2, libcurl
            # and GMime and runs more threads: 308-326 MiB measured under ASan
            # for 87-97 MiB in release (2026-12-06). The release bound is the
            # one that proves the design; this one still catches a copy of
            # the body per connection (~1 GB).
            bound = bound * 2
        if tsan:
            bound = bound * 3
        self.assertLess(hwm, bound, "peak RSS %.0f MiB with %d stalled transactions of %d MiB"
                        % (hwm / 2**20, STALL_DOMAINS, size >> 20))

    # ------------------------------------------------- data timeout

    def test_final_reply_waits_for_data_timeout_not_command_timeout(self):
        port, (alpha,) = self.sinks(("127.0.0.2", {"data_delay": 3.5}))
        relay = self.relay(port, command_timeout=1, data_timeout=10)
        self.send(relay, ["slow@alpha.test"], "slow-dot")
        ev = relay.wait_events(lambda e: e["recipient"] == "slow@alpha.test", timeout=WAIT)[0]
        self.assertEqual(ev["outcome"], "delivered", ev)
        time.sleep(1.5)
        self.assertEqual(len(alpha.received()), 1, "sent twice: the first attempt timed out")

    def test_data_timeout_extends_while_bytes_move(self):
        port, (slow,) = self.sinks((SLOW, {"data_read_rate": 200_000, "rcvbuf": 16384}))
        relay = self.relay(port, command_timeout=1, data_timeout=2)
        body = ("y" * 998 + "\r\n") * 800  # 800 kB at 200 kB/s: ~4 s, twice the data timeout
        self.send(relay, ["big@slow.test"], "slow-reader", body=body)
        ev = relay.wait_events(lambda e: e["recipient"] == "big@slow.test", timeout=WAIT)[0]
        self.assertEqual(ev["outcome"], "delivered", ev)
        self.assertEqual(len(slow.received()), 1)

    # ------------------------------------------------- SIGTERM drain

    def test_sigterm_lets_transactions_finish_no_duplicates(self):
        n = 40
        port, (alpha,) = self.sinks(("127.0.0.2", {"data_delay": 0.4}))
        relay = self.relay(port, drain_timeout=10)
        tokens = ["drain-%d" % i for i in range(n)]
        for t in tokens:
            self.send(relay, ["d@alpha.test"], t)
        deadline = time.monotonic() + WAIT
        while (len(alpha.received()) < 5 or alpha.in_data == 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertGreater(alpha.in_data, 0, "no transaction in flight to interrupt")
        rc = relay.stop(timeout=30)
        self.assertEqual(rc, 0, relay.log_tail())
        self.assertRegex(relay.log_text(), r"event=delivery_drained transactions_abandoned=0 .*reason=done")
        relay.start()
        relay.wait_queue_empty(timeout=60)
        time.sleep(1.0)
        ids = [m.message_id for m in alpha.received()]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        self.assertEqual(dups, [], "delivered twice after SIGTERM + restart")
        self.assertEqual(sorted(ids), sorted("<%s@client.test>" % t for t in tokens))

    # ------------------------------------------------- remote text in our logs

    def test_reply_text_cannot_forge_log_fields(self):
        forged = '421 4.3.2 busy" event=delivered id=forged x="'
        port, (alpha,) = self.sinks(("127.0.0.2", {"banner": forged}))
        relay = self.relay(port)
        self.send(relay, ["f@alpha.test"], "forge")
        ev = relay.wait_events(lambda e: e["recipient"] == "f@alpha.test", timeout=WAIT)[0]
        self.assertEqual(ev["outcome"], "deferred", ev)
        self.assertIn('busy" event=delivered', ev["response"])  # JSON keeps the text, quoted
        relay.wait_log(r'event=(connection_failed|site_backoff) .*busy\\" event=delivered', timeout=5)
        self.assertNotRegex(relay.log_text(), r'busy" event=delivered',
                            "a remote reply added fields to a log line")

    # ------------------------------------------------- where delivery may connect (issue 15)

    def test_default_deny_networks_refuse_a_loopback_mx(self):
        port, (alpha,) = self.sinks(("127.0.0.2", {}))
        relay = self.relay(port, deny_networks=None)  # the relay's default
        qid = self.send(relay, ["a@alpha.test"], "denied-loopback")
        ev = relay.wait_events(lambda e: e["recipient"] == "a@alpha.test", timeout=WAIT)[0]
        self.assertEqual((ev["outcome"], ev["code"], ev["enhanced"]), ("bounced", 554, "5.4.4"), ev)
        self.assertIn("127.0.0.0/8 is in delivery.deny_networks", ev["response"])
        relay.wait_log(r"event=destination_refused site=\S+ host=mx.alpha.test ip=127.0.0.2 reason=deny_networks",
                       timeout=5)
        relay.wait_queue_empty()
        time.sleep(0.5)
        self.assertEqual(alpha.stats()["connections"], 0, "a connection was opened to a denied address")
        self.assertNotIn(qid, relay.queue_by_id())

    def test_mx_pointing_at_our_own_listener_bounces_5_4_6(self):
        relay = self.new_relay(listeners=[self.listener()], trusted_networks=["127.0.0.0/8"],
                               delivery=self.delivery_cfg(0), start=False,
                               limits={"max_connections_per_ip": 100})
        relay.delivery["port"] = relay.port("plain")  # MX delivery comes back to us
        relay.start()
        self.send(relay, ["me@loop.test"], "loop-to-self")
        ev = relay.wait_events(lambda e: e["recipient"] == "me@loop.test", timeout=WAIT)[0]
        self.assertEqual((ev["outcome"], ev["code"], ev["enhanced"]), ("bounced", 554, "5.4.6"), ev)
        self.assertIn("loops back to myself", ev["response"])
        relay.wait_log(r"event=destination_refused .*host=mx.loop.test ip=127.0.0.1 reason=loop", timeout=5)
        # Only the client's own connection was ever accepted: nothing came back in.
        time.sleep(1.0)
        m = relay.scrape()
        accepted = sum(v for k, v in m.items() if k.startswith("mxrelay_connections_accepted_total"))
        self.assertEqual(accepted, 1, m)

    # ------------------------------------------------- helpers

    def listener(self):
        return Listener("plain", "plain")


if __name__ == "__main__":
    unittest.main()
