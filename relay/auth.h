// Password checks off the event loop, with a cache of recent successes.
//
// crypt(3) with yescrypt costs ~10-50 ms of CPU; bulk senders open many
// connections with the same credentials. A success is remembered for
// `cache_ttl` as HMAC-SHA256(random per-process key, user \0 password), so a
// repeat login costs one HMAC; failures are never cached. Reloading the users
// file clears the cache.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "common/clock.h"
#include "relay/users.h"

namespace mxr::relay {

enum class AuthResult {
  kOk,           // the password was checked and is right
  kOkCached,     // right, answered from the cache of recent successes (no check)
  kBad,          // checked and wrong
  kUnknownUser,  // no such user (the client is told the same as for kBad)
  kBusy,         // not checked: the checker's queue is full (answer 454 4.7.0)
};

struct AuthAnswer {
  AuthResult result = AuthResult::kBad;
  std::string user;  // the user's name as the users file writes it (not for kUnknownUser/kBusy)
  bool failed() const { return result == AuthResult::kBad || result == AuthResult::kUnknownUser; }
};

class Authenticator {
 public:
  Authenticator(std::shared_ptr<const UserDb> users, int threads, const Clock& clock,
                int64_t cache_ttl_ms = 300'000);
  ~Authenticator();

  // Thread-safe. `done` runs on a worker thread (post it to your loop), or
  // at once on the calling thread with kBusy when kMaxQueuedJobs wait already.
  // `password` is wiped (also its moved-from buffer) before this returns.
  // A check of the same user and password already queued or running is not
  // repeated: `done` gets its answer (kOkCached for a success).
  void Verify(std::string user, std::string password, absl::AnyInvocable<void(AuthAnswer) &&> done);
  // Attaches `done` to a check of the same user and password that is queued
  // or running, if there is one (true; `done` then gets that check's answer,
  // kOkCached for a success), else false and `done` is dropped. Wipes
  // `password`. For a client the limiter turned away (454) while its own
  // identical login is being checked: many connections of one application
  // logging in at once wait for one check instead of failing. It tells
  // nothing a guesser could use: the answer is the one its own check gets.
  bool JoinInFlight(const std::string& user, std::string& password,
                    absl::AnyInvocable<void(AuthAnswer) &&> done);
  // Whether user/password logged in successfully within the cache TTL (the
  // user's name as the file writes it), or nullopt: one HMAC and one short
  // lock, no password check. Thread-safe. An oracle like Verify(): callers
  // rate-limit it the same way (AuthLimiter).
  std::optional<std::string> CachedOk(const std::string& user, const std::string& password) const;
  static constexpr size_t kMaxQueuedJobs = 1000;  // beyond this, kBusy (brute-force flood)
  // Swaps the user database (SIGHUP) and clears the cache. Thread-safe.
  void SetUsers(std::shared_ptr<const UserDb> users);
  size_t user_count() const;

 private:
  struct Job {
    std::string user, password;
    std::string key;  // CacheKey(user, password)
    absl::AnyInvocable<void(AuthAnswer) &&> done;
  };
  using Waiters = std::vector<absl::AnyInvocable<void(AuthAnswer) &&>>;
  void Work();
  std::string CacheKey(const std::string& user, const std::string& password) const;

  const Clock& clock_;
  int64_t cache_ttl_ms_;
  unsigned char hmac_key_[32];
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const UserDb> users_ ABSL_GUARDED_BY(mu_);
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  struct Cached {
    int64_t expiry_ms = 0;
    std::string user;  // as the file writes it
  };
  std::unordered_map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
  // Checks queued or running, by CacheKey: the callers waiting for the same
  // answer. Only a check against the current users file is joined (`gen`).
  struct InFlight {
    uint64_t gen = 0;
    Waiters waiters;
  };
  std::unordered_map<std::string, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
  uint64_t users_gen_ ABSL_GUARDED_BY(mu_) = 0;  // +1 per SetUsers
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace mxr::relay
