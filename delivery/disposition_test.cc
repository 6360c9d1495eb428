#include "delivery/disposition.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

constexpr int64_t kSec = 1'000'000;
constexpr int64_t kT0 = 1'800'000'000 * kSec;

DeliveryConfig Cfg() {
  DeliveryConfig c;
  c.retry_initial = 300;
  c.retry_max = 14400;
  c.max_age = 3600;
  return c;
}

queue::MessageMeta Meta(int n, int64_t received = kT0) {
  queue::MessageMeta m;
  m.sender = "s@x.test";
  m.received_us = received;
  for (int i = 0; i < n; ++i) m.recipients.push_back(queue::Recipient{"r" + std::to_string(i) + "@y.test"});
  return m;
}

RcptOutcome Reply(int code, const char* enh = "", const char* text = "t") {
  return RcptOutcome::Local(code, enh, text);
}

TEST(Dispose, ReplyClassesPerRecipient) {
  struct Row {
    int code;
    Outcome want;
    queue::RcptState state;
  } rows[] = {
      {250, Outcome::kDelivered, queue::RcptState::kDelivered},
      {251, Outcome::kDelivered, queue::RcptState::kDelivered},
      {550, Outcome::kBounced, queue::RcptState::kBounced},
      {554, Outcome::kBounced, queue::RcptState::kBounced},
      {451, Outcome::kDeferred, queue::RcptState::kPending},
      {421, Outcome::kDeferred, queue::RcptState::kPending},
      {354, Outcome::kDeferred, queue::RcptState::kPending},  // never a delivery
      {0, Outcome::kDeferred, queue::RcptState::kPending},
  };
  for (const auto& r : rows) {
    DeliveryConfig cfg = Cfg();
    queue::MessageMeta m = Meta(1);
    std::vector<RcptOutcome> o = {Reply(r.code)};
    Disposition d = Dispose(cfg, &m, &o, kT0 + kSec);
    ASSERT_EQ(d.decisions.size(), 1u) << r.code;
    EXPECT_EQ(d.decisions[0].outcome, r.want) << r.code;
    EXPECT_EQ(m.recipients[0].state, r.state) << r.code;
    EXPECT_EQ(m.recipients[0].attempts, 1u) << r.code;
    EXPECT_EQ(m.recipients[0].last_code, static_cast<uint32_t>(r.code)) << r.code;
    EXPECT_EQ(d.bounces.size(), r.want == Outcome::kBounced ? 1u : 0u) << r.code;
  }
}

TEST(Dispose, PastMaxAgeATransientFailureExpiresAsABounce) {
  DeliveryConfig cfg = Cfg();
  queue::MessageMeta m = Meta(2);
  std::vector<RcptOutcome> o = {Reply(451, "4.2.0", "busy"), Reply(250)};
  Disposition d = Dispose(cfg, &m, &o, kT0 + 3601 * kSec);
  ASSERT_EQ(d.decisions.size(), 2u);
  EXPECT_EQ(d.decisions[0].outcome, Outcome::kExpired);
  EXPECT_EQ(d.decisions[0].shown.enhanced, "4.4.7");
  EXPECT_EQ(d.decisions[0].shown.text, "Delivery time expired; last error: 451 4.2.0 busy");
  EXPECT_EQ(d.decisions[1].outcome, Outcome::kDelivered);
  ASSERT_EQ(d.bounces.size(), 1u);
  EXPECT_EQ(d.bounces[0].enhanced, "4.4.7");
  EXPECT_EQ(m.recipients[0].state, queue::RcptState::kBounced);
}

TEST(Dispose, OnlyPendingRecipientsAreDecidedAndUnsetOnesKeepTheirLastReply) {
  DeliveryConfig cfg = Cfg();
  queue::MessageMeta m = Meta(3);
  m.recipients[0].state = queue::RcptState::kDelivered;
  m.recipients[2].last_code = 452;
  m.recipients[2].last_response = "4.2.2 mailbox full";
  std::vector<RcptOutcome> o(3);
  o[1] = Reply(250);
  Disposition d = Dispose(cfg, &m, &o, kT0 + kSec);
  ASSERT_EQ(d.decisions.size(), 2u);
  EXPECT_EQ(d.decisions[0].rcpt, 1u);
  EXPECT_EQ(d.decisions[1].rcpt, 2u);
  EXPECT_EQ(d.decisions[1].outcome, Outcome::kDeferred);
  EXPECT_EQ(d.decisions[1].shown.code, 452);
  EXPECT_EQ(d.decisions[1].shown.text, "4.2.2 mailbox full");
}

