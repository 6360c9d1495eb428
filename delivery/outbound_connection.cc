#include "delivery/outbound_connection.h"

#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/check.h"
#include "common/escape.h"
#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {

const char* OutboundConnection::StateName(State s) {
  switch (s) {
    case State::kResolving: return "resolving";
    case State::kConnecting: return "connecting";
    case State::kSetup: return "setup";
    case State::kIdle: return "idle";
    case State::kAwaitingBody: return "awaiting_body";
    case State::kSending: return "sending";
    case State::kQuitting: return "quitting";
    case State::kClosed: return "closed";
  }
  return "?";
}

OutboundConnection::OutboundConnection(ConnectionOwner* owner, Site* site) : owner_(owner), site_(site) {}

OutboundConnection::~OutboundConnection() {
  // Checked on the normal path only: at shutdown the engine drops whatever is left.
  MXR_DCHECK(!free_posted_ || (holds_ == 0 && !stream_ && old_streams_.empty()),
             "a connection freed with work in flight");
  MXR_DCHECK(!free_posted_ || job_ == nullptr, "a connection freed holding a job");
}

void OutboundConnection::Touch(int secs) { deadline_ms_ = owner_->loop()->now_ms() + secs * 1000LL; }

int OutboundConnection::PhaseTimeout() const {
  const DeliveryConfig& cfg = owner_->cfg();
  if (!client_) return cfg.connect_timeout;
  switch (client_->phase()) {
    case SmtpClient::Phase::kBanner: return cfg.banner_timeout;
    case SmtpClient::Phase::kData:
    case SmtpClient::Phase::kDot: return cfg.data_timeout;  // the body and the final reply
    case SmtpClient::Phase::kReady: return state_ == State::kIdle ? cfg.idle_timeout : cfg.command_timeout;
    case SmtpClient::Phase::kQuit: return 10;
    default: return cfg.command_timeout;
  }
}

// ----------------------------------------------------------- entry points

void OutboundConnection::Begin() {
  owner_->stats()->connections_opened++;
  owner_->stats()->connections_active++;
  Touch(owner_->cfg().connect_timeout);
  NextHost();
  MaybeFree();
}

void OutboundConnection::Take(Job* j) {
  MXR_DCHECK(state_ == State::kIdle && job_ == nullptr, "a job given to a busy connection");
  MXR_DCHECK(!j->on_connection && !j->queued, "a job on two connections");
  job_ = j;
  j->on_connection = true;
  state_ = State::kAwaitingBody;
  holds_++;  // alive until the body arrives
  Touch(owner_->cfg().command_timeout);
  owner_->GetBody(j, [this, j](const absl::Status& st, BodyRef body) {
    holds_--;
    SendJob(j, st, std::move(body));
    MaybeFree();
  });
}

void OutboundConnection::SendJob(Job* j, const absl::Status& st, BodyRef body) {
  if (state_ != State::kAwaitingBody || !client_ || client_->phase() != SmtpClient::Phase::kReady) {
    // Closed meanwhile: nothing was sent, the job goes back to its site.
    job_ = nullptr;
    j->on_connection = false;
    owner_->Requeue(j);
    return;
  }
  if (!st.ok()) {
    // Never send an empty or partial body: the recipients are deferred with
    // a local error and the session stays usable for other jobs.
    return GiveBack(j, RcptResult{451, "4.3.0", Cat("Local error: the message body could not be read from the "
                                                    "queue (", st.message(), ")")});
  }
  j->body = std::move(body);
  ActiveMessage* m = j->msg;
  j->out.sender = m->meta.sender;
  j->out.rcpts.clear();
  j->out.rcpt_dsn.clear();
  for (size_t i : j->rcpts) {
    const queue::Recipient& r = m->meta.recipients[i];
    j->out.rcpts.push_back(r.address);
    j->out.rcpt_dsn.push_back(RcptDsnParams(r));  // delivery/dsn.h
  }
  j->out.mail_dsn = MailDsnParams(m->meta);
  j->out.smtputf8 = m->meta.smtputf8;
  j->out.body_8bit = m->meta.body_8bit;
  j->out.body = j->body.get();
  RcptResult why;
  if (!client_->CanSend(j->out, &why)) return GiveBack(j, why);
  state_ = State::kSending;
  client_->Send(j->out);
  Touch(owner_->cfg().command_timeout);
  Flush();
  AfterClient();
}

