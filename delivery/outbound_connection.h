// One outbound SMTP connection of a site: tries the site's hosts in MX order
// (each host's addresses in order) until a session is usable, then carries
// one job (transaction) at a time until it is told to quit, times out or
// fails. The SMTP dialogue itself is SmtpClient's (I/O-free); the socket,
// its io_uring operations and TLS are common/io_stream.h's (the same code as
// the relay's inbound connections); this class holds the states, per-phase
// timeouts, MX fallback, and streams the body to the socket in chunks as it
// drains (never a whole stuffed or encrypted copy).
//
// Lifetime: created and owned by the engine (ConnectionOwner), listed on its
// site. It reports, exactly once each, OnConnReady when idle, OnJobDone per
// job taken, OnConnGone when it will carry no more jobs; once closed with
// every stream released and nothing held, it calls Freed() from a task
// posted to the loop, and the owner deletes it. Delivery loop thread only.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/event_loop.h"
#include "common/io_stream.h"
#include "common/net.h"
#include "common/tls_endpoint.h"
#include "delivery/destination_guard.h"
#include "delivery/message.h"
#include "delivery/resolver.h"
#include "delivery/site.h"
#include "delivery/smtp_client.h"
#include "delivery/stats.h"

namespace mxr::delivery {

class OutboundConnection;

// What a connection needs from the engine.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual EventLoop* loop() = 0;
  virtual Resolver* resolver() = 0;
  virtual const DeliveryConfig& cfg() const = 0;
  virtual const std::string& helo_name() const = 0;
  virtual SSL_CTX* tls_ctx(bool verify) = 0;
  virtual DeliveryStats* stats() = 0;
  virtual const DestinationGuard& guard() const = 0;
  // The connection is idle: give it a job (Take) or let it wait or Quit.
  virtual void OnConnReady(OutboundConnection* c) = 0;
  // Results of a job the connection took (one per recipient of the job).
  virtual void OnJobDone(OutboundConnection* c, Job* j, const std::vector<RcptResult>& results) = 0;
  // The connection will take no more jobs. ever_ready: a session was usable.
  virtual void OnConnGone(OutboundConnection* c, bool ever_ready, const Reply& why) = 0;
  // The body of j's message, later or at once.
  virtual void GetBody(Job* j, std::function<void(const absl::Status&, BodyRef)> then) = 0;
  // A job taken but not sent (the connection closed first): queue it again.
  virtual void Requeue(Job* j) = 0;
  // Nothing of the connection is in flight any more: delete it.
  virtual void Freed(OutboundConnection* c) = 0;
  // A session under an MTA-STS policy (site settings().sts) was set up
  // (`result_type` "") or failed with that RFC 8460 result type.
  virtual void ReportStsSession(const Site* s, const std::string& result_type, const std::string& mx,
                                const std::string& ip) {}
};

class OutboundConnection final : public ClientHost, public IoStream::Owner {
 public:
  enum class State {
    kResolving,     // looking up the current host's addresses
    kConnecting,    // TCP connect in flight
    kSetup,         // greeting, EHLO, STARTTLS, AUTH (SmtpClient)
    kIdle,          // session usable, no job
    kAwaitingBody,  // a job taken, its body being read
    kSending,       // a transaction under way
    kQuitting,      // QUIT sent
    kClosed,        // no more jobs; waiting for the last completions
  };
  static const char* StateName(State s);

  OutboundConnection(ConnectionOwner* owner, Site* site);
  ~OutboundConnection() override;
  OutboundConnection(const OutboundConnection&) = delete;
  OutboundConnection& operator=(const OutboundConnection&) = delete;

  std::list<std::unique_ptr<OutboundConnection>>::iterator self;  // in the owner's list
  std::list<OutboundConnection*>::iterator in_site;               // in site->conns

