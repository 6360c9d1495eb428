#include "common/thread_name.h"
#include "relay/server.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <list>

#include "common/escape.h"
#include "common/event_loop.h"
#include "common/io_stream.h"
#include "common/strings.h"
#include "relay/proxy_protocol.h"
#include "relay/session.h"
#include "spdlog/spdlog.h"

namespace mxr::relay {
namespace {

constexpr size_t kMaxBuffered = 256 * 1024;  // pause reading (and processing) above this
// In DATA/BDAT the timeout restarts only after this many message bytes: a
// client trickling a byte now and then cannot hold a connection forever.
constexpr uint64_t kMinDataProgress = 1024;
constexpr uint16_t kBufGroup = 1;
constexpr uint32_t kBufCount = 1024;  // per thread
constexpr uint32_t kBufSize = 16384;

bool IsTrusted(const Config& cfg, const IpAddress& ip) {
  for (const auto& net : cfg.trusted_networks) {
    if (net.Contains(ip)) return true;
  }
  return false;
}

}  // namespace

class Connection;

// One event-loop thread.
class Worker {
 public:
  Worker(IngressServer* srv, int index, std::shared_ptr<TlsContext> tls)
      : srv_(srv), index_(index), tls_(std::move(tls)) {}
  ~Worker();

  // Runs on the worker thread: creates the ring, binds, then serves.
  void Main(std::promise<absl::Status>* started);
  void BeginShutdown();  // thread-safe
  // New connections use `t` from now on (SIGHUP certificate reload). Thread-safe.
  void SetTls(std::shared_ptr<TlsContext> t) {
    loop_->Post([this, t = std::move(t)]() mutable { tls_ = std::move(t); });
  }
  void ForceClose();     // thread-safe

  EventLoop* loop() { return loop_.get(); }
  IngressServer* server() { return srv_; }
  BufferRing* buffers() { return bufs_; }
  void Remove(Connection* c);
  void NeedRearm(Connection* c) { rearm_.push_back(c); }

 private:
  struct ListenerSlot : IoOp {
    Worker* w = nullptr;
    const ListenerConfig* cfg = nullptr;
    size_t index = 0;  // in the config's listener list
    SessionEnv env;
    int fd = -1;
    bool armed = false;
  };
  absl::Status Bind(ListenerSlot* l);
  void ArmAccept(ListenerSlot* l);
  void OnAccept(ListenerSlot* l, const Completion* cqe);
  void Tick();
  void Refuse(const ListenerSlot* l, int fd, const char* reply);

  IngressServer* srv_;
  int index_;
  std::unique_ptr<EventLoop> loop_;
  BufferRing* bufs_ = nullptr;
  std::vector<std::unique_ptr<ListenerSlot>> listeners_;
  std::list<std::unique_ptr<Connection>> conns_;
  std::shared_ptr<TlsContext> tls_;  // for new connections; loop thread only
  std::vector<Connection*> rearm_;
  bool shutting_down_ = false;
};

// One inbound connection: the SMTP session (session.h) over an IoStream
// (common/io_stream.h: the socket's io_uring operations and TLS, the same
// code as the delivery engine's outbound connections). This class adds the
// relay's backpressure, per-state timeouts and the session's asynchronous
// work (password checks, spool commits), each holding the stream.
class Connection final : public SessionHost, public IoStream::Owner {
 public:
  // `proxy`: the connection starts with a PROXY protocol header (the peer is
  // a proxy in proxy_from); the session starts once it named the client.
  Connection(Worker* w, const SessionEnv* env, std::shared_ptr<TlsContext> tls_ctx, int fd, IpAddress ip,
             bool trusted, bool implicit_tls, bool proxy = false)
      : w_(w),
        ip_(ip),
        proxy_wait_(proxy),
        ip_counted_(!proxy),
        implicit_tls_(implicit_tls),
        env_(env),
        session_(*env, this, ConnInfo{ip.ToString(), trusted}),
        stream_(std::make_unique<IoStream>(w->loop(), this, fd, IoStream::RecvMode::kProvidedBuffers,
                                           w->buffers())),
        tls_ctx_(std::move(tls_ctx)) {
    started_ms_ = w_->loop()->now_ms();
    progress_ms_ = started_ms_;
    if (proxy_wait_) {
      // Nothing is said before the header (OnProxyData).
    } else if (implicit_tls) {
      // TLS starts with the client's first byte if it is a TLS record (see
      // OnStreamData); the greeting comes after the handshake.
      sniffing_ = true;
    } else {
      session_.Start();
    }
  }

  void Begin() {
    Flush();
    UpdateReadInterest();
  }

