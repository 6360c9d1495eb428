// Per-IP AUTH failure limiter: brute force from one address is refused for a
// while, across sessions (the per-session limit alone lets a guesser simply
// reconnect). Thread-safe (striped locks); memory bounded (expired entries
// are dropped as stripes grow). I/O-free: the caller passes the time.
//
//   AuthLimiter lim(10, 300);               // 10 failures within 5 min -> 5 min block
//   if (!lim.Allowed(ip, now_ms)) refuse();
//   ... password wrong: if (lim.Failure(ip, now_ms)) log("blocked");
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "absl/hash/hash.h"
#include "common/net.h"

namespace mxr::relay {

class AuthLimiter {
 public:
  // max_failures = 0 disables the limiter.
  AuthLimiter(int max_failures, int block_seconds)
      : max_failures_(max_failures), window_ms_(int64_t{block_seconds} * 1000) {}

  // Whether `ip` may try a password now.
  bool Allowed(const IpAddress& ip, int64_t now_ms);
  // Records a failed password from `ip`; true if it has just been blocked.
  bool Failure(const IpAddress& ip, int64_t now_ms);
  // Addresses tracked (for tests of the memory bound).
  size_t Tracked();

 private:
  struct Entry {
    int failures = 0;
    int64_t window_start_ms = 0;
    int64_t blocked_until_ms = 0;
  };
  static constexpr int kStripes = 16;
  static constexpr size_t kPruneAbove = 4096;  // per stripe
  struct Stripe {
    std::mutex mu;
    std::unordered_map<IpAddress, Entry, absl::Hash<IpAddress>> map;
  };
  Stripe& StripeOf(const IpAddress& ip) { return stripes_[absl::Hash<IpAddress>()(ip) % kStripes]; }

  const int max_failures_;
  const int64_t window_ms_;
  Stripe stripes_[kStripes];
};

}  // namespace mxr::relay
