"""Egress sources and pools, traffic shaping, automation, classification and
warm-up (issue 17), with the real relay, a loopback DNS zone and sinks that
record the relay's source address and a timestamp per connection and message.

Sources are loopback addresses (127.0.0.2-127.0.0.6, bindable on `lo` without
setup); the sinks listen on 127.0.0.31-127.0.0.37 (and the DSN sink of
test_delivery's zone, 127.0.0.7).

- pool chosen by the route, by the authenticated user, by the pool header
  (removed before sending), else the default source; each source's EHLO name;
- weights respected over 200 messages;
- per-path connection limit and messages per connection; recipients per transaction;
- 120/min enforced within 10% over a 45 s window, burst no larger than configured;
- an MX-suffix rule shared by two domains on one provider MX (one path);
- a Gmail-style 421-4.7.28 suspends only that path (source, site) for the
  configured time: no connection from that source to that site meanwhile,
  the same site from the other source and other sites keep delivering, the
  held messages are not charged an attempt; `mxrelay shaping status` and the
  metrics show it;
- a bounce category reaches the log, the event log, the DSN and the metrics;
- warm-up: the day-1 cap is honoured, the overflow goes to the other source,
  and a pool with no source left waits.
"""

import datetime
import os
import re
import smtplib
import time
import unittest

from relayctl import HOST, Listener, Relay, make_message, run_cli, submit, submit_many
from test_delivery import HOSTS, MX, NULLMX, SENDER, SENDERS, WAIT, DeliveryBase, dsn_fields

ZMX, ZHOSTS = dict(MX), dict(HOSTS)
SINK_A, SINK_B, SINK_P, SINK_G, SINK_R, SINK_W, SINK_X = ("127.0.0.%d" % i for i in range(31, 38))
for name, addr in (("a", SINK_A), ("b", SINK_B), ("g", SINK_G), ("r", SINK_R), ("w", SINK_W), ("x", SINK_X)):
    ZMX["%s.test" % name] = [(10, "mx.%s.test" % name)]
    ZHOSTS["mx.%s.test" % name] = addr
# Two customer domains hosted on one provider's MX (MX roll-up), and a
# Google-like provider (its MX under google.test).
ZMX["p1.test"] = [(10, "mx1.provider.test")]
ZMX["p2.test"] = [(10, "mx1.provider.test")]
ZHOSTS["mx1.provider.test"] = SINK_P
ZMX["g.test"] = [(10, "aspmx.l.google.test")]
ZHOSTS["aspmx.l.google.test"] = SINK_G

S1, S2, S3, S4, S5 = ("127.0.0.%d" % i for i in range(2, 7))

GMAIL_421 = ("421-4.7.28 [%s] Our system has detected an unusual rate of unsolicited mail originating\r\n"
             "421-4.7.28 from your IP address. To protect our users from spam, mail sent from your IP\r\n"
             "421 4.7.28 address has been temporarily rate limited. https://support.google.com/mail/?p=UnsolicitedRateLimitError")


class ShapedRelay(Relay):
    """A Relay with extra TOML tables ([[source]], [[pool]], [shaping]) at the end of its config."""
    extra = ""

    def config_text(self):
        return Relay.config_text(self) + "\n" + self.extra + "\n"


def sources_toml(*specs):
    out = []
    for name, addr, extra in specs:
        out += ["[[source]]", 'name = "%s"' % name, 'address = "%s"' % addr, 'ehlo_name = "%s.relay.test"' % name]
        out += extra
    return "\n".join(out) + "\n"


def pool_toml(name, sources, weights=None, users=None):
    out = ["[[pool]]", 'name = "%s"' % name, "sources = [%s]" % ", ".join('"%s"' % s for s in sources)]
    if weights:
        out.append("weights = [%s]" % ", ".join(str(w) for w in weights))
    if users:
        out.append("users = [%s]" % ", ".join('"%s"' % u for u in users))
    return "\n".join(out) + "\n"


