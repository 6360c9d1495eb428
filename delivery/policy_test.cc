#include "delivery/policy.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

DeliveryConfig RetryConfig() {
  DeliveryConfig c;
  c.retry_initial = 300;  // 5 min
  c.retry_max = 14400;    // 4 h
  return c;
}

// ---------------------------------------------------------------------------
// RetryDelayMs

struct RetryRow {
  uint32_t attempt;
  int64_t base_ms;  // before jitter: retry_initial * 2^(attempt-1), capped
};

// Doubling from 300 s, capped at 14400 s from attempt 7 (300 * 64 = 19200 > 14400).
const RetryRow kRetryTable[] = {
    {1, 300'000},     {2, 600'000},     {3, 1'200'000},   {4, 2'400'000},
    {5, 4'800'000},   {6, 9'600'000},   {7, 14'400'000},  {8, 14'400'000},
    {9, 14'400'000},  {10, 14'400'000},
};

struct JitterRow {
  double jitter;
  double factor;  // expected multiplier of the base
};
const JitterRow kJitterTable[] = {{0.0, 0.9}, {0.5, 1.0}, {0.999, 1.0998}};

TEST(RetryDelayMsTest, DoublesFromInitialCappedAtMaxWithinTenPercent) {
  DeliveryConfig cfg = RetryConfig();
  for (const RetryRow& row : kRetryTable) {
    for (const JitterRow& j : kJitterTable) {
      SCOPED_TRACE(testing::Message() << "attempt=" << row.attempt << " jitter=" << j.jitter);
      int64_t got = RetryDelayMs(cfg, row.attempt, j.jitter);
      double want = static_cast<double>(row.base_ms) * j.factor;
      EXPECT_NEAR(static_cast<double>(got), want, 1.0);
      EXPECT_GE(got, row.base_ms * 9 / 10);
      EXPECT_LE(got, row.base_ms * 11 / 10);
    }
  }
}