  std::list<std::unique_ptr<Connection>>::iterator self;

  // SessionHost.
  void StartTls() override { start_tls_ = true; }
  void Close() override { close_after_flush_ = true; }
  // Every attempt needs a slot from the per-client limiter first (a blocked
  // client gets 421, one whose failures + checks in flight reach the limit
  // 454), also one the checker's cache could answer: a cache lookup is an
  // oracle too. A cache hit gives its slot back at once (one HMAC, on this
  // thread), so a bulk sender's many simultaneous logins are not limited; a
  // real check gives it back the moment its answer arrives (before the
  // failure delay). So simultaneous guessers from one client get at most
  // auth.max_failures_per_ip checks per window.
  void Authenticate(std::string user, std::string password) override {
    stream_->Hold();  // keeps us alive until the answer
    EventLoop* loop = w_->loop();
    IngressServer* srv = w_->server();
    auto answer_now = [this, loop](AuthVerdict v, std::string who = {}, int64_t blocked_s = 0) {
      // Never call back into the session from here.
      loop->Post([this, v, who = std::move(who), blocked_s]() mutable { AuthDone(v, std::move(who), blocked_s); });
    };
    int64_t blocked_until = 0;
    switch (srv->auth_limiter_.Begin(ip_, loop->now_ms(), &blocked_until)) {
      case AuthLimiter::Admit::kBlocked:
        WipeString(password);
        return answer_now(AuthVerdict::kBlocked, {}, (blocked_until - loop->now_ms() + 999) / 1000);
      case AuthLimiter::Admit::kBusy: {
        // The same login being checked for another connection (an
        // application opening many at once): wait for that answer instead
        // of 454. No slot taken, so nothing to give back; a failure is
        // delayed like any other.
        int delay = srv->deps_.config->auth.failure_delay_ms;
        if (srv->deps_.auth->JoinInFlight(user, password, [this, loop, delay](AuthAnswer a) {
              loop->Post([this, a = std::move(a), loop, delay]() mutable {
                w_->server()->stats_.auth_joined.fetch_add(1, std::memory_order_relaxed);
                AuthVerdict v = a.result == AuthResult::kBad           ? AuthVerdict::kBad
                                : a.result == AuthResult::kUnknownUser ? AuthVerdict::kUnknownUser
                                : a.result == AuthResult::kBusy        ? AuthVerdict::kBusy
                                                                       : AuthVerdict::kOk;
                if (a.failed() && delay > 0) {
                  loop->RunAfter(delay, [this, v] { AuthDone(v); });
                } else {
                  AuthDone(v, std::move(a.user));
                }
              });
            })) {
          return;
        }
        return answer_now(AuthVerdict::kBusy);
      }
      case AuthLimiter::Admit::kAllowed:
        break;
    }
    if (auto who = srv->deps_.auth->CachedOk(user, password)) {
      WipeString(password);
      srv->auth_limiter_.End(ip_, AuthLimiter::Outcome::kSuccess, loop->now_ms());
      return answer_now(AuthVerdict::kOk, std::move(*who));
    }
    int delay = srv->deps_.config->auth.failure_delay_ms;
    srv->deps_.auth->Verify(std::move(user), std::move(password), [this, loop, delay](AuthAnswer a) {
      loop->Post([this, a = std::move(a), loop, delay]() mutable {
        IngressServer* server = w_->server();
        auto& st = server->stats_;
        AuthResult r = a.result;
        if (r != AuthResult::kBusy && r != AuthResult::kOkCached) {
          st.auth_password_checks.fetch_add(1, std::memory_order_relaxed);
        }
        AuthLimiter::Outcome o = a.failed()              ? AuthLimiter::Outcome::kFailure
                                 : r == AuthResult::kBusy ? AuthLimiter::Outcome::kNotChecked
                                                          : AuthLimiter::Outcome::kSuccess;
        if (server->auth_limiter_.End(ip_, o, loop->now_ms())) {
          const auto& ac = server->deps_.config->auth;
          spdlog::warn("event=auth_ip_blocked ip={} failures={} seconds={} action=\"AUTH from this "
                       "address refused with 421 4.7.0 until then\"",
                       ip_.ToString(), ac.max_failures_per_ip, ac.ip_block_seconds);
        }
        AuthVerdict v = r == AuthResult::kBad           ? AuthVerdict::kBad
                        : r == AuthResult::kUnknownUser ? AuthVerdict::kUnknownUser
                        : r == AuthResult::kBusy        ? AuthVerdict::kBusy
                                                        : AuthVerdict::kOk;
        if (a.failed() && delay > 0) {
          loop->RunAfter(delay, [this, v] { AuthDone(v); });  // slow down guessing
        } else {
          AuthDone(v, std::move(a.user));
        }
      });
    });
    WipeString(password);  // moved from: a short one is still in the inline buffer
  }
  void Submit(queue::NewMessage msg) override {
    stream_->Hold();
    uint64_t bytes = msg.meta.body_size;
    EventLoop* loop = w_->loop();
    auto t0 = std::chrono::steady_clock::now();
    w_->server()->deps_.spool->Commit(std::move(msg), [this, loop, bytes, t0](absl::Status result) {
      // The answer crosses to the loop as a code and a copy of its text, not
      // as the Status: its reference-counted payload would be shared by the
      // committing thread (spool, DKIM signing) and the loop, and its count
      // lives in the uninstrumented libabsl (TSan reported a race there).
      loop->Post([this, code = result.code(), text = std::string(result.message()), bytes, t0] {
        absl::Status st(code, text);
        auto& stats = w_->server()->stats_;
        if (st.ok()) {
          stats.messages_accepted.fetch_add(1, std::memory_order_relaxed);
          stats.bytes_accepted.fetch_add(bytes, std::memory_order_relaxed);
          stats.message_size.Observe(bytes);
          stats.time_to_250_us.Observe(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
                  .count()));
        } else {
          stats.messages_spool_failed.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("event=spool_commit_failed ip={} error=\"{}\"", ip_.ToString(), st);
        }
        if (!closing_) {
          session_.OnCommitted(st);
          AfterSession();
        }
        stream_->Release();
      });
    });
  }
  bool SpoolAccepting() override { return w_->server()->deps_.spool->Healthy(); }

