#include "delivery/dns_cache.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

// ---------------------------------------------------------------------------
// TtlCache

TEST(TtlCacheTest, HitUntilExpiryThenGone) {
  TtlCache<std::string> c(10);
  EXPECT_EQ(c.Find("a.test", 0), nullptr);
  c.Put("a.test", "mx.a.test", 1000);
  ASSERT_NE(c.Find("a.test", 999), nullptr);
  EXPECT_EQ(*c.Find("a.test", 999), "mx.a.test");
  EXPECT_EQ(c.Find("a.test", 1000), nullptr);  // expires at its expiry, not after
  EXPECT_EQ(c.size(), 0u);                     // and is dropped
  EXPECT_EQ(c.expired(), 1u);
  EXPECT_EQ(c.evicted(), 0u);
}

TEST(TtlCacheTest, PutReplacesValueAndExpiry) {
  TtlCache<int> c(10);
  c.Put("a.test", 1, 100);
  c.Put("a.test", 2, 500);
  EXPECT_EQ(c.size(), 1u);
  ASSERT_NE(c.Find("a.test", 200), nullptr);
  EXPECT_EQ(*c.Find("a.test", 200), 2);
  // A shorter TTL on refresh shortens it too (the answer changed).
  c.Put("a.test", 3, 150);
  EXPECT_EQ(c.Find("a.test", 200), nullptr);
}

TEST(TtlCacheTest, FullCacheDropsLeastRecentlyUsedOnly) {
  TtlCache<int> c(3);
  c.Put("a", 1, 1000);
  c.Put("b", 2, 1000);
  c.Put("c", 3, 1000);
  ASSERT_NE(c.Find("a", 0), nullptr);  // a is now the most recently used
  c.Put("d", 4, 1000);                 // b goes
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.evicted(), 1u);
  EXPECT_EQ(c.Find("b", 0), nullptr);
  EXPECT_NE(c.Find("a", 0), nullptr);
  EXPECT_NE(c.Find("c", 0), nullptr);
  EXPECT_NE(c.Find("d", 0), nullptr);
  c.Put("c", 30, 1000);  // a refresh counts as a use: a is now the oldest
  c.Put("e", 5, 1000);
  EXPECT_EQ(c.Find("a", 0), nullptr);
  EXPECT_EQ(*c.Find("c", 0), 30);
}

// The former cache emptied itself entirely when it passed its bound, so a
// campaign to many cold domains forced a fresh lookup of every hot one.
TEST(TtlCacheTest, ChurnOfColdNamesKeepsTheHotOneAndStaysBounded) {
  TtlCache<int> c(1000);
  c.Put("hot.test", 1, 1'000'000);
  for (int i = 0; i < 50'000; ++i) {
    c.Put("cold" + std::to_string(i) + ".test", i, 1'000'000);
    if (i % 100 == 0) {
      ASSERT_NE(c.Find("hot.test", i), nullptr) << i;
    }
    ASSERT_LE(c.size(), 1000u);
  }
  EXPECT_EQ(c.size(), 1000u);
  EXPECT_EQ(c.evicted(), 50'001u - 1000u);
  EXPECT_EQ(c.Find("cold0.test", 0), nullptr);
  EXPECT_NE(c.Find("cold49999.test", 0), nullptr);
}

TEST(TtlCacheTest, CapacityOfOne) {
  TtlCache<int> c(1);
  c.Put("a", 1, 10);
  c.Put("b", 2, 10);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.Find("a", 0), nullptr);
  EXPECT_EQ(*c.Find("b", 0), 2);
  TtlCache<int> zero(0);  // clamped to one entry, never unbounded or empty-only
  zero.Put("a", 1, 10);
  EXPECT_EQ(*zero.Find("a", 0), 1);
}

// ---------------------------------------------------------------------------
// Inflight

TEST(InflightTest, FirstAskerStartsTheLookupOthersWait) {
  Inflight<int> f;
  std::vector<std::string> got;
  EXPECT_TRUE(f.Join("a.test", [&](const int& v) { got.push_back("1:" + std::to_string(v)); }));
  EXPECT_FALSE(f.Join("a.test", [&](const int& v) { got.push_back("2:" + std::to_string(v)); }));
  EXPECT_TRUE(f.Join("b.test", [&](const int& v) { got.push_back("b:" + std::to_string(v)); }));
  EXPECT_FALSE(f.Join("a.test", [&](const int& v) { got.push_back("3:" + std::to_string(v)); }));
  EXPECT_EQ(f.size(), 2u);
  for (auto& done : f.Take("a.test")) done(7);
  EXPECT_EQ(got, (std::vector<std::string>{"1:7", "2:7", "3:7"}));  // in the order they asked
  EXPECT_EQ(f.size(), 1u);
  EXPECT_TRUE(f.Take("a.test").empty());  // ended: nothing left to hand over
  for (auto& done : f.Take("b.test")) done(9);
  EXPECT_EQ(got.back(), "b:9");
  EXPECT_EQ(f.size(), 0u);
}

TEST(InflightTest, WaiterAskingAgainStartsANewLookup) {
  Inflight<int> f;
  int restarted = 0;
  ASSERT_TRUE(f.Join("a.test", [&](const int&) {
    // Runs after Take: the ended lookup must not swallow this new ask.
    if (f.Join("a.test", [](const int&) {})) ++restarted;
  }));
  for (auto& done : f.Take("a.test")) done(1);
  EXPECT_EQ(restarted, 1);
  EXPECT_EQ(f.size(), 1u);
}

}  // namespace
}  // namespace mxr::delivery
