"""RFC 3461 DSN extension: NOTIFY / RET / ENVID / ORCPT on the way in and out.

The relay advertises DSN, stores the parameters with the message, passes
them to a next hop that offers DSN, and otherwise produces what NOTIFY asks
for itself: a success DSN with `Action: relayed`, one delay DSN after
`delivery.delay_dsn_after`, no failure DSN for NOTIFY=NEVER; RET=FULL
returns the whole message in a failure DSN. DSNs go to the sender's domain
(senders.test), whose MX is a sink.
"""

import smtplib
import time

from relayctl import make_message
from sink import DEFAULT_EXTENSIONS
from test_delivery import (ALPHA, BETA, SENDER, SENDERS, WAIT, DeliveryBase, dsn_fields)

DSN_EXT = DEFAULT_EXTENSIONS + ("DSN",)


class DsnExtensionTest(DeliveryBase):

    def submit_with(self, relay, rcpts, token, mail_opts=(), rcpt_opts=None, body="Hello"):
        """smtplib with ESMTP parameters; rcpt_opts: {rcpt: [options]}. Returns the queue id line."""
        msg = make_message(SENDER, list(rcpts), token, token, body=body)
        with smtplib.SMTP("127.0.0.1", relay.port("plain"), local_hostname="client.test", timeout=20) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("dsn"), "DSN not advertised")
            code, resp = s.mail(SENDER, list(mail_opts))
            self.assertEqual(code, 250, resp)
            for r in rcpts:
                code, resp = s.rcpt(r, list((rcpt_opts or {}).get(r, [])))
                self.assertEqual(code, 250, resp)
            code, resp = s.data(msg.encode())
            self.assertEqual(code, 250, resp)
            return resp.decode()

    def test_bad_parameters_are_501(self):
        port, _ = self.sinks((ALPHA, {}))
        relay = self.relay(port)
        with smtplib.SMTP("127.0.0.1", relay.port("plain"), local_hostname="client.test", timeout=20) as s:
            s.ehlo()
            for opts in (["RET=BODY"], ["ENVID=bad+zz"], ["RET=FULL", "RET=HDRS"], ["ENVID=" + "x" * 101]):
                code, resp = s.mail(SENDER, opts)
                self.assertEqual(code, 501, (opts, resp))
                self.assertTrue(resp.startswith(b"5.5.4"), resp)
            code, resp = s.mail(SENDER, ["NOTIFY=NEVER"])   # a RCPT parameter
            self.assertEqual(code, 555, resp)
            self.assertEqual(s.mail(SENDER, ["RET=HDRS", "ENVID=ok"])[0], 250)
            for opts in (["NOTIFY=NEVER,SUCCESS"], ["NOTIFY=SOMETIMES"], ["ORCPT=nosemicolon"],
                         ["ORCPT=rfc822;a+4x@alpha.test"]):
                code, resp = s.rcpt("a@alpha.test", opts)
                self.assertEqual(code, 501, (opts, resp))
            self.assertEqual(s.rcpt("a@alpha.test", ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;a@alpha.test"])[0], 250)

    def test_success_dsn_relayed_when_the_next_hop_has_no_dsn(self):
        port, (alpha, senders) = self.sinks((ALPHA, {}), (SENDERS, {}))
        relay = self.relay(port)
        self.submit_with(relay, ["ok@alpha.test", "quiet@alpha.test"], "notify-success",
                         mail_opts=["RET=FULL", "ENVID=QQ314159+2Bx"],
                         rcpt_opts={"ok@alpha.test": ["NOTIFY=SUCCESS", "ORCPT=rfc822;Ok+40alpha.test"]})
        alpha.wait_messages(1, WAIT)
        self.assertNotIn("NOTIFY", alpha.received()[0].mail_params)   # the sink offers no DSN
        self.assertEqual([p for _, p in alpha.rcpt_params], ["", ""])
        dsns = self.wait_dsn(senders)
        relay.wait_queue_empty()
        self.assertQuiet(relay, [alpha, senders])
        self.assertEqual(len(senders.received()), 1, "one success DSN, for the one recipient that asked")
        msg, per_msg, per_rcpt = dsn_fields(dsns[0].data)
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        self.assertEqual(per_msg.get("Original-Envelope-Id"), "QQ314159+x")
        self.assertEqual(len(per_rcpt), 1, per_rcpt)
        self.assertEqual(per_rcpt[0].get("Action"), "relayed")
        self.assertTrue(per_rcpt[0].get("Status", "").startswith("2."), per_rcpt[0])
        self.assertEqual(per_rcpt[0].get("Original-Recipient"), "rfc822;Ok@alpha.test")
        self.assertEqual(per_rcpt[0].get("Final-Recipient"), "rfc822; ok@alpha.test")
        # A success DSN returns headers only, RET=FULL or not (RFC 3461 4.3).
        types = [p.get_content_type() for p in msg.walk()]
        self.assertIn("text/rfc822-headers", types)
        self.assertNotIn(b"Hello", dsns[0].data.split(b"text/rfc822-headers", 1)[1])
        self.assertEqual(relay.scrape().get('mxrelay_dsn_notices_total{kind="relayed"}'), 1)

    def test_parameters_reach_a_dsn_capable_next_hop_unchanged(self):
        port, (alpha, senders) = self.sinks((ALPHA, {"extensions": DSN_EXT}), (SENDERS, {}))
        relay = self.relay(port)
        self.submit_with(relay, ["ok@alpha.test", "plain@alpha.test"], "notify-pass",
                         mail_opts=["RET=HDRS", "ENVID=QQ314159+2Bx"],
                         rcpt_opts={"ok@alpha.test": ["NOTIFY=SUCCESS,FAILURE",
                                                      "ORCPT=rfc822;Ok+40alpha.test"]})
        alpha.wait_messages(1, WAIT)
        m = alpha.received()[0]
        self.assertIn("RET=HDRS", m.mail_params)
        self.assertIn("ENVID=QQ314159+2Bx", m.mail_params)
        self.assertEqual(dict(alpha.rcpt_params),
                         {"ok@alpha.test": "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ok+40alpha.test",
                          "plain@alpha.test": ""})
        relay.wait_queue_empty()
        # The next hop reports success itself: no DSN from us.
        self.assertQuiet(relay, [alpha, senders])
        self.assertEqual(senders.received(), [])

    def test_notify_never_suppresses_the_failure_dsn(self):
        port, (alpha, senders) = self.sinks(
            (ALPHA, {"rcpt": {"never@alpha.test": "550 5.1.1 no such user",
                              "fail@alpha.test": "550 5.1.1 no such user"}}),
            (SENDERS, {}))
        relay = self.relay(port)
        self.submit_with(relay, ["never@alpha.test", "fail@alpha.test"], "notify-never",
                         mail_opts=["RET=FULL"],
                         rcpt_opts={"never@alpha.test": ["NOTIFY=NEVER"], "fail@alpha.test": ["NOTIFY=FAILURE"]},
                         body="FULL BODY MARKER")
        dsns = self.wait_dsn(senders)
        relay.wait_queue_empty()
        self.assertQuiet(relay, [alpha, senders])
        self.assertEqual(len(senders.received()), 1)
        msg, per_msg, per_rcpt = dsn_fields(dsns[0].data)
        self.assertEqual([f.get("Final-Recipient") for f in per_rcpt], ["rfc822; fail@alpha.test"])
        self.assertEqual(per_rcpt[0].get("Action"), "failed")
        # RET=FULL: the whole message comes back.
        self.assertIn("message/rfc822", [p.get_content_type() for p in msg.walk()])
        self.assertIn(b"FULL BODY MARKER", dsns[0].data)
        self.assertIn("event=dsn_suppressed", relay.log_text())
        self.assertEqual(relay.scrape().get("mxrelay_dsn_failure_suppressed_total"), 1)
        self.assertEqual(sorted(self.outcomes(relay, "never@alpha.test")), ["bounced"])

    def test_one_delay_dsn_after_the_configured_time(self):
        port, (beta, senders) = self.sinks((BETA, {"default_rcpt": "451 4.2.0 try later"}), (SENDERS, {}))
        relay = self.relay(port, delay_dsn_after=1)
        self.submit_with(relay, ["slow@beta.test", "nodelay@beta.test"], "notify-delay",
                         rcpt_opts={"slow@beta.test": ["NOTIFY=DELAY,FAILURE"]})
        dsns = self.wait_dsn(senders)
        msg, per_msg, per_rcpt = dsn_fields(dsns[0].data)
        self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
        self.assertEqual([(f.get("Final-Recipient"), f.get("Action")) for f in per_rcpt],
                         [("rfc822; slow@beta.test", "delayed")])
        self.assertTrue(per_rcpt[0].get("Status", "").startswith("4."), per_rcpt[0])
        # Further retries (every 1-2 s) send no second one.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and len(self.outcomes(relay, "slow@beta.test")) < 4:
            time.sleep(0.2)
        self.assertGreaterEqual(len(self.outcomes(relay, "slow@beta.test")), 3)
        self.assertEqual(len(senders.received()), 1)
        self.assertEqual(relay.scrape().get('mxrelay_dsn_notices_total{kind="delayed"}'), 1)