  enum class AuthVerdict { kOk, kBad, kUnknownUser, kBlocked, kBusy };
  // Answers an Authenticate(): on the loop, at the top of a callback. `user`:
  // the name as the users file writes it (kOk); `blocked_s`: how long a
  // block lasts (kBlocked).
  void AuthDone(AuthVerdict v, std::string user = {}, int64_t blocked_s = 0) {
    auto& st = w_->server()->stats_;
    switch (v) {
      case AuthVerdict::kOk: st.auth_success.fetch_add(1, std::memory_order_relaxed); break;
      case AuthVerdict::kBad:
      case AuthVerdict::kUnknownUser: st.auth_failure.fetch_add(1, std::memory_order_relaxed); break;
      case AuthVerdict::kBlocked: st.auth_blocked.fetch_add(1, std::memory_order_relaxed); break;
      case AuthVerdict::kBusy: st.auth_busy.fetch_add(1, std::memory_order_relaxed); break;
    }
    if (!closing_) {
      switch (v) {
        case AuthVerdict::kOk: session_.OnAuthResult(true, std::move(user)); break;
        case AuthVerdict::kBad: session_.OnAuthResult(false); break;
        case AuthVerdict::kUnknownUser:
          session_.OnAuthResult(false, {}, Session::AuthFailure::kUnknownUser);
          break;
        case AuthVerdict::kBlocked: session_.OnAuthBlocked(blocked_s); break;
        case AuthVerdict::kBusy: session_.OnAuthBusy(); break;
      }
      AfterSession();
    }
    stream_->Release();
  }

  // IoStream::Owner.
  void OnStreamData(std::string_view data) override {
    // Closing after a final reply (QUIT, a 421): what else arrives is not
    // read, and never reaches a session that was not started (an
    // implicit-TLS port whose client spoke plaintext).
    if (close_after_flush_) return;
    if (proxy_wait_) return OnProxyData(data);
    if (sniffing_) {
      sniffing_ = false;
      // 0x16: a TLS handshake record. Anything else is a client speaking
      // SMTP in clear (it sent EHLO without waiting for a greeting).
      if (static_cast<unsigned char>(data[0]) != 0x16) return PlainOnTlsPort("plaintext");
      // May call OnStreamTls(false) (and close) before it returns.
      stream_->StartTls(std::make_unique<TlsEndpoint>(tls_ctx_->get()), data);
      return AfterSession();
    }
    FeedSession(data);
    AfterSession();
  }