// A job taken but not sent: every recipient gets `why`, and the session,
// still ready, is idle again for the next job.
void OutboundConnection::GiveBack(Job* j, const RcptResult& why) {
  job_ = nullptr;
  j->on_connection = false;
  j->body.reset();
  state_ = State::kIdle;
  owner_->OnJobDone(this, j, std::vector<RcptResult>(j->rcpts.size(), why));
  if (state_ == State::kIdle) {
    Touch(owner_->cfg().idle_timeout);
    owner_->OnConnReady(this);
  }
}

void OutboundConnection::Quit() {
  if (state_ == State::kClosed || state_ == State::kQuitting) return;
  if (!client_ || state_ != State::kIdle) return Close();
  state_ = State::kQuitting;
  client_->Quit();
  Flush();
  Touch(10);
}

void OutboundConnection::CheckTimeout(int64_t now) {
  if (state_ == State::kClosed || now < deadline_ms_) return MaybeFree();
  switch (state_) {
    case State::kIdle:
      Quit();  // idle timeout
      break;
    case State::kQuitting:
      Finish(Reply{221, "2.0.0", "closed after QUIT (no answer)", {}});
      break;
    case State::kConnecting:
      last_error_ = Reply{451, "4.4.1", Cat("Connection to ", host_, " [", ip_.ToString(), "]:",
                                           site_->settings().port, " timed out"), {}};
      RetireStream();
      NextAddress();
      break;
    case State::kResolving:
      Touch(owner_->cfg().connect_timeout);  // the resolver has its own timeout
      break;
    case State::kAwaitingBody:
      // The body waits for the memory budget: the session is not at fault.
      Touch(owner_->cfg().command_timeout);
      break;
    case State::kSending:
      if (BodyStillMoving()) {
        Touch(owner_->cfg().data_timeout);
        break;
      }
      [[fallthrough]];
    case State::kSetup:
      if (client_) {
        client_->Abort(Reply{421, "4.4.2", Cat("Timeout in phase ", client_->PhaseName(), " with ", host_), {}});
        AfterClient();
      }
      break;
    case State::kClosed:
      break;
  }
  MaybeFree();
}

void OutboundConnection::ForceClose() {
  if (client_ && state_ == State::kSending) {
    client_->Abort(Reply{421, "4.3.2", "Relay shutting down", {}});
    failed_ = false;
  }
  if (!gone_reported_) {
    gone_reported_ = true;
    owner_->OnConnGone(this, ever_ready_, Reply{221, "2.0.0", "shutdown", {}});
  }
  Close();  // a body still being read finds the connection closed and requeues its job
}

// ---------------------------------------------------------- ClientHost

void OutboundConnection::StartTls() {
  bool verify = site_->settings().tls == TlsPolicy::kRequiredVerify;
  bool observe = !verify && site_->settings().sts != nullptr;  // MTA-STS testing: report, never refuse
  auto tls = std::make_unique<TlsEndpoint>(owner_->tls_ctx(verify || observe), host_, verify);
  if (observe) tls->ObserveVerification(host_);
  tls->Handshake();  // the ClientHello
  stream_->StartTls(std::move(tls));
  Touch(owner_->cfg().command_timeout);
}

void OutboundConnection::OnReady() {
  if (!ever_ready_ && site_->settings().sts) {
    // The session is usable: under enforce it is TLS with a verified
    // certificate from a matching MX; under testing, say what fell short.
    const StsPolicy& p = *site_->settings().sts;
    const TlsEndpoint* tls = stream_ && stream_->tls_up() ? stream_->tls() : nullptr;
    if (tls == nullptr) {
      ReportSts("starttls-not-supported");
    } else if (!tls->verified()) {
      ReportSts(TlsRptResultForVerifyCode(tls->verify_code()));
    } else if (!StsAnyMxMatches(p, host_)) {
      ReportSts("validation-failure");
    } else {
      ReportSts("");
    }
  }
  ever_ready_ = true;
  state_ = State::kIdle;
  MXR_DCHECK(job_ == nullptr, "ready with a job still held");
  Touch(owner_->cfg().idle_timeout);
  owner_->OnConnReady(this);
}

