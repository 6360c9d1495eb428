#include "api/inject.h"

#include "gtest/gtest.h"

namespace mxr::api {
namespace {

InjectLimits Lim() { return InjectLimits{100, 1 << 20}; }

std::optional<RequestError> Parse(const std::string& body, InjectRequest* r) { return ParseInjectRequest(body, Lim(), r); }

TEST(Inject, Errors) {
  InjectRequest r;
  auto e = Parse("{not json", &r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 400);
  EXPECT_NE(e->message.find("not valid JSON"), std::string::npos);
  InjectRequest r2;
  e = Parse(R"({"envelope_sender":"a@b.test","recipients":[{"email":"x@y.test"}],"content":"x","colour":1})", &r2);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "colour");
  InjectRequest r3;
  e = Parse(R"({"envelope_sender":"a@b.test","content":"x"})", &r3);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "recipients");
  InjectRequest r4;
  e = Parse(R"({"envelope_sender":"a@b.test","recipients":[],"content":"x"})", &r4);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "recipients");
  InjectRequest r5;
  e = Parse(R"({"envelope_sender":"a@b.test","recipients":[{"email":"nope"}],"content":"x"})", &r5);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "recipients[0].email");
  InjectRequest r6;
  std::string many = R"({"envelope_sender":"a@b.test","content":"x","recipients":[)";
  for (int i = 0; i < 101; ++i) many += std::string(i ? "," : "") + "\"r" + std::to_string(i) + "@y.test\"";
  e = Parse(many + "]}", &r6);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 413);
  InjectRequest r7;
  e = Parse(R"({"envelope_sender":"a@b.test","recipients":["x@y.test"],"content":{"from":"a@b.test","text":"t","attachments":[{"filename":"f","data":"!!"}]}})", &r7);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "content.attachments[0].data");
}

TEST(Inject, SubstitutionGroupsIdenticalRenderings) {
  InjectRequest r;
  ASSERT_FALSE(Parse(R"({"envelope_sender":"a@b.test","substitutions":{"co":"ACME"},
    "recipients":[{"email":"x@y.test","substitutions":{"name":"X"}},{"email":"z@y.test","substitutions":{"name":"X"}},
                  {"email":"w@y.test","substitutions":{"name":"W"}}],
    "content":"From: a@b.test\nSubject: hi {{ name }}\n\nHello {{name}} from {{co}}\n"})", &r));
  std::vector<BuiltMessage> out;
  ASSERT_FALSE(BuildMessages(r, Lim(), &out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].recipients, (std::vector<std::string>{"x@y.test", "z@y.test"}));
  EXPECT_EQ(out[0].content, "From: a@b.test\r\nSubject: hi X\r\n\r\nHello X from ACME\r\n");
  EXPECT_EQ(out[1].content, "From: a@b.test\r\nSubject: hi W\r\n\r\nHello W from ACME\r\n");
  InjectRequest m;
  ASSERT_FALSE(Parse(R"({"envelope_sender":"a@b.test","recipients":["x@y.test"],"content":"Hi {{who}}\n"})", &m));
  std::vector<BuiltMessage> o2;
  auto e = BuildMessages(m, Lim(), &o2);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->field, "recipients[0].substitutions");
  EXPECT_NE(e->message.find("{{who}}"), std::string::npos);
}

TEST(Inject, StructuredBuildsMime) {
  InjectRequest r;
  ASSERT_FALSE(Parse(R"({"envelope_sender":"a@b.test","recipients":[{"email":"x@y.test","substitutions":{"n":"Zoë"}}],
    "content":{"from":"News <a@b.test>","subject":"Grüße {{n}}","text":"Hallo {{n}}","html":"<p>Hallo {{n}}</p>",
    "headers":{"X-Tag":"t1"},"attachments":[{"filename":"a.bin","content_type":"application/octet-stream","data":"AAEC"}]}})", &r));
  std::vector<BuiltMessage> out;
  ASSERT_FALSE(BuildMessages(r, Lim(), &out));
  ASSERT_EQ(out.size(), 1u);
  const std::string& c = out[0].content;
  EXPECT_NE(c.find("Subject: =?UTF-8?"), std::string::npos) << c;  // RFC 2047
  EXPECT_NE(c.find("To: x@y.test"), std::string::npos) << c;
  EXPECT_NE(c.find("multipart/mixed"), std::string::npos);
  EXPECT_NE(c.find("multipart/alternative"), std::string::npos);
  EXPECT_NE(c.find("X-Tag: t1"), std::string::npos);
  EXPECT_NE(c.find("filename=a.bin"), std::string::npos) << c;
  EXPECT_NE(c.find("AAEC"), std::string::npos);
  for (unsigned char ch : c) EXPECT_LT(ch, 0x80);  // 7-bit clean
  for (size_t i = c.find('\n'); i != std::string::npos; i = c.find('\n', i + 1)) ASSERT_EQ(c[i - 1], '\r');
}

TEST(Inject, ToCrlf) {
  EXPECT_EQ(ToCrlf("a\nb\r\nc\rd"), "a\r\nb\r\nc\r\nd\r\n");
}

}  // namespace
}  // namespace mxr::api
