// The scheduled queue: every message that waits for its next attempt, as
// (next attempt time, queue id), earliest first. Holds ids only: records
// and bodies stay in the spool until a message is due (a million deferred
// messages cost ~40 bytes each here). An id is in it at most once.
//
// Owned by the engine; delivery loop thread only.
//
//   ScheduledQueue q;
//   q.Add(when_us, id);
//   while (auto id = q.PopDue(now_us)) Activate(*id);
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "queue/types.h"

namespace mxr::delivery {

struct QueueIdHash {
  size_t operator()(const queue::QueueId& id) const {
    return std::hash<uint64_t>()(id.time_us * 1000003ULL ^ id.seq);
  }
};

class ScheduledQueue {
 public:
  // Adds `id` due at `when_us`; false (and nothing changes) if it is
  // already scheduled.
  bool Add(int64_t when_us, const queue::QueueId& id);
  // The earliest id due at or before `now_us`, removed; nullopt if none is due.
  std::optional<queue::QueueId> PopDue(int64_t now_us);
  // Takes `id` out (false if it was not scheduled): an admin action makes it
  // due at once (Remove + Add). Its heap entry is dropped lazily.
  bool Remove(const queue::QueueId& id);
  bool Contains(const queue::QueueId& id) const { return ids_.count(id) > 0; }
  size_t size() const { return ids_.size(); }
  bool empty() const { return ids_.empty(); }
  // When the earliest entry is due (nullopt when empty).
  std::optional<int64_t> NextDue() const;
  // Entries due after `now_us` (to the second): the messages waiting for a
  // retry time, which `mxrelay queue summary` calls deferred. Amortised
  // O(1): each second's count is dropped once, when that second passes.
  // `now_us` never goes back (an earlier value counts as the last one).
  size_t Waiting(int64_t now_us);

 private:
  static int64_t Second(int64_t us) { return us >= 0 ? us / 1'000'000 : -((-us + 999'999) / 1'000'000); }
  void Advance(int64_t now_us);

  using Entry = std::pair<int64_t, queue::QueueId>;
  // Entries whose id is not in ids_ with the same time were removed (lazy).
  void DropStale() const;
  mutable std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  std::unordered_map<queue::QueueId, int64_t, QueueIdHash> ids_;  // the live entries of heap_, id -> time
  // Entries in seconds after boundary_s_, by second (see Waiting()).
  std::map<int64_t, size_t> future_;
  size_t future_count_ = 0;
  int64_t boundary_s_ = std::numeric_limits<int64_t>::min();
};

}  // namespace mxr::delivery
