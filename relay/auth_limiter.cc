#include "relay/auth_limiter.h"

namespace mxr::relay {

bool AuthLimiter::Allowed(const IpAddress& ip, int64_t now_ms) {
  if (max_failures_ <= 0) return true;
  Stripe& s = StripeOf(ip);
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.map.find(ip);
  return it == s.map.end() || it->second.blocked_until_ms <= now_ms;
}

bool AuthLimiter::Failure(const IpAddress& ip, int64_t now_ms) {
  if (max_failures_ <= 0) return false;
  Stripe& s = StripeOf(ip);
  std::lock_guard<std::mutex> l(s.mu);
  if (s.map.size() > kPruneAbove) {
    std::erase_if(s.map, [&](const auto& kv) {
      const Entry& e = kv.second;
      return e.blocked_until_ms <= now_ms && now_ms - e.window_start_ms > window_ms_;
    });
  }
  Entry& e = s.map[ip];
  if (now_ms - e.window_start_ms > window_ms_) {  // a new window
    e.failures = 0;
    e.window_start_ms = now_ms;
  }
  if (++e.failures < max_failures_ || e.blocked_until_ms > now_ms) return false;
  e.blocked_until_ms = now_ms + window_ms_;
  e.failures = 0;
  e.window_start_ms = e.blocked_until_ms;  // counting starts again after the block
  return true;
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
