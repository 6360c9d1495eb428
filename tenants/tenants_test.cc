#include "tenants/tenants.h"

#include "common/strings.h"
#include "gtest/gtest.h"

namespace mxr::tenants {
namespace {

constexpr char kFile[] = R"(
[[tenant]]
name = "acme"
users = ["alice@Acme.test", "bob"]
api_keys = ["sha256:0000000000000000000000000000000000000000000000000000000000000000"]
sender_domains = ["acme.test", "*.acme.test"]
rate = "2/1m"
rate_burst = 2
daily_quota = 5
max_recipients = 3
pool = "warm"

[[tenant.user]]
name = "carol"
sender_domains = ["carol.test"]
rate = "1/1h"

[[tenant]]
name = "open"
users = ["dave"]
check_from_header = false
sender_domains = ["open.test"]
)";

std::shared_ptr<const Directory> Dir() {
  auto d = Directory::Parse(kFile, "t.toml");
  EXPECT_TRUE(d.ok()) << d.status();
  return *d;
}

TEST(Rate, Parses) {
  auto r = Rate::Parse("100/1m", 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 100);
  EXPECT_EQ(r->interval_us(), 600'000);
  auto h = Rate::Parse("10/h", 1);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->period_us, 3'600'000'000);
  EXPECT_FALSE(Rate::Parse("100", 1).ok());
  EXPECT_FALSE(Rate::Parse("0/1m", 1).ok());
  EXPECT_FALSE(Rate::Parse("5/1w", 1).ok());
}

TEST(Directory, UsersAndKeys) {
  auto d = Dir();
  ASSERT_EQ(d->tenants().size(), 2u);
  EXPECT_EQ(d->ForUser("alice@acme.TEST")->name, "acme");  // domain in any case
  EXPECT_EQ(d->ForUser("bob")->name, "acme");
  EXPECT_EQ(d->ForUser("carol")->name, "acme");  // listed by its [[tenant.user]]
  EXPECT_EQ(d->ForUser("Bob"), nullptr);         // bare names are exact
  EXPECT_EQ(d->ForUser("dave")->name, "open");
  EXPECT_EQ(d->ForApiKey("wrong"), nullptr);
  NewKey k = MintApiKey();
  EXPECT_TRUE(k.key.starts_with("mxr_"));
  EXPECT_EQ(k.key.size(), 4u + 43u);
  auto d2 = Directory::Parse(Cat("[[tenant]]\nname = \"k\"\napi_keys = [\"", k.stored, "\"]\n"), "k.toml");
  ASSERT_TRUE(d2.ok()) << d2.status();
  ASSERT_NE((*d2)->ForApiKey(k.key), nullptr);
  EXPECT_EQ((*d2)->ForApiKey(k.key)->name, "k");
  EXPECT_EQ((*d2)->ForApiKey(k.key + "x"), nullptr);
}

TEST(Directory, Errors) {
  auto bad = Directory::Parse("[[tenant]]\nname = \"a\"\nrate = \"x\"\n", "f.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("f.toml:3"), std::string::npos) << bad.status();
  auto typo = Directory::Parse("[[tenant]]\nname = \"a\"\nsender_domain = [\"a\"]\n", "f.toml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("unknown key 'tenant.sender_domain'"), std::string::npos) << typo.status();
  auto twice = Directory::Parse("[[tenant]]\nname = \"a\"\nusers=[\"u\"]\n[[tenant]]\nname = \"b\"\nusers=[\"u\"]\n", "f");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("is in tenants"), std::string::npos);
  EXPECT_FALSE(Directory::Parse("[[tenant]]\nname = \"a\"\napi_keys=[\"plain\"]\n", "f").ok());
}

TEST(Gate, SenderDomainsEnvelopeAndHeader) {
  ManualClock clock(1'700'000'000'000'000);
  Gate g(&clock);
  g.SetDirectory(Dir());
  // An hour between messages: the rates are not what this test is about.
  auto mail = [&](std::string_view u, std::string_view snd) {
    clock.AdvanceMicros(3'600'000'000);
    return g.Mail(u, snd);
  };
  EXPECT_TRUE(mail("bob", "news@acme.test").ok);
  EXPECT_TRUE(mail("bob", "x@mail.acme.test").ok);
  Verdict v = mail("bob", "x@evil.test");
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.code, 550);
  EXPECT_EQ(v.enhanced, "5.7.1");
  EXPECT_NE(v.text.find("sender_domains"), std::string::npos) << v.text;
  EXPECT_NE(v.text.find("acme"), std::string::npos) << v.text;
  EXPECT_FALSE(mail("bob", "").ok);  // the null sender has no domain
  EXPECT_TRUE(g.FromHeader("bob", "\"News\" <news@Acme.test>").ok);
  Verdict h = g.FromHeader("bob", "x@evil.test");
  EXPECT_FALSE(h.ok);
  EXPECT_NE(h.text.find("From: header"), std::string::npos) << h.text;
  // A user's own list replaces the tenant's.
  EXPECT_TRUE(mail("carol", "c@carol.test").ok);
  EXPECT_FALSE(mail("carol", "c@acme.test").ok);
  // check_from_header = false.
  EXPECT_TRUE(g.FromHeader("dave", "x@elsewhere.test").ok);
  // No tenant: no rules (allow_unassigned), or refused.
  EXPECT_TRUE(mail("stranger", "x@any.test").ok);
  g.set_allow_unassigned(false);
  EXPECT_EQ(mail("stranger", "x@any.test").code, 550);
  EXPECT_EQ(g.stats().refused_sender.load(), 3u);
  EXPECT_EQ(g.stats().refused_from_header.load(), 1u);
}

TEST(Gate, RatePerTenantAndPerUser) {
  ManualClock clock(1'700'000'000'000'000);
  Gate g(&clock);
  g.SetDirectory(Dir());
  // carol: 1/1h of her own (and the tenant's 2/1m).
  EXPECT_TRUE(g.Mail("carol", "c@carol.test").ok);
  Verdict v = g.Mail("carol", "c@carol.test");
  EXPECT_EQ(v.code, 450);
  EXPECT_EQ(v.enhanced, "4.7.1");
  EXPECT_NE(v.text.find("user \"carol\""), std::string::npos) << v.text;
  // The tenant's 2/1m: carol used one, bob the other, then refused.
  EXPECT_TRUE(g.Mail("bob", "b@acme.test").ok);
  Verdict t = g.Mail("bob", "b@acme.test");
  EXPECT_EQ(t.code, 450);
  EXPECT_NE(t.text.find("tenant \"acme\""), std::string::npos) << t.text;
  EXPECT_NE(t.text.find("2/1m"), std::string::npos) << t.text;
  clock.AdvanceMicros(30'000'000);  // one interval later: one more
  EXPECT_TRUE(g.Mail("bob", "b@acme.test").ok);
  EXPECT_FALSE(g.Mail("bob", "b@acme.test").ok);
  EXPECT_EQ(g.stats().refused_rate.load(), 3u);
  // A reload keeps the state.
  g.SetDirectory(Dir());
  EXPECT_FALSE(g.Mail("bob", "b@acme.test").ok);
}

TEST(Gate, QuotaAndRecipients) {
  ManualClock clock(1'700'000'000'000'000);
  Gate g(&clock);
  g.SetDirectory(Dir());
  EXPECT_TRUE(g.Rcpt("bob", 0).ok);
  EXPECT_TRUE(g.Rcpt("bob", 1).ok);
  EXPECT_TRUE(g.Rcpt("bob", 2).ok);
  Verdict m = g.Rcpt("bob", 3);
  EXPECT_EQ(m.code, 452);
  EXPECT_NE(m.text.find("max_recipients"), std::string::npos);
  EXPECT_TRUE(g.Rcpt("alice@acme.test", 0).ok);
  EXPECT_TRUE(g.Rcpt("alice@acme.test", 1).ok);
  Verdict q = g.Rcpt("alice@acme.test", 2);  // 6th recipient of the day
  EXPECT_EQ(q.code, 452);
  EXPECT_EQ(q.enhanced, "4.5.3");
  EXPECT_NE(q.text.find("daily_quota"), std::string::npos) << q.text;
  clock.AdvanceMicros(86'400'000'000);  // next UTC day
  EXPECT_TRUE(g.Rcpt("alice@acme.test", 0).ok);
  // Charge is all or nothing.
  auto d = Dir();
  const Tenant* t = d->ForUser("bob");
  EXPECT_FALSE(g.Charge(*t, nullptr, "", 1, 10).ok);
  EXPECT_TRUE(g.Charge(*t, nullptr, "", 1, 4).ok);
}

}  // namespace
}  // namespace mxr::tenants

#include "tenants/headers.h"

namespace mxr::tenants {
namespace {

TEST(Headers, ValueAndTake) {
  std::string m =
      "From: \"A\"\r\n <a@acme.test>\r\nX-MxRelay-Campaign: spring-2026\r\nSubject: hi\r\n"
      "x-mxrelay-campaign: second\r\n\r\nX-MxRelay-Campaign: body, kept\r\n";
  EXPECT_EQ(*HeaderValue(m, "from"), "\"A\" <a@acme.test>");
  EXPECT_FALSE(HeaderValue(m, "To").has_value());
  auto c = TakeHeader(&m, kCampaignHeader);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(*c, "spring-2026");
  EXPECT_EQ(m, "From: \"A\"\r\n <a@acme.test>\r\nSubject: hi\r\n\r\nX-MxRelay-Campaign: body, kept\r\n");
  EXPECT_FALSE(TakeHeader(&m, kCampaignHeader).has_value());
  EXPECT_TRUE(ValidCampaign("spring-2026"));
  EXPECT_FALSE(ValidCampaign("has space"));
  EXPECT_FALSE(ValidCampaign(""));
}

}  // namespace
}  // namespace mxr::tenants