  // PROXY protocol: bytes until the header is whole; then the client it
  // names is who every limit, trusted_networks, log and Received: see. What
  // follows the header (SMTP, a ClientHello) goes on as if just received.
  void OnProxyData(std::string_view data) {
    proxy_buf_.append(data);
    ProxyParse p = ParseProxyHeader(proxy_buf_);
    if (p.status == ProxyParse::kNeedMore) return;
    IngressServer* srv = w_->server();
    auto& st = srv->stats_;
    if (p.status == ProxyParse::kError) return ProxyRefused(p.error, &st.proxy_malformed);
    proxy_wait_ = false;
    st.proxy_ok.fetch_add(1, std::memory_order_relaxed);
    std::string rest = proxy_buf_.substr(p.consumed);
    std::string().swap(proxy_buf_);
    IpAddress client = p.local ? ip_ : p.src;
    spdlog::debug("event=proxy_header peer={} client={} version={} local={}", ip_.ToString(), client.ToString(),
                  p.version, p.local);
    ip_ = client;
    started_ms_ = progress_ms_ = w_->loop()->now_ms();
    if (!srv->AcquireIp(client)) {
      st.connections_refused_per_ip.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("event=connection_refused reason=per_ip_limit ip={}", client.ToString());
      reason_ = "per_ip_limit";
      if (implicit_tls_) return Finalize();  // nothing in clear on an implicit-TLS port
      st.CountReply(ReplyCmd::kConnect, 421);
      stream_->Write("421 4.7.0 Too many connections from your address; try again later\r\n");
      close_after_flush_ = true;
      return Flush();
    }
    ip_counted_ = true;
    session_.SetClient(ConnInfo{client.ToString(), IsTrusted(*srv->deps_.config, client)});
    if (implicit_tls_) {
      sniffing_ = true;
      if (!rest.empty()) OnStreamData(rest);
      return;
    }
    session_.Start();
    if (!rest.empty()) FeedSession(rest);
    AfterSession();
  }

  // A PROXY protocol listener and no valid header: closed without a word
  // (the peer is a proxy, or someone pretending to be one).
  void ProxyRefused(const char* why, std::atomic<uint64_t>* counter) {
    counter->fetch_add(1, std::memory_order_relaxed);
    const ListenerConfig& l = *env_->listener;
    spdlog::warn("event=proxy_refused reason={} peer={} listener={} port={} bytes={}", why, ip_.ToString(), l.name,
                 l.port, proxy_buf_.size());
    reason_ = "proxy_refused";
    Finalize();
  }

  // An implicit-TLS port, and the client speaks (or waits for) plaintext
  // SMTP: it was set up for STARTTLS or no TLS. It reads our reply as a
  // greeting, so a 421 in clear tells its user what to change (nothing
  // secret is in it; a TLS client never gets here: it sends its ClientHello
  // at once).
  void PlainOnTlsPort(const char* client) {
    const ListenerConfig& l = *env_->listener;
    std::string starttls;
    for (const auto& o : w_->server()->deps_.config->listeners) {
      if (o.mode == ListenerMode::kStartTls) {
        starttls = Cat(o.port);
        break;
      }
    }
    std::string fix = starttls.empty() ? std::string("set the client to SSL/TLS (implicit TLS)")
                                       : Cat("use port ", starttls, " with STARTTLS, or set the client to SSL/TLS "
                                             "(implicit TLS)");
    spdlog::warn("event=plain_on_tls_port ip={} listener={} port={} client={} hint=\"client expects plaintext SMTP "
                 "(STARTTLS or no TLS) on an implicit-TLS port; {}\"",
                 ip_.ToString(), l.name, l.port, client, fix);
    w_->server()->stats_.CountReply(ReplyCmd::kConnect, 421);
    reason_ = "plain_on_tls_port";
    stream_->Write(Cat("421 4.7.0 ", w_->server()->deps_.hostname, " Port ", l.port,
                       " expects TLS from the first byte (implicit TLS, \"SSL\"); ", fix, "\r\n"));
    close_after_flush_ = true;
    Flush();
  }

  void OnStreamEnd(IoStream::End why, int res) override {
    if (closing_) return;
    if (proxy_wait_) {
      return ProxyRefused(proxy_buf_.empty() ? "no_header" : "incomplete_header", &w_->server()->stats_.proxy_no_header);
    }
    switch (why) {
      case IoStream::End::kPeerClosed:
      case IoStream::End::kError:
        if (reason_.empty()) reason_ = res == 0 ? "client_closed" : Cat("recv_error:", strerror(-res));
        return Finalize();
      case IoStream::End::kTlsClosed:
      case IoStream::End::kTlsError:
        if (reason_.empty()) reason_ = why == IoStream::End::kTlsClosed ? "client_closed" : "tls_error";
        close_after_flush_ = true;
        return AfterSession();
    }
  }

