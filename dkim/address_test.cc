#include "dkim/address.h"

#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

std::string Ok(std::string_view v) {
  auto d = FromDomain(v);
  EXPECT_TRUE(d.ok()) << v << ": " << d.status();
  return d.ok() ? *d : "";
}

TEST(FromDomainTest, Forms) {
  EXPECT_EQ(Ok(" joe@Football.Example.COM"), "football.example.com");
  EXPECT_EQ(Ok(" Joe SixPack <joe@football.example.com>\r\n"), "football.example.com");
  EXPECT_EQ(Ok(" \"Doe, J.\" <j@x.test> (work)"), "x.test");
  EXPECT_EQ(Ok(" j@x.test (a@evil.test)"), "x.test");
  EXPECT_EQ(Ok(" \"a@evil.test\" <j@x.test>"), "x.test");
  EXPECT_EQ(Ok(" \"quoted@local\"@x.test"), "x.test");
  EXPECT_EQ(Ok(" <@route.test,@r2.test:j@x.test>"), "x.test");
  EXPECT_EQ(Ok(" Team: a@x.test, b@X.test;"), "x.test");
  EXPECT_EQ(Ok(" a@x.test,\r\n b@x.test"), "x.test");
  EXPECT_EQ(Ok(" =?utf-8?q?J=C3=B6?= <j@x.test>"), "x.test");
  EXPECT_EQ(Ok(" j@x.test."), "x.test");
  EXPECT_EQ(Ok(" (nested (comment) here) j @ x.test"), "x.test");
  // SMTPUTF8: the domain's UTF-8 bytes stay, ASCII letters are lowered.
  EXPECT_EQ(Ok(" J\xc3\xb6 <j@B\xc3\xbc" "cher.TEST>"), "b\xc3\xbc" "cher.test");
}

TEST(FromDomainTest, Refused) {
  EXPECT_FALSE(FromDomain("").ok());
  EXPECT_FALSE(FromDomain("   ").ok());
  EXPECT_FALSE(FromDomain(" undisclosed-recipients:;").ok());
  EXPECT_FALSE(FromDomain(" no-at-sign").ok());
  EXPECT_FALSE(FromDomain(" Name <>").ok());
  EXPECT_FALSE(FromDomain(" a@x.test, b@y.test").ok());
  EXPECT_FALSE(FromDomain(" a@").ok());
  EXPECT_FALSE(FromDomain(" a@[192.0.2.1]").ok());  // an address literal names no domain
  // An unbalanced quote must not smuggle a second '@' into the domain
  // (found by dkim_canon_fuzz: fuzz/corpus/dkim_canon/regress-unbalanced-quote).
  EXPECT_FALSE(FromDomain(" \"Doe\" <j@x: a\"b w@evil.test (c)").ok());
  EXPECT_FALSE(FromDomain(" <j@x.test").ok() && *FromDomain(" <j@x.test") != "x.test");
}

TEST(AddressDomainTest, Envelope) {
  EXPECT_EQ(AddressDomain("bounce@Mail.Example.com"), "mail.example.com");
  EXPECT_EQ(AddressDomain(""), "");
  EXPECT_EQ(AddressDomain("postmaster"), "");
}

TEST(DomainMatchesTest, Patterns) {
  EXPECT_TRUE(DomainMatches("example.com", "example.com"));
  EXPECT_FALSE(DomainMatches("example.com", "a.example.com"));
  EXPECT_TRUE(DomainMatches("*.example.com", "a.example.com"));
  EXPECT_TRUE(DomainMatches("*.example.com", "b.a.example.com"));
  EXPECT_FALSE(DomainMatches("*.example.com", "example.com"));
  EXPECT_FALSE(DomainMatches("*.example.com", "badexample.com"));
  EXPECT_TRUE(DomainMatches("*", "anything.test"));
  EXPECT_FALSE(DomainMatches("*", ""));
}

}  // namespace
}  // namespace mxr::dkim
