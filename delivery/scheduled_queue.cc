#include "delivery/scheduled_queue.h"

#include "common/check.h"

namespace mxr::delivery {

bool ScheduledQueue::Add(int64_t when_us, const queue::QueueId& id) {
  if (!ids_.insert(id).second) return false;
  heap_.push({when_us, id});
  MXR_DCHECK(heap_.size() == ids_.size(), "scheduled ids and heap out of step");
  return true;
}

std::optional<queue::QueueId> ScheduledQueue::PopDue(int64_t now_us) {
  if (heap_.empty() || heap_.top().first > now_us) return std::nullopt;
  queue::QueueId id = heap_.top().second;
  heap_.pop();
  ids_.erase(id);
  MXR_DCHECK(heap_.size() == ids_.size(), "scheduled ids and heap out of step");
  return id;
}

std::optional<int64_t> ScheduledQueue::NextDue() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.top().first;
}

}  // namespace mxr::delivery