  void OnStreamTls(bool ok, const std::string& error) override {
    auto& st = w_->server()->stats_;
    if (!ok) {
      st.tls_handshakes_failed.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("event=tls_handshake_failed ip={} error=\"{}\"", ip_.ToString(), LogEscape(error));
      reason_ = "tls_handshake_failed";
      close_after_flush_ = true;  // after the alert
      return Flush();
    }
    st.tls_handshakes_ok.fetch_add(1, std::memory_order_relaxed);
    std::string v = stream_->tls()->version();
    if (v == "TLSv1.3") {
      st.tls_handshakes_tls13.fetch_add(1, std::memory_order_relaxed);
    } else if (v == "TLSv1.2") {
      st.tls_handshakes_tls12.fetch_add(1, std::memory_order_relaxed);
    }
    progress_ms_ = w_->loop()->now_ms();
    bool implicit = session_.mode() != Session::Mode::kTlsSwitch;
    session_.OnTlsEstablished(v, stream_->tls()->cipher());
    if (implicit) session_.Start();  // implicit TLS: the session starts now
    AfterSession();
  }

  void OnStreamNoBuffers() override {
    w_->server()->stats_.recv_enobufs.fetch_add(1, std::memory_order_relaxed);
    w_->NeedRearm(this);  // after this batch returned buffers
  }

  // After the loop's batch of completions gave buffers back.
  void Rearm() {
    stream_->RearmAfterNoBuffers();
    if (!closing_) UpdateReadInterest();
  }

  void OnStreamSent(int res) override {
    if (closing_) return;
    if (res < 0) {
      reason_ = Cat("send_error:", strerror(-res));
      return Finalize();
    }
    sent_ms_ = w_->loop()->now_ms();
    Flush();
    if (!closing_ && session_.input_buffered() > 0 && stream_->pending() < kMaxBuffered) {
      FeedSession(std::string_view());  // input held while the output was full
      Flush();
    }
    UpdateReadInterest();
  }

  void OnStreamReleased(IoStream*) override {
    w_->Remove(this);  // deletes *this (and the stream): the last thing done
  }

  // Timer tick: enforce the per-state timeout.
  void CheckTimeout(int64_t now) {
    if (closing_) return;
    if (proxy_wait_) {
      int proxy_s = w_->server()->deps_.config->timeouts.proxy_header;
      if (now - started_ms_ >= static_cast<int64_t>(proxy_s) * 1000) {
        ProxyRefused("timeout", &w_->server()->stats_.proxy_no_header);
      }
      return;
    }
    int wait_s = w_->server()->deps_.config->timeouts.implicit_tls_wait;
    if (sniffing_ && wait_s > 0 && now - started_ms_ >= static_cast<int64_t>(wait_s) * 1000) {
      sniffing_ = false;
      return PlainOnTlsPort("silent");
    }
    // A client that does not read what we send (or a 421 that can never
    // leave): give up after the command timeout, whatever the session waits for.
    int send_secs = w_->server()->deps_.config->timeouts.command;
    if (stream_->send_inflight() && now - sent_ms_ > static_cast<int64_t>(send_secs) * 1000) {
      reason_ = "send_timeout";
      return Finalize();
    }
    // Before the first byte on an implicit-TLS port the handshake timeout
    // applies too (nothing may be said in clear, not even a 421 timeout).
    bool handshaking = sniffing_ || (stream_->tls() && !stream_->tls_up());
    int secs = handshaking ? w_->server()->deps_.config->timeouts.tls_handshake : session_.TimeoutSeconds();
    if (secs > 0 && now - progress_ms_ > static_cast<int64_t>(secs) * 1000) {
      if (handshaking) {
        reason_ = "tls_handshake_timeout";
        return Finalize();
      }
      session_.OnTimeout();
      AfterSession();
    }
  }

  void OnShutdown() {
    if (closing_) return;
    if (proxy_wait_) {  // no client known yet: nothing to tell it
      reason_ = "shutdown";
      return Finalize();
    }
    session_.OnShutdown();
    AfterSession();
  }

  void ForceFinalize() {
    if (reason_.empty()) reason_ = "shutdown";
    Finalize();
  }

  void Finalize() {
    if (closing_) return;
    closing_ = true;
    if (reason_.empty()) reason_ = session_.close_reason().empty() ? "closed" : session_.close_reason();
    LogEnd();
    stream_->Close();
  }

  bool closing() const { return closing_; }
  const IpAddress& ip() const { return ip_; }
  // ip() holds a slot of the per-IP limit (not yet while a PROXY header is awaited).
  bool ip_counted() const { return ip_counted_; }

