// Bookkeeping of the oldest-message gauge (delivery engine, loop thread
// only; no I/O here).
//
// The engine asks the spool, on its I/O thread, for the smallest message id
// at or after Begin()'s answer (Spool::OldestFrom) and hands the result to
// OnAnswer(). Starting from the previous answer keeps each query a short seek
// instead of a walk over every deleted entry before it.
//
// Ids are taken at the end of DATA and committed a little later, so a message
// can be committed with an id below an earlier answer (or below the answer of
// the query in flight, whose iterator may not see it). The engine reports
// every committed id to Committed(): such an id lowers the next start and is
// counted in the answer of the query in flight.
//
//   OldestTracker t;
//   QueueId from = t.Begin();                      // then, on the I/O thread:
//   auto r = spool->OldestFrom(from);              // back on the loop:
//   r.ok() ? gauge = t.OnAnswer(*r) : t.OnFailure();
#pragma once

#include <optional>

#include "queue/types.h"

namespace mxr::delivery {

class OldestTracker {
 public:
  bool in_flight() const { return in_flight_; }

  // A query starts: where it must start.
  queue::QueueId Begin() {
    in_flight_ = true;
    low_.reset();
    return from_;
  }

  // A message was committed (any time, in flight or not).
  void Committed(const queue::QueueId& id) {
    if (id < from_) from_ = id;
    if (in_flight_ && (!low_ || id < *low_)) low_ = id;
  }

  // The answer to the query begun last: the smallest id at or after its
  // start, or nullopt when there was none. Returns the oldest id to report
  // (nullopt: the queue is empty).
  std::optional<queue::QueueId> OnAnswer(const std::optional<queue::QueueId>& answer) {
    in_flight_ = false;
    std::optional<queue::QueueId> oldest = answer;
    if (low_ && (!oldest || *low_ < *oldest)) oldest = low_;
    // The next query starts at the oldest (a commit that lowered from_
    // meanwhile is in low_, so the oldest is at or below it). With nothing
    // found and nothing committed meanwhile, from_ stays where it was.
    if (oldest) from_ = *oldest;
    low_.reset();
    return oldest;
  }

  // The query failed: the next one starts where it did (or lower).
  void OnFailure() {
    in_flight_ = false;
    low_.reset();
  }

 private:
  bool in_flight_ = false;
  queue::QueueId from_{};  // where the next query starts
  std::optional<queue::QueueId> low_;  // smallest id committed while it was in flight
};

}  // namespace mxr::delivery
