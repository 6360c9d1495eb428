// The users file: one "name:crypt-hash" per line ('#' comments and blank
// lines ignored). Hashes are anything crypt(3) (libxcrypt) verifies:
// yescrypt ($y$, mkpasswd's default), bcrypt ($2b$), sha512-crypt ($6$,
// `openssl passwd -6`), sha256-crypt ($5$). Names are matched exactly as
// written: "alice" and "alice@example.com" are different users.
//
// Verification is CPU-expensive (yescrypt: ~10-50 ms) and must not run on an
// event loop: ingress calls Verify() on its auth worker thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/statusor.h"

namespace mxr::relay {

class UserDb {
 public:
  // Errors name the file and line at fault.
  static absl::StatusOr<std::shared_ptr<const UserDb>> Load(const std::string& path);
  static absl::StatusOr<std::shared_ptr<const UserDb>> Parse(std::string_view text,
                                                             std::string_view source);

  // Constant-time-ish: an unknown user still costs one hash computation.
  bool Verify(std::string_view user, std::string_view password) const;
  size_t size() const { return users_.size(); }
  bool Has(std::string_view user) const { return users_.count(std::string(user)) > 0; }

 private:
  std::unordered_map<std::string, std::string> users_;
  std::string dummy_hash_;  // verified for unknown users to equalise timing
};

// A new yescrypt hash of `password` (random salt), as mkpasswd makes.
absl::StatusOr<std::string> HashPassword(std::string_view password);

// A random password of `n` characters from an unambiguous alphabet.
std::string RandomPassword(size_t n);

}  // namespace mxr::relay
