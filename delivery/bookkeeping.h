// Bookkeeping: the end of a message's round (Postfix's qmgr_bounce/defer +
// the queue file update). For each recipient that was pending: the log
// line, the event-log record and the counters; then the DSN for what
// bounced, committed (synced) *before* the original's record is updated or
// deleted; then the update (unsynced, riding the next group commit) or the
// delete. A crash between two steps can only cause a redelivery or a second
// DSN, never a loss.
//
// Delivery loop thread only (the DSN's commit answers on the spool's commit
// thread and is posted back).
#pragma once

#include <functional>
#include <random>
#include <string>

#include "common/clock.h"
#include "common/config.h"
#include "common/event_loop.h"
#include "delivery/body_loader.h"
#include "delivery/classify.h"
#include "delivery/disposition.h"
#include "delivery/event_log.h"
#include "delivery/message.h"
#include "delivery/site_metrics.h"
#include "delivery/stats.h"
#include "queue/spool.h"

namespace mxr::delivery {

class Bookkeeping {
 public:
  struct Deps {
    const DeliveryConfig* cfg = nullptr;
    queue::Spool* spool = nullptr;
    EventLoop* loop = nullptr;
    EventLog* event_log = nullptr;
    DeliveryStats* stats = nullptr;
    SiteMetrics* site_metrics = nullptr;
    const Clock* clock = nullptr;
    queue::QueueIdGenerator* ids = nullptr;
    std::string hostname;
    BodyLoader* bodies = nullptr;
    const Classifier* classifier = nullptr;  // bounce categories; nullptr = none
    // The active message with this id, or nullptr once it is gone.
    std::function<ActiveMessage*(const queue::QueueId&)> find;
  };
  // What happens next to a message whose record was written.
  using Done = std::function<void(ActiveMessage* m, const NextStep& step)>;

  Bookkeeping(Deps deps, Done done);

  // m's round is over (every job has its results in m->outcomes). `done`
  // runs once its bookkeeping is queued for the spool (at once, or after the
  // DSN's commit); m stays owned by the caller until then.
  // REQUIRES: m->pending_jobs == 0.
  void Finish(ActiveMessage* m);

  // Delivery bookkeeping rides with the next group commit; if none comes
  // within this long, it is written alone (unsynced either way).
  static constexpr int64_t kFlushMs = 10;

 private:
  void Log(const ActiveMessage& m, const RcptDecision& d, std::string_view category);
  // The category of a failed attempt ("" for a delivery).
  std::string_view CategoryOf(const RcptDecision& d) const;
  void Record(ActiveMessage* m, bool bounce_committed);
  void ScheduleFlush();

  Deps deps_;
  Done done_;
  std::mt19937_64 rng_;
  bool flush_armed_ = false;
};

}  // namespace mxr::delivery
