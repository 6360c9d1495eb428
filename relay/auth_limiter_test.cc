#include "relay/auth_limiter.h"

#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

IpAddress Ip(const char* s) { return *IpAddress::Parse(s); }

TEST(AuthLimiter, BlocksAfterMaxFailuresWithinTheWindowThenForgives) {
  AuthLimiter lim(3, 60);
  IpAddress a = Ip("192.0.2.1"), b = Ip("192.0.2.2");
  int64_t t = 1'000'000;
  EXPECT_FALSE(lim.Failure(a, t));
  EXPECT_FALSE(lim.Failure(a, t + 1000));
  EXPECT_TRUE(lim.Allowed(a, t + 1000));
  EXPECT_TRUE(lim.Failure(a, t + 2000));  // third failure: blocked now
  EXPECT_FALSE(lim.Allowed(a, t + 2000));
  EXPECT_FALSE(lim.Allowed(a, t + 61'000));
  EXPECT_TRUE(lim.Allowed(b, t + 2000));  // others are not affected
  EXPECT_TRUE(lim.Allowed(a, t + 62'001));  // the block ends
  EXPECT_FALSE(lim.Failure(a, t + 62'002));  // and counting starts again
}

TEST(AuthLimiter, FailuresSpreadOverMoreThanTheWindowDoNotBlock) {
  AuthLimiter lim(3, 10);
  IpAddress a = Ip("2001:db8::1");
  int64_t t = 0;
  for (int i = 0; i < 20; ++i) {
    t += 6000;  // two per window at most
    EXPECT_FALSE(lim.Failure(a, t)) << i;
    EXPECT_TRUE(lim.Allowed(a, t));
  }
}

TEST(AuthLimiter, ZeroDisables) {
  AuthLimiter lim(0, 60);
  IpAddress a = Ip("192.0.2.1");
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(lim.Failure(a, i));
  EXPECT_TRUE(lim.Allowed(a, 100));
  EXPECT_EQ(lim.Tracked(), 0u);
}

TEST(AuthLimiter, MemoryStaysBoundedUnderManyAddresses) {
  AuthLimiter lim(5, 1);
  int64_t t = 0;
  for (uint32_t i = 0; i < 200'000; ++i) {
    std::string ip = "10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) + "." +
                     std::to_string(i & 255);
    lim.Failure(Ip(ip.c_str()), t);
    t += 1;  // 200 s in all: old entries expire and are pruned
  }
  EXPECT_LT(lim.Tracked(), 16u * 4096u + 16u * 1000u);
}

}  // namespace
}  // namespace mxr::relay
