// EventLoop: what both backends share (posted work, timers, the wakeup
// eventfd, the run loop) and the choice of backend. The backends are in
// event_loop_uring.cc and event_loop_epoll.cc.
#include "common/event_loop.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr {
namespace {

std::atomic<LoopBackend> g_wanted{LoopBackend::kAuto};
std::atomic<LoopBackend> g_running{LoopBackend::kAuto};
std::atomic<bool> g_fallback_logged{false};

}  // namespace

const char* LoopBackendName(LoopBackend b) {
  switch (b) {
    case LoopBackend::kAuto: return "auto";
    case LoopBackend::kIoUring: return "io_uring";
    case LoopBackend::kEpoll: return "epoll";
  }
  return "auto";
}

absl::StatusOr<LoopBackend> ParseLoopBackend(std::string_view name) {
  if (name == "auto") return LoopBackend::kAuto;
  if (name == "io_uring") return LoopBackend::kIoUring;
  if (name == "epoll") return LoopBackend::kEpoll;
  return absl::InvalidArgumentError(Cat("event loop backend must be \"auto\", \"io_uring\" or \"epoll\", got \"",
                                        name, "\""));
}

void SetLoopBackend(LoopBackend b) { g_wanted.store(b); }
LoopBackend RunningLoopBackend() { return g_running.load(); }

// ------------------------------------------------------------ BufferRing

BufferRing::~BufferRing() {
  if (ring_) munmap(ring_, ring_bytes_);
  if (base_) munmap(base_, base_bytes_);
}

void BufferRing::Recycle(uint16_t bid) {
  if (ring_ == nullptr) {  // epoll: free at once
    free_.push_back(bid);
    return;
  }
  io_uring_buf_ring_add(ring_, buffer(bid), size_, bid, io_uring_buf_ring_mask(count_), pending_);
  ++pending_;
}

void BufferRing::Commit() {
  if (ring_ == nullptr || pending_ == 0) return;
  io_uring_buf_ring_advance(ring_, pending_);
  pending_ = 0;
}

// ------------------------------------------------------------- EventLoop

int64_t EventLoop::MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(unsigned sq_entries) {
  return Create(sq_entries, g_wanted.load());
}

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(unsigned sq_entries, LoopBackend backend) {
  absl::StatusOr<std::unique_ptr<EventLoop>> l;
  if (backend == LoopBackend::kEpoll) {
    l = CreateEpollLoop();
  } else {
    l = CreateUringLoop(sq_entries);
    if (!l.ok() && backend == LoopBackend::kAuto) {
      if (!g_fallback_logged.exchange(true)) {
        spdlog::warn("event=io_uring_unavailable error=\"{}\" backend=epoll hint=\"io_uring is refused here "
                     "(container seccomp profile, kernel.io_uring_disabled, or an old kernel); running on "
                     "epoll, see docs/OPERATIONS.md\"",
                     l.status().message());
      }
      l = CreateEpollLoop();
    }
  }
  if (l.ok()) {
    (*l)->owner_ = std::this_thread::get_id();
    g_running.store((*l)->backend());
  }
  return l;
}

absl::Status EventLoop::InitCommon() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return absl::InternalError(Cat("eventfd: ", strerror(errno)));
  now_ms_ = MonoMs();
  return absl::OkStatus();
}

EventLoop::~EventLoop() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

void EventLoop::WakeRead() {
  uint64_t v;
  ssize_t n = read(wake_fd_, &v, sizeof v);
  (void)n;  // EAGAIN: another read got it
  stats_.wakeups++;
}

void EventLoop::Post(absl::AnyInvocable<void() &&> fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    posted_.push_back(std::move(fn));
  }
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof one);
    (void)n;  // EAGAIN only if the counter is saturated: a wakeup is pending anyway
  }
}

void EventLoop::RunPosted() {
  wake_pending_.store(false, std::memory_order_release);
  {
    std::lock_guard<std::mutex> l(mu_);
    running_.swap(posted_);
  }
  for (auto& fn : running_) std::move(fn)();
  running_.clear();
}

void EventLoop::RunAfter(int64_t ms, absl::AnyInvocable<void() &&> fn) {
  timers_.push(Timer{now_ms_ + ms, timer_seq_++, std::move(fn)});
}

void EventLoop::SetTicker(int64_t period_ms, std::function<void()> fn) {
  tick_period_ms_ = period_ms;
  next_tick_ = now_ms_ + period_ms;
  ticker_ = std::move(fn);
}

void EventLoop::RunTimers() {
  while (!timers_.empty() && timers_.top().at <= now_ms_) {
    auto fn = std::move(timers_.top().fn);
    timers_.pop();
    std::move(fn)();
  }
  if (ticker_ && now_ms_ >= next_tick_) {
    next_tick_ = now_ms_ + tick_period_ms_;
    ticker_();
  }
}

void EventLoop::Stop() {
  stop_.store(true);
  Post([] {});
}

void EventLoop::Iterate(int64_t max_wait_ms) {
  int64_t wait_ms = max_wait_ms;
  if (!timers_.empty()) wait_ms = std::min(wait_ms, timers_.top().at - now_ms_);
  if (ticker_) wait_ms = std::min(wait_ms, next_tick_ - now_ms_);
  if (wait_ms < 0) wait_ms = 0;
  // Always a bounded wait: a zero one when a timer is already due (an
  // unbounded one would leave a due timer, e.g. a RunAfter(0), waiting on
  // unrelated I/O).
  Wait(wait_ms);
  if (after_batch_) after_batch_();
  RunPosted();
  RunTimers();
}

void EventLoop::Run() {
  owner_ = std::this_thread::get_id();
  while (!stop_.load(std::memory_order_relaxed)) Iterate(1000);
  RunPosted();
}

bool EventLoop::RunUntil(const std::function<bool()>& done, int64_t max_ms) {
  owner_ = std::this_thread::get_id();
  now_ms_ = MonoMs();
  int64_t deadline = now_ms_ + max_ms;
  while (!done() && now_ms_ < deadline) Iterate(std::min<int64_t>(10, deadline - now_ms_));
  return done();
}

}  // namespace mxr