TEST(Dispose, HeldRecipientsAreNotCharged) {
  DeliveryConfig cfg = Cfg();
  queue::MessageMeta m = Meta(1);
  std::vector<RcptOutcome> o = {RcptOutcome::Held(kT0 + 60 * kSec, 451, "4.4.1", "backed off")};
  Disposition d = Dispose(cfg, &m, &o, kT0 + kSec);
  EXPECT_EQ(d.decisions[0].outcome, Outcome::kDeferred);
  EXPECT_EQ(m.recipients[0].attempts, 0u);
  // Issue 21: the hold's reason is what `queue list` shows (it said
  // last_code 0 after rounds of connection refused).
  EXPECT_EQ(m.recipients[0].last_code, 451u);
  EXPECT_EQ(m.recipients[0].last_response, "4.4.1 backed off");
}

TEST(Dispose, HeldForAStopKeepsTheLastRealReply) {
  DeliveryConfig cfg = Cfg();
  queue::MessageMeta m = Meta(1);
  m.recipients[0].attempts = 1;
  m.recipients[0].last_code = 452;
  m.recipients[0].last_response = "4.2.2 mailbox full";
  std::vector<RcptOutcome> o = {RcptOutcome::Held(kT0 + kSec, 451, "4.4.1", "Relay stopping: not attempted")};
  o[0].record_reply = false;
  Dispose(cfg, &m, &o, kT0 + kSec);
  EXPECT_EQ(m.recipients[0].attempts, 1u);
  EXPECT_EQ(m.recipients[0].last_code, 452u);
  EXPECT_EQ(m.recipients[0].last_response, "4.2.2 mailbox full");
}

TEST(Reschedule, Table) {
  struct Row {
    const char* name;
    std::vector<RcptOutcome> outcomes;
    bool bounce_committed;
    bool done;
    bool charged;
    int64_t next_min, next_max;  // relative to now
  } rows[] = {
      {"all delivered", {Reply(250), Reply(250)}, true, true, false, 0, 0},
      {"bounced, DSN durable", {Reply(550), Reply(250)}, true, true, false, 0, 0},
      {"bounced, DSN failed: pending again, retried", {Reply(550), Reply(250)}, false, false, true, 270 * kSec,
       330 * kSec},
      {"one deferred: backoff", {Reply(451), Reply(250)}, true, false, true, 270 * kSec, 330 * kSec},
      {"all held: at the hold time, uncharged",
       {RcptOutcome::Held(kT0 + 90 * kSec, 451, "4.4.1", "held"), Reply(250)}, true, false, false, 89 * kSec,
       89 * kSec},
      {"held in the past: now", {RcptOutcome::Held(kT0 - kSec, 451, "4.3.2", "stop"), Reply(250)}, true, false,
       false, 0, 0},
      {"held and deferred: charged", {RcptOutcome::Held(kT0 + 90 * kSec, 451, "", "held"), Reply(451)}, true,
       false, true, 270 * kSec, 330 * kSec},
  };
  for (auto& r : rows) {
    DeliveryConfig cfg = Cfg();
    queue::MessageMeta m = Meta(2);
    int64_t now = kT0 + kSec;
    Dispose(cfg, &m, &r.outcomes, now);
    NextStep s = Reschedule(cfg, &m, r.outcomes, r.bounce_committed, now, 0.5);
    EXPECT_EQ(s.done, r.done) << r.name;
    EXPECT_EQ(s.charged, r.charged) << r.name;
    EXPECT_EQ(m.attempts, r.charged ? 1u : 0u) << r.name;
    if (!s.done) {
      EXPECT_GE(s.next_attempt_us - now, r.next_min) << r.name;
      EXPECT_LE(s.next_attempt_us - now, r.next_max) << r.name;
      EXPECT_EQ(m.next_attempt_us, s.next_attempt_us) << r.name;
    }
  }
}

// ------------------------------------------------------------ RFC 3461

