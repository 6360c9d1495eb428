// One event loop per thread, shared by everything that thread owns: ingress
// connections, outbound connections, DNS sockets. Two backends behind one
// interface:
//   - io_uring (IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN, no SQPOLL): the
//     operations below are SQEs, their results CQEs;
//   - epoll (level-triggered), for where io_uring is refused (Docker's and
//     containerd's default seccomp profiles, kernel.io_uring_disabled,
//     kernels without it): the same operations done with non-blocking
//     syscalls when the socket is ready, their results delivered the same way.
// The backend is chosen per process (SetLoopBackend; main reads the config's
// `event_loop` and MXRELAY_EVENT_LOOP): kAuto tries io_uring and falls back
// to epoll, logging `event=io_uring_unavailable` once.
//
// Operations: the caller owns an IoOp and keeps it alive until its last
// completion; `fn` runs for each completion, always from the loop's
// iteration (Run/RunUntil), never inside the call that started it. A
// completion carries io_uring's CQE fields (both backends fill them):
//   res    bytes, a new fd, a poll mask, 0, or -errno (-ECANCELED when cancelled);
//   flags  IORING_CQE_F_MORE while a multishot operation goes on (a
//          completion without it is the operation's last), and for
//          RecvMultishot the buffer id above IORING_CQE_BUFFER_SHIFT.
//
// Cross-thread work enters only through Post() (mutex'd queue + eventfd).
// Timers: RunAfter() (min-heap), checked each loop iteration; the loop sleeps
// until the next timer.
//
//   auto loop = EventLoop::Create(4096);   // on the thread that will Run() it
//   loop->Post([]{ ... });                 // from any thread
//   loop->Run();                           // until Stop()
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace mxr {

using Completion = io_uring_cqe;  // only res and flags are meaningful

struct IoOp {
  void (*fn)(IoOp* op, const Completion* c) = nullptr;
  int epoll_fd = -1;  // epoll backend: the fd it waits on (loop-owned bookkeeping)
};

enum class LoopBackend { kAuto, kIoUring, kEpoll };
const char* LoopBackendName(LoopBackend b);  // "auto", "io_uring", "epoll"
absl::StatusOr<LoopBackend> ParseLoopBackend(std::string_view name);
// What Create(entries) uses from now on (default kAuto). Call before the
// loops are created.
void SetLoopBackend(LoopBackend b);
// The backend the loops created so far run (kAuto before the first): for
// the mxrelay_event_loop_backend metric and the startup log.
LoopBackend RunningLoopBackend();

// Provided buffers for RecvMultishot: `count` (power of two) buffers of
// `size` bytes. io_uring: a registered buffer ring (liburing 2.3 has no
// io_uring_setup_buf_ring: we mmap and register it ourselves); epoll: a free
// list the loop takes from.
class BufferRing {
 public:
  ~BufferRing();
  char* buffer(uint16_t bid) const { return base_ + static_cast<size_t>(bid) * size_; }
  uint32_t buffer_size() const { return size_; }
  // Gives buffer `bid` back (io_uring: visible to the kernel after Commit()).
  void Recycle(uint16_t bid);
  void Commit();
  uint16_t group() const { return bgid_; }

 private:
  friend class UringLoop;
  friend class EpollLoop;
  io_uring_buf_ring* ring_ = nullptr;  // io_uring only
  size_t ring_bytes_ = 0;
  char* base_ = nullptr;
  size_t base_bytes_ = 0;
  uint32_t count_ = 0, size_ = 0;
  uint16_t bgid_ = 0;
  int pending_ = 0;
  std::vector<uint16_t> free_;  // epoll only
};

class EventLoop {
 public:
  // With the process's backend (SetLoopBackend), or the one given.
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(unsigned sq_entries);
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(unsigned sq_entries, LoopBackend backend);
  virtual ~EventLoop();

  LoopBackend backend() const { return backend_; }

  // ---- operations on non-blocking sockets (loop thread only)
  // Multishot accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): res = the new fd.
  virtual void Accept(int fd, IoOp* op) = 0;
  // One recv into buf: res = bytes (0 at EOF) or -errno.
  virtual void Recv(int fd, void* buf, size_t len, IoOp* op) = 0;
  // Multishot recv into `ring`'s buffers: the buffer id is in flags; the
  // receiver hands it back with Recycle(). Ends with -ENOBUFS when no
  // buffer is free, at EOF (0), an error, or a cancel.
  virtual void RecvMultishot(int fd, BufferRing* ring, IoOp* op) = 0;
  // send(MSG_NOSIGNAL) of buf (kept alive by the caller): res = bytes sent
  // (possibly fewer than len) or -errno.
  virtual void Send(int fd, const void* buf, size_t len, IoOp* op) = 0;
  // connect(): res = 0 or -errno. `addr` is read before this returns.
  virtual void Connect(int fd, const sockaddr* addr, socklen_t len, IoOp* op) = 0;
  // One-shot poll for POLLIN/POLLOUT: res = the events that happened.
  virtual void PollAdd(int fd, unsigned poll_mask, IoOp* op) = 0;
  // Cancels `target` (an operation in flight): it completes with -ECANCELED
  // unless it completed already. `op` (may be null) gets 0, or -ENOENT when
  // there was nothing to cancel.
  virtual void Cancel(IoOp* target, IoOp* op) = 0;
  // Registers provided buffers for RecvMultishot (count a power of two).
  virtual absl::StatusOr<BufferRing*> AddBufferRing(uint16_t group, uint32_t count, uint32_t size) = 0;

  // ---- work and time
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
    uint64_t cqes = 0;     // completions delivered
    uint64_t submits = 0;  // io_uring_submit / epoll_wait calls
    uint64_t wakeups = 0;  // Post() wakeups
  };
  const Stats& stats() const { return stats_; }

 protected:
  explicit EventLoop(LoopBackend b) : backend_(b) {}
  absl::Status InitCommon();  // the wakeup eventfd, the clock
  // One wait for completions (at most max_wait_ms), delivering them; the
  // base then runs after_batch_, posted work and timers.
  virtual void Wait(int64_t max_wait_ms) = 0;
  void WakeRead();  // drains the eventfd (epoll); stats
  static int64_t MonoMs();

  int wake_fd_ = -1;
  int64_t now_ms_ = 0;
  Stats stats_;

 private:
  void Iterate(int64_t max_wait_ms);
  void RunPosted();
  void RunTimers();

  LoopBackend backend_;
  std::thread::id owner_;
  std::atomic<bool> stop_{false};
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
};

// Backends (event_loop_uring.cc, event_loop_epoll.cc); use EventLoop::Create.
absl::StatusOr<std::unique_ptr<EventLoop>> CreateUringLoop(unsigned sq_entries);
absl::StatusOr<std::unique_ptr<EventLoop>> CreateEpollLoop();

}  // namespace mxr
