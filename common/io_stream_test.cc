#include "common/io_stream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mxr {
namespace {

// Records what a stream reports; optionally echoes or closes.
struct Recorder : IoStream::Owner {
  std::string got;
  std::vector<IoStream::End> ends;
  int sent_ok = 0, sent_err = 0, released = 0;
  bool in_call = false;           // set while the test calls into the stream
  bool released_inside_call = false;
  std::function<void()> on_release;
  void OnStreamData(std::string_view d) override { got.append(d); }
  void OnStreamEnd(IoStream::End why, int) override { ends.push_back(why); }
  void OnStreamSent(int res) override { (res >= 0 ? sent_ok : sent_err)++; }
  void OnStreamReleased(IoStream*) override {
    released++;
    released_inside_call |= in_call;
    if (on_release) on_release();
  }
};

// Every test runs on both backends (io_uring, epoll).
class IoStreamTest : public ::testing::TestWithParam<LoopBackend> {
 protected:
  void SetUp() override {
    auto l = EventLoop::Create(256, GetParam());
    ASSERT_TRUE(l.ok()) << l.status();
    loop_ = std::move(*l);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_), 0);
  }
  // Runs the loop until `done` or 5 s.
  void RunUntil(const std::function<bool()>& done) { loop_->RunUntil(done, 5000); }
  // Runs the loop for `ms` (a window in which something must not happen).
  void RunFor(int ms) { loop_->RunUntil([] { return false; }, ms); }
  std::unique_ptr<EventLoop> loop_;
  int fds_[2] = {-1, -1};
};

TEST_P(IoStreamTest, BytesBothWaysThenEofThenReleaseOnce) {
  Recorder ra, rb;
  auto a = std::make_unique<IoStream>(loop_.get(), &ra, fds_[0], IoStream::RecvMode::kOwnBuffer);
  auto b = std::make_unique<IoStream>(loop_.get(), &rb, fds_[1], IoStream::RecvMode::kOwnBuffer);
  a->SetWantRecv(true);
  b->SetWantRecv(true);
  std::string big(1 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  a->Write(big);            // one send in flight, the rest waits in the buffer
  a->Write(std::string("tail"));
  b->Write("hello");
  RunUntil([&] { return rb.got.size() == big.size() + 4 && ra.got == "hello"; });
  EXPECT_EQ(rb.got, big + "tail");
  EXPECT_EQ(ra.got, "hello");
  EXPECT_GE(ra.sent_ok, 1);
  EXPECT_EQ(a->pending(), 0u);
  b->Close();
  RunUntil([&] { return !ra.ends.empty() && rb.released == 1; });
  ASSERT_EQ(ra.ends.size(), 1u);
  EXPECT_EQ(ra.ends[0], IoStream::End::kPeerClosed);
  EXPECT_EQ(rb.released, 1);
  EXPECT_TRUE(rb.ends.empty()) << "no callbacks after Close()";
  ra.in_call = true;
  a->Close();
  a->Close();  // idempotent
  ra.in_call = false;
  RunUntil([&] { return ra.released == 1; });
  EXPECT_EQ(ra.released, 1);
  EXPECT_FALSE(ra.released_inside_call) << "release must come from a posted task";
}

TEST_P(IoStreamTest, AHoldKeepsAClosedStreamUnreleased) {
  Recorder r;
  Recorder peer;
  auto s = std::make_unique<IoStream>(loop_.get(), &r, fds_[0], IoStream::RecvMode::kOwnBuffer);
  auto p = std::make_unique<IoStream>(loop_.get(), &peer, fds_[1], IoStream::RecvMode::kOwnBuffer);
  s->SetWantRecv(true);
  s->Hold();
  s->Close();
  RunFor(300);  // nothing may release it
  EXPECT_EQ(r.released, 0);
  s->Release();
  RunUntil([&] { return r.released == 1; });
  EXPECT_EQ(r.released, 1);
  p->Close();
  RunUntil([&] { return peer.released == 1; });
}

TEST_P(IoStreamTest, PausedReceiveResumesWithWhatArrivedMeanwhile) {
  auto ring = loop_->AddBufferRing(7, 16, 4096);
  ASSERT_TRUE(ring.ok()) << ring.status();
  Recorder r, peer;
  auto s = std::make_unique<IoStream>(loop_.get(), &r, fds_[0], IoStream::RecvMode::kProvidedBuffers, *ring);
  auto p = std::make_unique<IoStream>(loop_.get(), &peer, fds_[1], IoStream::RecvMode::kOwnBuffer);
  s->SetWantRecv(true);
  p->Write("one");
  RunUntil([&] { return r.got == "one"; });
  s->SetWantRecv(false);  // backpressure: the multishot recv is cancelled
  RunUntil([&] { return !s->recv_armed(); });
  EXPECT_FALSE(s->recv_armed());
  p->Write("two");
  RunFor(300);
  EXPECT_EQ(r.got, "one") << "read while paused";
  s->SetWantRecv(true);
  RunUntil([&] { return r.got == "onetwo"; });
  EXPECT_EQ(r.got, "onetwo");
  s->Close();
  p->Close();
  RunUntil([&] { return r.released == 1 && peer.released == 1; });
}

TEST_P(IoStreamTest, NothingGoesOutInClearOnceTlsBegan) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(ctx, nullptr);
  Recorder r, peer;
  auto s = std::make_unique<IoStream>(loop_.get(), &r, fds_[0], IoStream::RecvMode::kOwnBuffer);
  auto p = std::make_unique<IoStream>(loop_.get(), &peer, fds_[1], IoStream::RecvMode::kOwnBuffer);
  p->SetWantRecv(true);
  EXPECT_TRUE(s->Write("220 in clear\r\n"));
  s->StartTls(std::make_unique<TlsEndpoint>(ctx));
  EXPECT_FALSE(s->Write("421 would leak\r\n"));  // handshake not done: dropped
  RunUntil([&] { return peer.got.size() >= 14; });
  RunFor(300);
  EXPECT_EQ(peer.got, "220 in clear\r\n");
  s->Close();
  p->Close();
  RunUntil([&] { return r.released == 1 && peer.released == 1; });
  SSL_CTX_free(ctx);
}

INSTANTIATE_TEST_SUITE_P(Backend, IoStreamTest, ::testing::Values(LoopBackend::kIoUring, LoopBackend::kEpoll),
                         [](const ::testing::TestParamInfo<LoopBackend>& p) {
                           return std::string(LoopBackendName(p.param));
                         });

}  // namespace
}  // namespace mxr
