#include "common/io_stream.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "common/check.h"

namespace mxr {

IoStream::IoStream(EventLoop* loop, Owner* owner, int fd, RecvMode mode, BufferRing* ring)
    : loop_(loop), owner_(owner), fd_(fd), mode_(mode), ring_(ring) {
  MXR_DCHECK(mode != RecvMode::kProvidedBuffers || ring != nullptr, "provided buffers without a ring");
  recv_op_.s = this;
  recv_op_.fn = [](IoOp* op, const Completion* cqe) { static_cast<Op*>(op)->s->OnRecv(cqe); };
  send_op_.s = this;
  send_op_.fn = [](IoOp* op, const Completion* cqe) { static_cast<Op*>(op)->s->OnSend(cqe); };
  connect_op_.s = this;
  connect_op_.fn = [](IoOp* op, const Completion* cqe) { static_cast<Op*>(op)->s->OnConnect(cqe); };
  cancel_op_.s = this;
  cancel_op_.fn = [](IoOp* op, const Completion*) {
    IoStream* s = static_cast<Op*>(op)->s;
    s->inflight_--;
    s->MaybeRelease();
  };
  if (mode_ == RecvMode::kOwnBuffer) buf_ = std::make_unique<char[]>(kRecvBuf);
}

IoStream::~IoStream() {
  // On the normal path nothing is in flight here; at shutdown the loop is
  // gone and whatever is left is dropped with it.
  MXR_DCHECK(!release_posted_ || inflight_ == 0, "a stream freed with operations in flight");
  if (fd_ >= 0) ::close(fd_);
}

void IoStream::Connect(const sockaddr* addr, socklen_t len) {
  loop_->Connect(fd_, addr, len, &connect_op_);
  inflight_++;
  connect_inflight_ = true;
}

void IoStream::OnConnect(const Completion* cqe) {
  inflight_--;
  connect_inflight_ = false;
  if (!closing_ && owner_) owner_->OnStreamConnected(cqe->res);
  MaybeRelease();
}

// ------------------------------------------------------------- receive

void IoStream::SetWantRecv(bool want) {
  want_recv_ = want;
  if (closing_) return;
  if (want && !recv_armed_ && !no_buffers_) {
    Arm();
  } else if (!want && recv_armed_ && !cancel_sent_ && mode_ == RecvMode::kProvidedBuffers) {
    loop_->Cancel(&recv_op_, &cancel_op_);
    inflight_++;
    cancel_sent_ = true;  // reset when the recv ends
  }
}

void IoStream::Arm() {
  if (mode_ == RecvMode::kProvidedBuffers) {
    loop_->RecvMultishot(fd_, ring_, &recv_op_);
  } else {
    loop_->Recv(fd_, buf_.get(), kRecvBuf, &recv_op_);
  }
  recv_armed_ = true;
  inflight_++;
}

// The hold taken at ENOBUFS lasts until this call, even if the stream closed
// meanwhile: whoever listed the stream for a re-arm still points at it.
void IoStream::RearmAfterNoBuffers() {
  if (!no_buffers_) return;
  no_buffers_ = false;
  if (!closing_ && want_recv_ && !recv_armed_) Arm();
  Release();  // the hold taken when the buffers ran out
}

void IoStream::OnRecv(const Completion* cqe) {
  bool ended = mode_ == RecvMode::kOwnBuffer || !(cqe->flags & IORING_CQE_F_MORE);
  if (ended) {
    recv_armed_ = false;
    // Whatever ended it (our cancel, ENOBUFS, EOF), a later pause needs a
    // new cancel: a stale flag here left reading on for good.
    cancel_sent_ = false;
    inflight_--;
  }
  int res = cqe->res;
  bool alive = !closing_ && owner_ != nullptr;
  if (res > 0) {
    if (mode_ == RecvMode::kProvidedBuffers) {
      uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      if (alive) HandleBytes(std::string_view(ring_->buffer(bid), static_cast<size_t>(res)));
      ring_->Recycle(bid);
    } else if (alive) {
      HandleBytes(std::string_view(buf_.get(), static_cast<size_t>(res)));
    }
  } else if (res == -ENOBUFS && mode_ == RecvMode::kProvidedBuffers) {
    if (alive && ended) {
      no_buffers_ = true;
      Hold();  // until RearmAfterNoBuffers()
      owner_->OnStreamNoBuffers();
    }
  } else if (res == 0 || res != -ECANCELED) {
    if (alive) owner_->OnStreamEnd(res == 0 ? End::kPeerClosed : End::kError, res);
  }
  // Re-arm a recv that ended while reading is wanted (a multishot that
  // stopped, our own pause cancelled meanwhile un-paused); not after EOF, an
  // error, or while the buffers are out.
  if (ended && !recv_armed_ && !closing_ && owner_ && want_recv_ && !no_buffers_ && (res > 0 || res == -ECANCELED)) {
    Arm();
  }
  MaybeRelease();
}

void IoStream::HandleBytes(std::string_view data) {
  if (!tls_) return owner_->OnStreamData(data);
  tls_->FeedCipher(data);
  if (!tls_->handshake_done()) {
    auto r = tls_->Handshake();
    if (r == TlsEndpoint::Result::kError) {
      tls_->TakeCipher(&out_);  // the alert, if any
      Flush();
      owner_->OnStreamTls(false, tls_->last_error());
      return;
    }
    if (r == TlsEndpoint::Result::kWantMore) {
      tls_->TakeCipher(&out_);
      Flush();
      return;
    }
    tls_->TakeCipher(&out_);  // the handshake's last flight (TLS 1.3 tickets)
    Flush();
    owner_->OnStreamTls(true, "");
    if (closing_ || !owner_) return;
  }
  plain_.clear();
  auto r = tls_->ReadPlain(&plain_);
  if (!plain_.empty()) owner_->OnStreamData(plain_);
  if (closing_ || !owner_) return;
  if (r == TlsEndpoint::Result::kError || r == TlsEndpoint::Result::kClosed) {
    owner_->OnStreamEnd(r == TlsEndpoint::Result::kClosed ? End::kTlsClosed : End::kTlsError, 0);
  } else if (tls_->has_cipher()) {
    tls_->TakeCipher(&out_);  // e.g. a key update answered
    Flush();
  }
}

// ---------------------------------------------------------------- send

bool IoStream::Write(std::string_view data) {
  if (closing_) return false;
  if (tls_) {
    // Nothing goes out in clear once TLS began (a reply during the
    // handshake, e.g. a timeout's 421, is dropped).
    if (!tls_->handshake_done()) return false;
    bool ok = tls_->WritePlain(data);
    tls_->TakeCipher(&out_);
    Flush();
    return ok;
  }
  out_.append(data);
  Flush();
  return true;
}

bool IoStream::Write(std::string&& data) {
  if (!tls_ && !closing_ && out_.empty()) {
    out_.swap(data);  // a large body piece is not copied once more
    Flush();
    return true;
  }
  return Write(std::string_view(data));
}

void IoStream::StartTls(std::unique_ptr<TlsEndpoint> tls, std::string_view received) {
  tls_ = std::move(tls);
  if (tls_->has_cipher()) {  // a client's ClientHello
    tls_->TakeCipher(&out_);
    Flush();
  }
  if (!received.empty() && !closing_ && owner_) HandleBytes(received);
}

void IoStream::ShutdownTls() {
  if (!tls_ || !tls_->handshake_done() || tls_closed_ || closing_) return;
  tls_closed_ = true;
  tls_->Shutdown();  // close_notify before the TCP close (RFC 8446 6.1)
  tls_->TakeCipher(&out_);
  Flush();
}

void IoStream::Flush() {
  if (closing_ || fd_ < 0) return;
  if (!send_inflight_ && sending_off_ >= sending_.size() && !out_.empty()) {
    sending_.clear();
    sending_off_ = 0;
    sending_.swap(out_);
  }
  if (!send_inflight_ && sending_off_ < sending_.size()) {
    loop_->Send(fd_, sending_.data() + sending_off_, sending_.size() - sending_off_, &send_op_);
    send_inflight_ = true;
    inflight_++;
  }
}

void IoStream::OnSend(const Completion* cqe) {
  inflight_--;
  send_inflight_ = false;
  if (cqe->res > 0) {
    sending_off_ += static_cast<size_t>(cqe->res);
    if (sending_off_ >= sending_.size()) {
      sending_.clear();
      sending_off_ = 0;
    }
  }
  if (!closing_ && owner_) {
    if (cqe->res >= 0) Flush();
    owner_->OnStreamSent(cqe->res);
  }
  MaybeRelease();
}

int IoStream::KernelUnsent() const {
  int unsent = 0;
  if (fd_ < 0 || ::ioctl(fd_, SIOCOUTQ, &unsent) != 0) return -1;
  return unsent;
}

// --------------------------------------------------------------- close

void IoStream::Close() {
  if (closing_) return;
  closing_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  if (connect_inflight_) {  // shutdown(2) does not end a connect in progress
    loop_->Cancel(&connect_op_, &cancel_op_);
    inflight_++;
  }
  if (recv_armed_ && !cancel_sent_) {
    loop_->Cancel(&recv_op_, &cancel_op_);
    inflight_++;
    cancel_sent_ = true;
  }
  MaybeRelease();
}

void IoStream::Release() {
  MXR_DCHECK(holds_ > 0, "a stream released more than held");
  holds_--;
  MaybeRelease();
}

void IoStream::MaybeRelease() {
  if (!closing_ || inflight_ > 0 || holds_ > 0 || release_posted_) return;
  release_posted_ = true;
  // Deferred: the caller may be deep inside the owner's own code.
  loop_->RunAfter(0, [this] {
    owner_->OnStreamReleased(this);  // may delete this: nothing after it
  });
}

}  // namespace mxr
