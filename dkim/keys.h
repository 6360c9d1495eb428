// DKIM private keys (PEM files) and public key records (DNS TXT, RFC 6376
// 3.6.1; Ed25519: RFC 8463). The one place that knows OpenSSL's key API.
//
//   auto key = PrivateKey::LoadFile("/etc/mxrelay/dkim/example.com.s1.pem");
//   std::string txt = KeyRecordText(**key);       // "v=DKIM1; k=ed25519; p=..."
//   auto sig = (*key)->SignDigest(sha256_of_headers);
//
// A PrivateKey is immutable and may sign from many threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace mxr::dkim {

enum class Algorithm { kRsaSha256, kEd25519Sha256 };
std::string_view AlgorithmName(Algorithm a);  // "rsa-sha256", "ed25519-sha256"
std::optional<Algorithm> ParseAlgorithm(std::string_view name);

inline constexpr int kMinRsaBits = 1024;  // RFC 8301: smaller keys MUST NOT be used
inline constexpr int kMaxRsaBits = 4096;

using Digest = std::array<uint8_t, 32>;  // SHA-256

class PrivateKey {
 public:
  ~PrivateKey();
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;

  // Reads a PEM private key. Refused: a file others may read or write
  // (mode & 0007) or the group may write (0020), one that is not a regular
  // file, not PEM, not RSA or Ed25519, or RSA outside 1024..4096 bits. The
  // error names the path and says what to do.
  static absl::StatusOr<std::shared_ptr<const PrivateKey>> LoadFile(const std::string& path);
  static absl::StatusOr<std::shared_ptr<const PrivateKey>> FromPem(std::string_view pem);
  // A new key: RSA of `rsa_bits`, or Ed25519.
  static absl::StatusOr<std::shared_ptr<const PrivateKey>> Generate(Algorithm a, int rsa_bits = 2048);

  Algorithm algorithm() const { return alg_; }
  int bits() const { return bits_; }  // RSA modulus size; 256 for Ed25519
  // PKCS#8 PEM of the private key.
  std::string ToPem() const;
  // The p= value: base64 of the DER SubjectPublicKeyInfo (RSA) or of the
  // 32 raw public key bytes (Ed25519, RFC 8463 4.2).
  std::string PublicKeyBase64() const;
  // The signature over the SHA-256 hash of the canonical header data:
  // RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 3.3.1), or PureEdDSA Ed25519
  // of the 32 hash bytes (RFC 8463 3). Thread-safe. Each thread keeps its
  // signing context per key (up to 16 keys), set up once: OpenSSL 3's
  // context creation costed 10-20% of an RSA-2048 signature here.
  absl::StatusOr<std::string> SignDigest(const Digest& digest) const;

 private:
  PrivateKey(EVP_PKEY* pkey, Algorithm a, int bits);
  static absl::StatusOr<std::shared_ptr<const PrivateKey>> Adopt(EVP_PKEY* pkey);
  EVP_PKEY* pkey_;
  Algorithm alg_;
  int bits_;
  uint64_t id_;  // unique per key object: names its contexts in the per-thread cache
};

// The TXT record to publish at <selector>._domainkey.<domain>:
// "v=DKIM1; k=rsa; p=..." / "v=DKIM1; k=ed25519; p=...".
std::string KeyRecordText(const PrivateKey& key);
// The same as a zone-file line, its text cut into quoted strings of at most
// 255 bytes (a TXT string's limit), e.g.
//   s1._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=MIIB..." )
std::string KeyRecordZoneLine(const PrivateKey& key, std::string_view domain, std::string_view selector);

// A published key record (RFC 6376 3.6.1 tag list), parsed.
struct KeyRecord {
  std::string version;     // v= ("" when absent, which is allowed)
  std::string key_type;    // k= (default "rsa")
  std::string public_key;  // p= with whitespace removed; "" = revoked
  std::string hashes;      // h=
  std::string flags;       // t=
};
absl::StatusOr<KeyRecord> ParseKeyRecord(std::string_view txt);

// Base64 (RFC 4648, with padding).
std::string Base64(std::string_view bytes);

}  // namespace mxr::dkim
