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
  EXPECT_EQ(v[0], 2);  // version byte
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
  bad[0] = 3;
  EXPECT_EQ(DecodeMeta(key, bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(DecodeMeta(key, v + "x").ok());
  EXPECT_FALSE(DecodeMeta("short", v).ok());
}

TEST(CodecTest, AttributesRoundTrip) {
  MessageMeta m = Sample();
  m.tenant = "acme";
  m.campaign = "spring-sale";
  m.pool = "marketing";
  m.dsn_ret = DsnRet::kHeaders;
  m.envid = "QQ314159";
  m.recipients[0].notify = kNotifySuccess | kNotifyFailure;
  m.recipients[0].orcpt = "rfc822;a+2Bx@x.test";
  m.recipients[2].notify = kNotifyNever;
  auto k = m.id.Key();
  auto d = DecodeMeta(std::string_view(k.data(), 12), EncodeMeta(m));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->tenant, "acme");
  EXPECT_EQ(d->campaign, "spring-sale");
  EXPECT_EQ(d->pool, "marketing");
  EXPECT_EQ(d->dsn_ret, DsnRet::kHeaders);
  EXPECT_EQ(d->envid, "QQ314159");
  EXPECT_EQ(d->recipients[0].notify, kNotifySuccess | kNotifyFailure);
  EXPECT_EQ(d->recipients[0].orcpt, "rfc822;a+2Bx@x.test");
  EXPECT_EQ(d->recipients[1].notify, 0);
  EXPECT_EQ(d->recipients[1].orcpt, "");
  EXPECT_EQ(d->recipients[2].notify, kNotifyNever);
  // Absent attributes cost one byte per recipient and one per message.
  EXPECT_EQ(EncodeMeta(Sample()).size(), EncodeMeta(Sample()).size());
}

TEST(CodecTest, DelayDsnSentRoundTripsAndIsValidated) {
  MessageMeta m = Sample();
  m.recipients[1].delay_dsn_sent = true;
  auto k = m.id.Key();
  std::string v = EncodeMeta(m);
  EXPECT_GT(v.size(), EncodeMeta(Sample()).size());
  auto d = DecodeMeta(std::string_view(k.data(), 12), v);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->recipients[0].delay_dsn_sent);
  EXPECT_TRUE(d->recipients[1].delay_dsn_sent);
  EXPECT_TRUE(d->recipients[1].unknown.empty());  // a known tag, not kept as unknown
}

TEST(CodecTest, ReadsVersion1Records) {
  // A version-1 record as the previous build wrote it: no attribute blocks.
  MessageMeta m = Sample();
  m.recipients.resize(1);
  std::string v1;
  v1 += '\x01';
  auto varint = [&v1](uint64_t x) {
    while (x >= 0x80) {
      v1 += static_cast<char>((x & 0x7f) | 0x80);
      x >>= 7;
    }
    v1 += static_cast<char>(x);
  };
  auto str = [&](std::string_view s) {
    varint(s.size());
    v1 += s;
  };
  varint(m.received_us);
  varint(m.next_attempt_us);
  varint(m.attempts);
  varint(m.body_size);
  v1 += '\x01';  // SMTPUTF8
  str(m.sender);
  str(m.auth_user);
  str(m.client_ip);
  str(m.helo);
  varint(1);
  str("a@x.test");
  v1 += '\x00';
  varint(0);
  varint(0);
  str("");
  auto k = m.id.Key();
  auto d = DecodeMeta(std::string_view(k.data(), 12), v1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->sender, m.sender);
  EXPECT_TRUE(d->smtputf8);
  ASSERT_EQ(d->recipients.size(), 1u);
  EXPECT_EQ(d->recipients[0].address, "a@x.test");
  EXPECT_EQ(d->tenant, "");
  EXPECT_EQ(d->dsn_ret, DsnRet::kUnset);
  // Written back, it becomes a version-2 record with the same content.
  std::string v2 = EncodeMeta(*d);
  EXPECT_EQ(v2[0], 2);
  auto again = DecodeMeta(std::string_view(k.data(), 12), v2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->recipients[0].address, "a@x.test");
}

TEST(CodecTest, KeepsUnknownAttributesAndRejectsMalformedKnownOnes) {
  MessageMeta m = Sample();
  m.unknown.push_back({900, "from a newer build"});
  m.recipients[1].unknown.push_back({77, std::string("\0\1", 2)});
  auto k = m.id.Key();
  std::string_view key(k.data(), 12);
  auto d = DecodeMeta(key, EncodeMeta(m));
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->unknown.size(), 1u);
  EXPECT_EQ(d->unknown[0], (UnknownAttr{900, "from a newer build"}));
  ASSERT_EQ(d->recipients[1].unknown.size(), 1u);
  EXPECT_EQ(d->recipients[1].unknown[0].value, std::string("\0\1", 2));
  EXPECT_EQ(EncodeMeta(*d), EncodeMeta(m));  // rewritten unchanged

  m.unknown.clear();
  m.dsn_ret = DsnRet::kFull;
  std::string v = EncodeMeta(m);
  // The RET attribute is the last 3 bytes: tag 4, length 1, value 1.
  ASSERT_EQ(v.substr(v.size() - 3), std::string("\x04\x01\x01", 3));
  v[v.size() - 1] = 9;
  EXPECT_EQ(DecodeMeta(key, v).status().code(), absl::StatusCode::kDataLoss);
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
