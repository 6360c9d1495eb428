#include "delivery/site_metrics.h"

#include <map>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

std::map<std::string, SiteFigures> ByLabel(const std::vector<SiteFigures>& v) {
  std::map<std::string, SiteFigures> m;
  for (const auto& f : v) m[f.label] = f;
  return m;
}

TEST(SiteMetrics, FreeSlotsLabelAtOnceThenOtherSums) {
  SiteMetrics sm(2);
  sm.Count("mx.a.test", Outcome::kDelivered, 0);
  sm.Count("mx.b.test", Outcome::kDeferred, 0);
  sm.Count("mx.c.test", Outcome::kBounced, 0);  // no slot left
  sm.Count("", Outcome::kBounced, 0);           // before any site (DNS): not per site
  auto f = ByLabel(sm.Figures({}));
  EXPECT_EQ(f.size(), 3u);
  EXPECT_EQ(f["mx.a.test"].attempts[Outcome::kDelivered], 1u);
  EXPECT_EQ(f["mx.b.test"].attempts[Outcome::kDeferred], 1u);
  EXPECT_EQ(f["other"].attempts[Outcome::kBounced], 1u);
  EXPECT_EQ(sm.unpinned(), 2u);
}

TEST(SiteMetrics, RelabelGivesIdleLabelsBackAndLabelsTheBusiest) {
  SiteMetrics sm(1);
  sm.Count("mx.old.test", Outcome::kDelivered, 0);
  for (int i = 0; i < 3; ++i) sm.Count("mx.busy.test", Outcome::kDelivered, 3'500'000);
  sm.Count("mx.quiet.test", Outcome::kDelivered, 3'500'000);
  sm.Relabel(3'700'000);  // mx.old.test idle > 1 h: its label goes to the busiest
  EXPECT_FALSE(sm.Labelled("mx.old.test"));
  EXPECT_TRUE(sm.Labelled("mx.busy.test"));
  EXPECT_FALSE(sm.Labelled("mx.quiet.test"));
  // A new series counts from now: the attempts before stay in "other".
  auto f = ByLabel(sm.Figures({}));
  EXPECT_EQ(f["mx.busy.test"].attempts[Outcome::kDelivered], 0u);
  EXPECT_EQ(f["other"].attempts[Outcome::kDelivered], 4u);
}

TEST(SiteMetrics, RoutesAreAlwaysLabelledAndNeverGivenBack) {
  SiteMetrics sm(0);
  std::vector<RouteConfig> routes(2);
  routes[0].domain = "smart.test";
  routes[0].host = "127.0.0.1";
  routes[1].domain = "policy-only.test";  // no host: not a site of its own
  sm.PinRoutes(routes);
  EXPECT_TRUE(sm.Labelled("route:smart.test"));
  EXPECT_FALSE(sm.Labelled("route:policy-only.test"));
  sm.Count("route:smart.test", Outcome::kDelivered, 0);
  sm.Relabel(10'000'000);
  EXPECT_TRUE(sm.Labelled("route:smart.test"));
  EXPECT_EQ(sm.unpinned(), 0u);
}

TEST(SiteMetrics, LiveFiguresAddUpPerLabel) {
  SiteMetrics sm(1);
  sm.Count("mx.a.test", Outcome::kDelivered, 0);
  auto f = ByLabel(sm.Figures({{"mx.a.test", 2, 5, false}, {"mx.a.test", 1, 0, true}, {"mx.z.test", 3, 1, false}}));
  EXPECT_EQ(f["mx.a.test"].connections, 3);
  EXPECT_EQ(f["mx.a.test"].queued_jobs, 5);
  EXPECT_TRUE(f["mx.a.test"].backed_off);
  EXPECT_EQ(f["other"].connections, 3);
  EXPECT_FALSE(f["other"].backed_off);
}

}  // namespace
}  // namespace mxr::delivery
