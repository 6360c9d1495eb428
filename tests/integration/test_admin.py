"""Admin API and CLI (issue 18) on a queue of 2,000 messages across four
domains (injected through the HTTP API, deferred 451 by their sink):

- summaries by domain, site, tenant, campaign: the counts, and the CLI and
  the API agree;
- delete by domain (no DSN), bounce by domain (a DSN each), suspend a domain
  and hold one message (kept across a restart), retry everything (the
  suspended and held ones are not attempted and not charged an attempt),
  resume and release (then delivered); every action reports how many
  messages it touched, is logged (event=admin_action) and counted;
- suspension by campaign and by site with a duration;
- a wrong token is refused (401).
"""

import re
import time
import unittest

from cp_helpers import CpRelay, new_key
from relayctl import Listener, RelayTestCase, run_cli
from sink import start_sinks

KEY, STORED = new_key()
TENANTS = '[[tenant]]\nname = "shop"\napi_keys = ["%s"]\npool = "bulk"\n' % STORED
DOMAINS = ["d1.test", "d2.test", "d3.test", "d4.test"]
PER_DOMAIN = 500
DEST, DSN = "127.0.0.91", "127.0.0.92"


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


class AdminTest(RelayTestCase):

    def setUp(self):
        self.port, (self.dest, self.dsn) = start_sinks([(DEST, {"default_rcpt": "451 4.2.0 try later"}), (DSN, {})])
        for s in (self.dest, self.dsn):
            self.addCleanup(s.stop)
        routes = [{"domain": d, "host": DEST} for d in DOMAINS] + [{"domain": "snd.test", "host": DSN}]
        self.relay = CpRelay(
            tenants_toml=TENANTS, listeners=[Listener("sub", "plain", auth_without_tls=True)],
            http_api={"max_recipients": 1000}, limits={"max_recipients": 1000},
            delivery={"port": self.port, "retry_initial": 3600, "retry_max": 3600, "max_connections_per_site": 8},
            routes=routes)
        self.addCleanup(self.relay.cleanup)
        self.relay.start()

    def fill(self, per_domain=PER_DOMAIN, domains=DOMAINS):
        for i, d in enumerate(domains):
            status, resp = self.relay.inject(KEY, {
                "envelope_sender": "sender@snd.test", "campaign": "c1" if i < 2 else "c2",
                "recipients": [{"email": "u%d@%s" % (j, d), "substitutions": {"n": str(j)}} for j in range(per_domain)],
                "content": "From: sender@snd.test\r\nSubject: n={{n}}\r\n\r\nbody {{n}}\r\n"})
            self.assertEqual(status, 200, resp)
            self.assertEqual(len(resp["messages"]), per_domain)
        total = per_domain * len(domains)
        wait_for(lambda: len(self.dest.rcpt_log) >= total, 180, "%d deferred first attempts" % total)

    def summary(self, by):
        status, j = self.relay.admin("GET", "/api/v1/queue/summary?by=" + by)
        self.assertEqual(status, 200, j)
        return {g["key"]: g["messages"] for g in j["groups"]}

    def act(self, action, body, expect):
        status, j = self.relay.admin("POST", "/api/v1/queue/" + action, body)
        self.assertEqual(status, 200, j)
        self.assertEqual(j["messages"], expect, j)
        self.relay.wait_log(r"event=admin_action action=%s .*messages=%d " % (action, expect))
        return j

    def test_actions_on_thousands_of_messages(self):
        self.fill()
        self.assertEqual(self.summary("domain"), {d: PER_DOMAIN for d in DOMAINS})
        self.assertEqual(self.summary("campaign"), {"c1": 2 * PER_DOMAIN, "c2": 2 * PER_DOMAIN})
        self.assertEqual(self.summary("tenant"), {"shop": 4 * PER_DOMAIN})
        self.assertEqual(self.summary("pool"), {"bulk": 4 * PER_DOMAIN})
        sites = self.summary("site")
        self.assertEqual(sum(sites.values()), 4 * PER_DOMAIN)
        self.assertNotIn("(not routed yet)", sites)
        # The CLI shows what the API shows.
        for by in ("domain", "site", "campaign"):
            cli = self.relay.cli("queue", "summary", "--by", by)
            self.assertEqual({g["key"]: g["messages"] for g in cli["groups"]}, self.summary(by))

        # Delete (no DSN).
        self.act("delete", {"domain": "d4.test"}, PER_DOMAIN)
        wait_for(lambda: "d4.test" not in self.summary("domain"), 60, "d4 deleted")
        # Bounce with a DSN each, through the CLI.
        out = self.relay.cli("queue", "bounce", "--domain", "d2.test")
        self.assertEqual(out["messages"], PER_DOMAIN)
        dsns = self.dsn.wait_messages(PER_DOMAIN, timeout=120)
        self.assertTrue(all(m.mail_from == "" for m in dsns))
        self.assertIn(b"bounced by the relay's administrator", dsns[0].data)
        wait_for(lambda: "d2.test" not in self.summary("domain"), 60, "d2 bounced")
        self.assertEqual(len(self.dsn.received()), PER_DOMAIN, "a DSN for a deleted message?")

        # Suspend d1 (CLI), hold one d3 message (CLI).
        out = self.relay.cli("queue", "suspend", "--domain", "d1.test")
        self.assertEqual(out["messages"], PER_DOMAIN)
        held_id = next(m["id"] for m in self.relay.queue_list() if m["recipients"][0]["address"].endswith("@d3.test"))
        self.assertEqual(self.relay.cli("queue", "hold", held_id)["messages"], 1)
        insp = self.relay.cli("queue", "inspect", held_id)
        self.assertEqual(insp["suspended_by"], {"kind": "message", "value": held_id})
        self.assertEqual(insp["recipients"][0]["last_code"], 451)
        self.assertIn("Subject: n=", insp["headers"])

        # Kept across a restart.
        self.relay.stop()
        self.relay.start()
        sus = self.relay.cli("queue", "suspensions")["suspensions"]
        self.assertEqual(sorted((s["kind"], s["value"]) for s in sus), [("domain", "d1.test"), ("message", held_id)])

        # Retry everything: d3 (but the held one) is delivered; d1 is not attempted.
        self.dest.default_rcpt = "250 2.1.5 Ok"
        attempts_before = len(self.dest.rcpt_log)
        self.act("retry", {"all": True}, 2 * PER_DOMAIN)
        wait_for(lambda: len(self.dest.received()) >= PER_DOMAIN - 1, 120, "d3 delivered")
        time.sleep(2)
        got = [r for m in self.dest.received() for r in m.rcpts]
        self.assertEqual(len(got), PER_DOMAIN - 1)
        self.assertTrue(all(r.endswith("@d3.test") for r in got))
        self.assertEqual(len(self.dest.rcpt_log) - attempts_before, PER_DOMAIN - 1)
        d1 = [m for m in self.relay.queue_list() if m["recipients"][0]["address"].endswith("@d1.test")]
        self.assertEqual(len(d1), PER_DOMAIN)
        self.assertTrue(all(m["recipients"][0]["attempts"] == 1 for m in d1), "a suspended message was charged")
        self.assertTrue(all(m["recipients"][0]["last_code"] == 451 for m in d1))

        # Resume and release: delivered.
        self.act("resume", {"domain": "d1.test"}, PER_DOMAIN)
        wait_for(lambda: len(self.dest.received()) >= 2 * PER_DOMAIN - 1, 120, "d1 delivered after resume")
        status, j = self.relay.admin("POST", "/api/v1/queue/messages/%s/release" % held_id)
        self.assertEqual((status, j["messages"]), (200, 1), j)
        wait_for(lambda: len(self.dest.received()) >= 2 * PER_DOMAIN, 60, "the held message delivered")
        self.relay.wait_queue_empty(timeout=60)
        m = self.relay.scrape()
        self.assertEqual(m['mxrelay_admin_actions_total{action="retry"}'], 1)
        self.assertEqual(m['mxrelay_admin_actions_total{action="resume"}'], 1)
        self.assertEqual(m['mxrelay_admin_actions_total{action="release"}'], 1)
        self.assertEqual(m["mxrelay_admin_messages_touched_total"], 2 * PER_DOMAIN + PER_DOMAIN + 1)

    def test_suspend_campaign_and_site_with_duration(self):
        self.fill(per_domain=50, domains=DOMAINS[:2] + DOMAINS[2:3])  # c1: d1, d2; c2: d3
        self.act("suspend", {"campaign": "c1", "duration": "1h"}, 100)
        site = next(iter(self.summary("site")))
        self.act("suspend", {"site": site, "duration": 3}, 150)
        self.dest.default_rcpt = "250 2.1.5 Ok"
        self.act("retry", {"all": True}, 150)
        time.sleep(2)
        self.assertEqual(self.dest.received(), [], "delivered through a suspended site")
        # The site's suspension ends by itself after 3 s; c1 stays suspended.
        wait_for(lambda: len(self.dest.received()) >= 50, 60, "c2 after the site's suspension ended")
        self.act("retry", {"all": True}, 100)
        time.sleep(2)
        self.assertEqual(len(self.dest.received()), 50)
        self.act("resume", {"campaign": "c1"}, 100)
        wait_for(lambda: len(self.dest.received()) >= 150, 60, "c1 after resume")

    def test_errors_and_token(self):
        status, j = self.relay.admin("GET", "/api/v1/queue/summary", token="wrong" * 10)
        self.assertEqual(status, 401)
        status, j = self.relay.admin("POST", "/api/v1/queue/delete", {})
        self.assertEqual(status, 400)
        self.assertIn("needs a query", j["error"]["message"])
        status, j = self.relay.admin("POST", "/api/v1/queue/suspend", {"domain": "x.test", "duration": "soon"})
        self.assertEqual((status, j["error"]["field"]), (400, "duration"))
        status, j = self.relay.admin("POST", "/api/v1/queue/bounce", {"colour": "red"})
        self.assertEqual((status, j["error"]["field"]), (400, "colour"))
        status, j = self.relay.admin("GET", "/api/v1/queue/messages/%s" % ("0" * 24))
        self.assertEqual(status, 404)
        r = run_cli(["queue", "delete", "-c", self.relay.config_path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs a query", r.stderr)


if __name__ == "__main__":
    unittest.main()
