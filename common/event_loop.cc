#include "common/event_loop.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/strings.h"

namespace mxr {

BufferRing::~BufferRing() {
  if (ring_) munmap(ring_, ring_bytes_);
  if (base_) munmap(base_, base_bytes_);
}

void BufferRing::Recycle(uint16_t bid) {
  io_uring_buf_ring_add(ring_, buffer(bid), size_, bid, io_uring_buf_ring_mask(count_), pending_);
  ++pending_;
}

void BufferRing::Commit() {
  if (pending_ == 0) return;
  io_uring_buf_ring_advance(ring_, pending_);
  pending_ = 0;
}

int64_t EventLoop::MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(unsigned sq_entries) {
  std::unique_ptr<EventLoop> l(new EventLoop());
  l->owner_ = std::this_thread::get_id();
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
            IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = sq_entries * 8;
  int r = io_uring_queue_init_params(sq_entries, &l->ring_, &p);
  if (r == -EINVAL) {  // older kernel: no DEFER_TASKRUN / SINGLE_ISSUER
    std::memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = sq_entries * 8;
    r = io_uring_queue_init_params(sq_entries, &l->ring_, &p);
  }
  if (r < 0) {
    return absl::InternalError(Cat("io_uring_queue_init: ", strerror(-r),
                                   r == -EPERM || r == -ENOSYS
                                       ? " (io_uring blocked: container seccomp profile or "
                                         "kernel.io_uring_disabled? see docs)"
                                       : ""));
  }
  l->ring_ok_ = true;
  l->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->wake_fd_ < 0) return absl::InternalError(Cat("eventfd: ", strerror(errno)));
  l->wake_op_.loop = l.get();
  l->wake_op_.fn = [](IoOp* op, const io_uring_cqe* cqe) {
    EventLoop* self = static_cast<WakeOp*>(op)->loop;
    self->stats_.wakeups++;
    self->ArmWake();
  };
  l->ArmWake();
  l->now_ms_ = MonoMs();
  return l;
}

EventLoop::~EventLoop() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

io_uring_sqe* EventLoop::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    stats_.submits++;
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;  // non-null: the SQ was just emptied
}

absl::StatusOr<BufferRing*> EventLoop::AddBufferRing(uint16_t group, uint32_t count,
                                                     uint32_t size) {
  auto br = std::make_unique<BufferRing>();
  br->count_ = count;
  br->size_ = size;
  br->bgid_ = group;
  br->ring_bytes_ = count * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, br->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                   -1, 0);
  if (mem == MAP_FAILED) return absl::InternalError("mmap buffer ring failed");
  br->ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br->ring_);
  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof reg);
  reg.ring_addr = reinterpret_cast<uint64_t>(br->ring_);
  reg.ring_entries = count;
  reg.bgid = group;
  int r = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (r < 0) return absl::InternalError(Cat("io_uring_register_buf_ring: ", strerror(-r)));
  br->base_bytes_ = static_cast<size_t>(count) * size;
  mem = mmap(nullptr, br->base_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return absl::InternalError("mmap buffers failed");
  br->base_ = static_cast<char*>(mem);
  for (uint32_t i = 0; i < count; ++i) br->Recycle(static_cast<uint16_t>(i));
  br->Commit();
  buf_rings_.push_back(std::move(br));
  return buf_rings_.back().get();
}

void EventLoop::ArmWake() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data(sqe, &wake_op_);
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
  __kernel_timespec ts{wait_ms / 1000, (wait_ms % 1000) * 1'000'000};
  io_uring_cqe* cqe = nullptr;
  // Always a timeout: a zero one when a timer is already due. (A null one
  // would wait for a completion however long that takes, leaving a due
  // timer, e.g. a RunAfter(0), waiting on unrelated I/O.)
  int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  stats_.submits++;
  (void)r;  // -ETIME / -EINTR: fall through to timers
  now_ms_ = MonoMs();
  unsigned head, n = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++n;
    IoOp* op = reinterpret_cast<IoOp*>(io_uring_cqe_get_data(cqe));
    if (op != nullptr && op->fn != nullptr) op->fn(op, cqe);
  }
  io_uring_cq_advance(&ring_, n);
  stats_.cqes += n;
  for (auto& br : buf_rings_) br->Commit();
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
