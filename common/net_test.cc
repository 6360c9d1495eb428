#include "common/net.h"

#include "gtest/gtest.h"

namespace mxr {
namespace {

TEST(NetTest, ParsesAndFormats) {
  EXPECT_EQ(IpAddress::Parse("127.0.0.1")->ToString(), "127.0.0.1");
  EXPECT_EQ(IpAddress::Parse("[::1]")->ToString(), "::1");
  EXPECT_TRUE(IpAddress::Parse("10.1.2.3")->is_v4());
  EXPECT_FALSE(IpAddress::Parse("::1")->is_v4());
  EXPECT_FALSE(IpAddress::Parse("300.1.1.1").ok());
  EXPECT_FALSE(IpAddress::Parse("example.com").ok());
  // A NUL ends the C string inet_pton reads: the rest must not be ignored.
  EXPECT_FALSE(IpAddress::Parse(std::string_view("127.0.0.1\0junk", 14)).ok());
  EXPECT_FALSE(IpAddress::Parse(std::string_view("::1\0", 4)).ok());
  EXPECT_FALSE(IpAddress::Parse("[[127.0.0.1]]").ok());
}

TEST(NetTest, CidrMatching) {
  auto lo = *Cidr::Parse("127.0.0.0/8");
  EXPECT_TRUE(lo.Contains(*IpAddress::Parse("127.5.6.7")));
  EXPECT_FALSE(lo.Contains(*IpAddress::Parse("128.0.0.1")));
  EXPECT_FALSE(lo.Contains(*IpAddress::Parse("::1")));
  auto n = *Cidr::Parse("192.168.1.128/25");
  EXPECT_TRUE(n.Contains(*IpAddress::Parse("192.168.1.200")));
  EXPECT_FALSE(n.Contains(*IpAddress::Parse("192.168.1.127")));
  EXPECT_EQ(n.ToString(), "192.168.1.128/25");
  auto v6 = *Cidr::Parse("2001:db8::/32");
  EXPECT_TRUE(v6.Contains(*IpAddress::Parse("2001:db8:1::5")));
  EXPECT_FALSE(v6.Contains(*IpAddress::Parse("2001:db9::5")));
  auto all = *Cidr::Parse("0.0.0.0/0");
  EXPECT_TRUE(all.Contains(*IpAddress::Parse("8.8.8.8")));
  EXPECT_FALSE(all.Contains(*IpAddress::Parse("::2")));
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/40").ok());
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/x").ok());
}

TEST(NetTest, ClientKeyAggregatesIpv6ByPrefixAndKeepsIpv4) {
  auto ip = [](const char* s) { return *IpAddress::Parse(s); };
  EXPECT_EQ(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd").ClientKey(64).ToString(), "2001:db8:1:2::");
  EXPECT_EQ(ip("2001:db8:1:2::1").ClientKey(64), ip("2001:db8:1:2:ffff::9").ClientKey(64));
  EXPECT_NE(ip("2001:db8:1:2::1").ClientKey(64), ip("2001:db8:1:3::1").ClientKey(64));
  EXPECT_EQ(ip("2001:db8:1:ff::1").ClientKey(56).ToString(), "2001:db8:1::");
  EXPECT_EQ(ip("2001:db8::7").ClientKey(63).ToString(), "2001:db8::");
  EXPECT_EQ(ip("2001:db8::7").ClientKey(128), ip("2001:db8::7"));
  // IPv4 (stored as ::ffff:a.b.c.d) is never cut: a /64 would merge all of IPv4.
  EXPECT_EQ(ip("192.0.2.7").ClientKey(64), ip("192.0.2.7"));
  EXPECT_NE(ip("192.0.2.7").ClientKey(64), ip("192.0.2.8").ClientKey(64));
}

}  // namespace
}  // namespace mxr
