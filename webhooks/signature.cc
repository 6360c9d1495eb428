#include "webhooks/signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/strings.h"

namespace mxr::webhooks {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string o(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    o[2 * i] = kHex[p[i] >> 4];
    o[2 * i + 1] = kHex[p[i] & 15];
  }
  return o;
}

std::string Mac(std::string_view secret, int64_t unix_s, std::string_view body) {
  std::string text = Cat(unix_s, ".");
  text.append(body);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(), out, &len);
  return Hex(out, len);
}

}  // namespace

std::string Sign(std::string_view secret, int64_t unix_s, std::string_view body) {
  return Cat("t=", unix_s, ",v1=", Mac(secret, unix_s, body));
}

bool Verify(std::string_view secret, std::string_view header, std::string_view body) {
  if (header.substr(0, 2) != "t=") return false;
  size_t comma = header.find(",v1=");
  if (comma == std::string_view::npos) return false;
  std::string_view t = header.substr(2, comma - 2);
  std::string_view mac = header.substr(comma + 4);
  if (t.empty() || t.size() > 18 || mac.size() != 64) return false;
  int64_t unix_s = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
    unix_s = unix_s * 10 + (c - '0');
  }
  std::string want = Mac(secret, unix_s, body);
  return CRYPTO_memcmp(want.data(), mac.data(), 64) == 0;
}

}  // namespace mxr::webhooks
