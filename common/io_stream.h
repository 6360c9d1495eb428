// One TCP byte stream on an event loop (io_uring or epoll), for both directions: the
// relay's inbound connections and the delivery engine's outbound ones.
//
// It owns the socket and does what both sides need the same way:
//   - receive: one recv at a time into its own buffer, or a multishot recv
//     into the loop's provided buffers (inbound); pausing and resuming it
//     (backpressure) and re-arming after the buffers ran out;
//   - send: everything written is appended to one output buffer, with at
//     most one send in flight (the next one takes all that piled up);
//   - TLS over memory BIOs (TlsEndpoint): once StartTls() is called, bytes
//     received are ciphertext and the owner gets plaintext; writes are
//     encrypted (a write before the handshake is done is dropped: nothing
//     may go out in clear once TLS began);
//   - closing: shutdown, cancel of the pending recv, and release only after
//     the last completion: OnStreamReleased() runs once, from a task posted
//     to the loop (never inside one of the owner's calls), and is where the
//     owner may delete itself and the stream. Hold()/Release() keep the
//     stream (and so its owner) alive across the owner's own asynchronous
//     work (a password check, a spool commit, a body read).
//   - an owner may hold several streams (outbound: the socket of a failed
//     MX address closes while the next one connects); each reports its own
//     release.
//
// Loop thread only.
//
//   auto s = std::make_unique<IoStream>(loop, this, fd, IoStream::RecvMode::kOwnBuffer);
//   s->Connect(addr, len);            // outbound; OnStreamConnected(res)
//   s->SetWantRecv(true);             // OnStreamData(bytes) ...
//   s->Write("EHLO x\r\n");           // OnStreamSent(res)
//   s->Close();                       // ... OnStreamReleased(s): delete
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/event_loop.h"
#include "common/tls_endpoint.h"

namespace mxr {

class IoStream {
 public:
  // Why the input ended (OnStreamEnd).
  enum class End {
    kPeerClosed,  // EOF
    kError,       // recv failed (res in OnStreamEnd)
    kTlsClosed,   // the peer's TLS close_notify
    kTlsError,    // a TLS record could not be read
  };

  class Owner {
   public:
    virtual ~Owner() = default;
    // Bytes received (plaintext once TLS is on). Not called after Close().
    virtual void OnStreamData(std::string_view data) = 0;
    // The input ended; `res` is the recv result for kError. Not after Close().
    virtual void OnStreamEnd(End why, int res) = 0;
    // A send completed (res = bytes, or -errno). Not after Close().
    virtual void OnStreamSent(int res) = 0;
    // The TLS handshake finished: ok, or failed with `error`.
    virtual void OnStreamTls(bool ok, const std::string& error) {}
    // Connect() finished (res = 0 or -errno).
    virtual void OnStreamConnected(int res) {}
    // Provided buffers ran out: the recv stopped; call RearmAfterNoBuffers()
    // once buffers were given back (after the loop's batch).
    virtual void OnStreamNoBuffers() {}
    // Closed, nothing in flight, nothing held: the owner may delete itself
    // and the stream now. Called once, from a task posted to the loop.
    virtual void OnStreamReleased(IoStream* s) = 0;
  };

  enum class RecvMode { kOwnBuffer, kProvidedBuffers };

  // Takes ownership of `fd` (non-blocking). `ring`: the provided buffers for
  // kProvidedBuffers.
  IoStream(EventLoop* loop, Owner* owner, int fd, RecvMode mode, BufferRing* ring = nullptr);
  ~IoStream();
  IoStream(const IoStream&) = delete;
  IoStream& operator=(const IoStream&) = delete;

  int fd() const { return fd_; }
  void Connect(const sockaddr* addr, socklen_t len);

  // Receive while wanted (and not closing). Turning it off cancels a
  // multishot recv; a single recv in flight just is not re-armed.
  void SetWantRecv(bool want);
  void RearmAfterNoBuffers();
  bool recv_armed() const { return recv_armed_; }

  // Appends to the output (encrypted once TLS is up) and sends. Returns
  // false if the bytes were dropped (TLS started, handshake not done) or
  // could not be encrypted.
  bool Write(std::string_view data);
  bool Write(std::string&& data);  // no copy when nothing else is waiting
  bool Write(const char* data) { return Write(std::string_view(data)); }
  size_t pending() const { return out_.size() + (sending_.size() - sending_off_); }
  bool send_inflight() const { return send_inflight_; }

  // From now on bytes are TLS records (the endpoint's role decides client
  // or server). Output queued before this call goes out in clear first.
  // `received`: bytes already received that belong to TLS (the owner looked
  // at them first); they are fed now, so the owner's callbacks (OnStreamTls
  // with a failure) may run before this returns.
  void StartTls(std::unique_ptr<TlsEndpoint> tls, std::string_view received = {});
  TlsEndpoint* tls() const { return tls_.get(); }
  bool tls_up() const { return tls_ && tls_->handshake_done(); }
  // Queues TLS close_notify (once) before a close.
  void ShutdownTls();

  // Ends the stream: shutdown(2), cancel the recv; released after the last
  // completion. Idempotent.
  void Close();
  bool closing() const { return closing_; }
  // The owner's own asynchronous work keeps the stream unreleased.
  void Hold() { holds_++; }
  void Release();

  // Unsent bytes the kernel still holds (SIOCOUTQ), -1 if unknown.
  int KernelUnsent() const;

 private:
  struct Op : IoOp {
    IoStream* s = nullptr;
  };
  static constexpr size_t kRecvBuf = 16384;

  void Arm();
  void Flush();
  void OnRecv(const Completion* cqe);
  void OnSend(const Completion* cqe);
  void OnConnect(const Completion* cqe);
  void HandleBytes(std::string_view data);
  void MaybeRelease();

  EventLoop* loop_;
  Owner* owner_;
  int fd_;
  RecvMode mode_;
  BufferRing* ring_;
  Op recv_op_, send_op_, connect_op_, cancel_op_;
  int inflight_ = 0;  // io_uring operations whose last completion is due
  int holds_ = 0;
  bool want_recv_ = false, recv_armed_ = false, cancel_sent_ = false, no_buffers_ = false;
  bool send_inflight_ = false, connect_inflight_ = false;
  bool closing_ = false, release_posted_ = false, tls_closed_ = false;
  std::unique_ptr<TlsEndpoint> tls_;
  std::string out_, sending_;
  size_t sending_off_ = 0;
  std::string plain_;  // scratch: decrypted input
  std::unique_ptr<char[]> buf_;  // kOwnBuffer
};

}  // namespace mxr
