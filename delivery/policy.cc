#include "delivery/policy.h"

#include <algorithm>
#include <cmath>

namespace mxr::delivery {

int64_t RetryDelayMs(const DeliveryConfig& cfg, uint32_t attempts_made, double jitter01) {
  if (attempts_made < 1) attempts_made = 1;
  double base = cfg.retry_initial * 1000.0;
  double cap = cfg.retry_max * 1000.0;
  double d = base * std::pow(2.0, std::min<uint32_t>(attempts_made - 1, 40));
  d = std::min(d, cap);
  double j = 0.9 + 0.2 * std::clamp(jitter01, 0.0, 1.0);
  return static_cast<int64_t>(d * j);
}

bool Expired(const DeliveryConfig& cfg, int64_t received_us, int64_t now_us) {
  return now_us - received_us >= static_cast<int64_t>(cfg.max_age) * 1'000'000;
}

void InitWindow(const DeliveryConfig& cfg, int max_connections, SiteWindow* w) {
  *w = SiteWindow();
  w->window = std::max(1, std::min(cfg.initial_window, max_connections));
}

void OnConnectSuccess(int max_connections, SiteWindow* w) {
  w->consecutive_failures = 0;
  w->dead_until_ms = 0;
  w->backoff_ms = 0;
  w->probing = false;
  w->window = std::min(max_connections, w->window + 1);
}

bool OnConnectFailure(const DeliveryConfig& cfg, int64_t now_ms, SiteWindow* w) {
  if (w->consecutive_failures == 0) w->streak_limit = std::max(1, w->window);
  w->consecutive_failures++;
  w->window = std::max(1, w->window - 1);
  if (w->probing || w->consecutive_failures >= w->streak_limit) {
    // A whole window (or the probe) failed: leave the site alone for a while.
    w->backoff_ms = w->backoff_ms == 0
                        ? cfg.site_backoff_initial * 1000LL
                        : std::min<int64_t>(w->backoff_ms * 2, cfg.site_backoff_max * 1000LL);
    w->dead_until_ms = now_ms + w->backoff_ms;
    w->probing = false;
    w->consecutive_failures = 0;
    return true;
  }
  return false;
}

int AllowedConnections(int64_t now_ms, SiteWindow* w) {
  if (w->dead_until_ms != 0) {
    if (now_ms < w->dead_until_ms) return 0;
    w->dead_until_ms = 0;
    w->probing = true;  // one probe connection
  }
  return w->probing ? 1 : w->window;
}

ReplyClass Classify(int code) {
  if (code >= 200 && code < 300) return ReplyClass::kSuccess;
  if (code >= 500 && code < 600) return ReplyClass::kPermanent;
  return ReplyClass::kTransient;  // 4xx, and anything malformed
}

}  // namespace mxr::delivery
