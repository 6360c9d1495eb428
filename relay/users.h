// The users file: one "name:crypt-hash" per line ('#' comments and blank
// lines ignored). Hashes are anything crypt(3) (libxcrypt) verifies:
// yescrypt ($y$, mkpasswd's default), bcrypt ($2b$), sha512-crypt ($6$,
// `openssl passwd -6`), sha256-crypt ($5$). Names are matched as written,
// except that the domain part of an address-form name ("alice@Example.COM")
// matches in any case (domains are case-insensitive, RFC 5321 2.4); local
// parts and bare names are exact. "alice" and "alice@example.com" are
// different users, unless the database is built with `local_part_login`: then
// "alice" also names the one address-form user whose local part is "alice"
// (when exactly one has it and no bare user "alice" exists).
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
  struct Options {
    bool local_part_login = false;  // auth.local_part_login
  };
  // Errors name the file and line at fault.
  static absl::StatusOr<std::shared_ptr<const UserDb>> Load(const std::string& path, Options o);
  static absl::StatusOr<std::shared_ptr<const UserDb>> Load(const std::string& path) { return Load(path, Options()); }
  static absl::StatusOr<std::shared_ptr<const UserDb>> Parse(std::string_view text, std::string_view source,
                                                             Options o);
  static absl::StatusOr<std::shared_ptr<const UserDb>> Parse(std::string_view text, std::string_view source) {
    return Parse(text, source, Options());
  }

  enum class Result { kOk, kUnknownUser, kBadPassword };
  struct Check {
    Result result = Result::kUnknownUser;
    std::string user;  // the name as the file writes it (kOk, kBadPassword)
  };
  // Constant-time-ish: an unknown user still costs one hash computation.
  // Which of unknown user / bad password it was is for the relay's log only:
  // the client gets the same reply for both.
  Check CheckPassword(std::string_view user, std::string_view password) const;
  bool Verify(std::string_view user, std::string_view password) const {
    return CheckPassword(user, password).result == Result::kOk;
  }
  size_t size() const { return users_.size(); }
  bool Has(std::string_view user) const { return Find(user) != nullptr; }
  // Local parts shared by several address-form users (or by a bare user):
  // not usable alone even with local_part_login.
  size_t ambiguous_local_parts() const { return ambiguous_; }

  // "alice@Example.COM" -> "alice@example.com"; other names unchanged.
  static std::string Normalize(std::string_view name);

 private:
  struct Entry {
    std::string name;  // as written
    std::string hash;
  };
  const Entry* Find(std::string_view user) const;

  std::unordered_map<std::string, Entry> users_;        // Normalize(name) -> entry
  std::unordered_map<std::string, std::string> local_;  // unique local part -> key in users_
  size_t ambiguous_ = 0;
  std::string dummy_hash_;  // verified for unknown users to equalise timing
};

// A new yescrypt hash of `password` (random salt), as mkpasswd makes.
absl::StatusOr<std::string> HashPassword(std::string_view password);

// A random password of `n` characters from an unambiguous alphabet.
std::string RandomPassword(size_t n);

}  // namespace mxr::relay
