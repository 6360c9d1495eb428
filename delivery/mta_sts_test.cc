#include "delivery/mta_sts.h"

#include <openssl/x509_vfy.h>

#include <deque>
#include <map>

#include "delivery/resolver.h"
#include "delivery/site.h"
#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

TEST(StsTxt, Parse) {
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=20160831085700Z;"), "20160831085700Z");
  EXPECT_EQ(ParseStsTxt("v=STSv1;id=abc"), "abc");
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=abc; ext=1"), "abc");
  EXPECT_FALSE(ParseStsTxt("id=abc; v=STSv1"));  // v first
  EXPECT_FALSE(ParseStsTxt("v=STSv2; id=abc"));
  EXPECT_FALSE(ParseStsTxt("v=STSv1; id=a-b"));  // id is alphanumeric
  EXPECT_FALSE(ParseStsTxt("v=STSv1; id=" + std::string(33, 'a')));
  EXPECT_FALSE(ParseStsTxt("v=spf1 -all"));
  EXPECT_FALSE(ParseStsTxt("v=STSv1;"));  // no id
}

TEST(StsPolicy, Parse) {
  std::string why;
  auto p = ParseStsPolicy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\n"
                          "max_age: 604800\r\n", &why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->mode, StsMode::kEnforce);
  EXPECT_EQ(p->mx, (std::vector<std::string>{"mail.example.com", "*.example.net"}));
  EXPECT_EQ(p->max_age, 604800);
  p = ParseStsPolicy("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 99999999999\nfoo: bar\n", &why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->mode, StsMode::kTesting);
  EXPECT_EQ(p->max_age, 31557600);  // capped at a year
  EXPECT_TRUE(ParseStsPolicy("version: STSv1\nmode: none\nmax_age: 1\n", &why));
  EXPECT_FALSE(ParseStsPolicy("version: STSv1\nmode: enforce\nmax_age: 1\n", &why));  // no mx
  EXPECT_FALSE(ParseStsPolicy("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", &why));
  EXPECT_FALSE(ParseStsPolicy("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", &why));
  EXPECT_FALSE(ParseStsPolicy("version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n", &why));
  EXPECT_FALSE(ParseStsPolicy("version: STSv1\nmode: enforce\nmx: a\n", &why));
  EXPECT_FALSE(ParseStsPolicy("<html>not a policy</html>", &why));
}

TEST(StsMx, Patterns) {
  EXPECT_TRUE(StsMxMatches("mail.example.com", "MAIL.example.com."));
  EXPECT_TRUE(StsMxMatches("*.example.net", "mx1.example.net"));
  EXPECT_FALSE(StsMxMatches("*.example.net", "a.b.example.net"));  // one label only
  EXPECT_FALSE(StsMxMatches("*.example.net", "example.net"));
  EXPECT_FALSE(StsMxMatches("*.example.net", "badexample.net"));
  EXPECT_FALSE(StsMxMatches("mail.example.com", "mail.example.com.evil.test"));
}

TEST(StsApply, EnforceFiltersHostsAndRequiresVerifiedTls) {
  StsLookup l;
  StsPolicy p;
  p.mode = StsMode::kEnforce;
  p.mx = {"*.good.test"};
  l.policy = p;
  std::vector<std::string> hosts = {"mx1.good.test", "mx.bad.test", "mx2.good.test"};
  SiteSettings s;
  std::string why;
  ASSERT_TRUE(ApplyStsPolicy(l, "d.test", &hosts, &s, &why));
  EXPECT_EQ(hosts, (std::vector<std::string>{"mx1.good.test", "mx2.good.test"}));
  EXPECT_EQ(s.tls, TlsPolicy::kRequiredVerify);
  ASSERT_TRUE(s.sts);
  EXPECT_EQ(s.sts_domain, "d.test");
  hosts = {"mx.bad.test"};
  SiteSettings s2;
  EXPECT_FALSE(ApplyStsPolicy(l, "d.test", &hosts, &s2, &why));
  EXPECT_NE(why.find("mx.bad.test"), std::string::npos);
  // testing: nothing filtered, TLS policy unchanged, but marked.
  l.policy->mode = StsMode::kTesting;
  hosts = {"mx.bad.test"};
  SiteSettings s3;
  ASSERT_TRUE(ApplyStsPolicy(l, "d.test", &hosts, &s3, &why));
  EXPECT_EQ(hosts.size(), 1u);
  EXPECT_EQ(s3.tls, TlsPolicy::kOpportunistic);
  EXPECT_TRUE(s3.sts);
  // none / no policy: untouched.
  SiteSettings s4;
  ASSERT_TRUE(ApplyStsPolicy(StsLookup{}, "d.test", &hosts, &s4, &why));
  EXPECT_FALSE(s4.sts);
}

TEST(StsApply, VerifyCodes) {
  EXPECT_STREQ(TlsRptResultForVerifyCode(X509_V_ERR_HOSTNAME_MISMATCH), "certificate-host-mismatch");
  EXPECT_STREQ(TlsRptResultForVerifyCode(X509_V_ERR_CERT_HAS_EXPIRED), "certificate-expired");
  EXPECT_STREQ(TlsRptResultForVerifyCode(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT), "certificate-not-trusted");
}

// ------------------------------------------------------------------ cache

