#include "webhooks/signature.h"

#include "gtest/gtest.h"

namespace mxr::webhooks {
namespace {

TEST(Signature, KnownAnswerAndVerify) {
  // HMAC-SHA256(key "secret", "1765000000.{}"), computed independently:
  //   printf '1765000000.{}' | openssl dgst -sha256 -hmac secret
  std::string h = Sign("secret", 1765000000, "{}");
  EXPECT_EQ(h, "t=1765000000,v1=7dd895f6de813c051d09ea1e4ab8d08ccdf23b9834339f98cbd5859d98ff6ddb");
  EXPECT_TRUE(Verify("secret", h, "{}"));
  EXPECT_FALSE(Verify("secret", h, "{ }"));
  EXPECT_FALSE(Verify("Secret", h, "{}"));
  std::string other_time = h;
  other_time[11] = '1';  // t=1765000001: the timestamp is signed too
  EXPECT_FALSE(Verify("secret", other_time, "{}"));
  EXPECT_FALSE(Verify("secret", "", "{}"));
  EXPECT_FALSE(Verify("secret", "t=x,v1=" + std::string(64, '0'), "{}"));
  EXPECT_FALSE(Verify("secret", "t=1,v1=abc", "{}"));
}

}  // namespace
}  // namespace mxr::webhooks