TEST(RetryDelayMsTest, ExactValuesForSimpleJitter) {
  DeliveryConfig cfg = RetryConfig();
  EXPECT_EQ(RetryDelayMs(cfg, 1, 0.5), 300'000);
  EXPECT_EQ(RetryDelayMs(cfg, 2, 0.5), 600'000);
  EXPECT_EQ(RetryDelayMs(cfg, 3, 0.5), 1'200'000);
  EXPECT_EQ(RetryDelayMs(cfg, 10, 0.5), 14'400'000);
}

TEST(RetryDelayMsTest, MonotonicForFixedJitter) {
  DeliveryConfig cfg = RetryConfig();
  for (double j : {0.0, 0.5, 0.999}) {
    int64_t prev = 0;
    for (uint32_t a = 1; a <= 10; ++a) {
      int64_t d = RetryDelayMs(cfg, a, j);
      EXPECT_GE(d, prev) << "attempt " << a;
      prev = d;
    }
  }
}

TEST(RetryDelayMsTest, EdgeInputs) {
  DeliveryConfig cfg = RetryConfig();
  // attempts_made = 0 is treated as the first attempt.
  EXPECT_EQ(RetryDelayMs(cfg, 0, 0.5), RetryDelayMs(cfg, 1, 0.5));
  // A huge attempt count neither overflows nor escapes the cap.
  EXPECT_EQ(RetryDelayMs(cfg, 1'000'000, 0.5), 14'400'000);
  EXPECT_EQ(RetryDelayMs(cfg, UINT32_MAX, 0.5), 14'400'000);
  // Out-of-range jitter is clamped to [0, 1].
  EXPECT_EQ(RetryDelayMs(cfg, 1, -3.0), RetryDelayMs(cfg, 1, 0.0));
  EXPECT_EQ(RetryDelayMs(cfg, 1, 7.0), RetryDelayMs(cfg, 1, 1.0));
  EXPECT_LE(RetryDelayMs(cfg, 1, 7.0), 330'000);
  // retry_max below retry_initial (not accepted by the config parser) still caps.
  cfg.retry_initial = 200;
  cfg.retry_max = 100;
  EXPECT_EQ(RetryDelayMs(cfg, 1, 0.5), 100'000);
  EXPECT_EQ(RetryDelayMs(cfg, 5, 0.5), 100'000);
}

// ---------------------------------------------------------------------------
// Expired

TEST(ExpiredTest, Boundary) {
  DeliveryConfig cfg;
  cfg.max_age = 432000;
  const int64_t received = 1'700'000'000'000'000;
  const int64_t age_us = int64_t{432000} * 1'000'000;
  struct Row {
    int64_t now;
    bool expired;
  } rows[] = {
      {received, false},
      {received + age_us - 1, false},
      {received + age_us, true},
      {received + age_us + 1, true},
      {received - 10'000'000, false},  // clock went backwards
  };
  for (const Row& r : rows) {
    EXPECT_EQ(Expired(cfg, received, r.now), r.expired) << "now-received=" << r.now - received;
  }
}

// ---------------------------------------------------------------------------
// SiteWindow

DeliveryConfig WindowConfig() {
  DeliveryConfig c;
  c.initial_window = 4;
  c.site_backoff_initial = 60;
  c.site_backoff_max = 300;
  return c;
}

TEST(SiteWindowTest, InitWindowClampsToMax) {
  DeliveryConfig cfg = WindowConfig();
  SiteWindow w;
  struct Row {
    int initial, max, want;
  } rows[] = {{4, 20, 4}, {4, 2, 2}, {4, 4, 4}, {1, 20, 1}, {0, 20, 1}, {4, 0, 1}};
  for (const Row& r : rows) {
    cfg.initial_window = r.initial;
    w.window = 99;
    w.dead_until_ms = 5;
    InitWindow(cfg, r.max, &w);
    EXPECT_EQ(w.window, r.want) << "initial=" << r.initial << " max=" << r.max;
    EXPECT_EQ(w.dead_until_ms, 0);
    EXPECT_EQ(w.consecutive_failures, 0);
    EXPECT_FALSE(w.probing);
    EXPECT_EQ(AllowedConnections(0, &w), r.want);
  }
}

TEST(SiteWindowTest, SuccessesGrowByOneUpToMax) {
  DeliveryConfig cfg = WindowConfig();
  SiteWindow w;
  InitWindow(cfg, 7, &w);
  ASSERT_EQ(w.window, 4);
  const int want[] = {5, 6, 7, 7, 7};
  for (int expected : want) {
    OnConnectSuccess(7, &w);
    EXPECT_EQ(w.window, expected);
    EXPECT_EQ(AllowedConnections(0, &w), expected);
  }
}

TEST(SiteWindowTest, FailureShrinksByOne) {
  DeliveryConfig cfg = WindowConfig();
  SiteWindow w;
  InitWindow(cfg, 20, &w);
  ASSERT_EQ(w.window, 4);
  EXPECT_FALSE(OnConnectFailure(cfg, 1000, &w));
  EXPECT_EQ(w.window, 3);
  EXPECT_EQ(AllowedConnections(1000, &w), 3);
  // A success ends the streak and grows again.
  OnConnectSuccess(20, &w);
  EXPECT_EQ(w.window, 4);
  EXPECT_EQ(w.consecutive_failures, 0);
  EXPECT_FALSE(OnConnectFailure(cfg, 1000, &w));
  EXPECT_EQ(w.window, 3);
}

TEST(SiteWindowTest, InterruptedStreakDoesNotKill) {
  DeliveryConfig cfg = WindowConfig();
  SiteWindow w;
  InitWindow(cfg, 20, &w);
  // fail x3 (window 4 -> 1), success (-> 2): the streak of 3 < 4 never killed.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(OnConnectFailure(cfg, 0, &w));
  EXPECT_EQ(w.window, 1);
  OnConnectSuccess(20, &w);
  EXPECT_EQ(w.window, 2);
  EXPECT_EQ(w.consecutive_failures, 0);
  // Alternating failure/success with window 2: never 2 failures in a row.
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(OnConnectFailure(cfg, 0, &w)) << i;
    OnConnectSuccess(20, &w);
  }
  EXPECT_EQ(w.dead_until_ms, 0);
  EXPECT_EQ(AllowedConnections(0, &w), 2);
}

TEST(SiteWindowTest, StreakLimitIsTheWindowWhenTheStreakBegan) {
  // Dead exactly at the N-th consecutive failure, N = window at the first
  // failure of the streak (the window itself shrinks during the streak).
  DeliveryConfig cfg = WindowConfig();
  for (int start = 1; start <= 8; ++start) {
    SiteWindow w;
    cfg.initial_window = start;
    InitWindow(cfg, 20, &w);
    ASSERT_EQ(w.window, start);
    for (int i = 1; i <= start; ++i) {
      EXPECT_EQ(OnConnectFailure(cfg, 0, &w), i == start) << "start=" << start << " i=" << i;
    }
    EXPECT_EQ(AllowedConnections(0, &w), 0);
  }
}

TEST(SiteWindowTest, WholeWindowOfFailuresKillsThenProbe) {
  DeliveryConfig cfg = WindowConfig();
  SiteWindow w;
  InitWindow(cfg, 20, &w);
  ASSERT_EQ(w.window, 4);
  const int64_t t0 = 1'000'000;
  // Exactly the 4th consecutive failure (the window when the streak began)
  // declares the site dead.
  const bool want_dead[] = {false, false, false, true};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(OnConnectFailure(cfg, t0, &w), want_dead[i]) << "failure #" << i + 1;
  }
  EXPECT_EQ(w.dead_until_ms, t0 + 60'000);
  EXPECT_EQ(w.backoff_ms, 60'000);
  // Dead: nothing allowed until dead_until.
  EXPECT_EQ(AllowedConnections(t0, &w), 0);
  EXPECT_EQ(AllowedConnections(t0 + 59'999, &w), 0);
  // Then exactly one probe, even though the window is larger than 1 after a success.
  EXPECT_EQ(AllowedConnections(t0 + 60'000, &w), 1);
  EXPECT_TRUE(w.probing);
  EXPECT_EQ(AllowedConnections(t0 + 70'000, &w), 1);
}

TEST(SiteWindowTest, ProbeFailureDoublesBackoffCapped) {
  DeliveryConfig cfg = WindowConfig();  // 60 s doubling up to 300 s
  SiteWindow w;
  InitWindow(cfg, 20, &w);
  int64_t now = 0;
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(OnConnectFailure(cfg, now, &w));
  ASSERT_TRUE(OnConnectFailure(cfg, now, &w));
  const int64_t want_backoff[] = {120'000, 240'000, 300'000, 300'000};
  for (int64_t want : want_backoff) {
    now = w.dead_until_ms;
    ASSERT_EQ(AllowedConnections(now - 1, &w), 0);
    ASSERT_EQ(AllowedConnections(now, &w), 1);  // the probe
    EXPECT_TRUE(OnConnectFailure(cfg, now, &w)) << "a failed probe re-kills at once";
    EXPECT_EQ(w.backoff_ms, want);
    EXPECT_EQ(w.dead_until_ms, now + want);
    EXPECT_EQ(AllowedConnections(now, &w), 0);
  }
}

TEST(SiteWindowTest, ProbeSuccessRevives) {
  DeliveryConfig cfg = WindowConfig();
  SiteWindow w;
  InitWindow(cfg, 6, &w);
  for (int i = 0; i < 4; ++i) OnConnectFailure(cfg, 0, &w);
  ASSERT_EQ(AllowedConnections(0, &w), 0);
  ASSERT_EQ(AllowedConnections(60'000, &w), 1);
  OnConnectSuccess(6, &w);
  EXPECT_FALSE(w.probing);
  EXPECT_EQ(w.dead_until_ms, 0);
  EXPECT_EQ(w.backoff_ms, 0);
  EXPECT_EQ(w.consecutive_failures, 0);
  // The window grows again from where the failures left it (1) up to the max.
  const int want[] = {2, 3, 4, 5, 6, 6};
  EXPECT_EQ(AllowedConnections(60'001, &w), want[0]);
  for (size_t i = 1; i < std::size(want); ++i) {
    OnConnectSuccess(6, &w);
    EXPECT_EQ(AllowedConnections(60'001, &w), want[i]);
  }
  // A later death starts from the initial backoff again.
  const int streak = w.window;
  for (int i = 0; i < streak - 1; ++i) EXPECT_FALSE(OnConnectFailure(cfg, 100'000, &w));
  EXPECT_TRUE(OnConnectFailure(cfg, 100'000, &w));
  EXPECT_EQ(w.backoff_ms, 60'000);
}

TEST(SiteWindowTest, WindowOfOneDiesOnFirstFailure) {
  DeliveryConfig cfg = WindowConfig();
  cfg.initial_window = 1;
  SiteWindow w;
  InitWindow(cfg, 20, &w);
  EXPECT_TRUE(OnConnectFailure(cfg, 0, &w));
  EXPECT_EQ(AllowedConnections(0, &w), 0);
}

// ---------------------------------------------------------------------------
// Classify

TEST(ClassifyTest, Table) {
  struct Row {
    int code;
    ReplyClass want;
  } rows[] = {
      {200, ReplyClass::kSuccess},   {220, ReplyClass::kSuccess},   {250, ReplyClass::kSuccess},
      {251, ReplyClass::kSuccess},   {299, ReplyClass::kSuccess},
      // A 3xx is never a delivery (fuzz finding client-result).
      {300, ReplyClass::kTransient}, {354, ReplyClass::kTransient}, {399, ReplyClass::kTransient},
      {400, ReplyClass::kTransient}, {421, ReplyClass::kTransient}, {451, ReplyClass::kTransient},
      {499, ReplyClass::kTransient}, {500, ReplyClass::kPermanent}, {550, ReplyClass::kPermanent},
      {554, ReplyClass::kPermanent}, {599, ReplyClass::kPermanent}, {0, ReplyClass::kTransient},
      {199, ReplyClass::kTransient}, {600, ReplyClass::kTransient}, {-1, ReplyClass::kTransient},
  };
  for (const Row& r : rows) EXPECT_EQ(Classify(r.code), r.want) << r.code;
}

}  // namespace
}  // namespace mxr::delivery
