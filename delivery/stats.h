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

// What the engine thread publishes once a second for the exporter.
struct DeliverySnapshot {
  std::vector<SiteFigures> sites;  // labelled sites, then "other" last
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
