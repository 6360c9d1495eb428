#include "delivery/shaping.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

std::shared_ptr<const ShapingTable> Shipped() {
  auto t = ShapingTable::Load({{"shipped", kShippedShaping}});
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : ShapingTable::Empty();
}

TEST(Shaping, ShippedFileLoadsAndCoversTheProviders) {
  auto t = Shipped();
  auto names = t->RuleNames();
  for (const char* p : {"google", "yahoo", "outlook", "office365", "apple", "orange", "free", "sfr", "laposte"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), p), names.end()) << p;
  }
}

TEST(Shaping, MxSuffixRollsUpWorkspaceDomains) {
  auto t = Shipped();
  // Two unrelated domains hosted by Google share the Gmail rule.
  auto a = t->Lookup("gmail.com", {"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"});
  auto b = t->Lookup("customer.example", {"aspmx.l.google.com."});
  EXPECT_EQ(a.rule, "google");
  EXPECT_EQ(b.rule, "google");
  EXPECT_EQ(b.limits.connection_limit, 5);
  EXPECT_EQ(b.limits.max_deliveries_per_connection, 50);
  // Not a suffix at a label boundary.
  EXPECT_EQ(t->Lookup("x.example", {"mx.notgoogle.com"}).rule, "default");
  // Office 365 and consumer Outlook are different rules.
  EXPECT_EQ(t->Lookup("contoso.example", {"contoso-example.mail.protection.outlook.com"}).rule, "office365");
  EXPECT_EQ(t->Lookup("hotmail.com", {"hotmail-com.olc.protection.outlook.com"}).rule, "outlook");
  EXPECT_EQ(t->Lookup("yahoo.com", {"mta5.am0.yahoodns.net"}).rule, "yahoo");
  EXPECT_EQ(t->Lookup("icloud.com", {"mx01.mail.icloud.com"}).rule, "apple");
  EXPECT_EQ(t->Lookup("wanadoo.fr", {"smtp-in.orange.fr"}).rule, "orange");
}

