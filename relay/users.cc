#include "relay/users.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/strings.h"

namespace mxr::relay {
namespace {

bool LooksLikeCryptHash(std::string_view h) {
  return h.size() > 3 && h[0] == '$' && h.find('$', 1) != std::string_view::npos;
}

std::string Crypt(std::string_view password, const std::string& setting) {
  struct crypt_data data;
  std::memset(&data, 0, sizeof data);
  std::string pw(password);
  const char* out = crypt_r(pw.c_str(), setting.c_str(), &data);
  OPENSSL_cleanse(pw.data(), pw.size());
  if (out == nullptr || out[0] == '*') return "";
  return out;
}

}  // namespace

std::string UserDb::Normalize(std::string_view name) {
  std::string out(name);
  size_t at = out.rfind('@');
  if (at == std::string::npos) return out;
  for (size_t i = at + 1; i < out.size(); ++i) {
    if (out[i] >= 'A' && out[i] <= 'Z') out[i] = static_cast<char>(out[i] - 'A' + 'a');
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const UserDb>> UserDb::Parse(std::string_view text, std::string_view source,
                                                            Options opts) {
  auto db = std::make_shared<UserDb>();
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          Cat(source, ":", line_no, ": expected 'user:hash'"));
    }
    std::string_view user = line.substr(0, colon), hash = line.substr(colon + 1);
    if (!LooksLikeCryptHash(hash)) {
      return absl::InvalidArgumentError(Cat(
          source, ":", line_no, ": user '", user,
          "': the password must be a crypt(3) hash (mkpasswd, openssl passwd -6, mxrelay "
          "hash-password), not plain text"));
    }
    // Check that libxcrypt knows this hash method.
    if (Crypt("probe", std::string(hash)).empty()) {
      return absl::InvalidArgumentError(
          Cat(source, ":", line_no, ": user '", user, "': unsupported or malformed hash"));
    }
    auto [it, fresh] = db->users_.emplace(Normalize(user), Entry{std::string(user), std::string(hash)});
    if (!fresh) {
      return absl::InvalidArgumentError(
          Cat(source, ":", line_no, ": duplicate user '", user, "'",
              it->second.name == user ? "" : Cat(" (same as '", it->second.name, "': domains match in any case)")));
    }
  }
  if (opts.local_part_login) {
    std::unordered_map<std::string, int> count;
    for (const auto& [key, e] : db->users_) {
      size_t at = key.rfind('@');
      count[at == std::string::npos ? key : key.substr(0, at)]++;
    }
    for (const auto& [key, e] : db->users_) {
      size_t at = key.rfind('@');
      if (at == std::string::npos) continue;
      std::string local = key.substr(0, at);
      if (count[local] == 1) {
        db->local_.emplace(local, key);
      } else if (db->local_.find(local) == db->local_.end()) {
        db->local_.emplace(local, "");  // ambiguous: never resolves
        db->ambiguous_++;
      }
    }
  }
  auto dummy = HashPassword(RandomPassword(16));
  if (!dummy.ok()) return dummy.status();
  db->dummy_hash_ = *dummy;
  return std::shared_ptr<const UserDb>(std::move(db));
}

absl::StatusOr<std::shared_ptr<const UserDb>> UserDb::Load(const std::string& path, Options o) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(Cat("cannot read users file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path, o);
}

const UserDb::Entry* UserDb::Find(std::string_view user) const {
  auto it = users_.find(Normalize(user));
  if (it != users_.end()) return &it->second;
  if (local_.empty() || user.find('@') != std::string_view::npos) return nullptr;
  auto l = local_.find(std::string(user));
  if (l == local_.end() || l->second.empty()) return nullptr;
  auto e = users_.find(l->second);
  return e == users_.end() ? nullptr : &e->second;
}

UserDb::Check UserDb::CheckPassword(std::string_view user, std::string_view password) const {
  const Entry* e = Find(user);
  const std::string& hash = e == nullptr ? dummy_hash_ : e->hash;
  std::string got = Crypt(password, hash);
  bool match = !got.empty() && got.size() == hash.size() &&
               CRYPTO_memcmp(got.data(), hash.data(), hash.size()) == 0;
  Check c;
  if (e == nullptr) return c;
  c.user = e->name;
  c.result = match ? Result::kOk : Result::kBadPassword;
  return c;
}

absl::StatusOr<std::string> HashPassword(std::string_view password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof setting) == nullptr) {
    return absl::InternalError("crypt_gensalt failed for yescrypt");
  }
  std::string h = Crypt(password, setting);
  if (h.empty()) return absl::InternalError("crypt failed");
  return h;
}

std::string RandomPassword(size_t n) {
  static constexpr char kAlphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  constexpr unsigned kSize = sizeof kAlphabet - 1;     // 55
  constexpr unsigned kLimit = 256 - 256 % kSize;        // reject bytes >= this: no bias
  std::string out;
  out.reserve(n);
  unsigned char buf[256];
  while (out.size() < n) {
    if (RAND_bytes(buf, sizeof buf) != 1) {
      // The CSPRNG failing is fatal for a password generator: never fall back.
      std::abort();
    }
    for (unsigned char b : buf) {
      if (b < kLimit && out.size() < n) out.push_back(kAlphabet[b % kSize]);
    }
  }
  return out;
}

}  // namespace mxr::relay