 private:
  // Into the session, or held in it while our output is full. In DATA/BDAT
  // the timeout restarts per kMinDataProgress bytes of message.
  void FeedSession(std::string_view data) {
    if (!data.empty() && stream_->pending() >= kMaxBuffered) {
      session_.Buffer(data);
      return;
    }
    bool in_data = session_.mode() == Session::Mode::kData || session_.mode() == Session::Mode::kBdat;
    uint64_t before = session_.summary().bytes;
    session_.Feed(data);
    if (in_data) {
      data_progress_ += session_.summary().bytes - before;
      if (data_progress_ >= kMinDataProgress) {
        progress_ms_ = w_->loop()->now_ms();
        data_progress_ = 0;
      }
    }
  }

  // After the session ran: send what it produced, switch to TLS if asked.
  void AfterSession() {
    Flush();
    UpdateReadInterest();
  }

  void Flush() {
    if (closing_) return;
    if (session_.has_output() && (sniffing_ || proxy_wait_)) {
      // Implicit TLS before the client's first byte: nothing the session
      // says (a shutdown 421) may go out in clear (RFC 8314 3.3).
      session_.TakeOutput();
    } else if (session_.has_output()) {
      progress_ms_ = w_->loop()->now_ms();
      std::string o = session_.TakeOutput();
      bool was_sending = stream_->send_inflight();
      // During a TLS handshake (implicit TLS, or right after STARTTLS) a
      // reply (timeout, shutdown) cannot be sent in clear: the stream drops it.
      if (!stream_->Write(std::move(o)) && stream_->tls_up()) close_after_flush_ = true;
      if (!was_sending && stream_->send_inflight()) sent_ms_ = w_->loop()->now_ms();
    }
    if (close_after_flush_) stream_->ShutdownTls();  // close_notify before the TCP close (RFC 8446 6.1)
    if (start_tls_) {
      start_tls_ = false;  // the 220 above went out in clear; what follows is TLS
      stream_->StartTls(std::make_unique<TlsEndpoint>(tls_ctx_->get()));
    }
    if (close_after_flush_ && stream_->pending() == 0) Finalize();
  }

  void UpdateReadInterest() {
    if (closing_ || close_after_flush_) return;
    stream_->SetWantRecv(session_.input_buffered() < kMaxBuffered && stream_->pending() < kMaxBuffered &&
                         session_.mode() != Session::Mode::kClosed);
  }

  void LogEnd() {
    session_.TraceEvent(Cat("session end: ", reason_));
    const auto& s = session_.summary();
    const ListenerConfig& l = *env_->listener;
    spdlog::info(
        "event=session_end ip={} listener={} port={} mode={} user={} tls={} messages={} recipients={} bytes={} "
        "rejected={} auth_failures={} reason={} duration_ms={}",
        ip_.ToString(), l.name, l.port, ListenerModeName(l.mode),
        session_.auth_user().empty() ? "-" : LogEscape(session_.auth_user()),
        stream_->tls_up() ? stream_->tls()->version() : "no", s.messages, s.recipients, s.bytes,
        s.rejected, s.auth_failures, reason_, w_->loop()->now_ms() - started_ms_);
  }

  Worker* w_;
  IpAddress ip_;  // the client: the socket's peer, or what a PROXY header said
  bool proxy_wait_ = false;  // a PROXY protocol header is still to come
  bool ip_counted_ = true;
  bool implicit_tls_ = false;
  std::string proxy_buf_;
  const SessionEnv* env_;
  Session session_;
  std::unique_ptr<IoStream> stream_;
  bool start_tls_ = false;
  bool sniffing_ = false;  // implicit TLS: no byte from the client yet
  bool close_after_flush_ = false;
  bool closing_ = false;
  std::string reason_;
  int64_t started_ms_ = 0;
  int64_t progress_ms_ = 0;
  int64_t sent_ms_ = 0;        // last send completion (or start from idle)
  uint64_t data_progress_ = 0;  // DATA/BDAT bytes since the timeout last restarted
  std::shared_ptr<TlsContext> tls_ctx_;  // the certificate of accept time (SIGHUP may replace it)
};

// ---------------------------------------------------------------- Worker

Worker::~Worker() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) ::close(l->fd);
  }
}

absl::Status Worker::Bind(ListenerSlot* l) {
  sockaddr_storage ss;
  auto len = MakeSockaddr(l->cfg->address, l->cfg->port, &ss);
  if (!len.ok()) return len.status();
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Cat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listener (no setsockopt
  // per connection).
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), *len) < 0) {
    int e = errno;
    ::close(fd);
    return absl::UnavailableError(Cat("listener ", l->cfg->name, ": cannot bind ", l->cfg->address,
                                      ":", l->cfg->port, ": ", strerror(e),
                                      e == EACCES ? " (ports below 1024 need root or "
                                                    "CAP_NET_BIND_SERVICE)"
                                                  : ""));
  }
  if (::listen(fd, 4096) < 0) {
    int e = errno;
    ::close(fd);
    return absl::InternalError(Cat("listen: ", strerror(e)));
  }
  l->fd = fd;
  return absl::OkStatus();
}

