#include "relay/trace.h"

#include <cstdio>

#include <thread>

#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

TEST(TraceHub, MatchesByAddressAndUser) {
  TraceHub hub;
  EXPECT_FALSE(hub.active());
  auto by_ip = hub.Subscribe({.ip = "192.0.2.1"});
  auto by_user = hub.Subscribe({.user = "alice@example.com"});
  auto both = hub.Subscribe({.ip = "192.0.2.1", .user = "bob"});
  EXPECT_TRUE(hub.active());
  EXPECT_EQ(hub.Match("192.0.2.1", ""), std::vector<TraceHub::Sub>{by_ip});
  EXPECT_EQ(hub.Match("192.0.2.9", "alice@example.com"), std::vector<TraceHub::Sub>{by_user});
  EXPECT_EQ(hub.Match("192.0.2.1", "bob"), (std::vector<TraceHub::Sub>{by_ip, both}));
  EXPECT_TRUE(hub.Match("198.51.100.1", "").empty());
  hub.Unsubscribe(by_ip);
  hub.Unsubscribe(by_user);
  hub.Unsubscribe(both);
  EXPECT_FALSE(hub.active());
}

TEST(TraceSubscriber, SlowReaderLosesLinesNotTheSession) {
  TraceSubscriber s({});
  for (size_t i = 0; i < TraceSubscriber::kMaxQueued + 5; ++i) s.Push("x");
  auto got = s.Wait(0);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), TraceSubscriber::kMaxQueued + 1);
  EXPECT_EQ((*got)[0], "... 5 lines dropped (the trace reader did not keep up)");
  s.Close();
  s.Push("after close");
  EXPECT_FALSE(s.Wait(0).has_value()) << "closed and drained";
}

// Sessions on several ingress threads push while the admin thread reads
// (run under TSan in the sanitizer stage).
TEST(TraceSubscriber, ConcurrentPushersAndOneReader) {
  TraceHub hub;
  auto sub = hub.Subscribe({});
  constexpr int kThreads = 4, kLines = 2000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&hub] {
      for (int i = 0; i < kLines; ++i) {
        for (auto& s : hub.Match("192.0.2.1", "")) s->Push("line");
      }
    });
  }
  // Every line is read or, when the reader falls behind (a loaded
  // machine), counted in a "... N lines dropped" marker: none vanishes.
  size_t got = 0, dropped = 0;
  for (int rounds = 0; rounds < 3000 && got + dropped < kThreads * kLines; ++rounds) {
    auto lines = sub->Wait(10);
    ASSERT_TRUE(lines.has_value());
    for (const auto& l : *lines) {
      if (l == "line") {
        ++got;
      } else {
        unsigned long n = 0;
        ASSERT_EQ(std::sscanf(l.c_str(), "... %lu lines dropped", &n), 1) << l;
        dropped += n;
      }
    }
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(got + dropped, static_cast<size_t>(kThreads * kLines)) << got << " read, " << dropped << " dropped";
  EXPECT_GT(got, 0u);
  hub.Unsubscribe(sub);
}

}  // namespace
}  // namespace mxr::relay
