#include "delivery/rate_limiter.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

TEST(RateSpec, Parses) {
  auto r = ParseRate("120/min");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->quantity, 120);
  EXPECT_EQ(r->period_us, 60'000'000);
  EXPECT_EQ(r->interval_us(), 500'000);
  EXPECT_EQ(r->ToString(), "120/min");
  EXPECT_EQ(ParseRate("10/s")->interval_us(), 100'000);
  EXPECT_EQ(ParseRate("3600 / hour")->interval_us(), 1'000'000);
  EXPECT_EQ(ParseRate("2/d")->period_us, 86'400'000'000);
  EXPECT_FALSE(ParseRate("")->limited());
  EXPECT_FALSE(ParseRate("unlimited")->limited());
  EXPECT_FALSE(ParseRate("10").ok());
  EXPECT_FALSE(ParseRate("0/s").ok());
  EXPECT_FALSE(ParseRate("-1/s").ok());
  EXPECT_FALSE(ParseRate("10/fortnight").ok());
}

TEST(Duration, Parses) {
  EXPECT_EQ(*ParseDurationSeconds("90"), 90);
  EXPECT_EQ(*ParseDurationSeconds("90s"), 90);
  EXPECT_EQ(*ParseDurationSeconds("30m"), 1800);
  EXPECT_EQ(*ParseDurationSeconds("2 hours"), 7200);
  EXPECT_EQ(*ParseDurationSeconds("30 days"), 30 * 86400);
  EXPECT_FALSE(ParseDurationSeconds("soon").ok());
  EXPECT_FALSE(ParseDurationSeconds("5 weeks").ok());
}

TEST(Gcra, UnlimitedNeverWaits) {
  Gcra g;
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(g.Take(0), 0);
}

TEST(Gcra, SmoothWithoutBurst) {
  Gcra g(*ParseRate("120/min"), 1);  // one per 500 ms
  EXPECT_EQ(g.Take(1'000'000), 0);
  EXPECT_EQ(g.Take(1'000'000), 500'000);  // must wait a whole interval
  EXPECT_EQ(g.Take(1'200'000), 300'000);
  EXPECT_EQ(g.Take(1'500'000), 0);
  EXPECT_EQ(g.Take(1'500'000), 500'000);
}

TEST(Gcra, BurstIsBounded) {
  Gcra g(*ParseRate("10/s"), 5);
  int64_t now = 50'000'000;
  int ok = 0;
  for (int i = 0; i < 100; ++i) ok += g.Take(now) == 0 ? 1 : 0;
  EXPECT_EQ(ok, 5);  // after an idle spell, exactly `burst` at once
  // Then the steady rate: 10 per second over 10 s (+ the burst's 5 already taken).
  int sent = 0;
  for (int64_t t = now; t < now + 10'000'000; t += 1000) sent += g.Take(t) == 0 ? 1 : 0;
  EXPECT_GE(sent, 99);
  EXPECT_LE(sent, 101);
}

TEST(Gcra, LongRunRateIsExact) {
  Gcra g(*ParseRate("120/min"), 3);
  int sent = 0;
  for (int64_t t = 0; t < 600'000'000; t += 10'000) sent += g.Take(t) == 0 ? 1 : 0;
  // 10 minutes at 120/min: 1200, plus at most the burst.
  EXPECT_GE(sent, 1200);
  EXPECT_LE(sent, 1203);
}

TEST(Gcra, WaitUsCountsNothing) {
  Gcra g(*ParseRate("1/s"), 1);
  EXPECT_EQ(g.WaitUs(0), 0);
  EXPECT_EQ(g.WaitUs(0), 0);
  EXPECT_EQ(g.Take(0), 0);
  EXPECT_EQ(g.WaitUs(0), 1'000'000);
}

}  // namespace
}  // namespace mxr::delivery
