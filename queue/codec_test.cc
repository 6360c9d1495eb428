#include "queue/codec.h"

#include "gtest/gtest.h"

namespace mxr::queue {
namespace {

MessageMeta Sample() {
  MessageMeta m;
  m.id = QueueId{1700000000123456, 42};
  m.received_us = 1700000000123456;
  m.next_attempt_us = 1700000000999999;
  m.attempts = 3;
  m.body_size = 12345;
  m.smtputf8 = true;
  m.sender = "s@example.com";
  m.auth_user = "alice";
  m.client_ip = "127.0.0.1";
  m.helo = "client.example";
  m.recipients = {{"a@x.test", RcptState::kPending, 0, 0, ""},
                  {"b@y.test", RcptState::kDelivered, 2, 250, "2.0.0 ok"},
                  {"c@z.test", RcptState::kBounced, 1, 550, std::string(600, 'x')}};
  return m;
}

TEST(CodecTest, QueueIdRoundTripsAndSortsByTime) {
  QueueId a{1700000000000000, 0xffffffff}, b{1700000000000001, 0};
  auto ka = a.Key(), kb = b.Key();
  EXPECT_LT(std::string(ka.data(), 12), std::string(kb.data(), 12));
  EXPECT_EQ(QueueId::FromKey(std::string_view(ka.data(), 12)), a);
  EXPECT_EQ(a.ToString().size(), 24u);
  EXPECT_EQ(QueueId::Parse(a.ToString()), a);
  EXPECT_FALSE(QueueId::Parse("zz").has_value());
  EXPECT_FALSE(QueueId::Parse(std::string(24, 'g')).has_value());
}

TEST(CodecTest, MetaRoundTrip) {
  MessageMeta m = Sample();
  std::string v = EncodeMeta(m);
  EXPECT_EQ(v[0], 1);  // version byte
  auto k = m.id.Key();
  auto d = DecodeMeta(std::string_view(k.data(), 12), v);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->id, m.id);
  EXPECT_EQ(d->next_attempt_us, m.next_attempt_us);
  EXPECT_EQ(d->attempts, 3u);
  EXPECT_EQ(d->body_size, 12345u);
  EXPECT_TRUE(d->smtputf8);
  EXPECT_FALSE(d->body_8bit);
  EXPECT_EQ(d->sender, m.sender);
  EXPECT_EQ(d->helo, m.helo);
  ASSERT_EQ(d->recipients.size(), 3u);
  EXPECT_EQ(d->recipients[1].state, RcptState::kDelivered);
  EXPECT_EQ(d->recipients[1].last_response, "2.0.0 ok");
  EXPECT_EQ(d->recipients[2].last_response.size(), kMaxStoredResponse);
  EXPECT_EQ(d->PendingRecipients(), 1u);
}

TEST(CodecTest, RejectsTruncatedAndUnknownVersion) {
  MessageMeta m = Sample();
  std::string v = EncodeMeta(m);
  auto k = m.id.Key();
  std::string_view key(k.data(), 12);
  for (size_t n = 0; n < v.size(); ++n) {
    EXPECT_FALSE(DecodeMeta(key, v.substr(0, n)).ok()) << "prefix " << n;
  }
  std::string bad = v;
  bad[0] = 2;
  EXPECT_EQ(DecodeMeta(key, bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(DecodeMeta(key, v + "x").ok());
  EXPECT_FALSE(DecodeMeta("short", v).ok());
}

TEST(CodecTest, ScheduleKeyOrdersByTimeThenId) {
  std::string a = ScheduleKey(5, QueueId{9, 9}), b = ScheduleKey(6, QueueId{1, 1});
  EXPECT_LT(a, b);
  int64_t when;
  QueueId id;
  ASSERT_TRUE(ParseScheduleKey(a, &when, &id));
  EXPECT_EQ(when, 5);
  EXPECT_EQ(id, (QueueId{9, 9}));
  EXPECT_FALSE(ParseScheduleKey("x", &when, &id));
}

}  // namespace
}  // namespace mxr::queue
