#include "relay/dsn_params.h"

#include <gtest/gtest.h>

#include "queue/types.h"
#include "relay/smtp_parser.h"

namespace mxr::relay {
namespace {

TEST(DsnParams, Notify) {
  uint8_t n = 0;
  EXPECT_EQ(ParseDsnNotify("NEVER", &n), "");
  EXPECT_EQ(n, queue::kNotifyNever);
  EXPECT_EQ(ParseDsnNotify("success,Failure,DELAY", &n), "");
  EXPECT_EQ(n, queue::kNotifySuccess | queue::kNotifyFailure | queue::kNotifyDelay);
  EXPECT_NE(ParseDsnNotify("NEVER,SUCCESS", &n), "");
  EXPECT_NE(ParseDsnNotify("SUCCESS,SUCCESS", &n), "");
  EXPECT_NE(ParseDsnNotify("SUCCESS,", &n), "");
  EXPECT_NE(ParseDsnNotify("ALWAYS", &n), "");
  EXPECT_NE(ParseDsnNotify("", &n), "");
}

TEST(DsnParams, RetEnvidOrcpt) {
  uint8_t ret = 0;
  EXPECT_EQ(ParseDsnRet("hdrs", &ret), "");
  EXPECT_EQ(ret, static_cast<uint8_t>(queue::DsnRet::kHeaders));
  EXPECT_EQ(ParseDsnRet("FULL", &ret), "");
  EXPECT_EQ(ret, static_cast<uint8_t>(queue::DsnRet::kFull));
  EXPECT_NE(ParseDsnRet("BODY", &ret), "");
  std::string s;
  EXPECT_EQ(ParseDsnEnvid("QQ314159+2Bx", &s), "");
  EXPECT_EQ(s, "QQ314159+2Bx");
  EXPECT_NE(ParseDsnEnvid("bad+zz", &s), "");
  EXPECT_NE(ParseDsnEnvid(std::string(101, 'a'), &s), "");
  EXPECT_EQ(ParseDsnOrcpt("rfc822;bob+40example.com", &s), "");
  EXPECT_EQ(s, "rfc822;bob+40example.com");
  EXPECT_NE(ParseDsnOrcpt("bob@example.com", &s), "");        // no addr-type
  EXPECT_NE(ParseDsnOrcpt(";bob@example.com", &s), "");
  EXPECT_NE(ParseDsnOrcpt("rfc822;", &s), "");
  EXPECT_NE(ParseDsnOrcpt("rfc 822;a", &s), "");
  EXPECT_NE(ParseDsnOrcpt("rfc822;a+4", &s), "");
  EXPECT_NE(ParseDsnOrcpt("rfc822;" + std::string(500, 'a'), &s), "");
}

TEST(DsnParams, MailAndRcptCarryThem) {
  PathResult m = ParseMailFrom("FROM:<a@b.test> RET=HDRS ENVID=abc+2B1 SIZE=10");
  ASSERT_TRUE(m.ok) << m.text;
  EXPECT_EQ(m.dsn_ret, static_cast<uint8_t>(queue::DsnRet::kHeaders));
  EXPECT_EQ(m.envid, "abc+2B1");
  PathResult r = ParseRcptTo("TO:<c@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d.test");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.notify, queue::kNotifySuccess | queue::kNotifyDelay);
  EXPECT_EQ(r.orcpt, "rfc822;c@d.test");
}

TEST(DsnParams, BadValuesAre501AndWrongCommandIs555) {
  PathResult m = ParseMailFrom("FROM:<a@b.test> RET=BOTH");
  EXPECT_FALSE(m.ok);
  EXPECT_EQ(m.code, 501);
  EXPECT_EQ(m.enhanced, "5.5.4");
  m = ParseMailFrom("FROM:<a@b.test> RET=FULL RET=HDRS");
  EXPECT_EQ(m.code, 501);
  m = ParseMailFrom("FROM:<a@b.test> NOTIFY=NEVER");  // a RCPT parameter on MAIL
  EXPECT_EQ(m.code, 555);
  PathResult r = ParseRcptTo("TO:<c@d.test> NOTIFY=NEVER,FAILURE");
  EXPECT_EQ(r.code, 501);
  r = ParseRcptTo("TO:<c@d.test> ORCPT=rfc822;c+zzd.test");
  EXPECT_EQ(r.code, 501);
  r = ParseRcptTo("TO:<c@d.test> RET=FULL");
  EXPECT_EQ(r.code, 555);
}

}  // namespace
}  // namespace mxr::relay
