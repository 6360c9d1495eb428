#include "dkim/policy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

using ::testing::HasSubstr;
using Action = Decision::Action;

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-dkim-policy-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ed_ = WriteKey("ed.pem", Algorithm::kEd25519Sha256);
    rsa_ = WriteKey("rsa.pem", Algorithm::kRsaSha256);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string WriteKey(const std::string& name, Algorithm a) {
    auto k = PrivateKey::Generate(a, 1024);
    EXPECT_TRUE(k.ok());
    std::string p = dir_ + "/" + name;
    std::ofstream(p) << (*k)->ToPem();
    chmod(p.c_str(), 0600);
    return p;
  }
  static DkimRuleConfig Rule(DkimMatch m, std::string v, std::vector<DkimKeyConfig> keys) {
    DkimRuleConfig r;
    r.match = m;
    r.value = std::move(v);
    r.keys = std::move(keys);
    return r;
  }
  DkimConfig Config() {
    DkimConfig c;
    c.rules.push_back(Rule(DkimMatch::kFromDomain, "customer.test",
                           {{"customer.test", "rsa", "", rsa_}, {"platform.test", "ed", "ed25519-sha256", ed_}}));
    c.rules.push_back(Rule(DkimMatch::kFromDomain, "*.customer.test", {{"customer.test", "sub", "", ed_}}));
    c.rules.push_back(Rule(DkimMatch::kEnvelopeDomain, "bounces.platform.test", {{"platform.test", "env", "", ed_}}));
    c.rules.push_back(Rule(DkimMatch::kAuthUser, "tenant7", {{"tenant7.test", "t7", "", ed_}}));
    c.rules.push_back(Rule(DkimMatch::kFromDomain, "relay.test", {{"relay.test", "dsn", "", ed_}}));
    return c;
  }
  static MessageFacts Facts(absl::StatusOr<std::string> from, std::string env = "", std::string user = "",
                            bool generated = false) {
    MessageFacts f;
    f.from_domain = std::move(from);
    f.envelope_domain = std::move(env);
    f.auth_user = std::move(user);
    f.generated = generated;
    return f;
  }
  static std::string Signers(const Decision& d) {
    std::string s;
    for (const auto& k : d.keys) s += k.domain + "/" + k.selector + " ";
    return s;
  }
  std::string dir_, ed_, rsa_;
};

TEST_F(PolicyTest, BuildReadsEachFileOnceAndShares) {
  auto p = Policy::Build(Config(), Policy::Mode::kStrict);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->rules().size(), 5u);
  // (d, s, file) triples: 6 distinct keys, two files.
  EXPECT_EQ((*p)->keys().size(), 6u);
  EXPECT_EQ((*p)->keys()[1].key, (*p)->keys()[2].key);  // the Ed25519 file, loaded once
}

TEST_F(PolicyTest, Decisions) {
  auto p = *Policy::Build(Config(), Policy::Mode::kStrict);
  struct Case {
    MessageFacts facts;
    Action action;
    std::string signers;
    int rule;
  } cases[] = {
      {Facts("customer.test"), Action::kSign, "customer.test/rsa platform.test/ed ", 0},
      {Facts("news.customer.test"), Action::kSign, "customer.test/sub ", 1},
      {Facts("other.test", "bounces.platform.test"), Action::kSign, "platform.test/env ", 2},
      {Facts("other.test", "x.test", "tenant7"), Action::kSign, "tenant7.test/t7 ", 3},
      // The first matching rule wins: From: domain before the AUTH user.
      {Facts("customer.test", "", "tenant7"), Action::kSign, "customer.test/rsa platform.test/ed ", 0},
      {Facts("other.test"), Action::kSendUnsigned, "", -1},
      {Facts(absl::InvalidArgumentError("no From:"), "", "tenant7"), Action::kSign, "tenant7.test/t7 ", 3},
      {Facts("relay.test", "", "", true), Action::kSign, "relay.test/dsn ", 4},
  };
  for (const auto& c : cases) {
    Decision d = p->Decide(c.facts);
    EXPECT_EQ(d.action, c.action) << Signers(d);
    EXPECT_EQ(Signers(d), c.signers);
    EXPECT_EQ(d.rule, c.rule);
  }
}

