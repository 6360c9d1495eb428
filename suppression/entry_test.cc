#include "suppression/entry.h"

#include "gtest/gtest.h"

namespace mxr::suppression {
namespace {

TEST(NormalizeAddress, DomainCaseFoldsLocalPartKept) {
  EXPECT_EQ(NormalizeAddress("Bob.Smith@Example.COM"), "Bob.Smith@example.com");
  EXPECT_EQ(NormalizeAddress("<bob@EXAMPLE.com>"), "bob@example.com");
  EXPECT_EQ(NormalizeAddress("  bob@example.com\t"), "bob@example.com");
  // The last '@' separates the domain (a quoted local part may hold one).
  EXPECT_EQ(NormalizeAddress("\"a@b\"@X.Test"), "\"a@b\"@x.test");
  EXPECT_FALSE(NormalizeAddress("bob"));
  EXPECT_FALSE(NormalizeAddress("@example.com"));
  EXPECT_FALSE(NormalizeAddress("bob@"));
  EXPECT_FALSE(NormalizeAddress(""));
  EXPECT_FALSE(NormalizeAddress(std::string("bo\0b@x.test", 11)));
  EXPECT_FALSE(NormalizeAddress("bob@x.test\r\n"));
}

TEST(EntryCodec, RoundTripsAndRejectsDamage) {
  Entry e;
  e.reason = Reason::kHardBounce;
  e.category = "invalid_recipient";
  e.source = "queue 0123 550 5.1.1 no such user";
  e.created_us = 1'765'000'000'000'000;
  e.expires_us = 1'765'000'100'000'000;
  std::string v = EncodeValue(e);
  Entry d;
  ASSERT_TRUE(DecodeValue(v, &d));
  EXPECT_EQ(d.reason, Reason::kHardBounce);
  EXPECT_EQ(d.category, e.category);
  EXPECT_EQ(d.source, e.source);
  EXPECT_EQ(d.created_us, e.created_us);
  EXPECT_EQ(d.expires_us, e.expires_us);
  for (size_t n = 0; n < v.size(); ++n) EXPECT_FALSE(DecodeValue(v.substr(0, n), &d)) << n;
  EXPECT_FALSE(DecodeValue(v + "x", &d));
  std::string bad = v;
  bad[1] = 9;  // reason
  EXPECT_FALSE(DecodeValue(bad, &d));
  bad = v;
  bad[0] = 2;  // version
  EXPECT_FALSE(DecodeValue(bad, &d));
}

TEST(EntryKey, SplitsBackAndSortsByScope) {
  std::string k = Key("acme", "bob@x.test");
  std::string_view s, a;
  ASSERT_TRUE(SplitKey(k, &s, &a));
  EXPECT_EQ(s, "acme");
  EXPECT_EQ(a, "bob@x.test");
  ASSERT_TRUE(SplitKey(Key("", "bob@x.test"), &s, &a));
  EXPECT_EQ(s, "");
  // Every global entry sorts before every tenant's.
  EXPECT_LT(Key("", "zzz@z.test"), Key("a", "aaa@a.test"));
  EXPECT_FALSE(SplitKey("no-nul", &s, &a));
}

TEST(Reasons, NamesRoundTrip) {
  for (Reason r : {Reason::kHardBounce, Reason::kComplaint, Reason::kUnsubscribe, Reason::kManual}) {
    EXPECT_EQ(ParseReason(ReasonName(r)), r);
  }
  EXPECT_FALSE(ParseReason("bounce"));
}

}  // namespace
}  // namespace mxr::suppression
