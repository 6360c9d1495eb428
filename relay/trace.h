// Live SMTP trace (`mxrelay trace --ip ADDR | --user NAME`): inbound
// sessions that match a subscriber's filter copy their conversation to it,
// redacted (AUTH payloads and message bodies never leave the session; only
// their sizes do). Subscribers come through the admin socket
// (main/admin_socket.h).
//
// Cost when nobody traces: one relaxed atomic load per session start and per
// successful AUTH. A session decides at its start (by client address) and
// after AUTH (by user) whether it is traced; a subscriber that arrives later
// sees the sessions that start (or log in) after it.
//
// Thread-safe: sessions on every ingress thread push, the admin socket's
// threads pop. A subscriber that does not keep up loses lines (counted and
// reported to it), never slows a session.
//
//   auto sub = hub.Subscribe({.ip = "203.0.113.7"});
//   while (auto lines = sub->Wait(1000)) print(*lines);
//   hub.Unsubscribe(sub);
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace mxr::relay {

class TraceSubscriber {
 public:
  struct Filter {
    std::string ip;    // client address; "" = any
    std::string user;  // authenticated user (as the users file writes it); "" = any
  };
  explicit TraceSubscriber(Filter f) : filter_(std::move(f)) {}

  const Filter& filter() const { return filter_; }
  // From a session: one line (no CRLF). Dropped (and counted) when the
  // subscriber is closed or kMaxQueued lines wait already.
  void Push(std::string line);
  // Waits up to `timeout_ms` for lines; returns what is queued (possibly
  // nothing after the timeout), or nullopt once closed and drained. A
  // "... N lines dropped" line reports losses.
  std::optional<std::vector<std::string>> Wait(int timeout_ms);
  void Close();

  static constexpr size_t kMaxQueued = 10000;

 private:
  const Filter filter_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> lines_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class TraceHub {
 public:
  using Sub = std::shared_ptr<TraceSubscriber>;
  Sub Subscribe(TraceSubscriber::Filter f);
  // Closes it; sessions that still hold it push into nothing.
  void Unsubscribe(const Sub& s);
  bool active() const { return count_.load(std::memory_order_relaxed) > 0; }
  // The subscribers whose filter matches a session from `ip` logged in as
  // `user` ("" before AUTH: then only filters without a user match).
  std::vector<Sub> Match(std::string_view ip, std::string_view user);
  // A number for each traced session, to tell interleaved sessions apart.
  uint64_t NextSessionNumber() { return next_session_.fetch_add(1, std::memory_order_relaxed) + 1; }

 private:
  std::atomic<int> count_{0};
  std::atomic<uint64_t> next_session_{0};
  std::mutex mu_;
  std::vector<Sub> subs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mxr::relay