TEST_F(PolicyTest, NoRuleFallbacks) {
  DkimConfig c = Config();
  auto p = *Policy::Build(c, Policy::Mode::kStrict);
  Decision d = p->Decide(Facts("other.test"));
  EXPECT_EQ(d.action, Action::kSendUnsigned);
  EXPECT_EQ(d.failures, std::vector<Failure>{Failure::kNoRule});
  d = p->Decide(Facts(absl::InvalidArgumentError("the message has 2 From: fields")));
  EXPECT_EQ(d.failures, std::vector<Failure>{Failure::kFromInvalid});
  c.on_no_rule = DkimFallback::kDefer;
  p = *Policy::Build(c, Policy::Mode::kStrict);
  d = p->Decide(Facts("other.test"));
  EXPECT_EQ(d.action, Action::kDefer);
  EXPECT_THAT(d.detail, HasSubstr("4.7.0 no DKIM signing rule for From: domain other.test"));
  // A DSN is never deferred.
  d = p->Decide(Facts("unknown.test", "", "", true));
  EXPECT_EQ(d.action, Action::kSendUnsigned);
}

TEST_F(PolicyTest, DsnWithoutRuleSignedByAKeyOfItsDomainOrAParent) {
  DkimConfig c = Config();
  c.rules.pop_back();  // no rule for relay.test any more
  c.rules.push_back(Rule(DkimMatch::kAuthUser, "ops", {{"example.test", "dsn", "", ed_}}));
  auto p = *Policy::Build(c, Policy::Mode::kStrict);
  // The relay's hostname mx.example.test: the example.test key is a parent.
  Decision d = p->Decide(Facts("mx.example.test", "", "", true));
  EXPECT_EQ(d.action, Action::kSign);
  EXPECT_EQ(Signers(d), "example.test/dsn ");
  // Not for a client's message, nor for a domain that only ends alike.
  EXPECT_EQ(p->Decide(Facts("mx.example.test")).action, Action::kSendUnsigned);
  EXPECT_EQ(p->Decide(Facts("badexample.test", "", "", true)).action, Action::kSendUnsigned);
}

TEST_F(PolicyTest, StrictBuildNamesTheKeyAtFault) {
  DkimConfig c = Config();
  chmod(rsa_.c_str(), 0644);
  auto p = Policy::Build(c, Policy::Mode::kStrict);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("dkim.rule[0].keys[0] (d=customer.test s=rsa)"));
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("chmod 600"));
  chmod(rsa_.c_str(), 0600);
  c.rules[0].keys[1].algorithm = "rsa-sha256";  // but the file holds Ed25519
  p = Policy::Build(c, Policy::Mode::kStrict);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("holds an ed25519-sha256 key"));
}

TEST_F(PolicyTest, LenientBuildKeepsUnusableKeysAndAppliesTheFallback) {
  DkimConfig c = Config();
  std::filesystem::remove(rsa_);
  std::vector<std::string> warnings;
  auto p = Policy::Build(c, Policy::Mode::kLenient, &warnings);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("rsa.pem"));
  // send_unsigned: the rule's other key still signs; the missing one is counted.
  Decision d = (*p)->Decide(Facts("customer.test"));
  EXPECT_EQ(d.action, Action::kSign);
  EXPECT_EQ(Signers(d), "platform.test/ed ");
  EXPECT_EQ(d.failures, std::vector<Failure>{Failure::kKeyUnusable});
  // defer: the message waits (4.7.5) rather than go out half-signed.
  c.on_key_error = DkimFallback::kDefer;
  p = Policy::Build(c, Policy::Mode::kLenient);
  d = (*p)->Decide(Facts("customer.test"));
  EXPECT_EQ(d.action, Action::kDefer);
  EXPECT_THAT(d.detail, HasSubstr("4.7.5 DKIM key unusable (d=customer.test s=rsa"));
  EXPECT_TRUE(d.keys.empty());
  // Rules whose keys are fine are not affected.
  d = (*p)->Decide(Facts("a.customer.test"));
  EXPECT_EQ(d.action, Action::kSign);
}

TEST_F(PolicyTest, FactsOfMessage) {
  ParsedMessage m = ParseMessage("Received: x\r\n", "From: A <a@Customer.Test>\r\nSubject: s\r\n\r\nb\r\n");
  MessageFacts f = FactsOf(m, "bounce@Bounces.Platform.test", "tenant7", false);
  ASSERT_TRUE(f.from_domain.ok());
  EXPECT_EQ(*f.from_domain, "customer.test");
  EXPECT_EQ(f.envelope_domain, "bounces.platform.test");
  m = ParseMessage("", "From: a@x.test\r\nFrom: b@x.test\r\n\r\n");
  EXPECT_THAT(std::string(FactsOf(m, "", "", false).from_domain.status().message()), HasSubstr("2 From: fields"));
  m = ParseMessage("", "Subject: none\r\n\r\n");
  EXPECT_FALSE(FactsOf(m, "", "", false).from_domain.ok());
  // A From: in the body is not a header field.
  m = ParseMessage("", "Subject: x\r\n\r\nFrom: a@x.test\r\n");
  EXPECT_FALSE(FactsOf(m, "", "", false).from_domain.ok());
}

}  // namespace
}  // namespace mxr::dkim
