"""Tenants (issue 18): sender binding on the envelope and the From: header,
message rate and daily quota per tenant and per user, recipients per
message, pool/tenant/campaign in the record, the campaign header stripped,
SIGHUP reload without dropping sessions, metrics.

Users log in over AUTH PLAIN on a plain listener (auth_without_tls) with the
name the users file writes: a full address (alice@acme.test) or a bare name.
"""

import time
import unittest

from cp_helpers import CpRelay, queued_line
from relayctl import Listener, RelayTestCase, b64, run_cli
from sink import start_sinks

USERS = {"alice@acme.test": "pw-alice", "bob": "pw-bob", "carol": "pw-carol", "rita": "pw-rita",
         "rudy": "pw-rudy", "quinn": "pw-quinn", "quentin": "pw-quentin", "dave": "pw-dave"}

TENANTS = """
[[tenant]]
name = "acme"
users = ["alice@acme.test", "bob"]
sender_domains = ["acme.test", "*.acme.test"]
max_recipients = 3
pool = "warm-pool"

[[tenant.user]]
name = "carol"
sender_domains = ["carol.test"]

[[tenant]]
name = "ratey"
users = ["rita"]
rate = "2/1h"
rate_burst = 2

[[tenant.user]]
name = "rudy"
rate = "1/1h"

[[tenant]]
name = "quota"
users = ["quinn"]
daily_quota = 4

[[tenant.user]]
name = "quentin"
daily_quota = 2
"""


