#include "common/tls_policy.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <string>

namespace mxr {
namespace {

// Every suite a context offers after the policy: AEAD, and for TLS 1.2
// ECDHE key exchange; the CBC and static-RSA suites OpenSSL enables by
// default are gone.
void ExpectOnlyAeadWithForwardSecrecy(SSL_CTX* ctx) {
  SSL* ssl = SSL_new(ctx);
  ASSERT_NE(ssl, nullptr);
  STACK_OF(SSL_CIPHER)* list = SSL_get1_supported_ciphers(ssl);
  ASSERT_NE(list, nullptr);
  int tls12 = 0;
  for (int i = 0; i < sk_SSL_CIPHER_num(list); i++) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(list, i);
    std::string name = SSL_CIPHER_get_name(c);
    EXPECT_TRUE(SSL_CIPHER_is_aead(c)) << name;
    int kx = SSL_CIPHER_get_kx_nid(c);
    EXPECT_TRUE(kx == NID_kx_ecdhe || kx == NID_kx_any) << name;
    EXPECT_EQ(name.find("CBC"), std::string::npos) << name;
    if (kx == NID_kx_ecdhe) tls12++;
  }
  EXPECT_EQ(tls12, 6);
  sk_SSL_CIPHER_free(list);
  SSL_free(ssl);
}

TEST(TlsPolicy, ServerAndClientContextsOfferOnlyAeadEcdhe) {
  for (const SSL_METHOD* m : {TLS_server_method(), TLS_client_method()}) {
    SSL_CTX* ctx = SSL_CTX_new(m);
    ASSERT_NE(ctx, nullptr);
    ASSERT_TRUE(ApplyTlsCipherPolicy(ctx).ok());
    ExpectOnlyAeadWithForwardSecrecy(ctx);
    SSL_CTX_free(ctx);
  }
}

TEST(TlsPolicy, OpenSslDefaultsWouldOfferCbc) {
  // The default list has CBC suites: the check above is not vacuous.
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  STACK_OF(SSL_CIPHER)* list = SSL_get1_supported_ciphers(ssl);
  bool cbc = false;
  for (int i = 0; i < sk_SSL_CIPHER_num(list); i++) {
    if (!SSL_CIPHER_is_aead(sk_SSL_CIPHER_value(list, i))) cbc = true;
  }
  EXPECT_TRUE(cbc);
  sk_SSL_CIPHER_free(list);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}

}  // namespace
}  // namespace mxr