TEST(Dispose, NotifyNeverAndSuccessOnlySuppressTheFailureDsn) {
  DeliveryConfig cfg = Cfg();
  queue::MessageMeta m = Meta(4);
  m.recipients[0].notify = queue::kNotifyNever;
  m.recipients[1].notify = queue::kNotifySuccess;
  m.recipients[2].notify = queue::kNotifyFailure;
  // recipients[3]: no NOTIFY = failure DSNs
  std::vector<RcptOutcome> o = {Reply(550, "5.1.1"), Reply(550, "5.1.1"), Reply(550, "5.1.1"), Reply(550, "5.1.1")};
  Disposition d = Dispose(cfg, &m, &o, kT0 + kSec);
  ASSERT_EQ(d.bounces.size(), 2u);
  EXPECT_EQ(d.bounces[0].address, "r2@y.test");
  EXPECT_EQ(d.bounces[1].address, "r3@y.test");
  EXPECT_TRUE(d.decisions[0].dsn_suppressed);
  EXPECT_TRUE(d.decisions[1].dsn_suppressed);
  EXPECT_FALSE(d.decisions[2].dsn_suppressed);
  EXPECT_TRUE(d.notices.empty());
  // The same for expiry.
  queue::MessageMeta e = Meta(1);
  e.recipients[0].notify = queue::kNotifyNever;
  std::vector<RcptOutcome> oe = {Reply(451)};
  d = Dispose(cfg, &e, &oe, kT0 + 3601 * kSec);
  EXPECT_EQ(d.decisions[0].outcome, Outcome::kExpired);
  EXPECT_TRUE(d.bounces.empty());
}

TEST(Dispose, SuccessNoticeOnlyWhenTheNextHopCouldNotCarryNotify) {
  DeliveryConfig cfg = Cfg();
  queue::MessageMeta m = Meta(3);
  m.recipients[0].notify = queue::kNotifySuccess | queue::kNotifyFailure;
  m.recipients[0].orcpt = "rfc822;r0@y.test";
  m.recipients[1].notify = queue::kNotifySuccess;
  std::vector<RcptOutcome> o = {Reply(250, "2.0.0"), Reply(250), Reply(250)};
  o[1].next_hop_dsn = true;  // NOTIFY went on: the next hop reports
  Disposition d = Dispose(cfg, &m, &o, kT0 + kSec);
  ASSERT_EQ(d.notices.size(), 1u);
  EXPECT_EQ(d.notices[0].address, "r0@y.test");
  EXPECT_EQ(d.notices[0].action, "relayed");
  EXPECT_EQ(d.notices[0].orcpt, "rfc822;r0@y.test");
  EXPECT_TRUE(d.bounces.empty());
}

TEST(Dispose, DelayNoticeOnceAfterTheConfiguredTime) {
  DeliveryConfig cfg = Cfg();
  cfg.max_age = 86400;
  cfg.delay_dsn_after = 600;
  queue::MessageMeta m = Meta(2);
  m.recipients[0].notify = queue::kNotifyDelay | queue::kNotifyFailure;
  // recipients[1]: no NOTIFY: no delay DSN (our discretion: none)
  std::vector<RcptOutcome> o = {Reply(451, "4.2.0"), Reply(451)};
  Disposition d = Dispose(cfg, &m, &o, kT0 + 599 * kSec);  // too early
  EXPECT_TRUE(d.notices.empty());
  o = {Reply(451, "4.2.0"), Reply(451)};
  d = Dispose(cfg, &m, &o, kT0 + 601 * kSec);
  ASSERT_EQ(d.notices.size(), 1u);
  EXPECT_EQ(d.notices[0].action, "delayed");
  EXPECT_EQ(d.notices[0].address, "r0@y.test");
  EXPECT_TRUE(d.decisions[0].delay_notice);
  EXPECT_TRUE(m.recipients[0].delay_dsn_sent);
  o = {Reply(451, "4.2.0"), Reply(451)};
  d = Dispose(cfg, &m, &o, kT0 + 1200 * kSec);  // once only
  EXPECT_TRUE(d.notices.empty());
  // 0 disables.
  cfg.delay_dsn_after = 0;
  queue::MessageMeta m2 = Meta(1);
  m2.recipients[0].notify = queue::kNotifyDelay;
  std::vector<RcptOutcome> o2 = {Reply(451)};
  d = Dispose(cfg, &m2, &o2, kT0 + 80000 * kSec);
  EXPECT_TRUE(d.notices.empty());
}

}  // namespace
}  // namespace mxr::delivery