class FakeResolver : public Resolver {
 public:
  void ResolveMx(const std::string&, std::function<void(const MxAnswer&)>) override {}
  void ResolveHost(const std::string& host, std::function<void(const AddrAnswer&)> done) override {
    AddrAnswer a;
    a.addrs.push_back(*IpAddress::Parse("127.0.0.1"));
    done(a);
  }
  void ResolveTxt(const std::string& name, std::function<void(bool, std::vector<std::string>)> done) override {
    txt_lookups++;
    done(true, txt[name]);
  }
  std::map<std::string, std::vector<std::string>> txt;
  int txt_lookups = 0;
};

class FakeFetcher : public StsFetcher {
 public:
  void Fetch(const std::string& url, const std::string& pin, std::function<void(Result)> done) override {
    urls.push_back(url);
    pins.push_back(pin);
    done(next);
  }
  Result next;
  std::vector<std::string> urls, pins;
};

class MtaStsCacheTest : public ::testing::Test {
 protected:
  MtaStsCacheTest() : sts_(&res_, &fetch_, Cfg(), [this] { return now_; }) {}
  static MtaStsConfig Cfg() {
    MtaStsConfig c;
    c.https_port = 8443;
    c.txt_recheck = 60;
    return c;
  }
  StsLookup Look() {
    StsLookup out;
    bool called = false;
    sts_.Lookup("d.test", [&](const StsLookup& l) {
      out = l;
      called = true;
    });
    EXPECT_TRUE(called);
    return out;
  }
  FakeResolver res_;
  FakeFetcher fetch_;
  int64_t now_ = 1000;
  MtaSts sts_;
};

TEST_F(MtaStsCacheTest, FetchCacheRefreshAndExpiry) {
  EXPECT_FALSE(Look().policy);  // no TXT: no policy, no fetch
  EXPECT_TRUE(fetch_.urls.empty());
  res_.txt["_mta-sts.d.test"] = {"v=STSv1; id=one"};
  fetch_.next.ok = true;
  fetch_.next.body = "version: STSv1\nmode: enforce\nmx: mx.d.test\nmax_age: 3600\n";
  now_ += 61;
  StsLookup l = Look();
  ASSERT_TRUE(l.policy);
  EXPECT_EQ(l.policy->mode, StsMode::kEnforce);
  EXPECT_EQ(l.policy->id, "one");
  ASSERT_EQ(fetch_.urls.size(), 1u);
  EXPECT_EQ(fetch_.urls[0], "https://mta-sts.d.test:8443/.well-known/mta-sts.txt");
  EXPECT_EQ(fetch_.pins[0], "mta-sts.d.test:8443:127.0.0.1");
  // Within txt_recheck: no DNS, no fetch.
  int lookups = res_.txt_lookups;
  EXPECT_TRUE(Look().policy);
  EXPECT_EQ(res_.txt_lookups, lookups);
  // Same id after the recheck: TXT looked up, no fetch.
  now_ += 61;
  EXPECT_TRUE(Look().policy);
  EXPECT_EQ(fetch_.urls.size(), 1u);
  // TXT gone: the cached policy stays until max_age (RFC 8461 5.1)...
  res_.txt.clear();
  now_ += 61;
  EXPECT_TRUE(Look().policy);
  // ... and not after it.
  now_ += 3600;
  EXPECT_FALSE(Look().policy);
  // A new id: fetched again; a failed fetch keeps a valid cached policy.
  res_.txt["_mta-sts.d.test"] = {"v=STSv1; id=two"};
  now_ += 61;
  EXPECT_TRUE(Look().policy);
  EXPECT_EQ(fetch_.urls.size(), 2u);
  res_.txt["_mta-sts.d.test"] = {"v=STSv1; id=three"};
  fetch_.next = StsFetcher::Result{};
  fetch_.next.error = "refused";
  now_ += 61;
  l = Look();
  ASSERT_TRUE(l.policy);
  EXPECT_EQ(l.policy->id, "two");
  EXPECT_EQ(l.failure, "sts-policy-fetch-error");
}

TEST_F(MtaStsCacheTest, RefreshedInTheSecondHalfOfMaxAge) {
  res_.txt["_mta-sts.d.test"] = {"v=STSv1; id=one"};
  fetch_.next.ok = true;
  fetch_.next.body = "version: STSv1\nmode: testing\nmx: mx.d.test\nmax_age: 1000\n";
  ASSERT_TRUE(Look().policy);
  EXPECT_EQ(fetch_.urls.size(), 1u);
  now_ += 400;  // first half: kept
  ASSERT_TRUE(Look().policy);
  EXPECT_EQ(fetch_.urls.size(), 1u);
  now_ += 200;  // second half: fetched again although the id is the same
  ASSERT_TRUE(Look().policy);
  EXPECT_EQ(fetch_.urls.size(), 2u);
}

TEST_F(MtaStsCacheTest, InvalidPolicyAndTwoRecordsMeanNoPolicy) {
  res_.txt["_mta-sts.d.test"] = {"v=STSv1; id=one"};
  fetch_.next.ok = true;
  fetch_.next.body = "version: STSv1\nmode: enforce\nmax_age: 3600\n";  // no mx
  StsLookup l = Look();
  EXPECT_FALSE(l.policy);
  EXPECT_EQ(l.failure, "sts-policy-invalid");
  res_.txt["_mta-sts.d.test"] = {"v=STSv1; id=one", "v=STSv1; id=two"};
  now_ += 61;
  EXPECT_FALSE(Look().policy);
  EXPECT_EQ(fetch_.urls.size(), 1u);
}

}  // namespace
}  // namespace mxr::delivery
