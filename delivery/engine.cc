#include "common/thread_name.h"
#include "delivery/engine.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "common/event_loop.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/tls_endpoint.h"
#include "delivery/dsn.h"
#include "delivery/event_log.h"
#include "delivery/oldest_tracker.h"
#include "delivery/policy.h"
#include "delivery/resolver.h"
#include "delivery/smtp_client.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {
namespace {

constexpr size_t kMaxActiveMessages = 20000;
// Fresh messages keep their body in memory (sparing a spool read) while the
// total stays under this budget; larger ones are read when a connection is ready.
constexpr int64_t kBodyBudgetBytes = 256ll << 20;
// Delivery bookkeeping rides with the next group commit; if none comes
// within this long, it is written alone (unsynced either way).
constexpr int64_t kBookkeepingFlushMs = 10;
constexpr uint64_t kMaxInMemoryBody = 1ull << 20;
constexpr size_t kRecvBuf = 16384;

std::string DomainOf(const std::string& addr) {
  size_t at = addr.rfind('@');
  std::string d = at == std::string::npos ? "" : addr.substr(at + 1);
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

struct IdHash {
  size_t operator()(const queue::QueueId& id) const {
    return std::hash<uint64_t>()(id.time_us * 1000003ULL ^ id.seq);
  }
};

// Runs blocking spool calls off the loop; results are posted back by the caller's closures.
class SpoolIo {
 public:
  SpoolIo() : thread_([this] {
    SetThreadName("mxr-spool-io");
    Run();
  }) {}
  ~SpoolIo() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Submit(absl::AnyInvocable<void() &&> fn) {
    std::lock_guard<std::mutex> l(mu_);
    q_.push_back(std::move(fn));
    cv_.notify_one();
  }

 private:
  void Run() {
    for (;;) {
      absl::AnyInvocable<void() &&> fn;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        fn = std::move(q_.front());
        q_.pop_front();
      }
      std::move(fn)();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::AnyInvocable<void() &&>> q_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

struct Msg;
class Conn;
struct Site;

struct RcptOutcome {
  bool set = false;
  bool not_attempted = false;  // deferred because its site is backed off: no attempt charged
  int64_t hold_until_us = 0;
  int code = 0;
  std::string enhanced, text, mx_host, ip, site, tls;
  std::string site_label;  // metrics label of the site (see SiteLabel)
};

struct Job {
  Msg* msg = nullptr;
  std::string domain;
  std::vector<size_t> rcpts;  // indexes into msg->meta.recipients
  Site* site = nullptr;
  OutboundMessage out;        // filled when sent
};

struct Msg {
  ~Msg();
  queue::MessageMeta meta;
  uint64_t budgeted = 0;  // bytes of `body` counted against the in-memory budget
  std::atomic<int64_t>* budget = nullptr;
  std::optional<std::string> body;
  bool body_loading = false;
  std::vector<std::function<void()>> body_waiters;
  std::vector<RcptOutcome> outcomes;
  int pending_jobs = 0;
  std::vector<std::unique_ptr<Job>> jobs;
};

struct Site {
  std::string key;
  std::string label;  // metrics: "route:<domain>" or the first MX host name
  std::vector<std::string> hosts;
  uint16_t port = 25;
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::string auth_user, auth_password;
  int max_conns = 20;
  SiteWindow window;
  std::unordered_map<std::string, std::deque<Job*>> by_sender;
  std::deque<std::string> rr;  // senders with queued jobs, round-robin
  size_t queued = 0;
  std::list<Conn*> conns;
  int64_t tls_broken_until_ms = 0;
  int64_t last_used_ms = 0;
  uint64_t routes_gen = 0;  // settings applied from this generation of routes
  Reply last_error;  // why the last connection failed (shown for held jobs)

  void Push(Job* j) {
    auto& q = by_sender[j->msg->meta.sender];
    if (q.empty()) rr.push_back(j->msg->meta.sender);
    q.push_back(j);
    queued++;
  }
  Job* Pop() {
    while (!rr.empty()) {
      std::string s = rr.front();
      rr.pop_front();
      auto it = by_sender.find(s);
      if (it == by_sender.end() || it->second.empty()) continue;
      Job* j = it->second.front();
      it->second.pop_front();
      if (it->second.empty()) {
        by_sender.erase(it);
      } else {
        rr.push_back(s);  // next sender's turn first: one campaign cannot starve others
      }
      queued--;
      return j;
    }
    return nullptr;
  }
};

class EngineImpl {
 public:
  EngineImpl(DeliveryEngine::Deps deps, DeliveryStats* stats)
      : deps_(std::move(deps)),
        cfg_(deps_.config->delivery),
        stats_(stats),
        event_log_(cfg_.event_log),
        rng_(std::random_device{}()) {}
  ~EngineImpl();

  absl::Status Init();  // on the loop thread
  void Run() { loop_->Run(); }
  EventLoop* loop() { return loop_.get(); }
  void Enqueue(std::unique_ptr<Msg> m);  // loop thread
  // Thread-safe: whether a body of `bytes` may be kept in memory.
  bool ReserveBodyBudget(uint64_t bytes);
  void ReopenLog() {
    auto st = event_log_.Reopen();
    if (!st.ok()) spdlog::error("event=event_log_reopen_failed error=\"{}\"", st);
  }
  void CloseAll();
  void StopIo() { io_.reset(); }

  // Called by connections.
  void OnConnReady(Conn* c);
  void OnConnGone(Conn* c, bool ever_ready, const Reply& why);
  void OnJobDone(Conn* c, Job* j, const std::vector<RcptResult>& results);
  void NeedBody(Msg* m, std::function<void()> then);
  Resolver* resolver() { return resolver_.get(); }
  const DeliveryConfig& cfg() const { return cfg_; }
  const std::string& hostname() const { return deps_.hostname; }
  SSL_CTX* tls_ctx(bool verify) { return verify ? tls_verify_ : tls_noverify_; }
  DeliveryStats* stats() { return stats_; }
  void Release(Conn* c);
  void Requeue(Job* j);

 private:
  friend class Conn;
  void Tick();
  void PumpSchedule();
  void Activate(const queue::QueueId& id);
  void StartMessage(std::unique_ptr<Msg> m);
  void Route(Job* j);
  void JobToSite(Job* j, const std::string& site_key, std::vector<std::string> hosts,
                 const RouteConfig* route);
  void FailJob(Job* j, int code, const std::string& enhanced, const std::string& text);
  void HoldJob(Job* j);
  void Pump(Site* s);
  void Finalize(Msg* m);
  // Records the outcome in the spool (async) and reschedules or forgets the
  // message. bounce_committed=false: the DSN failed, bounced recipients stay pending.
  void Persist(Msg* m, bool bounce_committed);
  // Asks the spool to write bookkeeping that no commit has taken within
  // kBookkeepingFlushMs (see Spool::FlushAsync); one timer at a time.
  void ScheduleBookkeepingFlush();
  void Log(const Msg& m, size_t rcpt, const RcptOutcome& o, const char* outcome);
  const RouteConfig* FindRoute(const std::string& domain) const;

  DeliveryEngine::Deps deps_;
  DeliveryConfig cfg_;
  DeliveryStats* stats_;
  EventLog event_log_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Resolver> resolver_;
  std::unique_ptr<SpoolIo> io_;
  SSL_CTX* tls_verify_ = nullptr;
  SSL_CTX* tls_noverify_ = nullptr;
  std::mt19937_64 rng_;

  using Entry = std::pair<int64_t, queue::QueueId>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  std::unordered_set<queue::QueueId, IdHash> scheduled_;   // in heap_
  std::unordered_map<queue::QueueId, std::unique_ptr<Msg>, IdHash> active_;
  std::unordered_map<std::string, std::unique_ptr<Site>> sites_;
  std::list<std::unique_ptr<Conn>> conns_;
  size_t loading_ = 0;
  bool stopping_ = false;
  bool flush_armed_ = false;
  std::atomic<int64_t> body_budget_{0};
  int64_t last_site_gc_ms_ = 0;

  // Per-site metrics with bounded labels: routes always, plus the busiest
  // `site_labels` others (re-chosen every minute); the rest is "other".
  struct SiteCounters {
    uint64_t attempts[4] = {0, 0, 0, 0};
    int64_t last_active_ms = 0;
    bool pinned = false;  // a configured route: never gives its label back
  };
  void CountSiteAttempt(const std::string& label, int outcome);
  void RelabelSites(int64_t now_ms);
  void PublishSnapshot(int64_t now_ms);
  std::unordered_map<std::string, SiteCounters> labelled_;
  SiteCounters other_;
  std::unordered_map<std::string, uint64_t> recent_;  // unlabelled: attempts this minute
  int64_t last_relabel_ms_ = 0;
  size_t unpinned_labels_ = 0;  // labelled_ entries that are not routes
  // Oldest-message gauge: the spool's smallest id, asked on the spool I/O
  // thread once a second from the previous answer (a seek, not a walk of the
  // queue); delivery/oldest_tracker.h keeps the start point right when ids
  // are committed out of order.
  void RefreshOldest();
  OldestTracker oldest_;
  int64_t last_oldest_ms_ = 0;
  bool oldest_failing_ = false;  // log a failing query once, not every second

 public:
  // SIGHUP: new routes for new routing decisions; sites pick up their new
  // settings at their next job. Loop thread.
  void SetRoutes(std::vector<RouteConfig> routes);

 private:
  std::shared_ptr<const std::vector<RouteConfig>> routes_;
  uint64_t routes_gen_ = 0;
};

void EngineImpl::SetRoutes(std::vector<RouteConfig> routes) {
  routes_ = std::make_shared<const std::vector<RouteConfig>>(std::move(routes));
  routes_gen_++;
  for (auto& [label, c] : labelled_) c.pinned = false;  // re-pinned below
  for (const auto& r : *routes_) {
    if (!r.host.empty()) labelled_[Cat("route:", r.domain)].pinned = true;
  }
  unpinned_labels_ = 0;
  for (const auto& [label, c] : labelled_) unpinned_labels_ += c.pinned ? 0 : 1;
  spdlog::info("event=routes_loaded routes={}", routes_->size());
}

// ------------------------------------------------------------------ Conn

class Conn final : public ClientHost {
 public:
  Conn(EngineImpl* e, Site* s) : e_(e), site_(s) {
    recv_op_.c = this;
    recv_op_.fn = [](IoOp* op, const io_uring_cqe* cqe) { static_cast<Op*>(op)->c->OnRecv(cqe); };
    send_op_.c = this;
    send_op_.fn = [](IoOp* op, const io_uring_cqe* cqe) { static_cast<Op*>(op)->c->OnSend(cqe); };
    conn_op_.c = this;
    conn_op_.fn = [](IoOp* op, const io_uring_cqe* cqe) { static_cast<Op*>(op)->c->OnConnect(cqe); };
    cancel_op_.c = this;
    cancel_op_.fn = [](IoOp* op, const io_uring_cqe*) {
      Conn* c = static_cast<Op*>(op)->c;
      c->inflight_--;
      c->MaybeFree();
    };
  }
  ~Conn() override {
    if (fd_ >= 0) ::close(fd_);
  }

  std::list<std::unique_ptr<Conn>>::iterator self;
  std::list<Conn*>::iterator in_site;
  Site* site() const { return site_; }
  Job* job() const { return job_; }
  bool idle() const { return client_ && client_->phase() == SmtpClient::Phase::kReady && !job_ && !closing_; }
  int messages() const { return messages_; }

  void Begin() {
    e_->stats()->connections_opened++;
    e_->stats()->connections_active++;
    deadline_ms_ = e_->loop()->now_ms() + e_->cfg().connect_timeout * 1000LL;
    NextHost();
    MaybeFree();
  }

  // Sends `j` on this (ready) connection.
  void Take(Job* j) {
    job_ = j;
    RcptResult why;
    j->out.sender = j->msg->meta.sender;
    j->out.rcpts.clear();
    for (size_t i : j->rcpts) j->out.rcpts.push_back(j->msg->meta.recipients[i].address);
    j->out.smtputf8 = j->msg->meta.smtputf8;
    j->out.body_8bit = j->msg->meta.body_8bit;
    j->out.body = &*j->msg->body;
    if (!client_->CanSend(j->out, &why)) {
      job_ = nullptr;
      std::vector<RcptResult> res(j->rcpts.size(), why);
      e_->OnJobDone(this, j, res);
      return;
    }
    client_->Send(j->out);
    Touch(e_->cfg().command_timeout);
    Flush();
  }

  // Entry point for a job handed over outside a client callback.
  void TakeFromOutside(Job* j) {
    Take(j);
    AfterClient();
    MaybeFree();
  }

  void AwaitBody(Job* j) {
    job_ = j;
    inflight_++;
    Touch(e_->cfg().command_timeout);
    e_->NeedBody(j->msg, [this, j] {
      inflight_--;
      job_ = nullptr;
      if (closing_ || !client_ || client_->phase() != SmtpClient::Phase::kReady) {
        e_->Requeue(j);
      } else {
        Take(j);
        AfterClient();
      }
      MaybeFree();
    });
  }

  bool connecting() const { return !ever_ready_ && !closing_; }

  void Quit() {
    if (closing_) return;
    quitting_ = true;
    client_->Quit();
    Flush();
    Touch(10);
  }

  void CheckTimeout(int64_t now) {
    if (closing_ || now < deadline_ms_) {
      MaybeFree();
      return;
    }
    if (client_ && client_->phase() == SmtpClient::Phase::kReady && !job_) {
      Quit();  // idle timeout
    } else if (quitting_) {
      Close();
    } else if (fd_ >= 0 && !connected_) {
      // Connect timed out: cancel it; OnConnect moves to the next address.
      io_uring_sqe* sqe = e_->loop()->GetSqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(&conn_op_), 0);
      io_uring_sqe_set_data(sqe, &cancel_op_);
      inflight_++;
      deadline_ms_ = now + e_->cfg().connect_timeout * 1000LL;
    } else if (client_) {
      Reply r;
      r.code = 421;
      r.enhanced = "4.4.2";
      r.text = Cat("Timeout in phase ", client_->PhaseName(), " with ", host_);
      client_->Abort(r);
      AfterClient();
    }
    MaybeFree();
  }

  void Close() {
    if (closing_) return;
    closing_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    if (recv_armed_) {
      io_uring_sqe* sqe = e_->loop()->GetSqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(&recv_op_), 0);
      io_uring_sqe_set_data(sqe, &cancel_op_);
      inflight_++;
    }
  }

  void ForceClose() {
    if (client_ && job_) {
      Reply r;
      r.code = 421;
      r.enhanced = "4.3.2";
      r.text = "Relay shutting down";
      client_->Abort(r);
      failed_ = false;
    }
    if (!gone_reported_) {
      gone_reported_ = true;
      e_->Release(this);
    }
    Close();
    MaybeFree();
  }

  // ClientHost.
  void StartTls() override {
    bool verify = site_->tls == TlsPolicy::kRequiredVerify;
    tls_ = std::make_unique<TlsEndpoint>(e_->tls_ctx(verify), host_, verify);
    Touch(e_->cfg().command_timeout);
    DriveTls();
  }
  void OnReady() override {
    ever_ready_ = true;
    job_ = nullptr;
    Touch(e_->cfg().idle_timeout);
    e_->OnConnReady(this);
  }
  void OnTransactionDone(std::vector<RcptResult> results) override {
    Job* j = job_;
    job_ = nullptr;
    messages_++;
    if (j != nullptr) e_->OnJobDone(this, j, results);
  }
  void OnFailed(const Reply& why) override {
    // Called from inside client_: act once control is back in our own code
    // (AfterClient), never while the client is on the stack.
    last_error_ = why;
    failed_ = true;
  }

  std::string tls_version() const { return tls_ && tls_->handshake_done() ? tls_->version() : ""; }
  const std::string& host() const { return host_; }
  std::string ip() const { return ip_.ToString(); }

 private:
  struct Op : IoOp {
    Conn* c = nullptr;
  };

  void Touch(int secs) { deadline_ms_ = e_->loop()->now_ms() + secs * 1000LL; }

  // After any call into client_ returned: handle a reported failure. Before
  // the session was ever usable, a failure (connection refused, 421/4xx/5xx
  // greeting, TLS failure...) moves on to the next MX address or host.
  void AfterClient() {
    if (!failed_) return;
    failed_ = false;
    if (!ever_ready_ && !closing_) {
      ResetSocket();
      NextAddress();
      return;
    }
    Finish(last_error_);
  }

  void Finish(const Reply& why) {
    if (!gone_reported_) {
      gone_reported_ = true;
      e_->OnConnGone(this, ever_ready_, why);
    }
    Close();
  }

  // Candidate iteration: hosts in MX order, each host's addresses in order.
  void NextHost() {
    if (host_index_ >= site_->hosts.size()) {
      Finish(last_error_.code ? last_error_ : Reply{451, "4.4.1", "No MX host could be reached", {}});
      return;
    }
    host_ = site_->hosts[host_index_++];
    addrs_.clear();
    addr_index_ = 0;
    inflight_++;  // keep alive across the lookup
    e_->resolver()->ResolveHost(host_, [this](const AddrAnswer& a) {
      inflight_--;
      if (closing_) {
        MaybeFree();
        return;
      }
      if (a.outcome != DnsOutcome::kOk) {
        last_error_ = Reply{451, "4.4.3", a.error, {}};
        NextHost();
      } else {
        addrs_ = a.addrs;
        NextAddress();
      }
      MaybeFree();
    });
  }

  void ResetSocket() {
    if (fd_ >= 0 && !recv_armed_ && !send_inflight_ && !connect_inflight_) {
      ::close(fd_);
      fd_ = -1;
    } else if (fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
      old_fds_.push_back(fd_);  // closed when its operations finish
      fd_ = -1;
    }
    client_.reset();
    tls_.reset();
    connected_ = false;
    out_.clear();
    sending_.clear();
    sending_off_ = 0;
  }

  void NextAddress() {
    if (addr_index_ >= addrs_.size()) return NextHost();
    ip_ = addrs_[addr_index_++];
    sockaddr_storage ss;
    auto len = MakeSockaddr(ip_.ToString(), site_->port, &ss);
    if (!len.ok()) return NextAddress();
    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      last_error_ = Reply{451, "4.4.0", Cat("socket: ", strerror(errno)), {}};
      return NextAddress();
    }
    const std::string& src = e_->cfg().source_address;
    if (!src.empty()) {
      sockaddr_storage bs;
      auto blen = MakeSockaddr(src, 0, &bs);
      if (blen.ok() && bs.ss_family == ss.ss_family &&
          ::bind(fd_, reinterpret_cast<sockaddr*>(&bs), *blen) != 0) {
        spdlog::warn("event=source_bind_failed address={} error=\"{}\"", src, strerror(errno));
      }
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer_ = ss;
    peer_len_ = *len;
    io_uring_sqe* sqe = e_->loop()->GetSqe();
    io_uring_prep_connect(sqe, fd_, reinterpret_cast<sockaddr*>(&peer_), peer_len_);
    io_uring_sqe_set_data(sqe, &conn_op_);
    inflight_++;
    connect_inflight_ = true;
    Touch(e_->cfg().connect_timeout);
  }

  void OnConnect(const io_uring_cqe* cqe) {
    inflight_--;
    connect_inflight_ = false;
    if (closing_) return MaybeFree();
    if (cqe->res < 0) {
      last_error_ = Reply{451, "4.4.1", Cat("Connection to ", host_, " [", ip_.ToString(), "]:", site_->port,
                                           " failed: ", strerror(-cqe->res)), {}};
      ::close(fd_);
      fd_ = -1;
      NextAddress();
      return MaybeFree();
    }
    connected_ = true;
    ClientOptions o;
    o.helo = e_->cfg().helo_name.empty() ? e_->hostname() : e_->cfg().helo_name;
    o.tls = site_->tls;
    if (o.tls == TlsPolicy::kOpportunistic && site_->tls_broken_until_ms > e_->loop()->now_ms()) {
      o.tls = TlsPolicy::kNone;  // its STARTTLS failed recently: deliver in clear
    }
    o.auth_user = site_->auth_user;
    o.auth_password = site_->auth_password;
    client_ = std::make_unique<SmtpClient>(o, this);
    Touch(e_->cfg().banner_timeout);
    ArmRecv();
    MaybeFree();
  }

  void ArmRecv() {
    if (recv_armed_ || closing_ || fd_ < 0) return;
    io_uring_sqe* sqe = e_->loop()->GetSqe();
    io_uring_prep_recv(sqe, fd_, buf_, sizeof buf_, 0);
    io_uring_sqe_set_data(sqe, &recv_op_);
    recv_armed_ = true;
    recv_fd_ = fd_;
    inflight_++;
  }

  void OnRecv(const io_uring_cqe* cqe) {
    inflight_--;
    recv_armed_ = false;
    CloseOld();
    if (!closing_ && recv_fd_ != fd_) {  // completion for a previous MX's socket
      if (connected_) ArmRecv();
      return MaybeFree();
    }
    if (closing_ || !client_) return MaybeFree();
    if (cqe->res <= 0) {
      Reply r{421, "4.4.2", cqe->res == 0 ? Cat("Connection closed by ", host_)
                                          : Cat("Connection error with ", host_, ": ", strerror(-cqe->res)), {}};
      if (client_->phase() == SmtpClient::Phase::kQuit || client_->phase() == SmtpClient::Phase::kDone) {
        Finish(Reply{221, "2.0.0", "closed after QUIT", {}});  // a normal end
      } else if (tls_ && !tls_handshake_done_) {
        TlsHandshakeFailed(r.text);
        AfterClient();
      } else {
        client_->Abort(r);
        AfterClient();
      }
      return MaybeFree();
    }
    std::string_view data(buf_, cqe->res);
    if (tls_) {
      tls_->FeedCipher(data);
      DriveTls();
    } else {
      client_->Feed(data);
    }
    AfterClient();
    if (client_ && !closing_ && client_->phase() == SmtpClient::Phase::kDone) {
      Finish(Reply{221, "2.0.0", "closed after QUIT", {}});  // our QUIT was answered
    }
    if (client_ && !closing_) {
      Flush();
      ArmRecv();
    }
    MaybeFree();
  }

  // A STARTTLS that did not complete (bad handshake, or the server closed the
  // connection during it): remember the site so opportunistic delivery goes
  // in clear for an hour instead of failing the same way on every retry.
  void TlsHandshakeFailed(const std::string& detail) {
    if (site_->tls == TlsPolicy::kOpportunistic) {
      site_->tls_broken_until_ms = e_->loop()->now_ms() + 3600 * 1000LL;
    }
    client_->OnTlsDone(false, detail);
  }

  void DriveTls() {
    if (!tls_handshake_done_) {
      auto r = tls_->Handshake();
      if (r == TlsEndpoint::Result::kError) {
        std::string detail = tls_->last_error();
        if (site_->tls == TlsPolicy::kRequiredVerify) detail += Cat(" (verify: ", tls_->verify_result(), ")");
        return TlsHandshakeFailed(detail);
      }
      if (r == TlsEndpoint::Result::kWantMore) {
        Flush();
        return;
      }
      tls_handshake_done_ = true;
      client_->OnTlsDone(true, "");
    }
    std::string plain;
    auto r = tls_->ReadPlain(&plain);
    if (!plain.empty()) client_->Feed(plain);
    if (r != TlsEndpoint::Result::kOk && client_) {
      client_->Abort(Reply{421, "4.4.2", Cat("TLS error with ", host_), {}});
    }
  }

  void Flush() {
    if (closing_ || fd_ < 0 || !client_) return;
    if (client_->has_output()) {
      std::string o = client_->TakeOutput();
      if (tls_ && tls_handshake_done_) {
        tls_->WritePlain(o);
      } else if (out_.empty()) {
        out_.swap(o);  // a dot-stuffed body is not copied once more
      } else {
        out_ += o;
      }
    }
    if (tls_) tls_->TakeCipher(&out_);
    if (!send_inflight_ && sending_.empty() && !out_.empty()) sending_.swap(out_);
    if (!send_inflight_ && sending_off_ < sending_.size()) {
      io_uring_sqe* sqe = e_->loop()->GetSqe();
      io_uring_prep_send(sqe, fd_, sending_.data() + sending_off_, sending_.size() - sending_off_, MSG_NOSIGNAL);
      io_uring_sqe_set_data(sqe, &send_op_);
      send_inflight_ = true;
      send_fd_ = fd_;
      inflight_++;
    }
  }

  void OnSend(const io_uring_cqe* cqe) {
    inflight_--;
    send_inflight_ = false;
    CloseOld();
    if (!closing_ && send_fd_ != fd_) {  // completion for a previous MX's socket
      if (connected_) Flush();
      return MaybeFree();
    }
    if (closing_ || !client_) return MaybeFree();
    if (cqe->res < 0) {
      client_->Abort(Reply{421, "4.4.2", Cat("Send to ", host_, " failed: ", strerror(-cqe->res)), {}});
      AfterClient();
      return MaybeFree();
    }
    sending_off_ += cqe->res;
    if (sending_off_ >= sending_.size()) {
      sending_.clear();
      sending_off_ = 0;
    }
    Flush();
    MaybeFree();
  }

  void CloseOld() {
    if (!old_fds_.empty() && !recv_armed_ && !send_inflight_ && !connect_inflight_) {
      for (int fd : old_fds_) ::close(fd);
      old_fds_.clear();
    }
  }

  void MaybeFree() {
    if (!closing_ || inflight_ > 0 || freed_) return;
    freed_ = true;
    CloseOld();
    e_->stats()->connections_active--;
    e_->conns_.erase(self);  // deletes this: must be last
  }

  EngineImpl* e_;
  Site* site_;
  std::unique_ptr<SmtpClient> client_;
  std::unique_ptr<TlsEndpoint> tls_;
  bool tls_handshake_done_ = false;
  Op recv_op_, send_op_, conn_op_, cancel_op_;
  int fd_ = -1, recv_fd_ = -1, send_fd_ = -1;
  std::vector<int> old_fds_;
  sockaddr_storage peer_{};
  socklen_t peer_len_ = 0;
  bool connected_ = false, connect_inflight_ = false, recv_armed_ = false, send_inflight_ = false;
  bool closing_ = false, freed_ = false, ever_ready_ = false, quitting_ = false, gone_reported_ = false;
  bool failed_ = false;  // client_ reported OnFailed; see AfterClient()
  int inflight_ = 0;
  int messages_ = 0;
  Job* job_ = nullptr;
  size_t host_index_ = 0, addr_index_ = 0;
  std::vector<IpAddress> addrs_;
  std::string host_;
  IpAddress ip_;
  Reply last_error_;
  int64_t deadline_ms_ = 0;
  std::string out_, sending_;
  size_t sending_off_ = 0;
  char buf_[kRecvBuf];
};

// ------------------------------------------------------------ EngineImpl

EngineImpl::~EngineImpl() {
  if (tls_verify_) SSL_CTX_free(tls_verify_);
  if (tls_noverify_) SSL_CTX_free(tls_noverify_);
}

absl::Status EngineImpl::Init() {
  auto loop = EventLoop::Create(1024);
  if (!loop.ok()) return loop.status();
  loop_ = std::move(*loop);
  auto res = MakeCaresResolver(loop_.get(), cfg_);
  if (!res.ok()) return res.status();
  resolver_ = std::move(*res);
  io_ = std::make_unique<SpoolIo>();
  SetRoutes(deps_.config->routes);
  MXR_RETURN_IF_ERROR(event_log_.Open());
  tls_noverify_ = SSL_CTX_new(TLS_client_method());
  tls_verify_ = SSL_CTX_new(TLS_client_method());
  if (!tls_noverify_ || !tls_verify_) return absl::InternalError("SSL_CTX_new failed");
  for (SSL_CTX* c : {tls_noverify_, tls_verify_}) {
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  }
  SSL_CTX_set_default_verify_paths(tls_verify_);
  SSL_CTX_set_verify(tls_verify_, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_verify(tls_noverify_, SSL_VERIFY_NONE, nullptr);

  // Rebuild the schedule from the spool (keys only).
  size_t n = 0;
  absl::Status st = deps_.spool->ScanSchedule([&](int64_t when, const queue::QueueId& id) {
    if (scheduled_.insert(id).second) {
      heap_.push({when, id});
      ++n;
    }
    return true;
  });
  MXR_RETURN_IF_ERROR(st);
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  spdlog::info("event=delivery_started scheduled={} port={} resolver={}", n, cfg_.port,
               cfg_.resolver.empty() ? "system" : cfg_.resolver);
  loop_->SetTicker(250, [this] { Tick(); });
  return absl::OkStatus();
}

void EngineImpl::Enqueue(std::unique_ptr<Msg> m) {
  if (m->budgeted) m->budget = &body_budget_;
  const queue::QueueId id = m->meta.id;
  oldest_.Committed(id);
  if (active_.count(id) || scheduled_.count(id)) return;
  if (m->meta.next_attempt_us <= deps_.clock->NowMicros() &&
      active_.size() + loading_ < kMaxActiveMessages) {
    return StartMessage(std::move(m));  // fresh and due: no spool read needed
  }
  scheduled_.insert(id);
  heap_.push({m->meta.next_attempt_us, id});
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  PumpSchedule();
}

bool EngineImpl::ReserveBodyBudget(uint64_t bytes) {
  if (bytes > kMaxInMemoryBody) return false;
  int64_t after = body_budget_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  if (after > kBodyBudgetBytes) {
    body_budget_.fetch_sub(static_cast<int64_t>(bytes));
    return false;
  }
  return true;
}

Msg::~Msg() {
  if (budget) budget->fetch_sub(static_cast<int64_t>(budgeted));
}

void EngineImpl::Tick() {
  resolver_->Tick();
  int64_t now = loop_->now_ms();
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn* c = (it++)->get();
    c->CheckTimeout(now);
  }
  for (auto& [k, s] : sites_) {
    if (s->queued > 0) Pump(s.get());
  }
  // Forget sites unused for 10 minutes (bounded memory with many domains);
  // keep backed-off ones so their backoff survives.
  if (now - last_site_gc_ms_ > 60'000) {
    last_site_gc_ms_ = now;
    std::erase_if(sites_, [now](const auto& kv) {
      const Site& st = *kv.second;
      return st.queued == 0 && st.conns.empty() && st.window.dead_until_ms < now &&
             now - st.last_used_ms > 600'000;
    });
  }
  PumpSchedule();
  if (now - last_relabel_ms_ >= 60'000) {
    last_relabel_ms_ = now;
    RelabelSites(now);
  }
  if (now - last_oldest_ms_ >= 1'000 && !oldest_.in_flight()) {
    last_oldest_ms_ = now;
    RefreshOldest();
  }
  PublishSnapshot(now);
}

void EngineImpl::RefreshOldest() {
  queue::Spool* spool = deps_.spool;
  EventLoop* loop = loop_.get();
  io_->Submit([this, spool, loop, from = oldest_.Begin()] {
    auto r = spool->OldestFrom(from);
    loop->Post([this, r = std::move(r)]() mutable {
      if (!r.ok()) {
        oldest_.OnFailure();  // the gauge keeps its last value; asked again in a second
        if (!oldest_failing_) {
          oldest_failing_ = true;
          spdlog::warn("event=oldest_message_query_failed error=\"{}\" effect=\"{} stale\"",
                       r.status(), "mxrelay_queue_oldest_message_age_seconds");
        }
        return;
      }
      if (oldest_failing_) {
        oldest_failing_ = false;
        spdlog::info("event=oldest_message_query_recovered");
      }
      std::optional<queue::QueueId> oldest = oldest_.OnAnswer(*r);
      stats_->oldest_message_us = oldest ? static_cast<int64_t>(oldest->time_us) : 0;
    });
  });
}

void EngineImpl::CountSiteAttempt(const std::string& label, int outcome) {
  if (label.empty()) return;  // failed before a site was known (DNS)
  auto it = labelled_.find(label);
  SiteCounters* c = &other_;
  if (it == labelled_.end() && unpinned_labels_ < static_cast<size_t>(std::max(0, deps_.config->metrics.site_labels))) {
    it = labelled_.emplace(label, SiteCounters{}).first;  // a free slot: label it at once
    unpinned_labels_++;
  }
  if (it != labelled_.end()) {
    c = &it->second;
  } else if (recent_.size() < 100000) {
    recent_[label]++;
  }
  c->attempts[outcome]++;
  c->last_active_ms = loop_->now_ms();
}

void EngineImpl::RelabelSites(int64_t now_ms) {
  // Give back labels idle for an hour (routes keep theirs).
  std::erase_if(labelled_, [now_ms](const auto& kv) {
    return !kv.second.pinned && now_ms - kv.second.last_active_ms > 3'600'000;
  });
  size_t unpinned = 0;
  for (const auto& [l, c] : labelled_) unpinned += c.pinned ? 0 : 1;
  unpinned_labels_ = unpinned;
  size_t cap = static_cast<size_t>(std::max(0, deps_.config->metrics.site_labels));
  if (unpinned < cap && !recent_.empty()) {
    std::vector<std::pair<uint64_t, std::string>> busy;
    busy.reserve(recent_.size());
    for (auto& [l, n] : recent_) busy.emplace_back(n, l);
    size_t take = std::min(cap - unpinned, busy.size());
    std::partial_sort(busy.begin(), busy.begin() + take, busy.end(), std::greater<>());
    for (size_t i = 0; i < take; ++i) {
      SiteCounters& c = labelled_[busy[i].second];  // a new series, counting from now
      c.last_active_ms = now_ms;
      unpinned_labels_++;
    }
  }
  recent_.clear();
}

void EngineImpl::PublishSnapshot(int64_t now_ms) {
  DeliverySnapshot snap;
  std::unordered_map<std::string, size_t> index;
  for (const auto& [l, c] : labelled_) {
    index[l] = snap.sites.size();
    SiteFigures f;
    f.label = l;
    std::copy(std::begin(c.attempts), std::end(c.attempts), std::begin(f.attempts));
    snap.sites.push_back(std::move(f));
  }
  SiteFigures other;
  other.label = "other";
  std::copy(std::begin(other_.attempts), std::end(other_.attempts), std::begin(other.attempts));
  int64_t backed_off = 0;
  for (const auto& [k, s] : sites_) {
    bool dead = s->window.dead_until_ms > now_ms;
    backed_off += dead ? 1 : 0;
    auto it = index.find(s->label);
    SiteFigures& f = it == index.end() ? other : snap.sites[it->second];
    f.connections += static_cast<int64_t>(s->conns.size());
    f.queued_jobs += static_cast<int64_t>(s->queued);
    f.backed_off = f.backed_off || dead;
  }
  snap.sites.push_back(std::move(other));
  stats_->sites_backed_off = backed_off;
  Resolver::Stats rs = resolver_->stats();
  snap.dns_ok = rs.ok;
  snap.dns_nxdomain = rs.nxdomain;
  snap.dns_nullmx = rs.nullmx;
  snap.dns_tempfail = rs.tempfail;
  snap.dns_cache_hits = rs.cache_hits;
  snap.dns_coalesced = rs.coalesced;
  snap.dns_micros = std::move(rs.micros);
  stats_->Publish(std::move(snap));
}

void EngineImpl::PumpSchedule() {
  int64_t now_us = deps_.clock->NowMicros();
  while (!heap_.empty() && heap_.top().first <= now_us && active_.size() + loading_ < kMaxActiveMessages) {
    queue::QueueId id = heap_.top().second;
    heap_.pop();
    scheduled_.erase(id);
    Activate(id);
  }
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
}

void EngineImpl::Activate(const queue::QueueId& id) {
  loading_++;
  queue::Spool* spool = deps_.spool;
  EventLoop* loop = loop_.get();
  io_->Submit([this, spool, loop, id] {
    auto meta = spool->LoadMeta(id);
    loop->Post([this, id, meta = std::move(meta)]() mutable {
      loading_--;
      if (!meta.ok()) {
        if (meta.status().code() != absl::StatusCode::kNotFound) {
          spdlog::error("event=load_failed id={} error=\"{}\"", id.ToString(), meta.status());
        }
        return;
      }
      auto m = std::make_unique<Msg>();
      m->meta = std::move(*meta);
      StartMessage(std::move(m));
    });
  });
}

const RouteConfig* EngineImpl::FindRoute(const std::string& domain) const {
  const RouteConfig* star = nullptr;
  for (const auto& r : *routes_) {
    if (r.domain == domain) return &r;
    if (r.domain == "*") star = &r;
  }
  return star;
}

void EngineImpl::StartMessage(std::unique_ptr<Msg> m) {
  Msg* msg = m.get();
  if (active_.count(m->meta.id)) return;
  active_[m->meta.id] = std::move(m);
  stats_->messages_active = static_cast<int64_t>(active_.size());
  msg->outcomes.assign(msg->meta.recipients.size(), RcptOutcome{});
  // Group pending recipients by domain, up to max_recipients_per_transaction each.
  std::unordered_map<std::string, Job*> open;
  for (size_t i = 0; i < msg->meta.recipients.size(); ++i) {
    if (msg->meta.recipients[i].state != queue::RcptState::kPending) continue;
    std::string d = DomainOf(msg->meta.recipients[i].address);
    Job*& j = open[d];
    if (j == nullptr || j->rcpts.size() >= static_cast<size_t>(cfg_.max_recipients_per_transaction)) {
      msg->jobs.push_back(std::make_unique<Job>());
      j = msg->jobs.back().get();
      j->msg = msg;
      j->domain = d;
    }
    j->rcpts.push_back(i);
  }
  msg->pending_jobs = static_cast<int>(msg->jobs.size());
  if (msg->jobs.empty()) return Finalize(msg);
  if (Expired(cfg_, msg->meta.received_us, deps_.clock->NowMicros()) && msg->meta.attempts > 0) {
    // Too old: no further attempt (Finalize turns pending into expired bounces).
    msg->pending_jobs = 0;
    return Finalize(msg);
  }
  for (auto& j : msg->jobs) Route(j.get());
}

void EngineImpl::Route(Job* j) {
  const RouteConfig* route = FindRoute(j->domain);
  if (route && !route->host.empty()) {
    uint16_t port = route->port ? route->port : cfg_.port;
    JobToSite(j, Cat("route:", route->host, ":", port), {route->host}, route);
    return;
  }
  if (j->domain.empty()) return FailJob(j, 550, "5.1.3", "Recipient address has no domain");
  Msg* m = j->msg;
  queue::QueueId id = m->meta.id;
  // `routes` keeps `route` alive if a SIGHUP replaces the routes meanwhile.
  resolver_->ResolveMx(j->domain, [this, j, id, route, routes = routes_](const MxAnswer& a) {
    if (!active_.count(id)) return;
    switch (a.outcome) {
      case DnsOutcome::kNullMx:
        return FailJob(j, 556, "5.1.10", a.error);
      case DnsOutcome::kPermanent:
        return FailJob(j, 550, "5.1.2", a.error);
      case DnsOutcome::kTemporary:
        return FailJob(j, 451, "4.4.3", a.error);
      case DnsOutcome::kOk:
        break;
    }
    std::vector<std::string> sorted = a.hosts;
    std::sort(sorted.begin(), sorted.end());
    std::string key = Cat("mx:", fmt::format("{}", fmt::join(sorted, ",")), ":", cfg_.port);
    JobToSite(j, key, a.hosts, route);
  });
}

void EngineImpl::JobToSite(Job* j, const std::string& key, std::vector<std::string> hosts,
                           const RouteConfig* route) {
  auto& sp = sites_[key];
  bool fresh = !sp;
  if (fresh) {
    sp = std::make_unique<Site>();
    sp->key = key;
    if (route && !route->host.empty()) {
      sp->label = Cat("route:", route->domain);
    } else {
      std::vector<std::string> sorted = hosts;
      std::sort(sorted.begin(), sorted.end());
      sp->label = sorted.empty() ? key : sorted.front();
    }
  }
  if (fresh || sp->routes_gen != routes_gen_) {  // new site, or routes reloaded
    sp->routes_gen = routes_gen_;
    sp->port = cfg_.port;
    sp->tls = cfg_.tls;
    sp->max_conns = cfg_.max_connections_per_site;
    sp->auth_user.clear();
    sp->auth_password.clear();
    if (route) {
      if (!route->host.empty() && route->port) sp->port = route->port;
      if (route->tls_set) sp->tls = route->tls;
      if (route->max_connections) sp->max_conns = route->max_connections;
      sp->auth_user = route->auth_user;
      sp->auth_password = route->auth_password;
    }
    if (fresh) {
      InitWindow(cfg_, sp->max_conns, &sp->window);
    } else {
      sp->window.window = std::min(sp->window.window, sp->max_conns);
    }
  }
  Site* s = sp.get();
  s->hosts = std::move(hosts);  // latest order (shuffled within preference)
  j->site = s;
  if (s->window.dead_until_ms > loop_->now_ms()) return HoldJob(j);
  s->Push(j);
  Pump(s);
}

void EngineImpl::HoldJob(Job* j) {
  // The site is backed off: reschedule for when it may be probed again,
  // without charging the message an attempt.
  Site* s = j->site;
  int64_t until_us = deps_.clock->NowMicros() + (s->window.dead_until_ms - loop_->now_ms()) * 1000;
  Msg* m = j->msg;
  for (size_t i : j->rcpts) {
    RcptOutcome& o = m->outcomes[i];
    o.set = true;
    o.not_attempted = true;
    o.hold_until_us = until_us;
    o.code = 451;
    o.enhanced = s->last_error.enhanced.empty() ? "4.4.1" : s->last_error.enhanced;
    o.text = Cat("Destination ", s->key, " backed off after connection failures");
    if (s->last_error.code) o.text += Cat("; last error: ", s->last_error.ToString());
    o.site = s->key;
    o.site_label = s->label;
  }
  if (--m->pending_jobs == 0) Finalize(m);
}

void EngineImpl::FailJob(Job* j, int code, const std::string& enhanced, const std::string& text) {
  Msg* m = j->msg;
  for (size_t i : j->rcpts) {
    RcptOutcome& o = m->outcomes[i];
    o.set = true;
    o.code = code;
    o.enhanced = enhanced;
    o.text = text;
  }
  if (--m->pending_jobs == 0) Finalize(m);
}

void EngineImpl::Pump(Site* s) {
  int64_t now = loop_->now_ms();
  s->last_used_ms = now;
  // Idle connections first.
  for (Conn* c : s->conns) {
    if (s->queued == 0) break;
    if (c->idle()) OnConnReady(c);
  }
  int allowed = AllowedConnections(now, &s->window);
  for (;;) {
    size_t connecting = 0;
    for (Conn* c : s->conns) connecting += c->connecting();
    // Each connection still being set up will take one queued job.
    if (s->queued <= connecting || static_cast<int>(s->conns.size()) >= allowed) break;
    conns_.push_back(std::make_unique<Conn>(this, s));
    Conn* c = conns_.back().get();
    c->self = std::prev(conns_.end());
    s->conns.push_back(c);
    c->in_site = std::prev(s->conns.end());
    c->Begin();
  }
}

void EngineImpl::OnConnReady(Conn* c) {
  Site* s = c->site();
  if (c->messages() >= cfg_.max_messages_per_connection) return c->Quit();
  Job* j = s->Pop();
  if (j == nullptr) return;  // idle until the idle timeout
  if (j->msg->body) return c->Take(j);
  c->AwaitBody(j);  // bodies stay on disk until a connection is ready for them
}

void EngineImpl::Requeue(Job* j) {
  j->site->Push(j);
  Site* s = j->site;
  loop_->Post([this, s] { Pump(s); });
}

void EngineImpl::NeedBody(Msg* m, std::function<void()> then) {
  if (m->body) return then();
  m->body_waiters.push_back(std::move(then));
  if (m->body_loading) return;
  m->body_loading = true;
  queue::Spool* spool = deps_.spool;
  EventLoop* loop = loop_.get();
  queue::QueueId id = m->meta.id;
  io_->Submit([this, spool, loop, id] {
    auto body = spool->ReadBody(id);
    loop->Post([this, id, body = std::move(body)]() mutable {
      auto it = active_.find(id);
      if (it == active_.end()) return;
      Msg* msg = it->second.get();
      msg->body_loading = false;
      if (!body.ok()) {
        spdlog::error("event=body_read_failed id={} error=\"{}\"", id.ToString(), body.status());
        msg->body = std::string();  // jobs will fail below
      } else {
        msg->body = std::move(*body);
      }
      auto waiters = std::move(msg->body_waiters);
      msg->body_waiters.clear();
      for (auto& w : waiters) w();
    });
  });
}

void EngineImpl::OnJobDone(Conn* c, Job* j, const std::vector<RcptResult>& results) {
  Msg* m = j->msg;
  for (size_t k = 0; k < j->rcpts.size() && k < results.size(); ++k) {
    RcptOutcome& o = m->outcomes[j->rcpts[k]];
    o.set = true;
    o.code = results[k].code;
    o.enhanced = results[k].enhanced;
    o.text = results[k].text;
    o.mx_host = c ? c->host() : "";
    o.ip = c ? c->ip() : "";
    o.site = j->site ? j->site->key : "";
    o.site_label = j->site ? j->site->label : "";
    o.tls = c ? c->tls_version() : "";
  }
  // The site is working if the server really answered (2xx or 5xx); a
  // transaction ended by 421 or a timeout counts against the connection in
  // OnConnGone instead.
  bool answered = false;
  for (const auto& r : results) answered |= Classify(r.code) != ReplyClass::kTransient;
  if (j->site && c && answered) OnConnectSuccess(j->site->max_conns, &j->site->window);
  if (--m->pending_jobs == 0) Finalize(m);
}

void EngineImpl::OnConnGone(Conn* c, bool ever_ready, const Reply& why) {
  Site* s = c->site();
  (ever_ready ? stats_->connections_ok : stats_->connections_failed)++;
  // A job in flight was already reported through OnJobDone. A session that
  // worked and then failed (421, timeout, reset) is a connection-level
  // failure too; a normal end (our QUIT answered, 2xx) is not.
  if (!ever_ready || why.code >= 400) {
    stats_->connection_failures++;
    s->last_error = why;
    if (OnConnectFailure(cfg_, loop_->now_ms(), &s->window)) {
      stats_->site_backoffs++;
      spdlog::warn("event=site_backoff site={} seconds={} last_error=\"{}\" queued={}", s->key,
                   s->window.backoff_ms / 1000, why.ToString(), s->queued);
      while (Job* held = s->Pop()) HoldJob(held);
    } else {
      spdlog::info("event=connection_failed site={} error=\"{}\"", s->key, why.ToString());
    }
  }
  Release(c);
}

void EngineImpl::Release(Conn* c) {
  Site* s = c->site();
  s->conns.erase(c->in_site);
  c->in_site = s->conns.end();
  if (s->queued > 0) {
    Site* site = s;
    loop_->Post([this, site] { Pump(site); });
  }
}

void EngineImpl::Log(const Msg& m, size_t rcpt, const RcptOutcome& o, const char* outcome) {
  DeliveryEvent e;
  e.time_us = deps_.clock->NowMicros();
  e.queue_id = m.meta.id.ToString();
  e.sender = m.meta.sender;
  e.recipient = m.meta.recipients[rcpt].address;
  e.outcome = outcome;
  e.site = o.site;
  e.mx_host = o.mx_host;
  e.ip = o.ip;
  e.tls = o.tls;
  e.code = o.code;
  e.enhanced = o.enhanced;
  e.response = o.text;
  e.attempt = m.meta.recipients[rcpt].attempts + 1;
  e.queue_seconds = (e.time_us - m.meta.received_us) / 1e6;
  event_log_.Write(e);
}

void EngineImpl::Finalize(Msg* m) {
  int64_t now_us = deps_.clock->NowMicros();
  bool expired = Expired(cfg_, m->meta.received_us, now_us);
  std::vector<FailedRecipient> bounced;
  for (size_t i = 0; i < m->meta.recipients.size(); ++i) {
    auto& r = m->meta.recipients[i];
    if (r.state != queue::RcptState::kPending) continue;
    RcptOutcome& o = m->outcomes[i];
    if (!o.set) {  // no attempt (expired before trying)
      o.set = true;
      o.code = r.last_code ? static_cast<int>(r.last_code) : 451;
      o.text = r.last_response.empty() ? "No delivery attempt" : r.last_response;
    }
    ReplyClass cls = Classify(o.code);
    if (cls == ReplyClass::kSuccess) {
      Log(*m, i, o, "delivered");
      r.state = queue::RcptState::kDelivered;
      stats_->attempts_delivered++;
      CountSiteAttempt(o.site_label, 0);
      stats_->delivery_latency_us.Observe(
          static_cast<uint64_t>(std::max<int64_t>(0, now_us - m->meta.received_us)));
    } else if (cls == ReplyClass::kPermanent) {
      Log(*m, i, o, "bounced");
      r.state = queue::RcptState::kBounced;
      stats_->attempts_bounced++;
      CountSiteAttempt(o.site_label, 2);
      bounced.push_back(FailedRecipient{r.address, o.code, o.enhanced, o.text, o.mx_host});
    } else if (expired) {
      RcptOutcome x = o;
      x.enhanced = "4.4.7";
      x.text = Cat("Delivery time expired; last error: ", o.code, " ", o.enhanced, " ", o.text);
      Log(*m, i, x, "expired");
      r.state = queue::RcptState::kBounced;
      stats_->attempts_expired++;
      CountSiteAttempt(o.site_label, 3);
      bounced.push_back(FailedRecipient{r.address, o.code, "4.4.7", x.text, o.mx_host});
    } else {
      Log(*m, i, o, "deferred");
      stats_->attempts_deferred++;
      CountSiteAttempt(o.site_label, 1);
    }
    if (o.not_attempted && r.state == queue::RcptState::kPending) continue;
    r.attempts++;
    r.last_code = static_cast<uint32_t>(o.code);
    r.last_response = Cat(o.enhanced, o.enhanced.empty() ? "" : " ", o.text);
  }
  if (bounced.empty() || m->meta.sender.empty()) {
    if (!bounced.empty()) {
      spdlog::info("event=bounce_discarded id={} reason=null_sender recipients={}",
                   m->meta.id.ToString(), bounced.size());
    }
    return Persist(m, true);
  }
  // A DSN needs the original's headers: load the body if no attempt did.
  NeedBody(m, [this, m, bounced = std::move(bounced)]() mutable {
    queue::NewMessage dsn = BuildDsn(m->meta, *m->body, bounced, deps_.hostname, deps_.ids->Next(),
                                     deps_.clock->NowMicros());
    queue::QueueId id = m->meta.id;
    std::string dsn_id = dsn.meta.id.ToString();
    EventLoop* loop = loop_.get();
    deps_.spool->Commit(std::move(dsn), [this, loop, id, dsn_id](absl::Status st) {
      loop->Post([this, id, st, dsn_id] {
        auto it = active_.find(id);
        if (it == active_.end()) return;
        if (st.ok()) {
          stats_->dsns_queued++;
          spdlog::info("event=dsn_queued id={} dsn_id={}", id.ToString(), dsn_id);
        } else {
          spdlog::error("event=dsn_commit_failed id={} error=\"{}\" action=\"kept the recipients pending\"",
                        id.ToString(), st);
        }
        Persist(it->second.get(), st.ok());
      });
    });
  });
}

void EngineImpl::Persist(Msg* m, bool bounce_committed) {
  if (stopping_) {
    // Shutting down: results of transactions we aborted are not recorded, so
    // the message is simply tried again right after the restart.
    active_.erase(m->meta.id);
    return;
  }
  if (!bounce_committed) {
    // The DSN is not durable: the bounced recipients stay pending and are tried again.
    for (auto& r : m->meta.recipients) {
      if (r.state == queue::RcptState::kBounced) r.state = queue::RcptState::kPending;
    }
  }
  int64_t now_us = deps_.clock->NowMicros();
  queue::MessageMeta meta = m->meta;
  int64_t old_next = meta.next_attempt_us;
  bool done = meta.PendingRecipients() == 0;
  if (!done) {
    // Recipients held back by a site backoff were not attempted: if that is
    // all that is left, retry when the site may be probed, uncharged.
    bool attempted = false;
    int64_t hold = 0;
    for (size_t i = 0; i < meta.recipients.size(); ++i) {
      if (meta.recipients[i].state != queue::RcptState::kPending) continue;
      if (m->outcomes[i].not_attempted) {
        hold = std::max(hold, m->outcomes[i].hold_until_us);
      } else {
        attempted = true;
      }
    }
    if (attempted) {
      meta.attempts++;
      std::uniform_real_distribution<double> jitter(0.0, 1.0);
      meta.next_attempt_us = now_us + RetryDelayMs(cfg_, meta.attempts, jitter(rng_)) * 1000;
    } else {
      meta.next_attempt_us = std::max(now_us, hold);
    }
  }
  active_.erase(meta.id);  // frees m
  stats_->messages_active = static_cast<int64_t>(active_.size());
  // Bookkeeping rides with the spool's next group commit (no thread hop,
  // no separate WAL write); unsynced: a crash can only mean a redelivery.
  if (done) {
    deps_.spool->DeleteAsync(meta);
    stats_->messages_completed++;
  } else {
    deps_.spool->UpdateAsync(meta, old_next);
    if (scheduled_.insert(meta.id).second) heap_.push({meta.next_attempt_us, meta.id});
    stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  }
  ScheduleBookkeepingFlush();
  PumpSchedule();
}

void EngineImpl::ScheduleBookkeepingFlush() {
  if (flush_armed_) return;
  flush_armed_ = true;
  loop_->RunAfter(kBookkeepingFlushMs, [this] {
    flush_armed_ = false;
    deps_.spool->FlushAsync();
  });
}

void EngineImpl::CloseAll() {
  stopping_ = true;
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn* c = (it++)->get();
    c->ForceClose();
  }
}

// --------------------------------------------------------- DeliveryEngine

DeliveryEngine::DeliveryEngine(Deps deps) : deps_(std::move(deps)) {}

DeliveryEngine::~DeliveryEngine() {
  Stop();
  impl_.reset();
}

absl::Status DeliveryEngine::Start() {
  std::promise<absl::Status> started;
  auto f = started.get_future();
  thread_ = std::thread([this, &started] {
    SetThreadName("mxr-delivery");
    auto impl = std::make_unique<EngineImpl>(deps_, &stats_);
    absl::Status st = impl->Init();
    if (!st.ok()) {
      started.set_value(st);
      return;
    }
    impl_ = std::move(impl);
    started.set_value(absl::OkStatus());
    impl_->Run();
    impl_->CloseAll();
    // Let cancellations complete (bounded), then drop everything.
    for (int i = 0; i < 50 && stats_.connections_active.load() > 0; ++i) {
      impl_->loop()->Post([] {});
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  absl::Status st = f.get();
  if (!st.ok()) {
    thread_.join();
    return st;
  }
  running_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

void DeliveryEngine::Stop() {
  if (!thread_.joinable()) return;
  running_.store(false, std::memory_order_release);
  impl_->loop()->Stop();
  thread_.join();
  // Finish queued spool writes now, while the spool surely exists. The loop
  // stays allocated until the destructor: late spool callbacks may Post().
  impl_->StopIo();
}

void DeliveryEngine::Enqueue(queue::NewMessage& msg) {
  if (!running_.load(std::memory_order_acquire)) return;
  EngineImpl* impl = impl_.get();
  auto m = std::make_unique<Msg>();
  m->meta = std::move(msg.meta);
  if (impl->ReserveBodyBudget(m->meta.body_size)) {
    // The client's body with our trace headers in front: an in-place move
    // (no new allocation of a 100 KB string, no page faults) when its
    // capacity allows, as it usually does after the reader's growth.
    std::string body = std::move(msg.body);
    body.insert(0, msg.header_prefix);
    m->body = std::move(body);
    m->budgeted = m->meta.body_size;
  }
  impl->loop()->Post([impl, m = std::move(m)]() mutable { impl->Enqueue(std::move(m)); });
}

void DeliveryEngine::SetRoutes(std::vector<RouteConfig> routes) {
  if (!running_.load(std::memory_order_acquire)) return;
  EngineImpl* impl = impl_.get();
  impl->loop()->Post([impl, routes = std::move(routes)]() mutable { impl->SetRoutes(std::move(routes)); });
}

void DeliveryEngine::ReopenEventLog() {
  if (!running_.load(std::memory_order_acquire)) return;
  EngineImpl* impl = impl_.get();
  impl->loop()->Post([impl] { impl->ReopenLog(); });
}

}  // namespace mxr::delivery
