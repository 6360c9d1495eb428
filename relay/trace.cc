#include "relay/trace.h"

#include <algorithm>
#include <chrono>

#include "common/strings.h"

namespace mxr::relay {

void TraceSubscriber::Push(std::string line) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    if (lines_.size() >= kMaxQueued) {
      dropped_++;
      return;
    }
    lines_.push_back(std::move(line));
  }
  cv_.notify_one();
}

std::optional<std::vector<std::string>> TraceSubscriber::Wait(int timeout_ms) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [this] { return closed_ || !lines_.empty(); });
  if (closed_ && lines_.empty()) return std::nullopt;
  std::vector<std::string> out;
  if (dropped_ > 0) {
    out.push_back(Cat("... ", dropped_, " lines dropped (the trace reader did not keep up)"));
    dropped_ = 0;
  }
  out.insert(out.end(), std::make_move_iterator(lines_.begin()), std::make_move_iterator(lines_.end()));
  lines_.clear();
  return out;
}

void TraceSubscriber::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

TraceHub::Sub TraceHub::Subscribe(TraceSubscriber::Filter f) {
  auto s = std::make_shared<TraceSubscriber>(std::move(f));
  std::lock_guard<std::mutex> l(mu_);
  subs_.push_back(s);
  count_.store(static_cast<int>(subs_.size()), std::memory_order_relaxed);
  return s;
}

void TraceHub::Unsubscribe(const Sub& s) {
  s->Close();
  std::lock_guard<std::mutex> l(mu_);
  std::erase(subs_, s);
  count_.store(static_cast<int>(subs_.size()), std::memory_order_relaxed);
}

std::vector<TraceHub::Sub> TraceHub::Match(std::string_view ip, std::string_view user) {
  std::vector<Sub> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& s : subs_) {
    const auto& f = s->filter();
    if (!f.ip.empty() && f.ip != ip) continue;
    if (!f.user.empty() && f.user != user) continue;
    out.push_back(s);
  }
  return out;
}

}  // namespace mxr::relay
