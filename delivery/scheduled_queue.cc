#include "delivery/scheduled_queue.h"

#include "common/check.h"

namespace mxr::delivery {

bool ScheduledQueue::Add(int64_t when_us, const queue::QueueId& id) {
  if (!ids_.emplace(id, when_us).second) return false;
  heap_.push({when_us, id});
  if (Second(when_us) > boundary_s_) {
    future_[Second(when_us)]++;
    future_count_++;
  }
  MXR_DCHECK(heap_.size() >= ids_.size(), "scheduled ids and heap out of step");
  return true;
}

bool ScheduledQueue::Remove(const queue::QueueId& id) {
  auto it = ids_.find(id);
  if (it == ids_.end()) return false;
  int64_t s = Second(it->second);
  if (s > boundary_s_) {
    auto f = future_.find(s);
    if (f != future_.end()) {
      future_count_--;
      if (--f->second == 0) future_.erase(f);
    }
  }
  ids_.erase(it);
  DropStale();
  return true;
}

void ScheduledQueue::DropStale() const {
  while (!heap_.empty()) {
    auto it = ids_.find(heap_.top().second);
    if (it != ids_.end() && it->second == heap_.top().first) return;
    heap_.pop();
  }
}

void ScheduledQueue::Advance(int64_t now_us) {
  int64_t now_s = Second(now_us);
  if (now_s <= boundary_s_) return;
  boundary_s_ = now_s;
  while (!future_.empty() && future_.begin()->first <= now_s) {
    future_count_ -= future_.begin()->second;
    future_.erase(future_.begin());
  }
}

size_t ScheduledQueue::Waiting(int64_t now_us) {
  Advance(now_us);
  return future_count_;
}

std::optional<queue::QueueId> ScheduledQueue::PopDue(int64_t now_us) {
  Advance(now_us);  // what it pops is never counted as waiting
  DropStale();
  if (heap_.empty() || heap_.top().first > now_us) return std::nullopt;
  queue::QueueId id = heap_.top().second;
  heap_.pop();
  ids_.erase(id);
  DropStale();
  MXR_DCHECK(heap_.size() >= ids_.size(), "scheduled ids and heap out of step");
  return id;
}

std::optional<int64_t> ScheduledQueue::NextDue() const {
  DropStale();
  if (heap_.empty()) return std::nullopt;
  return heap_.top().first;
}

}  // namespace mxr::delivery