void OutboundConnection::OnTransactionDone(std::vector<RcptResult> results) {
  Job* j = job_;
  job_ = nullptr;
  messages_++;
  // Not idle until OnReady (after an RSET when the transaction failed).
  if (state_ == State::kSending) state_ = State::kSetup;
  if (j != nullptr) {
    j->on_connection = false;
    j->body.reset();
    owner_->OnJobDone(this, j, results);
  }
}

void OutboundConnection::ReportSts(const std::string& result_type) {
  if (sts_reported_ || !site_->settings().sts) return;
  sts_reported_ = true;
  owner_->ReportStsSession(site_, result_type, host_, ip_.ToString());
}

void OutboundConnection::OnFailed(const Reply& why) {
  if (!ever_ready_ && client_ && !client_->tls_active() && client_->starttls_missing()) {
    ReportSts("starttls-not-supported");  // enforce: TLS required, none offered
  }
  // Called from inside client_: acted on once control is back in our own
  // code (AfterClient), never while the client is on the stack.
  last_error_ = why;
  failed_ = true;
}

// After any call into client_ returned: handle a reported failure. Before
// the session was ever usable, a failure (connection refused, 421/4xx/5xx
// greeting, TLS failure...) moves on to the next MX address or host.
void OutboundConnection::AfterClient() {
  if (!failed_) return;
  failed_ = false;
  if (!ever_ready_ && state_ != State::kClosed) {
    RetireStream();
    NextAddress();
    return;
  }
  Finish(last_error_);
}

void OutboundConnection::Finish(const Reply& why) {
  if (!gone_reported_) {
    gone_reported_ = true;
    owner_->OnConnGone(this, ever_ready_, why);
  }
  Close();
}

void OutboundConnection::Close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  if (stream_) stream_->Close();
  MaybeFree();
}

// ------------------------------------------------------- hosts and sockets

void OutboundConnection::NextHost() {
  if (host_index_ >= site_->hosts.size()) {
    if (refusal_.code && !tried_any_) {
      refused_ = true;  // nothing but refused addresses: permanent
      return Finish(refusal_);
    }
    Finish(last_error_.code ? last_error_ : Reply{451, "4.4.1", "No MX host could be reached", {}});
    return;
  }
  host_ = site_->hosts[host_index_++];
  addrs_.clear();
  addr_index_ = 0;
  state_ = State::kResolving;
  holds_++;  // alive across the lookup
  owner_->resolver()->ResolveHost(host_, [this](const AddrAnswer& a) {
    holds_--;
    if (state_ == State::kClosed) return MaybeFree();
    if (a.outcome != DnsOutcome::kOk) {
      tried_any_ = true;
      last_error_ = Reply{451, "4.4.3", a.error, {}};
      NextHost();
    } else {
      // Where delivery may not connect (a loop to ourselves, deny_networks)
      // is decided here, after resolution, whatever named the address.
      addrs_.clear();
      for (const IpAddress& ip : a.addrs) {
        if (auto r = owner_->guard().Check(ip, site_->settings().port, host_)) {
          spdlog::warn("event=destination_refused site={} host={} ip={} reason={} detail=\"{}\"", site_->name(),
                       host_, ip.ToString(), r->reason, LogEscape(r->text));
          refusal_ = Reply{r->code, r->enhanced, r->text, {}};
        } else {
          addrs_.push_back(ip);
        }
      }
      NextAddress();
    }
    MaybeFree();
  });
}

// The current socket failed before a session was usable: it closes on its
// own (released later) while the next address is tried.
void OutboundConnection::RetireStream() {
  client_.reset();
  if (!stream_) return;
  stream_->Close();
  old_streams_.push_back(std::move(stream_));
}