def msg(frm, to="x@dest.test", subject="t", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n%s\r\nbody\r\n" % (frm, to, subject, extra))


class TenantsTest(RelayTestCase):

    def setUp(self):
        self.sink_port, (self.sink,) = start_sinks([("127.0.0.81", {})])
        self.addCleanup(self.sink.stop)
        self.relay = CpRelay(
            tenants_toml=TENANTS, users=USERS, listeners=[Listener("sub", "plain", auth_without_tls=True)],
            delivery={"port": self.sink_port, "retry_initial": 1, "retry_max": 2},
            routes=[{"domain": "dest.test", "host": "127.0.0.81"}])
        self.addCleanup(self.relay.cleanup)
        self.relay.start()

    def login(self, user):
        c = self.client(self.relay.port("sub"))
        c.ehlo()
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, USERS[user]))), 235)
        return c

    def transaction(self, c, sender, rcpts, body):
        r = c.cmd("MAIL FROM:<%s>" % sender)
        if r.code != 250:
            return r
        for rc in rcpts:
            r = c.cmd("RCPT TO:<%s>" % rc)
            if r.code != 250:
                c.cmd("RSET")
                return r
        self.assertReply(c.cmd("DATA"), 354)
        return c.cmd(body.replace("\r\n.", "\r\n..") + ".")

    def test_sender_binding_envelope_and_header(self):
        c = self.login("bob")  # bare name
        r = c.cmd("MAIL FROM:<x@evil.test>")
        self.assertReply(r, 550, "5.7.1")
        self.assertIn("sender_domains", r.text)
        self.assertIn('tenant "acme"', r.text)
        self.assertIn("acme.test", r.text)
        # Envelope fine, From: header of another domain: refused at the end of DATA.
        r = self.transaction(c, "news@acme.test", ["a@dest.test"], msg("x@evil.test"))
        self.assertReply(r, 550, "5.7.1")
        self.assertIn("From: header", r.text)
        # Both right (a subdomain too): accepted.
        self.assertReply(self.transaction(c, "n@mail.acme.test", ["a@dest.test"], msg('"N" <n@acme.test>')), 250)
        c.close()
        # The full-address user; BDAT checks the header the same way.
        c = self.login("alice@acme.test")
        self.assertReply(c.cmd("MAIL FROM:<alice@acme.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<b@dest.test>"), 250)
        body = msg("someone@other.test")
        c.send("BDAT %d LAST\r\n%s" % (len(body), body))
        r = c.reply()
        self.assertReply(r, 550, "5.7.1")
        c.close()
        # A user's own list replaces the tenant's.
        c = self.login("carol")
        self.assertReply(c.cmd("MAIL FROM:<c@acme.test>"), 550, "5.7.1")
        self.assertReply(self.transaction(c, "c@carol.test", ["a@dest.test"], msg("c@carol.test")), 250)
        c.close()
        m = self.relay.scrape()
        self.assertEqual(m.get('mxrelay_tenant_refusals_total{rule="sender_domains"}'), 2)
        self.assertEqual(m.get('mxrelay_tenant_refusals_total{rule="from_header"}'), 2)

    def test_rate_per_tenant_and_per_user(self):
        c = self.login("rudy")  # own rate 1/1h
        self.assertReply(self.transaction(c, "r@any.test", ["a@dest.test"], msg("r@any.test")), 250)
        r = c.cmd("MAIL FROM:<r@any.test>")
        self.assertReply(r, 450, "4.7.1")
        self.assertIn('user "rudy"', r.text)
        self.assertIn("rule: rate", r.text)
        c.close()
        c = self.login("rita")  # the tenant's 2/1h (burst 2): rudy used one
        self.assertReply(self.transaction(c, "r@any.test", ["a@dest.test"], msg("r@any.test")), 250)
        r = c.cmd("MAIL FROM:<r@any.test>")
        self.assertReply(r, 450, "4.7.1")
        self.assertIn('tenant "ratey"', r.text)
        self.assertIn("2/1h", r.text)
        c.close()
        self.assertEqual(self.relay.scrape().get('mxrelay_tenant_refusals_total{rule="rate"}'), 2)

    def test_quota_per_tenant_and_per_user_and_max_recipients(self):
        c = self.login("quentin")  # own quota 2 recipients a day
        r = self.transaction(c, "q@any.test", ["a@dest.test", "b@dest.test", "c@dest.test"], msg("q@any.test"))
        self.assertReply(r, 452, "4.5.3")
        self.assertIn('user "quentin"', r.text)
        self.assertIn("daily_quota", r.text)
        c.close()
        c = self.login("quinn")  # the tenant's 4: quentin's 2 counted
        self.assertReply(self.transaction(c, "q@any.test", ["a@dest.test", "b@dest.test"], msg("q@any.test")), 250)
        r = self.transaction(c, "q@any.test", ["e@dest.test"], msg("q@any.test"))
        self.assertReply(r, 452, "4.5.3")
        self.assertIn('tenant "quota"', r.text)
        c.close()
        c = self.login("bob")  # acme: 3 recipients per message
        r = self.transaction(c, "b@acme.test", ["1@dest.test", "2@dest.test", "3@dest.test", "4@dest.test"],
                             msg("b@acme.test"))
        self.assertReply(r, 452, "4.5.3")
        self.assertIn("max_recipients", r.text)
        c.close()
        m = self.relay.scrape()
        self.assertEqual(m.get('mxrelay_tenant_refusals_total{rule="daily_quota"}'), 2)
        self.assertEqual(m.get('mxrelay_tenant_refusals_total{rule="max_recipients"}'), 1)

    def test_record_pool_campaign_and_header_stripped(self):
        self.relay.delivery = None  # keep it queued: look at the record
        self.relay.stop()
        self.relay.start()
        c = self.login("bob")
        r = self.transaction(c, "b@acme.test", ["a@dest.test"],
                             msg("b@acme.test", extra="X-MxRelay-Campaign: spring-2026\r\n"))
        self.assertReply(r, 250)
        qid = r.queue_id()
        c.close()
        rec = self.relay.queue_by_id()[qid]
        self.assertEqual((rec["tenant"], rec["campaign"], rec["pool"]), ("acme", "spring-2026", "warm-pool"))
        self.assertFalse(self.relay.spool_contains(b"X-MxRelay-Campaign"), "the campaign header was stored")
        line = queued_line(self.relay, qid)
        self.assertIn("tenant=acme campaign=spring-2026", line)

    def test_campaign_in_delivery_events_and_not_sent(self):
        c = self.login("bob")
        r = self.transaction(c, "b@acme.test", ["a@dest.test"],
                             msg("b@acme.test", extra="X-MxRelay-Campaign: fall\r\n"))
        self.assertReply(r, 250)
        c.close()
        (m,) = self.sink.wait_messages(1, timeout=30)
        self.assertIsNone(m.header("X-MxRelay-Campaign"))
        self.relay.wait_log(r"event=delivered id=%s .* tenant=acme campaign=fall" % r.queue_id(), timeout=30)
        ev = self.relay.wait_events(lambda e: e["queue_id"] == r.queue_id())
        self.assertEqual(ev[0].get("campaign"), "fall")

    def test_sighup_reload_keeps_sessions(self):
        c = self.login("bob")
        self.assertReply(c.cmd("MAIL FROM:<b@new.test>"), 550, "5.7.1")
        self.relay.write_tenants(TENANTS.replace('sender_domains = ["acme.test", "*.acme.test"]',
                                                 'sender_domains = ["acme.test", "new.test"]', 1))
        self.relay.hup()
        self.relay.wait_log(r"event=tenants_loaded .*tenants=3", count=2)
        # The same session (not dropped) sees the new rule.
        self.assertReply(self.transaction(c, "b@new.test", ["a@dest.test"], msg("b@new.test")), 250)
        c.close()
        # A broken file keeps the previous tenants.
        self.relay.write_tenants("[[tenant]]\nname = \"x\"\nrate = \"fast\"\n")
        self.relay.hup()
        self.relay.wait_log(r"event=tenants_reload_failed")
        c = self.login("bob")
        self.assertReply(c.cmd("MAIL FROM:<b@new.test>"), 250)
        c.close()

    def test_unassigned_users(self):
        c = self.login("dave")  # in no tenant: no rules by default
        self.assertReply(c.cmd("MAIL FROM:<d@anything.test>"), 250)
        c.close()
        self.relay.tenants_extra["allow_unassigned"] = False
        self.relay.stop()
        self.relay.start()
        c = self.login("dave")
        r = c.cmd("MAIL FROM:<d@anything.test>")
        self.assertReply(r, 550, "5.7.1")
        self.assertIn("no tenant", r.text)
        c.close()

    def test_check_config_reads_the_tenants_file(self):
        r = run_cli(["check-config", "-c", self.relay.config_path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("3 tenants", r.stdout)
        self.relay.write_tenants('[[tenant]]\nname = "x"\nusers = ["a"]\n[[tenant]]\nname = "y"\nusers = ["a"]\n')
        r = run_cli(["check-config", "-c", self.relay.config_path])
        self.assertEqual(r.returncode, 2)
        self.assertIn('user "a" is in tenants "x" and "y"', r.stderr)

    def test_apikey_cli(self):
        r = run_cli(["tenant", "apikey", "--tenant", "acme"])
        self.assertEqual(r.returncode, 0, r.stderr)
        import hashlib
        import re
        key = re.search(r"mxr_[A-Za-z0-9_-]{43}", r.stdout).group(0)
        stored = re.search(r'"(sha256:[0-9a-f]{64})"', r.stdout).group(1)
        self.assertEqual(stored, "sha256:" + hashlib.sha256(key.encode()).hexdigest())


if __name__ == "__main__":
    unittest.main()
