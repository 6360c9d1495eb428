// The delivery engine: takes committed messages from the spool and delivers
// them to the recipients' mail servers (or configured routes).
//
// The pipeline, one file per stage (all on one io_uring loop thread, plus a
// spool I/O thread for blocking RocksDB calls):
//   scheduled_queue   (next attempt, id), earliest first
//   message           the active message, its jobs (one per domain)
//   router            jobs -> site identity (destination + policy)
//   site              ready queue (round-robin across senders), window
//   outbound_connection  one SMTP session, one job at a time, body streamed
//   body_loader       bodies read when a connection is ready, memory-bounded
//   disposition       results -> delivered / deferred / bounced / expired
//   bookkeeping       DSN committed first, then update or delete
//   site_metrics      bounded per-site labels;  stats.h  what metrics/ reads
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
#include <unordered_map>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/config.h"
#include "delivery/holds.h"
#include "delivery/stats.h"
#include "queue/spool.h"

namespace mxr::delivery {

class EngineImpl;

class DeliveryEngine {
 public:
  struct Deps {
    const Config* config = nullptr;
    std::string hostname;
    queue::Spool* spool = nullptr;
    const Clock* clock = nullptr;
    queue::QueueIdGenerator* ids = nullptr;
    const Holds* holds = nullptr;  // admin suspensions and holds (may be null)
  };
  // Admin actions on messages (api/admin_api.h walks the spool and hands
  // them over in batches): made due at once; delete / bounce are applied
  // when the message is next activated (a message in a transaction now
  // finishes it first), with the record loaded afresh.
  enum class AdminAction { kRetry, kBounce, kDelete };
  explicit DeliveryEngine(Deps deps);
  ~DeliveryEngine();

  // Starts the delivery thread and rebuilds the schedule from the spool.
  absl::Status Start();
  // Drains, then stops: no new transaction starts, those in flight finish
  // and are recorded (up to delivery.drain_timeout); whatever is still in
  // flight then is abandoned (retried after restart). Jobs not yet sent are
  // rescheduled for right after the restart without an attempt charged.
  // Call before destroying the spool; destroy the engine after the spool.
  void Stop();
  // Starts the drain of Stop() now and returns (SIGTERM: delivery drains
  // while ingress does); Stop() then waits for it. Thread-safe.
  void BeginStop();
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
  // Thread-safe; `done(taken)` runs on the delivery thread. Without a
  // running engine `done` is never called (callers wait with a timeout).
  void Admin(std::vector<queue::QueueId> ids, AdminAction action, std::function<void(size_t)> done);
  // The site (its name, as in logs and metrics) of each domain routed
  // recently; `done` runs on the delivery thread.
  void DomainSites(std::function<void(std::unordered_map<std::string, std::string>)> done);

 private:
  Deps deps_;
  DeliveryStats stats_;
  std::unique_ptr<EngineImpl> impl_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stop_begun_{false};
};

}  // namespace mxr::delivery