void OutboundConnection::NextAddress() {
  if (addr_index_ >= addrs_.size()) return NextHost();
  ip_ = addrs_[addr_index_++];
  const SiteSettings& s = site_->settings();
  sockaddr_storage ss;
  auto len = MakeSockaddr(ip_.ToString(), s.port, &ss);
  if (!len.ok()) return NextAddress();
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    last_error_ = Reply{451, "4.4.0", Cat("socket: ", strerror(errno)), {}};
    return NextAddress();
  }
  // The egress source's address (delivery/egress.h): mail must leave from
  // it or not at all (a provider judges the IP), so a failed bind fails
  // this address; an address of the other family is skipped.
  const std::string& src = s.bind_address;
  if (!src.empty()) {
    sockaddr_storage bs;
    auto blen = MakeSockaddr(src, 0, &bs);
    if (!blen.ok() || bs.ss_family != ss.ss_family) {
      ::close(fd);
      last_error_ = Reply{451, "4.4.0", Cat("Source ", s.source, " (", src, ") cannot reach ", ip_.ToString(),
                                           " (address family)"), {}};
      return NextAddress();
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&bs), *blen) != 0) {
      int e = errno;
      ::close(fd);
      spdlog::warn("event=source_bind_failed source={} address={} error=\"{}\"", s.source, src, strerror(e));
      last_error_ = Reply{451, "4.4.0", Cat("Cannot bind source ", s.source, " address ", src, ": ", strerror(e)), {}};
      return NextAddress();
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  peer_ = ss;
  tried_any_ = true;
  stream_ = std::make_unique<IoStream>(owner_->loop(), this, fd, IoStream::RecvMode::kOwnBuffer);
  stream_->Connect(reinterpret_cast<sockaddr*>(&peer_), *len);
  last_unsent_ = -1;
  state_ = State::kConnecting;
  Touch(owner_->cfg().connect_timeout);
}

void OutboundConnection::OnStreamConnected(int res) {
  if (state_ != State::kConnecting) return;
  const SiteSettings& s = site_->settings();
  if (res < 0) {
    last_error_ = Reply{451, "4.4.1", Cat("Connection to ", host_, " [", ip_.ToString(), "]:", s.port,
                                         " failed: ", strerror(-res)), {}};
    RetireStream();
    NextAddress();
    return MaybeFree();
  }
  ClientOptions o;
  o.helo = s.ehlo.empty() ? owner_->helo_name() : s.ehlo;
  o.tls = s.tls;
  if (o.tls == TlsPolicy::kOpportunistic && site_->tls_broken_until_ms > owner_->loop()->now_ms()) {
    o.tls = TlsPolicy::kNone;  // its STARTTLS failed recently: deliver in clear
  }
  o.auth_user = s.auth_user;
  o.auth_password = s.auth_password;
  o.auth_over_unverified_tls = s.auth_over_unverified_tls;
  client_ = std::make_unique<SmtpClient>(o, this);
  sts_reported_ = false;  // a new session
  state_ = State::kSetup;
  Touch(owner_->cfg().banner_timeout);
  stream_->SetWantRecv(true);
}

// ------------------------------------------------------------------ I/O

void OutboundConnection::OnStreamData(std::string_view data) {
  if (state_ == State::kClosed || !client_) return;
  client_->Feed(data);
  AfterClient();
  if (client_ && state_ != State::kClosed && client_->phase() == SmtpClient::Phase::kDone) {
    Finish(Reply{221, "2.0.0", "closed after QUIT", {}});  // our QUIT was answered
  }
  if (client_ && state_ != State::kClosed) {
    if (state_ != State::kIdle) Touch(PhaseTimeout());  // a reply: the server is alive
    Flush();
  }
}

