// Per-client AUTH limiter: brute force from one address (an IPv4 address, or
// an IPv6 prefix, /64 by default) is refused for a while, across sessions
// (the per-session limit alone lets a guesser simply reconnect).
//
// Attempts are counted while they are in flight, not only once they have
// failed: a password check is admitted only while
//   failures in the window + checks in flight < max_failures,
// so N simultaneous connections from one client get at most max_failures
// checks per window, not N. Successful checks and checks that never ran (the
// password checker's queue was full) release their slot without counting.
//
// Thread-safe (striped locks, held for O(1) except when a full stripe is
// pruned: O(stripe), amortised); memory bounded by `max_tracked` entries.
// I/O-free: the caller passes the time.
//
//   AuthLimiter lim({.max_failures = 10, .block_seconds = 300});
//   switch (lim.Begin(ip, now_ms)) { case kBlocked: 421; case kBusy: 454; case kAllowed: check }
//   ... password checked: if (lim.End(ip, AuthLimiter::Outcome::kFailure, now_ms)) log("blocked");
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "absl/hash/hash.h"
#include "common/net.h"

namespace mxr::relay {

class AuthLimiter {
 public:
  struct Options {
    int max_failures = 10;   // 0 disables the limiter
    int block_seconds = 300;  // the counting window, and how long a block lasts
    int ipv6_prefix = 64;     // IPv6 clients are counted per prefix of this length
    size_t max_tracked = 65536;  // entries kept at most (all stripes together)
  };
  enum class Admit {
    kAllowed,  // a slot is reserved: call End() exactly once
    kBlocked,  // the client is blocked: refuse unchecked (421 4.7.0)
    kBusy,     // failures + checks in flight reach the limit: try later (454 4.7.0)
  };
  enum class Outcome {
    kSuccess,     // right password: releases the slot
    kFailure,     // wrong password: counts
    kNotChecked,  // never checked (checker overloaded): releases the slot, does not count
  };

  explicit AuthLimiter(Options o);

  // Whether `ip` may have a password checked now; reserves a slot if so.
  // With kBlocked, *blocked_until_ms (if given) says until when.
  Admit Begin(const IpAddress& ip, int64_t now_ms, int64_t* blocked_until_ms = nullptr);
  // Ends what Begin() admitted; true if this failure has just blocked `ip`.
  bool End(const IpAddress& ip, Outcome outcome, int64_t now_ms);

  // Clients tracked, and entries dropped to keep within max_tracked (tests).
  size_t Tracked();
  uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    int failures = 0;
    int in_flight = 0;
    int64_t window_start_ms = 0;
    int64_t blocked_until_ms = 0;
  };
  static constexpr int kStripes = 16;
  struct Stripe {
    std::mutex mu;
    std::unordered_map<IpAddress, Entry, absl::Hash<IpAddress>> map;
  };
  Stripe& StripeOf(const IpAddress& key) { return stripes_[absl::Hash<IpAddress>()(key) % kStripes]; }
  // Makes room for one more entry in a full stripe. REQUIRES: s.mu held.
  // False if every entry has a check in flight (then the caller does not track).
  bool MakeRoom(Stripe& s, int64_t now_ms);
  bool Idle(const Entry& e, int64_t now_ms) const {
    return e.in_flight == 0 && e.blocked_until_ms <= now_ms &&
           (e.failures == 0 || now_ms - e.window_start_ms > window_ms_);
  }

  const int max_failures_;
  const int64_t window_ms_;
  const int ipv6_prefix_;
  const size_t per_stripe_;
  std::atomic<uint64_t> evicted_{0};
  Stripe stripes_[kStripes];
};

}  // namespace mxr::relay