  Site* site() const { return site_; }
  State state() const { return state_; }
  Job* job() const { return job_; }
  bool idle() const { return state_ == State::kIdle; }
  bool setting_up() const { return state_ <= State::kSetup; }
  bool busy() const { return state_ == State::kAwaitingBody || state_ == State::kSending; }
  int messages() const { return messages_; }
  const std::string& host() const { return host_; }
  std::string ip() const { return ip_.ToString(); }
  // Every address of every host was refused (a loop, or deny_networks):
  // the site's jobs bounce with refusal() instead of being retried.
  bool destination_refused() const { return refused_; }
  const Reply& refusal() const { return refusal_; }
  // The next hop advertised DSN (RFC 3461) on this session.
  bool next_hop_dsn() const { return client_ && client_->dsn_offered(); }
  std::string tls_version() const { return stream_ && stream_->tls_up() ? stream_->tls()->version() : ""; }

  // Entry points from the engine (any of them may be called from inside a
  // callback: freeing is always deferred to a posted task).
  void Begin();
  // REQUIRES: idle(). Takes `j`: reads its body, then sends it.
  void Take(Job* j);
  void Quit();
  void CheckTimeout(int64_t now_ms);
  // Shutdown: abandons any transaction (its results are reported but the
  // engine does not record them) and closes.
  void ForceClose();

  // ClientHost (called from inside client_).
  void StartTls() override;
  void OnReady() override;
  void OnTransactionDone(std::vector<RcptResult> results) override;
  void OnFailed(const Reply& why) override;

  // IoStream::Owner.
  void OnStreamData(std::string_view data) override;
  void OnStreamEnd(IoStream::End why, int res) override;
  void OnStreamSent(int res) override;
  void OnStreamTls(bool ok, const std::string& error) override;
  void OnStreamConnected(int res) override;
  void OnStreamReleased(IoStream* s) override;

 private:
  // Body chunks are pulled from the client while less than this is waiting
  // for the socket (plaintext or ciphertext).
  static constexpr size_t kSendWatermark = 256 * 1024;

  void Touch(int secs);
  int PhaseTimeout() const;
  void AfterClient();
  void Finish(const Reply& why);
  void Close();
  void NextHost();
  void NextAddress();
  void RetireStream();
  void SendJob(Job* j, const absl::Status& st, BodyRef body);
  void GiveBack(Job* j, const RcptResult& why);
  void Flush();
  void TlsHandshakeFailed(const std::string& detail);
  void ReportSts(const std::string& result_type);  // MTA-STS sites: once per session
  bool BodyStillMoving();
  void MaybeFree();

  ConnectionOwner* owner_;
  Site* site_;
  State state_ = State::kResolving;
  std::unique_ptr<SmtpClient> client_;
  std::unique_ptr<IoStream> stream_;                     // the current socket
  std::vector<std::unique_ptr<IoStream>> old_streams_;  // earlier addresses' sockets, closing
  sockaddr_storage peer_{};
  int holds_ = 0;               // our own async work in flight (DNS lookup, body read)
  bool ever_ready_ = false;     // a session was usable at least once
  bool gone_reported_ = false;  // OnConnGone sent
  bool sts_reported_ = false;     // this session's MTA-STS outcome went to the owner
  bool failed_ = false;         // client_ reported OnFailed; see AfterClient()
  bool free_posted_ = false;
  int messages_ = 0;
  Job* job_ = nullptr;
  size_t host_index_ = 0, addr_index_ = 0;
  std::vector<IpAddress> addrs_;
  std::string host_;
  IpAddress ip_;
  Reply last_error_;
  Reply refusal_;               // the last address refused by the guard
  bool refused_ = false;        // every candidate address was refused
  bool tried_any_ = false;      // an address was connected to, or a lookup failed
  int64_t deadline_ms_ = 0;
  int last_unsent_ = -1;  // kernel's unsent bytes at the last look (BodyStillMoving)
};

}  // namespace mxr::delivery
