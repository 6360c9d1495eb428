// Reads message bodies from the spool for the transactions that send them,
// within a memory budget (delivery.max_body_memory).
//
// A body read from the spool is shared by every transaction of its message
// under way (BodyRef) and freed when the last one ends, so bodies in memory
// are those being sent now, never those of messages waiting on a stalled
// site. A read that would take the loaded bytes past the budget waits until
// bytes come back, unless nothing is loaded at all (a body larger than the
// budget still goes, alone); reads start in the order they were asked for. With transactions streaming their body to
// the socket in chunks (OutboundConnection), memory is bounded by
//   intake budget (256 MiB) + max_body_memory + connections x ~2 x 256 KiB.
//
// A failed read (I/O error, missing or short body) is reported as an error:
// the caller defers the job with 4.3.0 and never sends a partial body.
//
// Delivery loop thread only (the reads run on the SpoolIo thread).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "common/event_loop.h"
#include "delivery/message.h"
#include "delivery/spool_io.h"
#include "delivery/stats.h"
#include "queue/spool.h"

namespace mxr::delivery {

class BodyLoader {
 public:
  using Ready = std::function<void(const absl::Status&, BodyRef)>;

  BodyLoader(queue::Spool* spool, SpoolIo* io, EventLoop* loop, DeliveryStats* stats, int64_t budget_bytes);
  ~BodyLoader();

  // Calls `ready` on the loop thread with the body of `m` (at once when it
  // is in memory), or with an error. `m` must stay active until then; if it
  // is no longer in `is_active` when the read returns, `ready` is dropped.
  void Get(ActiveMessage* m, Ready ready, std::function<ActiveMessage*(const queue::QueueId&)> find);

  int64_t loaded_bytes() const { return state_->loaded; }
  size_t waiting() const { return waiting_.size(); }

 private:
  struct State {  // shared with the bodies' deleters (they may outlive a Get)
    int64_t loaded = 0;
    int64_t budget = 0;
    DeliveryStats* stats = nullptr;
    BodyLoader* owner = nullptr;  // null once the loader is gone
  };
  struct Wait {
    queue::QueueId id;
    uint64_t bytes;
    std::function<ActiveMessage*(const queue::QueueId&)> find;
  };
  void Read(ActiveMessage* m, std::function<ActiveMessage*(const queue::QueueId&)> find);
  void Released();  // bytes came back: start waiting reads that now fit

  queue::Spool* spool_;
  SpoolIo* io_;
  EventLoop* loop_;
  std::shared_ptr<State> state_;
  std::deque<Wait> waiting_;
};

}  // namespace mxr::delivery
