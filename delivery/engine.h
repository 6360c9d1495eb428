// The delivery engine: takes committed messages from the spool and delivers
// them to the recipients' mail servers (or configured routes).
//
// Data flow (all on one io_uring loop thread, plus a spool I/O thread for
// blocking RocksDB calls):
//   schedule heap (next attempt, id) --due--> load record --> group pending
//   recipients by domain --> route or MX lookup --> site (MX host set) ready
//   queue (round-robin between senders) --> site connection pool (adaptive
//   window, dead-site backoff) --> SmtpClient transaction --> per-recipient
//   results --> delivered / deferred (backoff) / bounced (DSN committed
//   before the original is updated or deleted).
//
// Bodies are read from the spool only when a connection is ready for them.
//
//   DeliveryEngine engine(deps);
//   spool->SetCommitListener([&](NewMessage& m) { engine.Enqueue(m); });
//   engine.Start();  ...  engine.Stop();
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/histogram.h"
#include "queue/spool.h"

namespace mxr::delivery {

// Figures of one site label (or of `other`) for the per-site metrics.
struct SiteFigures {
  std::string label;
  uint64_t attempts[4] = {0, 0, 0, 0};  // delivered, deferred, bounced, expired
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
  std::atomic<uint64_t> attempts_delivered{0};   // recipients
  std::atomic<uint64_t> attempts_deferred{0};
  std::atomic<uint64_t> attempts_bounced{0};
  std::atomic<uint64_t> attempts_expired{0};
  std::atomic<uint64_t> messages_completed{0};    // deleted from the spool
  std::atomic<uint64_t> dsns_queued{0};
  std::atomic<uint64_t> connections_opened{0};
  std::atomic<uint64_t> connection_failures{0};   // failed or ended by an error
  std::atomic<uint64_t> connections_ok{0};        // at close: reached a usable session
  std::atomic<uint64_t> connections_failed{0};    // at close: never did
  std::atomic<int64_t> connections_active{0};     // gauge
  std::atomic<uint64_t> site_backoffs{0};         // times a site entered backoff
  std::atomic<int64_t> sites_backed_off{0};       // gauge
  std::atomic<int64_t> messages_active{0};        // gauge: loaded, being worked on
  std::atomic<int64_t> messages_scheduled{0};     // gauge: waiting in the schedule
  std::atomic<int64_t> oldest_message_us{0};      // gauge: id time of the oldest queued message, 0 = none
  Histogram delivery_latency_us{buckets::QueueLatencyUs()};  // acceptance -> delivered

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

class EngineImpl;

class DeliveryEngine {
 public:
  struct Deps {
    const Config* config = nullptr;
    std::string hostname;
    queue::Spool* spool = nullptr;
    const Clock* clock = nullptr;
    queue::QueueIdGenerator* ids = nullptr;
  };
  explicit DeliveryEngine(Deps deps);
  ~DeliveryEngine();

  // Starts the delivery thread and rebuilds the schedule from the spool.
  absl::Status Start();
  // Stops at once; attempts in flight are abandoned (retried after restart).
  // Call before destroying the spool; destroy the engine after the spool.
  void Stop();
  // A message was committed: schedule it. A fresh message due now starts at
  // once with the record given here (no spool read); its body is kept in
  // memory too while the in-memory body budget allows. Thread-safe.
  // Takes the message's meta and (within the memory budget) its body: `msg`
  // is left moved-from.
  void Enqueue(queue::NewMessage& msg);
  // Reopens the event log (SIGHUP). Thread-safe.
  void ReopenEventLog();
  // Replaces the static routes (SIGHUP): they apply to routing decisions made
  // from now on; a site takes its new settings (port, TLS, AUTH, connection
  // limit) at its next transaction. Thread-safe.
  void SetRoutes(std::vector<RouteConfig> routes);
  const DeliveryStats& stats() const { return stats_; }

 private:
  Deps deps_;
  DeliveryStats stats_;
  std::unique_ptr<EngineImpl> impl_;
  std::thread thread_;
  std::atomic<bool> running_{false};
};

}  // namespace mxr::delivery
