#include "delivery/router.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

TEST(Router, DomainOfLowersAndTakesTheLastAt) {
  EXPECT_EQ(DomainOf("User@Example.TEST"), "example.test");
  EXPECT_EQ(DomainOf("\"a@b\"@c.test"), "c.test");
  EXPECT_EQ(DomainOf("nodomain"), "");
}

TEST(Router, MakeJobsGroupsPendingRecipientsByDomainInChunks) {
  ActiveMessage m;
  for (const char* a : {"a1@x.test", "b1@y.test", "a2@X.test", "a3@x.test", "done@x.test", "a4@x.test"}) {
    m.meta.recipients.push_back(queue::Recipient{a});
  }
  m.meta.recipients[4].state = queue::RcptState::kDelivered;
  MakeJobs(&m, 2);
  ASSERT_EQ(m.jobs.size(), 3u);
  EXPECT_EQ(m.pending_jobs, 3);
  EXPECT_EQ(m.jobs[0]->domain, "x.test");
  EXPECT_EQ(m.jobs[0]->rcpts, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(m.jobs[1]->domain, "y.test");
  EXPECT_EQ(m.jobs[1]->rcpts, (std::vector<size_t>{1}));
  EXPECT_EQ(m.jobs[2]->rcpts, (std::vector<size_t>{3, 5}));  // the delivered one is skipped
  for (auto& j : m.jobs) EXPECT_EQ(j->msg, &m);
  m.pending_jobs = 0;
}

TEST(Router, FindRoutePrefersTheExactDomainOverTheWildcard) {
  std::vector<RouteConfig> routes(3);
  routes[0].domain = "*";
  routes[1].domain = "a.test";
  routes[2].domain = "b.test";
  EXPECT_EQ(FindRoute(routes, "a.test"), &routes[1]);
  EXPECT_EQ(FindRoute(routes, "c.test"), &routes[0]);
  routes.erase(routes.begin());
  EXPECT_EQ(FindRoute(routes, "c.test"), nullptr);
}

// The defect this guards: a site took its TLS policy, port, credentials and
// connection limit from whichever domain created it, so a required_verify
// route could be served by an opportunistic site of another domain with the
// same MX hosts. The policy is part of the identity now.
TEST(Router, SitePolicyIsPartOfItsIdentity) {
  DeliveryConfig cfg;
  RouteConfig strict;
  strict.domain = "strict.test";
  strict.tls = TlsPolicy::kRequiredVerify;
  strict.tls_set = true;
  std::vector<std::string> hosts = {"mx2.shared.test", "mx1.shared.test"};
  SiteId loose_id = IdentifySite(hosts, SettingsFor(cfg, nullptr), "");
  SiteId strict_id = IdentifySite(hosts, SettingsFor(cfg, &strict), "");
  EXPECT_NE(loose_id.identity, strict_id.identity);
  EXPECT_EQ(loose_id.name, "mx:mx1.shared.test,mx2.shared.test:25");
  EXPECT_EQ(loose_id.label, "mx1.shared.test");
  // Same hosts in another order, same policy: the same site.
  EXPECT_EQ(IdentifySite({"mx1.shared.test", "mx2.shared.test"}, SettingsFor(cfg, nullptr), "").identity,
            loose_id.identity);
}

TEST(Router, SmarthostRoutesWithOtherCredentialsGetOtherSites) {
  DeliveryConfig cfg;
  RouteConfig a, b;
  a.domain = "a.test";
  b.domain = "b.test";
  a.host = b.host = "smarthost.test";
  a.port = b.port = 587;
  a.auth_user = "user-a";
  a.auth_password = "pw";
  b.auth_user = "user-b";
  b.auth_password = "pw";
  SiteSettings sa = SettingsFor(cfg, &a), sb = SettingsFor(cfg, &b);
  EXPECT_EQ(sa.port, 587);
  EXPECT_EQ(sa.auth_user, "user-a");
  SiteId ia = IdentifySite({a.host}, sa, a.domain), ib = IdentifySite({b.host}, sb, b.domain);
  EXPECT_NE(ia.identity, ib.identity);
  EXPECT_EQ(ia.name, "route:smarthost.test:587");
  EXPECT_EQ(ia.label, "route:a.test");
  // Same user, another password (e.g. rotated by SIGHUP): another site too,
  // without the password appearing in the identity.
  b.auth_user = "user-a";
  b.auth_password = "other";
  SiteId ic = IdentifySite({b.host}, SettingsFor(cfg, &b), a.domain);
  EXPECT_NE(ia.identity, ic.identity);
  EXPECT_EQ(ic.identity.find("other"), std::string::npos);
  // A route's own connection limit is part of it as well.
  RouteConfig c = a;
  c.max_connections = 2;
  EXPECT_NE(IdentifySite({c.host}, SettingsFor(cfg, &c), c.domain).identity, ia.identity);
}

}  // namespace
}  // namespace mxr::delivery
