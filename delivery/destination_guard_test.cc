#include "delivery/destination_guard.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

IpAddress Ip(const char* s) { return *IpAddress::Parse(s); }

TEST(DestinationGuard, DefaultDenyNetworksRefuseInternalAddressesAndAllowPrivateOnes) {
  DestinationGuard g(DefaultDenyNetworks(), {}, {});
  for (const char* bad : {"127.0.0.1", "127.9.9.9", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::",
                          "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "2001:db8::25",
                          "::ffff:127.0.0.1"}) {
    auto r = g.Check(Ip(bad), 25, "mx.evil.test");
    ASSERT_TRUE(r.has_value()) << bad;
    EXPECT_EQ(r->code, 554) << bad;
    EXPECT_EQ(r->enhanced, "5.4.4") << bad;
    EXPECT_EQ(r->reason, "deny_networks") << bad;
    EXPECT_NE(r->text.find("delivery.deny_networks"), std::string::npos) << r->text;
  }
  for (const char* ok : {"10.1.2.3", "172.16.0.9", "192.168.1.1", "fd00::25", "198.51.100.7", "2a00:1450::1b"}) {
    EXPECT_FALSE(g.Check(Ip(ok), 25, "mx.ok.test").has_value()) << ok;
  }
}

TEST(DestinationGuard, AnEmptyDenyListAllowsLoopback) {
  DestinationGuard g({}, {}, {});
  EXPECT_FALSE(g.Check(Ip("127.0.0.1"), 2626, "sink").has_value());
}

TEST(DestinationGuard, OurOwnListenerIsALoop) {
  DestinationGuard::Listener l;
  l.address = Ip("127.0.0.1");
  l.port = 2525;
  DestinationGuard g({}, {l}, {});
  auto r = g.Check(Ip("127.0.0.1"), 2525, "mx.loop.test");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->enhanced, "5.4.6");
  EXPECT_EQ(r->reason, "loop");
  EXPECT_NE(r->text.find("loops back to myself"), std::string::npos);
  EXPECT_FALSE(g.Check(Ip("127.0.0.1"), 25, "mx.loop.test").has_value());  // another port
  EXPECT_FALSE(g.Check(Ip("127.0.0.2"), 2525, "mx.loop.test").has_value());  // another address
}

TEST(DestinationGuard, AWildcardListenerCoversEveryLocalAddress) {
  DestinationGuard::Listener l;
  l.address = Ip("0.0.0.0");
  l.any = true;
  l.port = 25;
  DestinationGuard g({}, {l}, {Ip("192.0.2.10"), Ip("2001:db8::10")});
  EXPECT_EQ(g.Check(Ip("192.0.2.10"), 25, "mx")->enhanced, "5.4.6");
  EXPECT_EQ(g.Check(Ip("2001:db8::10"), 25, "mx")->enhanced, "5.4.6");
  EXPECT_EQ(g.Check(Ip("127.0.0.53"), 25, "mx")->enhanced, "5.4.6");  // loopback is always local
  EXPECT_FALSE(g.Check(Ip("192.0.2.11"), 25, "mx").has_value());
}

TEST(DestinationGuard, LoopIsReportedBeforeTheDeniedNetwork) {
  DestinationGuard::Listener l;
  l.address = Ip("127.0.0.1");
  l.port = 25;
  DestinationGuard g(DefaultDenyNetworks(), {l}, {});
  EXPECT_EQ(g.Check(Ip("127.0.0.1"), 25, "mx")->enhanced, "5.4.6");
  EXPECT_EQ(g.Check(Ip("127.0.0.2"), 25, "mx")->enhanced, "5.4.4");
}

}  // namespace
}  // namespace mxr::delivery