void Worker::ArmAccept(ListenerSlot* l) {
  loop_->Accept(l->fd, l);
  l->armed = true;
}

void Worker::Refuse(const ListenerSlot* l, int fd, const char* reply) {
  // On an implicit-TLS port nothing may be sent in clear: just close.
  if (l->cfg->mode != ListenerMode::kImplicitTls) {
    srv_->stats_.CountReply(ReplyCmd::kConnect, 421);
    ssize_t n = ::send(fd, reply, std::strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
  }
  ::close(fd);
}

void Worker::OnAccept(ListenerSlot* l, const Completion* cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) l->armed = false;
  int fd = cqe->res;
  if (fd < 0) {
    if (fd != -ECANCELED) {
      spdlog::warn("event=accept_error listener={} error=\"{}\"", l->cfg->name, strerror(-fd));
    }
  } else if (shutting_down_) {
    Refuse(l, fd, "421 4.3.2 Service shutting down; try again later\r\n");
  } else {
    sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    IpAddress ip;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
      ip = IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&peer));
    }
    auto& stats = srv_->stats_;
    const auto& lim = srv_->deps_.config->limits;
    bool proxy = l->cfg->proxy_protocol;
    bool proxy_ok = false;
    for (const auto& net : l->cfg->proxy_from) proxy_ok = proxy_ok || net.Contains(ip);
    if (proxy && !proxy_ok) {
      // Not one of our proxies: its header would be a spoofed client address.
      stats.proxy_untrusted_peer.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("event=proxy_refused reason=untrusted_peer peer={} listener={} port={}", ip.ToString(),
                   l->cfg->name, l->cfg->port);
      ::close(fd);
    } else if (stats.connections_current.load(std::memory_order_relaxed) >= lim.max_connections) {
      stats.connections_refused_global.fetch_add(1, std::memory_order_relaxed);
      Refuse(l, fd, "421 4.3.2 Too many connections; try again later\r\n");
    } else if (!proxy && !srv_->AcquireIp(ip)) {
      stats.connections_refused_per_ip.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("event=connection_refused reason=per_ip_limit ip={}", ip.ToString());
      Refuse(l, fd, "421 4.7.0 Too many connections from your address; try again later\r\n");
    } else {
      stats.connections_accepted.fetch_add(1, std::memory_order_relaxed);
      stats.accepted_by_listener[l->index].fetch_add(1, std::memory_order_relaxed);
      stats.connections_current.fetch_add(1, std::memory_order_relaxed);
      bool trusted = !proxy && IsTrusted(*srv_->deps_.config, ip);
      conns_.push_back(std::make_unique<Connection>(this, &l->env, tls_, fd, ip, trusted,
                                                    l->cfg->mode == ListenerMode::kImplicitTls, proxy));
      Connection* c = conns_.back().get();
      c->self = std::prev(conns_.end());
      c->Begin();
    }
  }
  if (!l->armed && !shutting_down_ && l->fd >= 0) ArmAccept(l);
}

void Worker::Remove(Connection* c) {
  if (c->ip_counted()) srv_->ReleaseIp(c->ip());
  srv_->stats_.connections_current.fetch_sub(1, std::memory_order_relaxed);
  conns_.erase(c->self);
}

void Worker::Tick() {
  int64_t now = loop_->now_ms();
  for (auto it = conns_.begin(); it != conns_.end();) {
    Connection* c = (it++)->get();  // CheckTimeout may free c
    c->CheckTimeout(now);
  }
}

