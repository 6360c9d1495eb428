// The epoll backend of EventLoop (event_loop.h), for where io_uring is
// refused. Level-triggered; per fd a short list of waiting operations. An
// operation is done with a non-blocking syscall when epoll says the socket
// is ready (sends and connects are tried at once); every result goes to the
// caller's IoOp as a completion with io_uring's fields, from Wait(), never
// inside the call that started the operation.
//
// Interest is added when an operation needs it and dropped lazily, when an
// event finds nobody waiting for it (a re-armed recv costs no epoll_ctl).
// When an fd had no waiter, its registration is re-synced with the kernel
// (MOD, else ADD): the fd may have been closed and its number reused since.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/event_loop.h"
#include "common/status.h"
#include "common/strings.h"

namespace mxr {

class EpollLoop final : public EventLoop {
 public:
  EpollLoop() : EventLoop(LoopBackend::kEpoll) {}
  ~EpollLoop() override {
    if (ep_ >= 0) ::close(ep_);
  }

  absl::Status Init() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return absl::InternalError(Cat("epoll_create1: ", strerror(errno)));
    MXR_RETURN_IF_ERROR(InitCommon());
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) {
      return absl::InternalError(Cat("epoll_ctl(eventfd): ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  void Accept(int fd, IoOp* op) override { AddWaiter(fd, Waiter{op, kAccept}); }
  void Recv(int fd, void* buf, size_t len, IoOp* op) override {
    Waiter w{op, kRecv};
    w.buf = buf;
    w.len = len;
    AddWaiter(fd, w);
  }
  void RecvMultishot(int fd, BufferRing* ring, IoOp* op) override {
    Waiter w{op, kRecvMulti};
    w.ring = ring;
    AddWaiter(fd, w);
  }
  void Send(int fd, const void* buf, size_t len, IoOp* op) override {
    ssize_t n = ::send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      done_.push_back(Done{op, n >= 0 ? static_cast<int32_t>(n) : -errno, 0});
      return;
    }
    Waiter w{op, kSend};
    w.buf = const_cast<void*>(buf);
    w.len = len;
    AddWaiter(fd, w);
  }
  void Connect(int fd, const sockaddr* addr, socklen_t len, IoOp* op) override {
    if (::connect(fd, addr, len) == 0) {
      done_.push_back(Done{op, 0, 0});
    } else if (errno == EINPROGRESS || errno == EINTR) {
      AddWaiter(fd, Waiter{op, kConnect});
    } else {
      done_.push_back(Done{op, -errno, 0});
    }
  }
  void PollAdd(int fd, unsigned poll_mask, IoOp* op) override {
    Waiter w{op, kPoll};
    w.poll_mask = poll_mask;
    AddWaiter(fd, w);
  }
  void Cancel(IoOp* target, IoOp* op) override {
    int fd = target->epoll_fd;
    if (fd >= 0 && static_cast<size_t>(fd) < fds_.size() && Remove(fd, target)) {
      done_.push_back(Done{target, -ECANCELED, 0});
      if (op) done_.push_back(Done{op, 0, 0});
    } else if (op) {
      done_.push_back(Done{op, -ENOENT, 0});
    }
  }

  absl::StatusOr<BufferRing*> AddBufferRing(uint16_t group, uint32_t count, uint32_t size) override {
    auto br = std::make_unique<BufferRing>();
    br->count_ = count;
    br->size_ = size;
    br->bgid_ = group;
    br->base_bytes_ = static_cast<size_t>(count) * size;
    void* mem = mmap(nullptr, br->base_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return absl::InternalError("mmap buffers failed");
    br->base_ = static_cast<char*>(mem);
    br->free_.reserve(count);
    for (uint32_t i = count; i > 0; --i) br->free_.push_back(static_cast<uint16_t>(i - 1));
    buf_rings_.push_back(std::move(br));
    return buf_rings_.back().get();
  }

 protected:
  void Wait(int64_t wait_ms) override {
    if (!done_.empty()) wait_ms = 0;
    int n = epoll_wait(ep_, events_, kMaxEvents, static_cast<int>(wait_ms));
    stats_.submits++;
    now_ms_ = MonoMs();
    DeliverDone();  // results of earlier calls first
    for (int i = 0; i < n; ++i) {
      int fd = events_[i].data.fd;
      if (fd == wake_fd_) {
        WakeRead();
      } else {
        Dispatch(fd, events_[i].events);
      }
    }
  }

 private:
  enum Kind : uint8_t { kAccept, kRecv, kRecvMulti, kSend, kConnect, kPoll };
  struct Waiter {
    IoOp* op;
    Kind kind;
    unsigned poll_mask = 0;
    void* buf = nullptr;
    size_t len = 0;
    BufferRing* ring = nullptr;
  };
  struct FdState {
    std::vector<Waiter> waiters;
    uint32_t in_kernel = 0;  // the interest registered (stale only while no waiter)
    bool added = false;
  };
  struct Done {
    IoOp* op;
    int32_t res;
    uint32_t flags;
  };
  static constexpr int kMaxEvents = 256;

  static uint32_t Wants(const Waiter& w) {
    switch (w.kind) {
      case kAccept:
      case kRecv:
      case kRecvMulti: return EPOLLIN;
      case kSend:
      case kConnect: return EPOLLOUT;
      case kPoll: return ((w.poll_mask & POLLIN) ? EPOLLIN : 0u) | ((w.poll_mask & POLLOUT) ? EPOLLOUT : 0u);
    }
    return 0;
  }

  uint32_t WantOf(const FdState& st) const {
    uint32_t want = 0;
    for (const auto& w : st.waiters) want |= Wants(w);
    return want;
  }

  void AddWaiter(int fd, Waiter w) {
    if (fd < 0) {
      done_.push_back(Done{w.op, -EBADF, 0});
      return;
    }
    if (static_cast<size_t>(fd) >= fds_.size()) fds_.resize(static_cast<size_t>(fd) + 64);
    FdState& st = fds_[fd];
    bool fresh = st.waiters.empty();
    w.op->epoll_fd = fd;
    st.waiters.push_back(w);
    uint32_t want = WantOf(st);
    // Re-armed from its own completion (a one-shot recv or send of a
    // stream): the fd is the same file (a stream closes its fd only after
    // its last completion, from a posted task), the kernel still has it.
    // Not for polls: c-ares closes and reopens sockets inside callbacks.
    bool same_file = w.op == completing_ && w.kind != kPoll && st.added;
    if (fresh && !same_file) {
      Ctl(fd, want);  // re-sync: the fd may be a new file since its last waiter
    } else if ((want & ~st.in_kernel) != 0) {
      Ctl(fd, st.in_kernel | want);
    }
  }

  // Sets the kernel's interest for fd (0: removed). On failure every waiter
  // of the fd completes with the error.
  void Ctl(int fd, uint32_t mask) {
    FdState& st = fds_[fd];
    if (mask == 0) {
      if (st.added) epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
      st.added = false;
      st.in_kernel = 0;
      return;
    }
    epoll_event ev{};
    ev.events = mask;
    ev.data.fd = fd;
    int r = epoll_ctl(ep_, st.added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (r < 0 && errno == ENOENT) {
      r = epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    } else if (r < 0 && errno == EEXIST) {
      r = epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev);
    }
    if (r < 0) {
      int e = errno;
      st.added = false;
      st.in_kernel = 0;
      for (auto& w : st.waiters) {
        w.op->epoll_fd = -1;
        done_.push_back(Done{w.op, -e, 0});
      }
      st.waiters.clear();
      return;
    }
    st.added = true;
    st.in_kernel = mask;
  }

  bool Remove(int fd, IoOp* op) {
    auto& ws = fds_[fd].waiters;
    for (size_t i = 0; i < ws.size(); ++i) {
      if (ws[i].op == op) {
        ws.erase(ws.begin() + static_cast<std::ptrdiff_t>(i));
        op->epoll_fd = -1;
        return true;
      }
    }
    return false;
  }

  const Waiter* Find(int fd, IoOp* op) const {
    if (static_cast<size_t>(fd) >= fds_.size()) return nullptr;
    for (const auto& w : fds_[fd].waiters) {
      if (w.op == op) return &w;
    }
    return nullptr;
  }

  void Complete(IoOp* op, int32_t res, uint32_t flags) {
    stats_.cqes++;
    if (op == nullptr || op->fn == nullptr) return;
    Completion c{};
    c.user_data = reinterpret_cast<uint64_t>(op);
    c.res = res;
    c.flags = flags;
    IoOp* outer = completing_;
    completing_ = op;
    op->fn(op, &c);
    completing_ = outer;
  }

  void DeliverDone() {
    if (done_.empty()) return;
    delivering_.swap(done_);
    for (const Done& d : delivering_) Complete(d.op, d.res, d.flags);
    delivering_.clear();
  }

  void Dispatch(int fd, uint32_t events) {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    // The waiters when the event came; each is looked up again before it is
    // served (a callback may cancel, add or complete others).
    IoOp* snap[8];
    size_t n = 0;
    for (const auto& w : fds_[fd].waiters) {
      if (n == 8) break;
      snap[n++] = w.op;
    }
    for (size_t i = 0; i < n; ++i) Serve(fd, snap[i], events);
    FdState& st = fds_[fd];
    uint32_t want = WantOf(st);
    // Lazy removal: the event found interest nobody has any more.
    if (st.added && st.in_kernel != want) Ctl(fd, want);
  }

  void Serve(int fd, IoOp* op, uint32_t events) {
    const Waiter* found = Find(fd, op);
    if (found == nullptr) return;
    Waiter w = *found;
    bool err = events & (EPOLLERR | EPOLLHUP);
    bool in = err || (events & EPOLLIN);
    bool out = err || (events & EPOLLOUT);
    switch (w.kind) {
      case kAccept:
        if (!in) return;
        for (int k = 0; k < 64; ++k) {
          int nfd = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (nfd >= 0) {
            Complete(op, nfd, IORING_CQE_F_MORE);
            if (Find(fd, op) == nullptr) return;
            continue;
          }
          if (errno == EAGAIN || errno == EWOULDBLOCK) return;
          if (errno == EINTR || errno == ECONNABORTED) continue;
          int e = errno;
          Remove(fd, op);
          return Complete(op, -e, 0);
        }
        return;
      case kRecv: {
        if (!in) return;
        ssize_t r = ::recv(fd, w.buf, w.len, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        int res = r >= 0 ? static_cast<int>(r) : -errno;
        Remove(fd, op);
        return Complete(op, res, 0);
      }
      case kRecvMulti:
        if (!in) return;
        for (int k = 0; k < 16; ++k) {
          BufferRing* ring = w.ring;
          if (ring->free_.empty()) {
            Remove(fd, op);
            return Complete(op, -ENOBUFS, 0);
          }
          uint16_t bid = ring->free_.back();
          ring->free_.pop_back();
          ssize_t r = ::recv(fd, ring->buffer(bid), ring->size_, MSG_DONTWAIT);
          if (r > 0) {
            Complete(op, static_cast<int32_t>(r),
                     IORING_CQE_F_MORE | (static_cast<uint32_t>(bid) << IORING_CQE_BUFFER_SHIFT));
            if (static_cast<size_t>(r) < ring->size_ || Find(fd, op) == nullptr) return;
            continue;
          }
          ring->free_.push_back(bid);
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
          if (r < 0 && errno == EINTR) continue;
          int res = r == 0 ? 0 : -errno;
          Remove(fd, op);
          return Complete(op, res, 0);
        }
        return;
      case kSend: {
        if (!out) return;
        ssize_t r = ::send(fd, w.buf, w.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        int res = r >= 0 ? static_cast<int>(r) : -errno;
        Remove(fd, op);
        return Complete(op, res, 0);
      }
      case kConnect: {
        if (!out) return;
        // The event may be for an earlier file under this fd number: ask now.
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, 0) <= 0) return;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        Remove(fd, op);
        return Complete(op, -soerr, 0);
      }
      case kPoll: {
        unsigned got = ((events & EPOLLIN) ? POLLIN : 0u) | ((events & EPOLLOUT) ? POLLOUT : 0u) |
                       ((events & EPOLLERR) ? POLLERR : 0u) | ((events & EPOLLHUP) ? POLLHUP : 0u);
        got &= w.poll_mask | POLLERR | POLLHUP;
        if (got == 0) return;
        Remove(fd, op);
        return Complete(op, static_cast<int32_t>(got), 0);
      }
    }
  }

  int ep_ = -1;
  epoll_event events_[kMaxEvents];
  std::vector<FdState> fds_;  // by fd number
  std::vector<Done> done_, delivering_;
  std::vector<std::unique_ptr<BufferRing>> buf_rings_;
  IoOp* completing_ = nullptr;  // whose completion callback runs now
};

absl::StatusOr<std::unique_ptr<EventLoop>> CreateEpollLoop() {
  auto l = std::make_unique<EpollLoop>();
  MXR_RETURN_IF_ERROR(l->Init());
  return std::unique_ptr<EventLoop>(std::move(l));
}

}  // namespace mxr
