#include "relay/server.h"

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

IpAddress Ip(const std::string& s) { return *IpAddress::Parse(s); }

std::string V6(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "2001:db8:7:8:%x::%x", (i * 7919) & 0xffff, i + 1);
  return buf;
}

// Issue 15, item 1: one host owns a whole IPv6 /64 and picks addresses in it
// at will, so per-address limits do not limit it. 50 addresses of one /64, 5
// connections each: one client for limits.max_connections_per_ip.
TEST(IngressServerPerIpLimit, Ipv6AddressesOfOnePrefixShareTheConnectionLimit) {
  Config cfg = DefaultConfig();
  cfg.limits.max_connections_per_ip = 200;
  IngressDeps deps;
  deps.config = &cfg;
  IngressServer srv(deps);  // not started: only the accounting is used
  int accepted = 0;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 50; ++i) accepted += srv.AcquireIp(Ip(V6(i)));
  }
  EXPECT_EQ(accepted, 200);
  EXPECT_TRUE(srv.AcquireIp(Ip("2001:db8:7:9::1")));  // the next /64 is another client
  EXPECT_TRUE(srv.AcquireIp(Ip("192.0.2.1")));
  // Released through any address of the prefix: a slot frees for all of it.
  srv.ReleaseIp(Ip(V6(3)));
  EXPECT_TRUE(srv.AcquireIp(Ip("2001:db8:7:8:ffff::1")));
  EXPECT_FALSE(srv.AcquireIp(Ip("2001:db8:7:8:ffff::2")));
}

TEST(IngressServerPerIpLimit, PrefixLength128CountsEachAddress) {
  Config cfg = DefaultConfig();
  cfg.limits.max_connections_per_ip = 2;
  cfg.limits.ipv6_prefix = 128;
  IngressDeps deps;
  deps.config = &cfg;
  IngressServer srv(deps);
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(srv.AcquireIp(Ip(V6(i))));
    EXPECT_TRUE(srv.AcquireIp(Ip(V6(i))));
    EXPECT_FALSE(srv.AcquireIp(Ip(V6(i))));
  }
}


// Every ingress thread counts its connections in the same per-IP table
// (striped locks). 8 threads acquire and release slots of one address at
// once: never more than the limit held, and every slot comes back. Run under
// TSan by scripts/test.sh (stage 4).
TEST(IngressServerPerIpLimit, ConcurrentAcquireAndReleaseNeverExceedTheLimit) {
  Config cfg = DefaultConfig();
  cfg.limits.max_connections_per_ip = 5;
  IngressDeps deps;
  deps.config = &cfg;
  IngressServer srv(deps);
  std::atomic<int> held{0}, max_held{0}, granted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      IpAddress ip = Ip(t % 2 ? "192.0.2.7" : "::ffff:192.0.2.7");  // one client, two spellings
      for (int i = 0; i < 2000; ++i) {
        if (!srv.AcquireIp(ip)) continue;
        granted++;
        int now = ++held;
        int m = max_held.load();
        while (now > m && !max_held.compare_exchange_weak(m, now)) {
        }
        --held;
        srv.ReleaseIp(ip);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_LE(max_held.load(), 5);
  EXPECT_GT(granted.load(), 0);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(srv.AcquireIp(Ip("192.0.2.7"))) << i;
  EXPECT_FALSE(srv.AcquireIp(Ip("192.0.2.7")));
}

}  // namespace
}  // namespace mxr::relay