void OutboundConnection::OnStreamEnd(IoStream::End why, int res) {
  if (state_ == State::kClosed || !client_) return;
  if (why == IoStream::End::kTlsError) {
    client_->Abort(Reply{421, "4.4.2", Cat("TLS error with ", host_), {}});
    return AfterClient();
  }
  Reply r{421, "4.4.2", why == IoStream::End::kError ? Cat("Connection error with ", host_, ": ", strerror(-res))
                                                     : Cat("Connection closed by ", host_), {}};
  if (client_->phase() == SmtpClient::Phase::kQuit || client_->phase() == SmtpClient::Phase::kDone) {
    Finish(Reply{221, "2.0.0", "closed after QUIT", {}});  // a normal end
  } else if (stream_->tls() && !stream_->tls_up()) {
    TlsHandshakeFailed(r.text);
    AfterClient();
  } else {
    client_->Abort(r);
    AfterClient();
  }
}

void OutboundConnection::OnStreamTls(bool ok, const std::string& error) {
  if (state_ == State::kClosed || !client_) return;
  if (!ok) {
    std::string detail = error;
    if (site_->settings().tls == TlsPolicy::kRequiredVerify) {
      detail += Cat(" (verify: ", stream_->tls()->verify_result(), ")");
    }
    TlsHandshakeFailed(detail);
    return AfterClient();
  }
  client_->OnTlsDone(true, "");
  AfterClient();
  Flush();
}

// A STARTTLS that did not complete (bad handshake, or the server closed the
// connection during it): remember the site so opportunistic delivery goes
// in clear for an hour instead of failing the same way on every retry. The
// site's identity includes its policy, so this never touches a site whose
// policy requires TLS.
void OutboundConnection::TlsHandshakeFailed(const std::string& detail) {
  if (stream_ && stream_->tls()) ReportSts(TlsRptResultForVerifyCode(stream_->tls()->verify_code()));
  if (site_->settings().tls == TlsPolicy::kOpportunistic) {
    site_->tls_broken_until_ms = owner_->loop()->now_ms() + 3600 * 1000LL;
  }
  client_->OnTlsDone(false, detail);
}

void OutboundConnection::Flush() {
  if (state_ == State::kClosed || !stream_ || !client_) return;
  // Pull output (a body piece at a time) while the socket has room.
  while (client_->has_output() && stream_->pending() < kSendWatermark) {
    stream_->Write(client_->TakeOutput());
  }
}

void OutboundConnection::OnStreamSent(int res) {
  if (state_ == State::kClosed || !client_) return;
  if (res < 0) {
    client_->Abort(Reply{421, "4.4.2", Cat("Send to ", host_, " failed: ", strerror(-res)), {}});
    return AfterClient();
  }
  // Bytes move: the data timeout starts again (a slow but steady reader is
  // not a stalled one).
  if (state_ == State::kSending) {
    Touch(PhaseTimeout());
    BodyStillMoving();  // note how much the kernel still holds
  }
  Flush();
}

void OutboundConnection::OnStreamReleased(IoStream* s) {
  if (s == stream_.get()) {
    stream_.reset();
  } else {
    std::erase_if(old_streams_, [s](const std::unique_ptr<IoStream>& p) { return p.get() == s; });
  }
  MaybeFree();
}

// The last of a body sits in the kernel's send buffer (megabytes on a fast
// link) with no completion to tell us it drains: ask the kernel. True when
// fewer bytes are unsent than at the last look, in the body or dot phase.
bool OutboundConnection::BodyStillMoving() {
  if (!client_ || !stream_) return false;
  auto phase = client_->phase();
  if (phase != SmtpClient::Phase::kData && phase != SmtpClient::Phase::kDot) return false;
  int unsent = stream_->KernelUnsent();
  if (unsent < 0) return false;
  bool moved = unsent > 0 && last_unsent_ >= 0 && unsent < last_unsent_;
  last_unsent_ = unsent;
  return moved;
}

// Closed, nothing held, every socket released: the engine deletes us, from
// a posted task (the caller may be deep inside our own code).
void OutboundConnection::MaybeFree() {
  if (state_ != State::kClosed || holds_ > 0 || stream_ || !old_streams_.empty() || free_posted_) return;
  free_posted_ = true;
  owner_->loop()->RunAfter(0, [this] {
    owner_->stats()->connections_active--;
    owner_->Freed(this);  // deletes this: must be last
  });
}

}  // namespace mxr::delivery
