// The TLS protocol policy every SSL_CTX of ours uses (listeners and
// outbound delivery alike):
//   - TLS 1.2 limited to AEAD suites with forward secrecy: the Mozilla
//     "intermediate" list without the DHE-RSA suites (we configure no DH
//     parameters, and every TLS 1.2 peer of the last decade speaks ECDHE):
//     ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256, ECDHE-{ECDSA,RSA}-AES256-GCM-SHA384,
//     ECDHE-{ECDSA,RSA}-CHACHA20-POLY1305. No CBC, no static RSA key exchange.
//   - TLS 1.3: OpenSSL's defaults (all its suites are AEAD with (EC)DHE).
//   - No compression, no renegotiation; groups X25519, P-256, P-384.
#pragma once

#include <openssl/ssl.h>

#include "absl/status/status.h"

namespace mxr {

inline constexpr char kTls12CipherList[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Applies the policy above to `ctx` (server or client). An error only if
// OpenSSL refuses the list (it never should).
absl::Status ApplyTlsCipherPolicy(SSL_CTX* ctx);

}  // namespace mxr
