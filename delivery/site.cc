#include "delivery/site.h"

#include "common/check.h"
#include "delivery/message.h"

namespace mxr::delivery {

void ReadyQueue::Push(Job* j) {
  MXR_DCHECK(!j->queued, "a job on two ready queues");
  j->queued = true;
  auto& q = by_sender_[j->msg->meta.sender];
  if (q.empty()) rr_.push_back(j->msg->meta.sender);
  q.push_back(j);
  size_++;
}

Job* ReadyQueue::Pop() {
  while (!rr_.empty()) {
    std::string s = std::move(rr_.front());
    rr_.pop_front();
    auto it = by_sender_.find(s);
    if (it == by_sender_.end() || it->second.empty()) continue;
    Job* j = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) {
      by_sender_.erase(it);
    } else {
      rr_.push_back(std::move(s));  // the next sender's turn first
    }
    size_--;
    j->queued = false;
    return j;
  }
  MXR_DCHECK(size_ == 0, "ready queue count out of step");
  return nullptr;
}

Site::Site(std::string identity, std::string name, std::string label, SiteSettings settings)
    : identity_(std::move(identity)), name_(std::move(name)), label_(std::move(label)), settings_(std::move(settings)) {}

bool Site::Idle(int64_t now_ms, int64_t unused_ms) const {
  return ready.empty() && conns.empty() && window.dead_until_ms < now_ms && !overrides.Active(now_ms) &&
         now_ms - last_used_ms > unused_ms;
}

}  // namespace mxr::delivery
