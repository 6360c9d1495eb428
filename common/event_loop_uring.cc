// The io_uring backend of EventLoop (event_loop.h): each operation is one
// SQE whose user_data is the caller's IoOp; Wait() submits and reaps.
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include "common/event_loop.h"
#include "common/status.h"
#include "common/strings.h"

namespace mxr {

class UringLoop final : public EventLoop {
 public:
  UringLoop() : EventLoop(LoopBackend::kIoUring) {}
  ~UringLoop() override {
    buf_rings_.clear();
    if (ring_ok_) io_uring_queue_exit(&ring_);
  }

  absl::Status Init(unsigned sq_entries) {
    io_uring_params p;
    std::memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
              IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = sq_entries * 8;
    int r = io_uring_queue_init_params(sq_entries, &ring_, &p);
    if (r == -EINVAL) {  // older kernel: no DEFER_TASKRUN / SINGLE_ISSUER
      std::memset(&p, 0, sizeof p);
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = sq_entries * 8;
      r = io_uring_queue_init_params(sq_entries, &ring_, &p);
    }
    if (r < 0) {
      return absl::InternalError(Cat("io_uring_queue_init: ", strerror(-r),
                                     r == -EPERM || r == -ENOSYS
                                         ? " (io_uring blocked: container seccomp profile or "
                                           "kernel.io_uring_disabled? event_loop = auto or epoll runs "
                                           "without it; see docs/OPERATIONS.md)"
                                         : ""));
    }
    ring_ok_ = true;
    MXR_RETURN_IF_ERROR(InitCommon());
    wake_op_.loop = this;
    wake_op_.fn = [](IoOp* op, const Completion*) {
      UringLoop* self = static_cast<WakeOp*>(op)->loop;
      self->stats_.wakeups++;
      self->ArmWake();
    };
    ArmWake();
    return absl::OkStatus();
  }

  void Accept(int fd, IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, op);
  }
  void Recv(int fd, void* buf, size_t len, IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data(sqe, op);
  }
  void RecvMultishot(int fd, BufferRing* ring, IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = ring->group();
    io_uring_sqe_set_data(sqe, op);
  }
  void Send(int fd, const void* buf, size_t len, IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, op);
  }
  void Connect(int fd, const sockaddr* addr, socklen_t len, IoOp* op) override {
    // The kernel reads the address at submission: keep a copy until then.
    auto& a = connect_addrs_.emplace_back();
    std::memcpy(&a, addr, std::min<size_t>(len, sizeof a));
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&a), len);
    io_uring_sqe_set_data(sqe, op);
  }
  void PollAdd(int fd, unsigned poll_mask, IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_poll_add(sqe, fd, poll_mask);
    io_uring_sqe_set_data(sqe, op);
  }
  void Cancel(IoOp* target, IoOp* op) override {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(target), 0);
    io_uring_sqe_set_data(sqe, op);
  }

  absl::StatusOr<BufferRing*> AddBufferRing(uint16_t group, uint32_t count, uint32_t size) override {
    auto br = std::make_unique<BufferRing>();
    br->count_ = count;
    br->size_ = size;
    br->bgid_ = group;
    br->ring_bytes_ = count * sizeof(io_uring_buf);
    void* mem = mmap(nullptr, br->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
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

 protected:
  void Wait(int64_t wait_ms) override {
    __kernel_timespec ts{wait_ms / 1000, (wait_ms % 1000) * 1'000'000};
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    stats_.submits++;
    (void)r;  // -ETIME / -EINTR: fall through to timers
    connect_addrs_.clear();  // submitted: the kernel has read them
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
  }

 private:
  // A free SQE; submits the pending ones first if the SQ is full.
  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);
      stats_.submits++;
      connect_addrs_.clear();
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;  // non-null: the SQ was just emptied
  }

  void ArmWake() {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
    io_uring_sqe_set_data(sqe, &wake_op_);
  }

  io_uring ring_{};
  bool ring_ok_ = false;
  uint64_t wake_buf_ = 0;
  struct WakeOp : IoOp {
    UringLoop* loop = nullptr;
  } wake_op_;
  std::vector<std::unique_ptr<BufferRing>> buf_rings_;
  std::deque<sockaddr_storage> connect_addrs_;  // until submitted (stable addresses)
};

absl::StatusOr<std::unique_ptr<EventLoop>> CreateUringLoop(unsigned sq_entries) {
  auto l = std::make_unique<UringLoop>();
  MXR_RETURN_IF_ERROR(l->Init(sq_entries));
  return std::unique_ptr<EventLoop>(std::move(l));
}

}  // namespace mxr