void Worker::Main(std::promise<absl::Status>* started) {
  SetThreadName(Cat("mxr-ingress-", index_));
  auto loop = EventLoop::Create(4096);
  if (!loop.ok()) {
    started->set_value(loop.status());
    return;
  }
  loop_ = std::move(*loop);
  auto br = loop_->AddBufferRing(kBufGroup, kBufCount, kBufSize);
  if (!br.ok()) {
    started->set_value(br.status());
    return;
  }
  bufs_ = *br;
  const Config& cfg = *srv_->deps_.config;
  for (const auto& lc : cfg.listeners) {
    auto slot = std::make_unique<ListenerSlot>();
    slot->w = this;
    slot->cfg = &lc;
    slot->env = SessionEnv{&cfg, &lc, srv_->deps_.hostname, srv_->deps_.ids, srv_->deps_.clock,
                           &srv_->stats_, srv_->deps_.trace, srv_->deps_.tenants};
    slot->index = listeners_.size();
    slot->fn = [](IoOp* op, const Completion* cqe) {
      auto* ls = static_cast<ListenerSlot*>(op);
      ls->w->OnAccept(ls, cqe);
    };
    absl::Status st = Bind(slot.get());
    if (!st.ok()) {
      started->set_value(st);
      return;
    }
    ArmAccept(slot.get());
    listeners_.push_back(std::move(slot));
  }
  loop_->SetTicker(1000, [this] { Tick(); });
  loop_->SetAfterBatch([this] {
    if (rearm_.empty()) return;
    std::vector<Connection*> v;
    v.swap(rearm_);
    for (Connection* c : v) c->Rearm();
  });
  started->set_value(absl::OkStatus());
  loop_->Run();
  // Loop stopped: free what is left (connections were closed by ForceClose).
  conns_.clear();
}

void Worker::BeginShutdown() {
  loop_->Post([this] {
    shutting_down_ = true;
    for (auto& l : listeners_) {
      if (l->fd >= 0) {
        if (l->armed) loop_->Cancel(l.get(), nullptr);  // the multishot accept ends (-ECANCELED)
        ::close(l->fd);
        l->fd = -1;
      }
    }
    for (auto it = conns_.begin(); it != conns_.end();) {
      Connection* c = (it++)->get();
      c->OnShutdown();
    }
  });
}

void Worker::ForceClose() {
  std::promise<void> done;
  loop_->Post([this, &done] {
    for (auto it = conns_.begin(); it != conns_.end();) {
      Connection* c = (it++)->get();
      c->ForceFinalize();
    }
    done.set_value();
  });
  done.get_future().wait();
}

// --------------------------------------------------------- IngressServer

IngressServer::IngressServer(IngressDeps deps)
    : deps_(std::move(deps)),
      stats_(deps_.config->listeners.size()),
      auth_limiter_(AuthLimiter::Options{deps_.config->auth.max_failures_per_ip,
                                         deps_.config->auth.ip_block_seconds,
                                         deps_.config->limits.ipv6_prefix}) {}

IngressServer::~IngressServer() {
  if (!threads_.empty()) Shutdown(0);
}

absl::Status IngressServer::Start() {
  int n = deps_.config->threads;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(this, i, deps_.tls));
    std::promise<absl::Status> started;
    auto f = started.get_future();
    Worker* w = workers_.back().get();
    threads_.emplace_back([w, &started] { w->Main(&started); });
    absl::Status st = f.get();
    if (!st.ok()) {
      threads_.back().join();
      threads_.pop_back();
      workers_.pop_back();
      Shutdown(0);
      return st;
    }
  }
  for (const auto& l : deps_.config->listeners) {
    spdlog::info("event=listening listener={} address={} port={} mode={} threads={}", l.name,
                 l.address, l.port, ListenerModeName(l.mode), n);
  }
  return absl::OkStatus();
}

void IngressServer::SetTls(std::shared_ptr<TlsContext> tls) {
  for (auto& w : workers_) w->SetTls(tls);
}

void IngressServer::Shutdown(int grace_ms) {
  if (threads_.empty()) return;
  for (auto& w : workers_) w->BeginShutdown();
  int waited = 0;
  while (stats_.connections_current.load() > 0 && waited < grace_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    waited += 50;
  }
  for (auto& w : workers_) w->ForceClose();
  // Let cancellations and in-flight commits finish (bounded).
  for (int i = 0; i < 100 && stats_.connections_current.load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : workers_) w->loop()->Stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // workers_ (and their loops) stay allocated until the destructor: a spool
  // callback still in flight may Post() to them; destroy the spool first.
}

bool IngressServer::AcquireIp(const IpAddress& addr) {
  IpAddress ip = addr.ClientKey(deps_.config->limits.ipv6_prefix);
  Stripe& s = stripes_[absl::Hash<IpAddress>()(ip) % kStripes];
  std::lock_guard<std::mutex> l(s.mu);
  int& n = s.counts[ip];
  if (n >= deps_.config->limits.max_connections_per_ip) {
    if (n == 0) s.counts.erase(ip);
    return false;
  }
  ++n;
  return true;
}

void IngressServer::ReleaseIp(const IpAddress& addr) {
  IpAddress ip = addr.ClientKey(deps_.config->limits.ipv6_prefix);
  Stripe& s = stripes_[absl::Hash<IpAddress>()(ip) % kStripes];
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.counts.find(ip);
  if (it != s.counts.end() && --it->second <= 0) s.counts.erase(it);
}

}  // namespace mxr::relay
