#include "relay/auth_limiter.h"

#include <algorithm>

namespace mxr::relay {

AuthLimiter::AuthLimiter(Options o)
    : max_failures_(o.max_failures),
      window_ms_(int64_t{o.block_seconds} * 1000),
      ipv6_prefix_(o.ipv6_prefix),
      per_stripe_(std::max<size_t>(1, o.max_tracked / kStripes)) {}

bool AuthLimiter::MakeRoom(Stripe& s, int64_t now_ms) {
  // 1. Entries that no longer mean anything (nothing in flight, no block, window over).
  std::erase_if(s.map, [&](const auto& kv) { return Idle(kv.second, now_ms); });
  if (s.map.size() < per_stripe_) return true;
  size_t before = s.map.size();
  // 2. Partial failure counts (not blocked, nothing in flight): forgetting
  //    them lets those clients start over; blocks are kept.
  std::erase_if(s.map, [&](const auto& kv) {
    return kv.second.in_flight == 0 && kv.second.blocked_until_ms <= now_ms;
  });
  evicted_.fetch_add(before - s.map.size(), std::memory_order_relaxed);
  if (s.map.size() < per_stripe_) return true;
  // 3. Only blocks (and checks in flight) left: end the block that ends first.
  auto victim = s.map.end();
  for (auto it = s.map.begin(); it != s.map.end(); ++it) {
    if (it->second.in_flight == 0 &&
        (victim == s.map.end() || it->second.blocked_until_ms < victim->second.blocked_until_ms)) {
      victim = it;
    }
  }
  if (victim == s.map.end()) return false;
  s.map.erase(victim);
  evicted_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

AuthLimiter::Admit AuthLimiter::Begin(const IpAddress& ip, int64_t now_ms, int64_t* blocked_until_ms) {
  if (max_failures_ <= 0) return Admit::kAllowed;
  IpAddress key = ip.ClientKey(ipv6_prefix_);
  Stripe& s = StripeOf(key);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) {
    // A table full of checks in flight (not reachable in practice: the
    // connection limits bound them) admits nothing more rather than grow.
    if (s.map.size() >= per_stripe_ && !MakeRoom(s, now_ms)) return Admit::kBusy;
    it = s.map.emplace(key, Entry{0, 0, now_ms, 0}).first;
  }
  Entry& e = it->second;
  if (e.blocked_until_ms > now_ms) {
    if (blocked_until_ms != nullptr) *blocked_until_ms = e.blocked_until_ms;
    return Admit::kBlocked;
  }
  if (now_ms - e.window_start_ms > window_ms_) {  // a new window
    e.failures = 0;
    e.window_start_ms = now_ms;
  }
  if (e.failures + e.in_flight >= max_failures_) return Admit::kBusy;
  e.in_flight++;
  return Admit::kAllowed;
}

bool AuthLimiter::End(const IpAddress& ip, Outcome outcome, int64_t now_ms) {
  if (max_failures_ <= 0) return false;
  IpAddress key = ip.ClientKey(ipv6_prefix_);
  Stripe& s = StripeOf(key);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return false;  // not admitted by Begin (never evicted while in flight)
  Entry& e = it->second;
  if (e.in_flight > 0) e.in_flight--;
  bool blocked = false;
  if (outcome == Outcome::kFailure) {
    if (now_ms - e.window_start_ms > window_ms_) {
      e.failures = 0;
      e.window_start_ms = now_ms;
    }
    if (++e.failures >= max_failures_ && e.blocked_until_ms <= now_ms) {
      e.blocked_until_ms = now_ms + window_ms_;
      e.failures = 0;
      e.window_start_ms = e.blocked_until_ms;  // counting starts again after the block
      blocked = true;
    }
  }
  if (Idle(e, now_ms)) s.map.erase(it);  // successful logins leave nothing behind
  return blocked;
}

size_t AuthLimiter::Tracked() {
  size_t n = 0;
  for (auto& s : stripes_) {
    std::lock_guard<std::mutex> l(s.mu);
    n += s.map.size();
  }
  return n;
}

}  // namespace mxr::relay