class ShapingTest(DeliveryBase):
    ZONE_MX, ZONE_HOSTS, ZONE_NULLMX = ZMX, ZHOSTS, NULLMX

    def shaped(self, port, extra, shaping_file=None, routes=(), users=None, **delivery):
        if shaping_file is not None:
            path = os.path.join(self.tmpdir(), "shaping.toml")
            with open(path, "w") as f:
                f.write(shaping_file)
            extra += '\n[shaping]\nfile = "%s"\n' % path
        relay = ShapedRelay(listeners=[Listener("plain", "plain"), Listener("sub", "plain", auth_without_tls=True)],
                            trusted_networks=["127.0.0.0/8"], delivery=self.delivery_cfg(port, **delivery),
                            routes=routes, limits={"max_connections_per_ip": 100}, users=users)
        relay.extra = extra
        self.addCleanup(relay.cleanup)
        relay.start()
        return relay

    def scrape_until(self, relay, key, value):
        """The metrics once `key` equals `value` (per-source and per-rule figures are published every 250 ms)."""
        for _ in range(50):
            m = relay.scrape()
            if m.get(key) == value:
                return m
            time.sleep(0.1)
        return m

    def tmpdir(self):
        import tempfile
        import shutil
        d = tempfile.mkdtemp(prefix="mxrelay-shaping-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def submit_bulk(self, relay, rcpt, n, token):
        items = [(SENDER, [rcpt], make_message(SENDER, [rcpt], "%s-%d" % (token, i), "%s-%d" % (token, i)))
                 for i in range(n)]
        ids = []
        for k in range(0, n, 50):  # 50 per connection
            ids += submit_many(relay.port("plain"), items[k:k + 50])
        return ids

    # ------------------------------------------------------------ pools

    def test_pool_by_route_user_header_and_default(self):
        port, (a, b) = self.sinks((SINK_A, {}), (SINK_B, {}))
        extra = sources_toml(("s1", S1, []), ("s2", S2, []), ("s3", S3, []))
        extra += pool_toml("tx", ["s1"]) + pool_toml("mkt", ["s2"], users=["alice"]) + pool_toml("hdr", ["s3"])
        relay = self.shaped(port, extra, routes=[{"domain": "a.test", "pool": "tx"}])
        # Route: a.test -> pool tx -> s1.
        self.send(relay, ["u@a.test"], "route")
        # The authenticated user's pool wins over the route.
        with smtplib.SMTP(HOST, relay.port("sub"), local_hostname="client.test", timeout=10) as s:
            s.login("alice", "alice-secret")
            for rcpt, tok in (("v@a.test", "user-a"), ("v@b.test", "user-b")):
                s.sendmail(SENDER, [rcpt], make_message(SENDER, [rcpt], tok, tok))
        # The header (a trusted client): pool hdr -> s3, and the header is removed.
        submit(relay.port("plain"), SENDER, ["h@b.test"],
               make_message(SENDER, ["h@b.test"], "header").replace("Subject:", "X-MxRelay-Pool: hdr\r\nSubject:", 1))
        # Nothing says: the default source (no address bound: the kernel's 127.0.0.1).
        self.send(relay, ["d@b.test"], "default")
        a.wait_messages(2, timeout=WAIT)
        b.wait_messages(3, timeout=WAIT)
        by_rcpt = {m.rcpts[0]: m for s in (a, b) for m in s.received()}
        self.assertEqual(by_rcpt["u@a.test"].peer, S1)
        self.assertEqual(by_rcpt["u@a.test"].helo, "s1.relay.test")
        self.assertEqual(by_rcpt["v@a.test"].peer, S2)
        self.assertEqual(by_rcpt["v@b.test"].peer, S2)
        self.assertEqual(by_rcpt["v@b.test"].helo, "s2.relay.test")
        self.assertEqual(by_rcpt["h@b.test"].peer, S3)
        self.assertNotIn(b"x-mxrelay-pool", by_rcpt["h@b.test"].data.lower())
        self.assertEqual(by_rcpt["d@b.test"].peer, "127.0.0.1")
        self.assertEqual(by_rcpt["d@b.test"].helo, "relay.test")
        ev = {e["recipient"]: e for e in relay.events()}
        self.assertEqual(ev["u@a.test"]["source"], "s1")
        self.assertEqual(ev["d@b.test"]["source"], "default")

    def test_header_from_unauthenticated_client_is_removed_not_honoured(self):
        port, (b,) = self.sinks((SINK_B, {}))
        extra = sources_toml(("s3", S3, [])) + pool_toml("hdr", ["s3"])
        relay = self.shaped(port, extra)
        relay.stop()
        relay.trusted_networks = []
        relay.start()
        with smtplib.SMTP(HOST, relay.port("sub"), local_hostname="client.test", timeout=10) as s:
            s.login("alice", "alice-secret")  # authenticated: honoured
            s.sendmail(SENDER, ["x@b.test"], make_message(SENDER, ["x@b.test"], "ok", "ok").replace(
                "Subject:", "X-MxRelay-Pool: hdr\r\nSubject:", 1))
        b.wait_messages(1, timeout=WAIT)
        self.assertEqual(b.received()[0].peer, S3)
        self.assertNotIn(b"x-mxrelay-pool", b.received()[0].data.lower())

    def test_weights_over_200_messages(self):
        port, (b,) = self.sinks((SINK_B, {}))
        extra = sources_toml(("s1", S1, []), ("s2", S2, [])) + pool_toml("w", ["s1", "s2"], weights=[3, 1])
        relay = self.shaped(port, extra, routes=[{"domain": "b.test", "pool": "w"}])
        self.submit_bulk(relay, "w@b.test", 200, "weights")
        b.wait_messages(200, timeout=60)
        peers = [m.peer for m in b.received()]
        # Smooth weighted round-robin: exact proportions (a retry could move one).
        self.assertAlmostEqual(peers.count(S1), 150, delta=5)
        self.assertAlmostEqual(peers.count(S2), 50, delta=5)
        for _ in range(50):  # published every 250 ms (bounded wait)
            m = relay.scrape()
            if m.get('mxrelay_egress_pool_jobs_total{pool="w"}') == 200:
                break
            time.sleep(0.1)
        self.assertEqual(m.get('mxrelay_egress_pool_jobs_total{pool="w"}'), 200)
        self.assertEqual(m.get('mxrelay_egress_source_jobs_total{source="s1"}'), peers.count(S1), m)

    # ------------------------------------------------------------ limits

    def test_connection_limit_and_messages_per_connection_per_path(self):
        port, (b,) = self.sinks((SINK_B, {"data_delay": 0.05}))
        extra = sources_toml(("s1", S1, []), ("s2", S2, [])) + pool_toml("two", ["s1", "s2"])
        rules = '[domain."b.test"]\nconnection_limit = 2\nmax_deliveries_per_connection = 3\n'
        relay = self.shaped(port, extra, shaping_file=rules, routes=[{"domain": "b.test", "pool": "two"}])
        self.submit_bulk(relay, "c@b.test", 60, "conns")
        msgs = b.wait_messages(60, timeout=60)
        self.assertEqual(b.peak_by_peer.get(S1), 2, b.peak_by_peer)  # reached, never passed
        self.assertEqual(b.peak_by_peer.get(S2), 2, b.peak_by_peer)
        per_conn = {}
        for m in msgs:
            per_conn[m.conn_id] = per_conn.get(m.conn_id, 0) + 1
        self.assertLessEqual(max(per_conn.values()), 3, per_conn)
        self.assertGreaterEqual(b.connections, 20)

    def test_recipients_per_transaction_per_rule(self):
        port, (b,) = self.sinks((SINK_B, {}))
        rules = '[domain."b.test"]\nmax_recipients_per_transaction = 2\n'
        relay = self.shaped(port, "", shaping_file=rules)
        rcpts = ["r%d@b.test" % i for i in range(5)]
        self.send(relay, rcpts, "split")
        msgs = b.wait_messages(3, timeout=WAIT)
        self.assertEqual(sorted(len(m.rcpts) for m in msgs), [1, 2, 2])
        self.assertEqual(sorted(r for m in msgs for r in m.rcpts), rcpts)
        evs = relay.wait_events(lambda e: e["outcome"] == "delivered", count=5, timeout=WAIT)
        self.assertEqual(len({e["recipient"] for e in evs}), 5)

    def test_rate_120_per_minute_with_bounded_burst(self):
        port, (r,) = self.sinks((SINK_R, {}))
        rules = '[domain."r.test"]\nmax_message_rate = "120/min"\nmax_burst = 4\n'
        relay = self.shaped(port, "", shaping_file=rules)
        n = 110
        t0 = time.time()
        self.submit_bulk(relay, "r@r.test", n, "rate")
        self.assertLess(time.time() - t0, 20, "submission too slow for the measurement")
        msgs = r.wait_messages(96, timeout=90)
        times = sorted(m.time for m in msgs)
        # The burst: at most max_burst (4) back to back, then one per 0.5 s.
        # In any window of w seconds: at most 4 + 2*w (+1 for timing noise).
        for i in range(len(times)):
            for w in (0.25, 1.0, 5.0):
                inside = sum(1 for t in times[i:] if t < times[i] + w)
                self.assertLessEqual(inside, 4 + 2 * w + 1, "burst too large: %d in %.2fs" % (inside, w))
        # The rate over a measured 45 s window after the burst: 90 +- 10%.
        start = times[4]
        count = sum(1 for t in times if start <= t < start + 45.0)
        self.assertGreaterEqual(count, 81, count)
        self.assertLessEqual(count, 99, count)
        print("\nrate test: %d messages in the 45 s window (configured 120/min = 90), first 4 within %.3fs"
              % (count, times[3] - times[0]))

    def test_mx_suffix_rule_shared_by_two_domains(self):
        port, (p,) = self.sinks((SINK_P, {"data_delay": 0.05}))
        rules = '[provider.prov]\nmx_suffix = ["provider.test"]\nconnection_limit = 1\nmax_deliveries_per_connection = 2\n'
        relay = self.shaped(port, "", shaping_file=rules)
        items = []
        for i in range(10):
            for d in ("p1.test", "p2.test"):
                rc = "u%d@%s" % (i, d)
                items.append((SENDER, [rc], make_message(SENDER, [rc], "mx-%s-%d" % (d, i), "x")))
        submit_many(relay.port("plain"), items)
        msgs = p.wait_messages(20, timeout=60)
        self.assertEqual(p.peak_by_peer, {"127.0.0.1": 1}, "the two domains must share one path with one connection")
        per_conn = {}
        for m in msgs:
            per_conn[m.conn_id] = per_conn.get(m.conn_id, 0) + 1
        self.assertLessEqual(max(per_conn.values()), 2, per_conn)
        self.assertEqual({m.rcpts[0].split("@")[1] for m in msgs}, {"p1.test", "p2.test"})
        m = self.scrape_until(relay, 'mxrelay_shaping_rule_paths{rule="prov"}', 1)
        self.assertEqual(m.get('mxrelay_shaping_rule_paths{rule="prov"}'), 1, m)

    # ------------------------------------------------------------ automation

    def test_gmail_421_suspends_only_that_path(self):
        fired = []

        def mail_from_s1(sender):
            if not fired:
                fired.append(time.time())
                return GMAIL_421 % S1
            return "250 2.1.0 Ok"

        port, (g, b) = self.sinks((SINK_G, {"mail_by_peer": {S1: mail_from_s1}}), (SINK_B, {}))
        extra = sources_toml(("s1", S1, []), ("s2", S2, [])) + pool_toml("both", ["s1", "s2"])
        rules = ('[provider.gtest]\nmx_suffix = ["google.test"]\n'
                 '[[provider.gtest.automation]]\ncode = 421\nenhanced = "4.7.28"\naction = "suspend"\nduration = "20s"\n')
        relay = self.shaped(port, extra, shaping_file=rules,
                            routes=[{"domain": "g.test", "pool": "both"}, {"domain": "b.test", "pool": "both"}])
        g_ids = self.submit_bulk(relay, "g@g.test", 10, "gmail")
        relay.wait_log(r"event=shaping_action source=s1 site=mx:aspmx\.l\.google\.test:\d+ rule=gtest "
                       r"automation=0 action=suspend seconds=20", timeout=WAIT)
        t_action = fired[0]
        # Meanwhile: other sites from s1 and the same site from s2 keep going.
        self.submit_bulk(relay, "b@b.test", 6, "other-site")
        b.wait_messages(6, timeout=WAIT)
        self.assertIn(S1, {m.peer for m in b.received()}, "s1 must still deliver to other sites")
        g.wait_messages(4, timeout=WAIT)
        self.assertTrue(all(m.peer == S2 for m in g.received()
                            if m.time > t_action + 1), "only s2 may reach g.test during the suspension")
        # The held messages: no attempt charged.
        held = [e for e in relay.events() if e["recipient"] == "g@g.test" and "suspended by shaping rule" in e["response"]]
        self.assertTrue(held, relay.events())
        q = relay.queue_by_id()
        charged_421 = [e["queue_id"] for e in relay.events() if e["code"] == 421 and e["enhanced"] == "4.7.28"]
        self.assertEqual(len(charged_421), 1, "only the attempt that got the 421 counts")
        for e in held:
            if e["queue_id"] in q and e["queue_id"] not in charged_421:
                self.assertEqual(q[e["queue_id"]]["attempts"], 0, q[e["queue_id"]])
        # Listing and metrics while suspended.
        # Listing and metrics while suspended (published by the delivery
        # thread every 250 ms: polled, bounded).
        rx = r"path source=s1 site=mx:aspmx\.l\.google\.test:\d+ rule=gtest suspended_s=\d+"
        for _ in range(50):
            out = run_cli(["shaping", "status", "-c", relay.config_path])
            self.assertEqual(out.returncode, 0, out.stderr)
            if re.search(rx, out.stdout):
                break
            time.sleep(0.1)
        self.assertRegex(out.stdout, rx)
        self.assertIn("4.7.28", out.stdout)
        self.assertNotRegex(out.stdout, r"path source=s2 ")
        m = relay.scrape()
        self.assertEqual(m.get("mxrelay_shaping_paths_suspended"), 1, m)
        self.assertGreaterEqual(m.get('mxrelay_shaping_actions_total{action="suspend"}', 0), 1)
        # After the suspension every message is delivered; no connection from
        # s1 to the site during it.
        g.wait_messages(10, timeout=60)
        during = [(c, p, t) for c, p, t in g.conn_log if p == S1 and t_action + 1 < t < t_action + 19]
        self.assertEqual(during, [], "s1 connected to the suspended site")
        after = [p for c, p, t in g.conn_log if t >= t_action + 19]
        print("\nsuspension: s1 connections to g.test after the 20 s suspension: %d" % after.count(S1))
        self.assertEqual(sorted(m.message_id for m in g.received()),
                         sorted("<gmail-%d@client.test>" % i for i in range(10)))

    # ------------------------------------------------------------ classification

    def test_category_reaches_log_event_log_dsn_and_metrics(self):
        port, (x, senders) = self.sinks((SINK_X, {"rcpt": {"full@x.test": "552 5.2.2 Mailbox full"}}), (SENDERS, {}))
        relay = self.shaped(port, "")
        qid = self.send(relay, ["full@x.test"], "category")
        ev = relay.wait_events(lambda e: e["recipient"] == "full@x.test", timeout=WAIT)[0]
        self.assertEqual((ev["outcome"], ev["category"]), ("bounced", "mailbox_full"), ev)
        relay.wait_log(r"event=bounced id=%s .* category=mailbox_full" % qid, timeout=5)
        dsn = self.wait_dsn(senders)[0]
        msg, f = self.check_dsn(dsn, "full@x.test", "5.2.2", qid)
        self.assertEqual(f.get("X-Mxrelay-Bounce-Category"), "mailbox_full")
        self.assertIn(b"(category: mailbox_full)", dsn.data)
        m = relay.scrape()
        self.assertGreaterEqual(m.get('mxrelay_delivery_failures_total{category="mailbox_full"}', 0), 1, m)

    # ------------------------------------------------------------ warm-up

    def test_warmup_day1_cap_overflow_then_wait(self):
        port, (w, a) = self.sinks((SINK_W, {}), (SINK_A, {}))
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        extra = sources_toml(("w1", S4, ['warmup_start = "%s"' % today, "warmup = [5, 50]"]), ("w2", S5, []))
        extra += pool_toml("both", ["w1", "w2"], weights=[3, 1]) + pool_toml("solo", ["w1"])
        relay = self.shaped(port, extra, routes=[{"domain": "w.test", "pool": "both"},
                                                 {"domain": "a.test", "pool": "solo"}])
        self.submit_bulk(relay, "w@w.test", 20, "warm")
        msgs = w.wait_messages(20, timeout=WAIT)
        peers = [m.peer for m in msgs]
        self.assertEqual(peers.count(S4), 5, "day 1 cap of w1")
        self.assertEqual(peers.count(S5), 15, "the overflow goes to w2")
        # A pool whose only source is capped: the message waits (held, not charged).
        qid = self.send(relay, ["solo@a.test"], "warm-solo")
        ev = relay.wait_events(lambda e: e["recipient"] == "solo@a.test", timeout=WAIT)[0]
        self.assertEqual(ev["outcome"], "deferred", ev)
        self.assertIn("Warm-up", ev["response"])
        self.assertEqual(relay.queue_by_id()[qid]["attempts"], 0)
        self.assertEqual(a.received(), [])
        m = self.scrape_until(relay, 'mxrelay_egress_source_warmup_sent_today{source="w1"}', 5)
        self.assertEqual(m.get('mxrelay_egress_source_warmup_day{source="w1"}'), 1, m)
        self.assertEqual(m.get('mxrelay_egress_source_warmup_cap{source="w1"}'), 5, m)
        self.assertEqual(m.get('mxrelay_egress_source_warmup_sent_today{source="w1"}'), 5, m)
        self.assertGreater(m.get('mxrelay_egress_source_warmup_overflow_total{source="w1"}', 0), 0, m)


if __name__ == "__main__":
    unittest.main()