TEST(Shaping, MostSpecificWinsAndMergesKeyByKey) {
  auto t = ShapingTable::Load({{"shipped", kShippedShaping},
                               {"operator", R"(
[default]
max_message_rate = "1000/h"
[provider.google]
max_message_rate = "120/min"
[domain."vip.example"]
connection_limit = 1
[provider.bigcorp]
mx_hosts = ["mx.bigcorp.example"]
max_burst = 7
)"}});
  ASSERT_TRUE(t.ok()) << t.status();
  // The operator's google rule keeps the shipped keys it does not set.
  auto g = (*t)->Lookup("gmail.com", {"gmail-smtp-in.l.google.com"});
  EXPECT_EQ(g.limits.max_message_rate->ToString(), "120/min");
  EXPECT_EQ(g.limits.connection_limit, 5);
  // A domain rule on a Google-hosted domain: its keys win, the rest from google, then default.
  auto v = (*t)->Lookup("vip.example", {"aspmx.l.google.com"});
  EXPECT_EQ(v.rule, "vip.example");
  EXPECT_EQ(v.limits.connection_limit, 1);
  EXPECT_EQ(v.limits.max_deliveries_per_connection, 50);
  EXPECT_EQ(v.limits.max_message_rate->ToString(), "120/min");
  // Automation: the domain's (none), then google's, then default's.
  ASSERT_GE(v.automation.size(), 2u);
  EXPECT_EQ(v.automation.front()->rule, "google");
  EXPECT_EQ(v.automation.back()->rule, "default");
  // Exact MX host rule over defaults.
  auto h = (*t)->Lookup("bigcorp.example", {"mx.bigcorp.example"});
  EXPECT_EQ(h.rule, "bigcorp");
  EXPECT_EQ(h.limits.max_burst, 7);
  EXPECT_EQ(h.limits.max_message_rate->ToString(), "1000/h");
  // Nothing matches: default.
  EXPECT_EQ((*t)->Lookup("other.example", {"mx.other.example"}).rule, "default");
}

TEST(Shaping, LongestSuffixWins) {
  auto t = ShapingTable::Load({{"f", R"(
[provider.wide]
mx_suffix = ["outlook.com"]
connection_limit = 9
[provider.narrow]
mx_suffix = [".protection.outlook.com"]
connection_limit = 2
)"}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Lookup("d", {"x.protection.outlook.com"}).rule, "narrow");
  EXPECT_EQ((*t)->Lookup("d", {"x.outlook.com"}).rule, "wide");
}

TEST(Shaping, OperatorAutomationIsTriedFirst) {
  auto t = ShapingTable::Load({{"shipped", kShippedShaping}, {"op", R"(
[[provider.google.automation]]
code = 421
enhanced = "4.7.28"
action = "suspend"
duration = "5m"
)"}});
  ASSERT_TRUE(t.ok()) << t.status();
  auto g = (*t)->Lookup("gmail.com", {"gmail-smtp-in.l.google.com"});
  const AutomationRule* r = FirstMatch(g.automation, 421, "4.7.28", "unusual rate");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->duration_s, 300);
}

TEST(Shaping, RejectsMistakes) {
  EXPECT_FALSE(ShapingTable::Load({{"f", "[default]\nconection_limit = 3\n"}}).ok());
  EXPECT_FALSE(ShapingTable::Load({{"f", "[default]\nmax_message_rate = \"fast\"\n"}}).ok());
  EXPECT_FALSE(ShapingTable::Load({{"f", "[provider.a]\nmx_suffix=[\"x.com\"]\n[provider.b]\nmx_suffix=[\"x.com\"]\n"}}).ok());
  EXPECT_FALSE(ShapingTable::Load({{"f", "[[default.automation]]\nregex = \"(\"\naction=\"suspend\"\nduration=\"1h\"\n"}}).ok());
  EXPECT_FALSE(ShapingTable::Load({{"f", "[[default.automation]]\nregex = \"x\"\naction=\"explode\"\nduration=\"1h\"\n"}}).ok());
  EXPECT_FALSE(ShapingTable::Load({{"f", "[[default.automation]]\nregex = \"x\"\naction=\"suspend\"\n"}}).ok());
  EXPECT_FALSE(ShapingTable::Load({{"f", "[nonsense]\nx=1\n"}}).ok());
}

TEST(Automation, MatchesCodeEnhancedAndRegex) {
  auto r = MakeAutomationRule("google", 0, 421, "4.7.2", "", "suspend", 0, "", 60);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->Matches(421, "4.7.2", "x"));
  EXPECT_FALSE(r->Matches(421, "4.7.28", "x"));  // a prefix ends at a component boundary
  EXPECT_FALSE(r->Matches(450, "4.7.2", "x"));
  auto y = MakeAutomationRule("yahoo", 0, 0, "", R"(\[TS?S04\])", "suspend", 0, "", 7200);
  ASSERT_TRUE(y.ok());
  EXPECT_TRUE(y->Matches(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred"));
  EXPECT_TRUE(y->Matches(421, "4.7.0", "[tss04] lower case"));
  EXPECT_FALSE(y->Matches(421, "4.7.0", "[TSS05]"));
  auto t = MakeAutomationRule("o", 0, 0, "", "S3150", "suspend", 0, "", 60, "temporary");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->treat, Treat::kTemporary);
  EXPECT_EQ(t->Describe(), "suspend 60s temporary");
}

TEST(Automation, OverridesExpire) {
  PathOverrides o;
  auto cl = *MakeAutomationRule("r", 0, 421, "", "", "connection_limit", 1, "", 60);
  EXPECT_EQ(o.Apply(cl, 1000, "421 busy"), 61'000);
  EXPECT_EQ(o.EffectiveConnLimit(5, 2000), 1);
  EXPECT_EQ(o.EffectiveConnLimit(5, 61'000), 5);
  auto s = *MakeAutomationRule("r", 0, 421, "", "", "suspend", 0, "", 10);
  o.Apply(s, 1000, "421 x");
  EXPECT_TRUE(o.Suspended(10'999));
  EXPECT_FALSE(o.Suspended(11'000));
  EXPECT_EQ(o.reason, "421 x");
}

}  // namespace
}  // namespace mxr::delivery
