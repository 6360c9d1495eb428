#include "delivery/egress.h"

#include <map>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

constexpr int64_t kDay = 86'400'000'000LL;

Config TwoSources(int w1, int w2) {
  Config c = DefaultConfig();
  c.sources.push_back({"a", "127.0.0.2", "a.example", "", {}});
  c.sources.push_back({"b", "127.0.0.3", "", "", {}});
  PoolConfig p;
  p.name = "mkt";
  p.sources = {{"a", w1}, {"b", w2}};
  c.pools.push_back(p);
  return c;
}

TEST(Egress, DefaultPoolIsTheDefaultSource) {
  Config c = DefaultConfig();
  c.delivery.source_address = "127.0.0.5";
  auto e = Egress::Create(c, "relay.example", *ShapingTable::Empty());
  ASSERT_TRUE(e.ok()) << e.status();
  Pool* p = (*e)->PoolFor("", "");
  auto ch = (*e)->Choose(p, 0);
  ASSERT_NE(ch.source, nullptr);
  EXPECT_EQ(ch.source->name, "default");
  EXPECT_EQ(ch.source->address, "127.0.0.5");
  EXPECT_EQ(ch.source->ehlo, "relay.example");
}

TEST(Egress, PoolPrecedenceMessageThenRouteThenDefault) {
  auto e = *Egress::Create(TwoSources(1, 1), "h", *ShapingTable::Empty());
  EXPECT_EQ(e->PoolFor("mkt", "")->name, "mkt");
  EXPECT_EQ(e->PoolFor("", "mkt")->name, "mkt");
  EXPECT_EQ(e->PoolFor("gone", "mkt")->name, "mkt");  // a pool that no longer exists
  EXPECT_EQ(e->PoolFor("", "")->name, "default");
}

TEST(Egress, WeightsAreExact) {
  auto e = *Egress::Create(TwoSources(3, 1), "h", *ShapingTable::Empty());
  std::map<std::string, int> n;
  for (int i = 0; i < 400; ++i) n[e->Choose(e->PoolFor("mkt", ""), 0).source->name]++;
  EXPECT_EQ(n["a"], 300);
  EXPECT_EQ(n["b"], 100);
  EXPECT_EQ(e->FindSource("a")->ehlo, "a.example");
  EXPECT_EQ(e->FindSource("b")->ehlo, "h");
}

TEST(Egress, WarmupCapOverflowsToTheOtherSourceThenWaits) {
  Config c = TwoSources(1, 1);
  c.sources[0].warmup_start = "1970-01-01";
  c.sources[0].warmup = {3, 6};
  c.sources[1].warmup_start = "1970-01-01";
  c.sources[1].warmup = {5};
  auto e = *Egress::Create(c, "h", *ShapingTable::Empty());
  Pool* p = e->PoolFor("mkt", "");
  std::map<std::string, int> n;
  int waited = 0;
  int64_t retry = 0;
  for (int i = 0; i < 20; ++i) {
    auto ch = e->Choose(p, 1000);
    if (ch.source) {
      n[ch.source->name]++;
    } else {
      waited++;
      retry = ch.retry_at_us;
    }
  }
  EXPECT_EQ(n["a"], 3);  // day 1 caps
  EXPECT_EQ(n["b"], 5);
  EXPECT_EQ(waited, 12);
  EXPECT_EQ(retry, kDay);  // the next UTC day
  // Day 2: a may send 6, b is past its schedule (unlimited).
  n.clear();
  for (int i = 0; i < 20; ++i) {
    auto ch = e->Choose(p, kDay + 5);
    n[ch.source ? ch.source->name : "-"]++;
  }
  EXPECT_EQ(n["a"], 6);
  EXPECT_EQ(n["b"], 14);
  EXPECT_EQ(e->FindSource("a")->warmup.SentToday(kDay + 5), 6);
  EXPECT_EQ(e->FindSource("a")->warmup.Day(kDay + 5), 2);
  EXPECT_EQ(e->FindSource("b")->warmup.Cap(kDay + 5), -1);
}

}  // namespace
}  // namespace mxr::delivery
