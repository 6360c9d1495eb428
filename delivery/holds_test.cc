#include "delivery/holds.h"

#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

TEST(Holds, MatchesAndPersists) {
  std::string path = std::filesystem::temp_directory_path() / ("holds_test_" + std::to_string(getpid()));
  std::filesystem::remove(path);
  int64_t now = 1'700'000'000'000'000;
  {
    Holds h(path);
    ASSERT_TRUE(h.Load(now).ok());
    EXPECT_TRUE(h.empty());
    ASSERT_TRUE(h.Add(HoldRule{HoldKind::kDomain, "Example.TEST", 0, now}).ok());
    ASSERT_TRUE(h.Add(HoldRule{HoldKind::kCampaign, "spring", now + 60'000'000, now}).ok());
    ASSERT_TRUE(h.Add(HoldRule{HoldKind::kSite, "mx.example.test:25", 0, now}).ok());
    auto d = h.ForDomain("example.test", now);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->until_us, now + Holds::kRecheckUs);  // no end: looked at again later
    EXPECT_FALSE(h.ForDomain("other.test", now).has_value());
    queue::MessageMeta m;
    m.campaign = "spring";
    auto c = h.ForMessage(m, now);
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->until_us, now + 60'000'000);  // its end comes first
    EXPECT_FALSE(h.ForMessage(m, now + 61'000'000).has_value());  // ended
    EXPECT_TRUE(h.ForSite("MX.example.test:25", now).has_value());
    m.campaign.clear();
    m.id = queue::QueueId{123, 4};
    EXPECT_FALSE(h.ForMessage(m, now).has_value());
    ASSERT_TRUE(h.Add(HoldRule{HoldKind::kMessage, m.id.ToString(), 0, now}).ok());
    EXPECT_TRUE(h.ForMessage(m, now).has_value());
  }
  {
    Holds h(path);  // a restart
    ASSERT_TRUE(h.Load(now + 1).ok());
    EXPECT_EQ(h.List(now + 1).size(), 4u);
    EXPECT_TRUE(h.ForDomain("example.test", now).has_value());
    auto r = h.Remove(HoldKind::kDomain, "EXAMPLE.test");
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(*r);
    EXPECT_FALSE(*h.Remove(HoldKind::kDomain, "example.test"));
    EXPECT_FALSE(h.ForDomain("example.test", now).has_value());
  }
  {
    Holds h(path);
    ASSERT_TRUE(h.Load(now + 120'000'000).ok());  // the campaign's hold has ended
    EXPECT_EQ(h.List(now + 120'000'000).size(), 2u);
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace mxr::delivery
