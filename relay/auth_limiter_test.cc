#include "relay/auth_limiter.h"

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

using Admit = AuthLimiter::Admit;
using Outcome = AuthLimiter::Outcome;

IpAddress Ip(const std::string& s) { return *IpAddress::Parse(s); }

template <typename... A>
std::string Fmt(const char* f, A... a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a...);
  return buf;
}

AuthLimiter::Options Opts(int max_failures, int block_seconds) {
  AuthLimiter::Options o;
  o.max_failures = max_failures;
  o.block_seconds = block_seconds;
  return o;
}

// One complete failed attempt; true if it blocked the address.
bool Fail(AuthLimiter& lim, const IpAddress& ip, int64_t t) {
  EXPECT_EQ(lim.Begin(ip, t), Admit::kAllowed);
  return lim.End(ip, Outcome::kFailure, t);
}

TEST(AuthLimiter, BlocksAfterMaxFailuresWithinTheWindowThenForgives) {
  AuthLimiter lim(Opts(3, 60));
  IpAddress a = Ip("192.0.2.1"), b = Ip("192.0.2.2");
  int64_t t = 1'000'000;
  EXPECT_FALSE(Fail(lim, a, t));
  EXPECT_FALSE(Fail(lim, a, t + 1000));
  EXPECT_TRUE(Fail(lim, a, t + 2000));  // third failure: blocked now
  EXPECT_EQ(lim.Begin(a, t + 2000), Admit::kBlocked);
  EXPECT_EQ(lim.Begin(a, t + 61'000), Admit::kBlocked);
  EXPECT_EQ(lim.Begin(b, t + 2000), Admit::kAllowed);  // others are not affected
  lim.End(b, Outcome::kSuccess, t + 2000);
  EXPECT_FALSE(Fail(lim, a, t + 62'001));  // the block ends, counting starts again
}

TEST(AuthLimiter, FailuresSpreadOverMoreThanTheWindowDoNotBlock) {
  AuthLimiter lim(Opts(3, 10));
  IpAddress a = Ip("2001:db8::1");
  int64_t t = 0;
  for (int i = 0; i < 20; ++i) {
    t += 6000;  // two per window at most
    EXPECT_FALSE(Fail(lim, a, t)) << i;
  }
}

TEST(AuthLimiter, ZeroDisables) {
  AuthLimiter lim(Opts(0, 60));
  IpAddress a = Ip("192.0.2.1");
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(Fail(lim, a, i));
  EXPECT_EQ(lim.Tracked(), 0u);
}

// The scenario of issue 15: 200 guessers at once from one address. Before,
// the limit was only consulted before a check and a failure recorded after
// it, so all 200 were checked. Now checks in flight count against the limit.
TEST(AuthLimiter, ConcurrentAttemptsCountWhileInFlight) {
  AuthLimiter lim(Opts(10, 300));
  IpAddress a = Ip("192.0.2.9");
  int admitted = 0, busy = 0;
  for (int i = 0; i < 200; ++i) {  // all begin before any ends
    Admit r = lim.Begin(a, 1000);
    admitted += r == Admit::kAllowed;
    busy += r == Admit::kBusy;
  }
  EXPECT_EQ(admitted, 10);
  EXPECT_EQ(busy, 190);
  int blocked = 0;
  for (int i = 0; i < admitted; ++i) blocked += lim.End(a, Outcome::kFailure, 2000);
  EXPECT_EQ(blocked, 1);
  EXPECT_EQ(lim.Begin(a, 2000), Admit::kBlocked);
}

TEST(AuthLimiter, ConcurrentAttemptsFromManyThreadsNeverExceedTheLimit) {
  AuthLimiter lim(Opts(10, 300));
  IpAddress a = Ip("198.51.100.1");
  std::atomic<int> checks{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      for (int j = 0; j < 500; ++j) {
        if (lim.Begin(a, 5000) == Admit::kAllowed) {
          checks++;
          lim.End(a, Outcome::kFailure, 5000);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(checks.load(), 10);
}

// 50 addresses of one /64, 4 guessers each, all at once: one client.
TEST(AuthLimiter, Ipv6AddressesOfOnePrefixShareOneLimit) {
  AuthLimiter lim(Opts(10, 300));  // ipv6_prefix 64 by default
  int admitted = 0;
  for (int round = 0; round < 4; ++round) {
    for (int i = 1; i <= 50; ++i) {
      IpAddress ip = Ip(Fmt("2001:db8:1:2:%x:%x::%x", (i * 7919) & 0xffff, round, i));
      admitted += lim.Begin(ip, 1000) == Admit::kAllowed;
    }
  }
  EXPECT_EQ(admitted, 10);
  // The next /64 is another client.
  EXPECT_EQ(lim.Begin(Ip("2001:db8:1:3::1"), 1000), Admit::kAllowed);
  EXPECT_EQ(lim.Tracked(), 2u);
  // Failures from any address of the prefix block all of it.
  for (int i = 0; i < 10; ++i) lim.End(Ip(Fmt("2001:db8:1:2::%x", i + 1)), Outcome::kFailure, 2000);
  EXPECT_EQ(lim.Begin(Ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 2000), Admit::kBlocked);
  EXPECT_EQ(lim.Begin(Ip("2001:db8:1:3::2"), 2000), Admit::kAllowed);
}

TEST(AuthLimiter, Ipv6PrefixIsConfigurable) {
  AuthLimiter::Options o = Opts(2, 300);
  o.ipv6_prefix = 128;
  AuthLimiter lim(o);
  for (int i = 1; i <= 20; ++i) {
    EXPECT_EQ(lim.Begin(Ip(Fmt("2001:db8::%x", i)), 0), Admit::kAllowed) << i;
  }
}

TEST(AuthLimiter, SuccessAndUncheckedAttemptsReleaseTheirSlotWithoutCounting) {
  AuthLimiter lim(Opts(2, 300));
  IpAddress a = Ip("192.0.2.3");
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(lim.Begin(a, i), Admit::kAllowed) << i;
    EXPECT_FALSE(lim.End(a, i % 2 ? Outcome::kSuccess : Outcome::kNotChecked, i));
  }
  EXPECT_EQ(lim.Tracked(), 0u);  // nothing left behind
  EXPECT_FALSE(Fail(lim, a, 200));
  EXPECT_TRUE(Fail(lim, a, 201));
}

TEST(AuthLimiter, MemoryStaysBoundedUnderManyAddresses) {
  AuthLimiter::Options o = Opts(5, 1);
  o.max_tracked = 16 * 1024;
  AuthLimiter lim(o);
  int64_t t = 0;
  for (uint32_t i = 0; i < 200'000; ++i) {
    IpAddress ip = Ip(Fmt("10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255));
    Fail(lim, ip, t);
    t += 1;  // 200 s in all: old entries expire and are pruned
  }
  EXPECT_LE(lim.Tracked(), o.max_tracked);
}

// A spray of fresh addresses inside one window (nothing expires): the table
// still stays within its bound, and blocked clients stay blocked.
TEST(AuthLimiter, TableIsBoundedEvenWhenNothingExpires) {
  AuthLimiter::Options o = Opts(3, 3600);
  o.max_tracked = 1600;
  AuthLimiter lim(o);
  IpAddress bad = Ip("203.0.113.66");
  for (int i = 0; i < 3; ++i) Fail(lim, bad, 0);
  ASSERT_EQ(lim.Begin(bad, 0), Admit::kBlocked);
  for (uint32_t i = 0; i < 100'000; ++i) {
    Fail(lim, Ip(Fmt("10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255)), 1000);
  }
  EXPECT_LE(lim.Tracked(), o.max_tracked);
  EXPECT_GT(lim.evicted(), 0u);
  EXPECT_EQ(lim.Begin(bad, 2000), Admit::kBlocked);
}

}  // namespace
}  // namespace mxr::relay
