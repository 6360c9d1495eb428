// The operations of EventLoop (event_loop.h) on both backends: multishot
// accept, connect, multishot recv running out of buffers, one-shot polls,
// cancellation, completions never delivered inside the starting call; and
// the automatic fallback to epoll when io_uring_setup is refused (a child
// process under a seccomp filter, as Docker's default profile does).
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <vector>

#include "common/event_loop.h"
#include "gtest/gtest.h"

namespace mxr {
namespace {

struct Recorded {
  int res;
  uint32_t flags;
};

// An IoOp that records its completions.
struct RecOp : IoOp {
  std::vector<Recorded> got;
  bool* inside = nullptr;  // set while the test is inside the starting call
  BufferRing* ring = nullptr;
  bool ran_inside = false;
  RecOp() {
    fn = [](IoOp* op, const Completion* c) {
      auto* self = static_cast<RecOp*>(op);
      self->got.push_back({c->res, c->flags});
      if (self->inside && *self->inside) self->ran_inside = true;
    };
  }
};

class EventLoopOps : public ::testing::TestWithParam<LoopBackend> {
 protected:
  void SetUp() override {
    auto l = EventLoop::Create(256, GetParam());
    ASSERT_TRUE(l.ok()) << l.status();
    loop_ = std::move(*l);
    ASSERT_EQ(loop_->backend(), GetParam());
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
  }
  int Track(int fd) {
    fds_.push_back(fd);
    return fd;
  }
  // A listening socket on 127.0.0.1, its address in addr_.
  int Listener() {
    int fd = Track(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    addr_ = {};
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_), 0);
    socklen_t len = sizeof addr_;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr_), &len), 0);
    EXPECT_EQ(::listen(fd, 16), 0);
    return fd;
  }
  bool RunUntil(const std::function<bool()>& done) { return loop_->RunUntil(done, 5000); }
  std::unique_ptr<EventLoop> loop_;
  std::vector<int> fds_;
  sockaddr_in addr_{};
};

