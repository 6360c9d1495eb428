// What the delivery engine publishes for the exporter (metrics/ includes
// only this header, never the engine). Written by the delivery thread,
// read by the exporter's HTTP threads: relaxed atomics for counters and
// gauges, one mutex-guarded snapshot per second for per-site figures.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/histogram.h"

namespace mxr::delivery {

// What one attempt did for one recipient (see disposition.h).
enum class Outcome : uint8_t { kDelivered = 0, kDeferred = 1, kBounced = 2, kExpired = 3 };
inline constexpr size_t kOutcomeCount = 4;
inline constexpr std::array<Outcome, kOutcomeCount> kAllOutcomes = {
    Outcome::kDelivered, Outcome::kDeferred, Outcome::kBounced, Outcome::kExpired};
// "delivered", "deferred", "bounced", "expired" (metrics labels, event log).
std::string_view OutcomeName(Outcome o);

// Recipient attempts counted per outcome.
struct OutcomeCounts {
  std::array<uint64_t, kOutcomeCount> n{};
  uint64_t& operator[](Outcome o) { return n[static_cast<size_t>(o)]; }
  uint64_t operator[](Outcome o) const { return n[static_cast<size_t>(o)]; }
};

// Figures of one site label (or of `other`) for the per-site metrics.
struct SiteFigures {
  std::string label;
  OutcomeCounts attempts;
  int64_t connections = 0;
  int64_t queued_jobs = 0;
  bool backed_off = false;
};

// Bounce categories (delivery/classify.h; the same names in the same order,
// checked there): a bounded metric label.
inline constexpr std::array<std::string_view, 11> kFailureCategoryNames = {
    "invalid_recipient", "mailbox_full", "message_too_large", "spam_reputation", "policy", "rate_limited",
    "dns_failure",       "tls_failure",  "connection_failure", "content_rejected", "other"};
// Automation actions (delivery/automation.h ActionKind order).
inline constexpr std::array<std::string_view, 4> kShapingActionNames = {"none", "suspend", "connection_limit",
                                                                        "message_rate"};

// One egress source (delivery/egress.h).
struct SourceFigures {
  std::string name;
  uint64_t assigned = 0;         // jobs given to it
  uint64_t warmup_overflow = 0;  // times it was skipped: warm-up cap reached
  int64_t warmup_day = 0;        // 0 = not warming up
  int64_t warmup_cap = -1;       // today's cap, -1 = none
  int64_t warmup_sent = 0;       // sent today
};

// One egress path with an automation action in force (admin listing).
struct PathAction {
  std::string source, site, rule, reason;
  int64_t suspended_s = 0;   // seconds left, 0 = not suspended
  int conn_limit = 0;        // with conn_limit_s
  int64_t conn_limit_s = 0;
  std::string rate;          // with rate_s
  int64_t rate_s = 0;
};

// What the engine thread publishes once a second for the exporter.
struct DeliverySnapshot {
  std::vector<SiteFigures> sites;  // labelled sites, then "other" last
  std::vector<SourceFigures> sources;
  std::vector<std::pair<std::string, uint64_t>> pools;  // name, jobs assigned
  std::vector<std::pair<std::string, int64_t>> rule_paths;  // shaping rule, open paths using it
  std::vector<PathAction> actions;  // paths under an automation action
  uint64_t dns_ok = 0, dns_nxdomain = 0, dns_nullmx = 0, dns_tempfail = 0, dns_cache_hits = 0;
  uint64_t dns_coalesced = 0;
  HistogramSnapshot dns_micros;    // lookups that went to the server
};

// Counters shared with the exporter (relaxed atomics), monotonic unless
// marked as a gauge.
struct DeliveryStats {
  std::array<std::atomic<uint64_t>, kOutcomeCount> attempts{};  // recipients, by Outcome
  std::atomic<uint64_t> messages_completed{0};    // deleted from the spool
  std::atomic<uint64_t> dsns_queued{0};
  // RFC 3461 (issue 24): notices generated because NOTIFY asked and the next
  // hop could not carry it, and failure DSNs NOTIFY suppressed.
  std::atomic<uint64_t> dsn_ext_success{0};
  std::atomic<uint64_t> dsn_ext_delay{0};
  std::atomic<uint64_t> dsn_ext_failure_suppressed{0};
  // MTA-STS (issue 24): sessions under a policy by mode and outcome (their
  // TLS-RPT counts), and jobs deferred because no MX matched an enforce policy.
  std::atomic<uint64_t> sts_enforce_ok{0};
  std::atomic<uint64_t> sts_enforce_failed{0};
  std::atomic<uint64_t> sts_testing_ok{0};
  std::atomic<uint64_t> sts_testing_failed{0};
  std::atomic<uint64_t> sts_mx_mismatch{0};
  // TLS-RPT reports handed over (queued to mailto:, POSTed 2xx), failed, and
  // policy domains skipped for want of a TLSRPTv1 record.
  std::atomic<uint64_t> tls_rpt_sent{0};
  std::atomic<uint64_t> tls_rpt_failed{0};
  std::atomic<uint64_t> tls_rpt_no_rua{0};
  std::atomic<uint64_t> connections_opened{0};
  std::atomic<uint64_t> connection_failures{0};   // failed or ended by an error
  std::atomic<uint64_t> connections_ok{0};        // at close: reached a usable session
  std::atomic<uint64_t> connections_failed{0};    // at close: never did
  std::atomic<int64_t> connections_active{0};     // gauge
  std::atomic<uint64_t> site_backoffs{0};         // times a site entered backoff
  std::atomic<int64_t> sites_backed_off{0};       // gauge
  std::atomic<int64_t> messages_active{0};        // gauge: loaded, being worked on
  std::atomic<int64_t> messages_scheduled{0};     // gauge: waiting in the schedule
  // gauge: scheduled for a later time (after a deferral or a hold): what
  // `mxrelay queue summary` calls deferred. Refreshed every tick.
  std::atomic<int64_t> messages_deferred{0};
  std::atomic<int64_t> oldest_message_us{0};      // gauge: id time of the oldest queued message, 0 = none
  std::atomic<uint64_t> body_read_failures{0};    // bodies that could not be read (jobs deferred 4.3.0)
  std::atomic<int64_t> body_bytes_loaded{0};      // gauge: bodies read from the spool, held for transactions
  std::atomic<uint64_t> body_waits{0};            // transactions that waited for the body memory budget
  Histogram delivery_latency_us{buckets::QueueLatencyUs()};  // acceptance -> delivered
  // Failed recipient attempts (deferred, bounced, expired) by category.
  std::array<std::atomic<uint64_t>, kFailureCategoryNames.size()> failures_by_category{};
  std::array<std::atomic<uint64_t>, kShapingActionNames.size()> shaping_actions{};  // automation, by action
  std::atomic<int64_t> paths_suspended{0};        // gauge: egress paths suspended by automation
  std::atomic<int64_t> longest_suspension_s{0};   // gauge: age of the oldest suspension in force

  void CountFailure(size_t category) {
    if (category < failures_by_category.size()) failures_by_category[category].fetch_add(1, std::memory_order_relaxed);
  }
  void CountShapingAction(size_t action) {
    if (action < shaping_actions.size()) shaping_actions[action].fetch_add(1, std::memory_order_relaxed);
  }

  void CountAttempt(Outcome o) { attempts[static_cast<size_t>(o)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t Attempts(Outcome o) const { return attempts[static_cast<size_t>(o)].load(std::memory_order_relaxed); }

  DeliverySnapshot Snapshot() const {
    std::lock_guard<std::mutex> l(snapshot_mu);
    return snapshot;
  }
  void Publish(DeliverySnapshot s) {
    std::lock_guard<std::mutex> l(snapshot_mu);
    snapshot = std::move(s);
  }

 private:
  mutable std::mutex snapshot_mu;
  DeliverySnapshot snapshot;
};

inline std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kDelivered: return "delivered";
    case Outcome::kDeferred: return "deferred";
    case Outcome::kBounced: return "bounced";
    case Outcome::kExpired: return "expired";
  }
  return "?";
}

}  // namespace mxr::delivery
