// Delivery policy as pure functions of (attempts, ages, config, observed
// results): no clock, no I/O, tested as tables (policy_test.cc).
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"

namespace mxr::delivery {

// Delay before the next attempt after `attempts_made` attempts (>= 1):
// retry_initial * 2^(attempts_made-1), capped at retry_max, then jittered by
// +-10% with `jitter01` in [0, 1) so a burst of deferrals spreads out.
int64_t RetryDelayMs(const DeliveryConfig& cfg, uint32_t attempts_made, double jitter01);

// Whether a message received at `received_us` is past the maximum age.
bool Expired(const DeliveryConfig& cfg, int64_t received_us, int64_t now_us);

// Connection window of one site (Postfix qmgr-style feedback): start at
// initial_window, +1 per successful connection up to the maximum, shrink on a
// connection-level failure (-1); a whole window of consecutive failures marks the
// site dead for site_backoff (doubling up to site_backoff_max). After the
// backoff, one probe connection is allowed; its success revives the site.
struct SiteWindow {
  int window = 0;
  int consecutive_failures = 0;
  int streak_limit = 0;       // window when the current failure streak began
  int64_t dead_until_ms = 0;  // 0 = alive
  int64_t backoff_ms = 0;     // current dead-site backoff (0 = none yet)
  bool probing = false;       // dead period over; one probe connection allowed
};

void InitWindow(const DeliveryConfig& cfg, int max_connections, SiteWindow* w);
void OnConnectSuccess(int max_connections, SiteWindow* w);
// Returns true if the site has just been declared dead.
bool OnConnectFailure(const DeliveryConfig& cfg, int64_t now_ms, SiteWindow* w);
// How many connections the site may have open now.
int AllowedConnections(int64_t now_ms, SiteWindow* w);

// SMTP reply classes: only a 2xx is a success (a 3xx to MAIL, RCPT or the
// final dot is a protocol error, never a delivery), 5xx is permanent, and
// everything else (4xx, malformed, 0 = no reply) is transient.
enum class ReplyClass { kSuccess, kTransient, kPermanent };
ReplyClass Classify(int code);

}  // namespace mxr::delivery