TEST_P(EventLoopOps, MultishotAcceptConnectAndCancel) {
  int lfd = Listener();
  RecOp acc, c1, c2, cancel;
  loop_->Accept(lfd, &acc);
  int s1 = Track(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int s2 = Track(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  loop_->Connect(s1, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_, &c1);
  loop_->Connect(s2, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_, &c2);
  ASSERT_TRUE(RunUntil([&] { return acc.got.size() == 2 && c1.got.size() == 1 && c2.got.size() == 1; }));
  EXPECT_EQ(c1.got[0].res, 0);
  EXPECT_EQ(c2.got[0].res, 0);
  for (auto& a : acc.got) {
    ASSERT_GE(a.res, 0);
    Track(a.res);
    EXPECT_TRUE(a.flags & IORING_CQE_F_MORE) << "a multishot accept goes on";
  }
  loop_->Cancel(&acc, &cancel);
  ASSERT_TRUE(RunUntil([&] { return acc.got.size() == 3 && cancel.got.size() == 1; }));
  EXPECT_EQ(acc.got[2].res, -ECANCELED);
  EXPECT_FALSE(acc.got[2].flags & IORING_CQE_F_MORE);
  EXPECT_EQ(cancel.got[0].res, 0);
  // Nothing left to cancel: -ENOENT.
  RecOp again;
  loop_->Cancel(&acc, &again);
  ASSERT_TRUE(RunUntil([&] { return again.got.size() == 1; }));
  EXPECT_EQ(again.got[0].res, -ENOENT);
}

TEST_P(EventLoopOps, ConnectToAClosedPortFails) {
  int lfd = Listener();
  ::close(lfd);  // the port is free again: nobody listens
  fds_.clear();
  RecOp c;
  int s = Track(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  loop_->Connect(s, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_, &c);
  ASSERT_TRUE(RunUntil([&] { return c.got.size() == 1; }));
  EXPECT_EQ(c.got[0].res, -ECONNREFUSED);
}

TEST_P(EventLoopOps, MultishotRecvEndsWithEnobufsWhenNoBufferIsFree) {
  auto ring = loop_->AddBufferRing(3, 2, 16);
  ASSERT_TRUE(ring.ok()) << ring.status();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Track(sv[0]);
  Track(sv[1]);
  RecOp r;
  loop_->RecvMultishot(sv[0], *ring, &r);
  ASSERT_EQ(::send(sv[1], std::string(100, 'x').data(), 100, 0), 100);
  ASSERT_TRUE(RunUntil([&] { return !r.got.empty() && !(r.got.back().flags & IORING_CQE_F_MORE); }));
  ASSERT_EQ(r.got.size(), 3u);
  size_t bytes = 0;
  for (int i = 0; i < 2; ++i) {
    EXPECT_GT(r.got[i].res, 0);
    EXPECT_TRUE(r.got[i].flags & IORING_CQE_F_MORE);
    bytes += static_cast<size_t>(r.got[i].res);
  }
  EXPECT_EQ(bytes, 32u);
  EXPECT_NE(r.got[0].flags >> IORING_CQE_BUFFER_SHIFT, r.got[1].flags >> IORING_CQE_BUFFER_SHIFT);
  EXPECT_EQ(r.got[2].res, -ENOBUFS);
  // Buffers back: a new multishot recv reads on, then sees EOF.
  (*ring)->Recycle(static_cast<uint16_t>(r.got[0].flags >> IORING_CQE_BUFFER_SHIFT));
  (*ring)->Recycle(static_cast<uint16_t>(r.got[1].flags >> IORING_CQE_BUFFER_SHIFT));
  (*ring)->Commit();
  RecOp r2;
  r2.fn = [](IoOp* op, const Completion* c) {
    auto* self = static_cast<RecOp*>(op);
    self->got.push_back({c->res, c->flags});
    // Hand each buffer back at once (as IoStream does).
    if (c->res > 0) self->ring->Recycle(static_cast<uint16_t>(c->flags >> IORING_CQE_BUFFER_SHIFT));
  };
  r2.ring = *ring;
  ::shutdown(sv[1], SHUT_WR);
  // Re-armed after each -ENOBUFS (io_uring sees recycled buffers only after
  // the batch's Commit), as IoStream does, until EOF.
  size_t more = 0;
  for (int round = 0; round < 20; ++round) {
    size_t from = r2.got.size();
    loop_->RecvMultishot(sv[0], *ring, &r2);
    ASSERT_TRUE(RunUntil([&] { return r2.got.size() > from && !(r2.got.back().flags & IORING_CQE_F_MORE); }));
    for (size_t i = from; i < r2.got.size(); ++i) {
      if (r2.got[i].res > 0) more += static_cast<size_t>(r2.got[i].res);
    }
    if (r2.got.back().res != -ENOBUFS) break;
  }
  EXPECT_EQ(more, 68u);
  EXPECT_EQ(r2.got.back().res, 0) << "EOF ends it";
}

TEST_P(EventLoopOps, PollFiresOnceAndCanBeCancelled) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Track(sv[0]);
  Track(sv[1]);
  RecOp p;
  loop_->PollAdd(sv[0], POLLIN, &p);
  loop_->RunUntil([] { return false; }, 100);
  EXPECT_TRUE(p.got.empty()) << "nothing to read yet";
  ASSERT_EQ(::send(sv[1], "x", 1, 0), 1);
  ASSERT_TRUE(RunUntil([&] { return p.got.size() == 1; }));
  EXPECT_TRUE(p.got[0].res & POLLIN);
  loop_->RunUntil([] { return false; }, 50);
  EXPECT_EQ(p.got.size(), 1u) << "one-shot";
  RecOp w;  // POLLOUT on a writable socket: at once
  loop_->PollAdd(sv[0], POLLOUT, &w);
  ASSERT_TRUE(RunUntil([&] { return w.got.size() == 1; }));
  EXPECT_TRUE(w.got[0].res & POLLOUT);
  RecOp q;
  int sv2[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv2), 0);
  Track(sv2[0]);
  Track(sv2[1]);
  loop_->PollAdd(sv2[0], POLLIN, &q);
  loop_->Cancel(&q, nullptr);
  ASSERT_TRUE(RunUntil([&] { return q.got.size() == 1; }));
  EXPECT_EQ(q.got[0].res, -ECANCELED);
}

TEST_P(EventLoopOps, CompletionsNeverRunInsideTheStartingCall) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Track(sv[0]);
  Track(sv[1]);
  bool inside = false;
  RecOp s, r;
  s.inside = r.inside = &inside;
  char buf[8];
  inside = true;
  loop_->Send(sv[0], "hello", 5, &s);  // epoll sends at once; the result still waits
  loop_->Recv(sv[1], buf, sizeof buf, &r);
  loop_->Cancel(&r, nullptr);
  inside = false;
  ASSERT_TRUE(RunUntil([&] { return s.got.size() == 1 && r.got.size() == 1; }));
  EXPECT_FALSE(s.ran_inside);
  EXPECT_FALSE(r.ran_inside);
  EXPECT_EQ(s.got[0].res, 5);
}

INSTANTIATE_TEST_SUITE_P(Backend, EventLoopOps, ::testing::Values(LoopBackend::kIoUring, LoopBackend::kEpoll),
                         [](const ::testing::TestParamInfo<LoopBackend>& p) { return std::string(LoopBackendName(p.param)); });

// io_uring_setup refused with EPERM (what Docker's default seccomp profile
// and kernel.io_uring_disabled=2 do): kAuto runs on epoll, a forced
// io_uring fails with a message that says what to do. In a child process:
// a seccomp filter cannot be removed.
TEST(EventLoopFallback, AutoFallsBackToEpollWhenIoUringIsRefused) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(10);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(11);
    auto forced = EventLoop::Create(64, LoopBackend::kIoUring);
    if (forced.ok()) _exit(12);
    if (std::string(forced.status().message()).find("Operation not permitted") == std::string::npos) _exit(13);
    auto a = EventLoop::Create(64, LoopBackend::kAuto);
    if (!a.ok() || (*a)->backend() != LoopBackend::kEpoll) _exit(14);
    if (RunningLoopBackend() != LoopBackend::kEpoll) _exit(15);
    int ran = 0;
    (*a)->Post([&] { ++ran; });
    (*a)->RunUntil([&] { return ran == 1; }, 2000);
    _exit(ran == 1 ? 0 : 16);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10/11: seccomp not available, 12-16: see the child's checks";
}

}  // namespace
}  // namespace mxr
