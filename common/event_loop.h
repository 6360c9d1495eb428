// One io_uring per thread (IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN, no
// SQPOLL), shared by everything that thread owns: ingress connections,
// outbound connections, DNS sockets.
//
// Completions: user_data points at an IoOp; its `fn` runs for each CQE.
// Owners keep an IoOp alive until its last CQE (no IORING_CQE_F_MORE).
//
// Cross-thread work enters only through Post() (mutex'd queue + eventfd).
// Timers: RunAfter() (min-heap), checked each loop iteration; the loop sleeps
// in io_uring_submit_and_wait_timeout until the next timer.
//
//   auto loop = EventLoop::Create(4096);   // on the thread that will Run() it
//   loop->Post([]{ ... });                 // from any thread
//   loop->Run();                           // until Stop()
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace mxr {

struct IoOp {
  void (*fn)(IoOp* op, const io_uring_cqe* cqe) = nullptr;
};

// A provided-buffer ring (liburing 2.3 has no io_uring_setup_buf_ring: we
// mmap and register it ourselves).
class BufferRing {
 public:
  ~BufferRing();
  char* buffer(uint16_t bid) const { return base_ + static_cast<size_t>(bid) * size_; }
  uint32_t buffer_size() const { return size_; }
  // Gives buffer `bid` back to the kernel; visible after Commit().
  void Recycle(uint16_t bid);
  void Commit();
  uint16_t group() const { return bgid_; }

 private:
  friend class EventLoop;
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  char* base_ = nullptr;
  size_t base_bytes_ = 0;
  uint32_t count_ = 0, size_ = 0;
  uint16_t bgid_ = 0;
  int pending_ = 0;
};

class EventLoop {
 public:
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(unsigned sq_entries);
  ~EventLoop();

  // A free SQE; submits the pending ones first if the SQ is full.
  io_uring_sqe* GetSqe();
  // Registers a provided-buffer ring of `count` (power of two) buffers.
  absl::StatusOr<BufferRing*> AddBufferRing(uint16_t group, uint32_t count, uint32_t size);

  // Runs fn on the loop thread. Thread-safe.
  void Post(absl::AnyInvocable<void() &&> fn);
  // Runs fn on the loop thread after `ms`. Loop thread only.
  void RunAfter(int64_t ms, absl::AnyInvocable<void() &&> fn);
  // Called on the loop thread every `period_ms` (coarse ticks for timeouts).
  void SetTicker(int64_t period_ms, std::function<void()> fn);
  // Called on the loop thread after each batch of completions.
  void SetAfterBatch(std::function<void()> fn) { after_batch_ = std::move(fn); }

  void Run();
  void Stop();  // thread-safe
  // Runs until done() (checked after each batch, at least every 10 ms) or
  // max_ms passed; returns done(). For tests and tools driving a loop step
  // by step on their own thread.
  bool RunUntil(const std::function<bool()>& done, int64_t max_ms);
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  int64_t now_ms() const { return now_ms_; }  // monotonic, refreshed per iteration
  bool InLoopThread() const { return std::this_thread::get_id() == owner_; }

  struct Stats {
    uint64_t cqes = 0;
    uint64_t submits = 0;
    uint64_t wakeups = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  EventLoop() = default;
  void Iterate(int64_t max_wait_ms);  // one wait for completions, then timers and posted work
  void ArmWake();
  void RunPosted();
  void RunTimers();
  static int64_t MonoMs();

  io_uring ring_{};
  bool ring_ok_ = false;
  std::thread::id owner_;
  std::atomic<bool> stop_{false};
  int64_t now_ms_ = 0;
  Stats stats_;

  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  struct WakeOp : IoOp {
    EventLoop* loop = nullptr;
  } wake_op_;
  std::atomic<bool> wake_pending_{false};
  std::mutex mu_;
  std::vector<absl::AnyInvocable<void() &&>> posted_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::AnyInvocable<void() &&>> running_;

  struct Timer {
    int64_t at;
    uint64_t seq;
    mutable absl::AnyInvocable<void() &&> fn;
    bool operator>(const Timer& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t timer_seq_ = 0;
  int64_t tick_period_ms_ = 0;
  int64_t next_tick_ = 0;
  std::function<void()> ticker_;
  std::function<void()> after_batch_;
  std::vector<std::unique_ptr<BufferRing>> buf_rings_;
};

}  // namespace mxr
