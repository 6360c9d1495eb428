#include "common/tls_policy.h"

#include <string>

#include "common/tls_endpoint.h"

namespace mxr {

absl::Status ApplyTlsCipherPolicy(SSL_CTX* ctx) {
  if (SSL_CTX_set_cipher_list(ctx, kTls12CipherList) != 1) {
    return absl::InternalError("SSL_CTX_set_cipher_list: " + OpenSslError());
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) {
    return absl::InternalError("SSL_CTX_set1_groups_list: " + OpenSslError());
  }
  return absl::OkStatus();
}

}  // namespace mxr
