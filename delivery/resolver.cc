#include "delivery/resolver.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <unordered_map>

#include "common/strings.h"
#include "delivery/dns_cache.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {

std::vector<std::string> OrderMx(std::vector<MxRecord> records,
                                 const std::function<size_t(size_t)>& rand) {
  std::stable_sort(records.begin(), records.end(),
                   [](const MxRecord& a, const MxRecord& b) { return a.pref < b.pref; });
  for (size_t i = 0; i < records.size();) {
    size_t j = i;
    while (j < records.size() && records[j].pref == records[i].pref) ++j;
    for (size_t k = j - 1; k > i; --k) std::swap(records[k], records[i + rand(k - i + 1)]);
    i = j;
  }
  std::vector<std::string> out;
  for (auto& r : records) out.push_back(std::move(r.host));
  return out;
}

int MinAnswerTtl(const unsigned char* buf, int len) {
  if (len < 12) return -1;
  int qd = buf[4] << 8 | buf[5], an = buf[6] << 8 | buf[7];
  int pos = 12;
  auto skip_name = [&]() -> bool {
    while (pos < len) {
      int l = buf[pos];
      if ((l & 0xc0) == 0xc0) {
        pos += 2;
        return pos <= len;
      }
      pos += 1 + l;
      if (l == 0) return pos <= len;
    }
    return false;
  };
  for (int i = 0; i < qd; ++i) {
    if (!skip_name()) return -1;
    pos += 4;
  }
  int min_ttl = -1;
  for (int i = 0; i < an; ++i) {
    if (!skip_name() || pos + 10 > len) return min_ttl;
    uint32_t ttl = static_cast<uint32_t>(buf[pos + 4]) << 24 | buf[pos + 5] << 16 | buf[pos + 6] << 8 | buf[pos + 7];
    int rdlen = buf[pos + 8] << 8 | buf[pos + 9];
    pos += 10 + rdlen;
    int t = static_cast<int>(std::min<uint32_t>(ttl, 0x7fffffff));
    if (min_ttl < 0 || t < min_ttl) min_ttl = t;
  }
  return min_ttl;
}

namespace {

DnsOutcome FromAres(int status) {
  switch (status) {
    case ARES_SUCCESS: return DnsOutcome::kOk;
    case ARES_ENOTFOUND: return DnsOutcome::kPermanent;  // NXDOMAIN
    default: return DnsOutcome::kTemporary;              // SERVFAIL, timeout, refused...
  }
}

class CaresResolver final : public Resolver {
 public:
  CaresResolver(EventLoop* loop, const DeliveryConfig& cfg) : loop_(loop), cfg_(cfg), rng_(std::random_device{}()) {}
  ~CaresResolver() override {
    if (channel_) ares_destroy(channel_);  // runs pending callbacks with ARES_EDESTRUCTION
    for (auto& [id, p] : polls_) p->resolver = nullptr;  // late CQEs find no owner
    for (auto& [id, p] : polls_) orphans_.push_back(std::move(p));
    // orphans_ leak deliberately if CQEs are still pending: the loop outlives us.
    for (auto& p : orphans_) p.release();
  }

  absl::Status Init() {
    int r = ares_library_init(ARES_LIB_INIT_ALL);
    if (r != ARES_SUCCESS) return absl::InternalError(Cat("ares_library_init: ", ares_strerror(r)));
    ares_options o{};
    o.sock_state_cb = &SockState;
    o.sock_state_cb_data = this;
    o.timeout = cfg_.dns_timeout_ms;
    o.tries = 2;
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
    r = ares_init_options(&channel_, &o, mask);
    if (r != ARES_SUCCESS) return absl::InternalError(Cat("ares_init_options: ", ares_strerror(r)));
    if (!cfg_.resolver.empty()) {
      r = ares_set_servers_ports_csv(channel_, cfg_.resolver.c_str());
      if (r != ARES_SUCCESS) {
        return absl::InvalidArgumentError(Cat("delivery.resolver '", cfg_.resolver, "': ", ares_strerror(r)));
      }
    }
    return absl::OkStatus();
  }

  void ResolveMx(const std::string& domain, std::function<void(const MxAnswer&)> done) override {
    stats_.lookups++;
    if (const MxCacheEntry* e = mx_cache_.Find(domain, loop_->now_ms())) {
      stats_.cache_hits++;
      MxAnswer a = e->answer;
      if (a.outcome == DnsOutcome::kOk && !a.implicit) a.hosts = Reshuffle(e->records);
      loop_->Post([done = std::move(done), a] { done(a); });
      return;
    }
    if (!mx_inflight_.Join(domain, std::move(done))) {
      stats_.coalesced++;
      return;
    }
    auto* q = new MxQuery{this, domain, std::chrono::steady_clock::now()};
    ares_query(channel_, domain.c_str(), ns_c_in, ns_t_mx, &OnMx, q);
  }

  void ResolveHost(const std::string& host, std::function<void(const AddrAnswer&)> done) override {
    stats_.lookups++;
    auto ip = IpAddress::Parse(host);
    if (ip.ok()) {
      AddrAnswer a;
      a.addrs.push_back(*ip);
      loop_->Post([done = std::move(done), a] { done(a); });
      return;
    }
    if (const AddrAnswer* cached = addr_cache_.Find(host, loop_->now_ms())) {
      stats_.cache_hits++;
      loop_->Post([done = std::move(done), a = *cached] { done(a); });
      return;
    }
    if (!addr_inflight_.Join(host, std::move(done))) {
      stats_.coalesced++;
      return;
    }
    auto* q = new AddrQuery{this, host, std::chrono::steady_clock::now()};
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &OnAddr, q);
  }

  void ResolveTxt(const std::string& name,
                  std::function<void(bool ok, std::vector<std::string>)> done) override {
    stats_.lookups++;
    auto* q = new TxtQuery{this, name, std::move(done)};
    ares_query(channel_, name.c_str(), ns_c_in, ns_t_txt, &OnTxt, q);
  }

  void Tick() override {
    if (channel_) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  }

  Stats stats() const override {
    Stats s = stats_;
    s.micros = latency_.Snapshot();
    return s;
  }

 private:
  // One query on the wire; its askers wait in mx_inflight_ / addr_inflight_.
  struct MxQuery {
    CaresResolver* self;
    std::string domain;
    std::chrono::steady_clock::time_point start;
  };
  struct TxtQuery {
    CaresResolver* self;
    std::string name;
    std::function<void(bool, std::vector<std::string>)> done;
  };
  struct AddrQuery {
    CaresResolver* self;
    std::string host;
    std::chrono::steady_clock::time_point start;
  };
  struct Poll : IoOp {
    CaresResolver* resolver = nullptr;
    int fd = -1;
    uint64_t id = 0;
    bool armed = false;
    bool read = false, write = false;
    bool closed = false;
  };
  struct MxCacheEntry {
    MxAnswer answer;
    std::vector<MxRecord> records;  // reshuffled for every asker
  };

  std::vector<std::string> Reshuffle(const std::vector<MxRecord>& recs) {
    return OrderMx(recs, [this](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); });
  }

  void ObserveLatency(std::chrono::steady_clock::time_point start) {
    latency_.Observe(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::steady_clock::now() - start)
                                               .count()));
  }

  int64_t Expiry(int ttl) const {
    int t = std::clamp(ttl < 0 ? cfg_.dns_ttl_min : ttl, cfg_.dns_ttl_min, cfg_.dns_ttl_max);
    return loop_->now_ms() + t * 1000LL;
  }

  static void OnMx(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    std::unique_ptr<MxQuery> q(static_cast<MxQuery*>(arg));
    if (status == ARES_EDESTRUCTION) return;
    CaresResolver* self = q->self;
    self->ObserveLatency(q->start);
    MxAnswer a;
    std::vector<MxRecord> recs;
    int ttl = -1;
    if (status == ARES_SUCCESS) {
      ares_mx_reply* mx = nullptr;
      int pr = ares_parse_mx_reply(abuf, alen, &mx);
      if (pr == ARES_SUCCESS) {
        for (ares_mx_reply* m = mx; m; m = m->next) {
          std::string h = m->host ? m->host : "";
          if (!h.empty() && h.back() == '.') h.pop_back();
          recs.push_back(MxRecord{h, m->priority});
        }
        ares_free_data(mx);
        ttl = MinAnswerTtl(abuf, alen);
      } else {
        status = pr;
      }
    }
    if (status == ARES_SUCCESS && recs.size() == 1 && recs[0].host.empty()) {
      a.outcome = DnsOutcome::kNullMx;
      a.error = Cat("Domain ", q->domain, " does not accept mail (null MX, RFC 7505)");
      self->stats_.nullmx++;
    } else if (status == ARES_SUCCESS && !recs.empty()) {
      std::erase_if(recs, [](const MxRecord& r) { return r.host.empty(); });
      a.hosts = self->Reshuffle(recs);
      self->stats_.ok++;
    } else if (status == ARES_SUCCESS || status == ARES_ENODATA) {
      a.implicit = true;  // no MX: RFC 5321 5.1 implicit MX
      a.hosts = {q->domain};
      self->stats_.ok++;
    } else {
      a.outcome = FromAres(status);
      if (a.outcome == DnsOutcome::kPermanent) {
        a.error = Cat("Domain ", q->domain, " does not exist (NXDOMAIN)");
        self->stats_.nxdomain++;
      } else {
        a.error = Cat("DNS lookup of MX for ", q->domain, " failed: ", ares_strerror(status));
        self->stats_.tempfail++;
      }
    }
    if (a.outcome != DnsOutcome::kTemporary) {
      self->mx_cache_.Put(q->domain, MxCacheEntry{a, recs}, self->Expiry(ttl));
    }
    bool first = true;
    for (auto& done : self->mx_inflight_.Take(q->domain)) {
      // Every asker gets its own shuffle of equal-preference hosts, as from the cache.
      if (!first && a.outcome == DnsOutcome::kOk && !a.implicit) a.hosts = self->Reshuffle(recs);
      first = false;
      done(a);
    }
  }

  static void OnTxt(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    std::unique_ptr<TxtQuery> q(static_cast<TxtQuery*>(arg));
    if (status == ARES_EDESTRUCTION) return;
    std::vector<std::string> out;
    bool ok = true;
    if (status == ARES_SUCCESS) {
      ares_txt_ext* txt = nullptr;
      if (ares_parse_txt_reply_ext(abuf, alen, &txt) == ARES_SUCCESS) {
        for (ares_txt_ext* t = txt; t; t = t->next) {
          if (t->record_start || out.empty()) out.emplace_back();
          out.back().append(reinterpret_cast<const char*>(t->txt), t->length);
        }
        ares_free_data(txt);
      }
    } else if (status != ARES_ENODATA && status != ARES_ENOTFOUND) {
      ok = false;
    }
    q->self->loop_->Post([done = std::move(q->done), ok, out = std::move(out)]() mutable {
      done(ok, std::move(out));
    });
  }

  static void OnAddr(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
    std::unique_ptr<AddrQuery> q(static_cast<AddrQuery*>(arg));
    if (status == ARES_EDESTRUCTION) {
      if (res) ares_freeaddrinfo(res);
      return;
    }
    CaresResolver* self = q->self;
    self->ObserveLatency(q->start);
    AddrAnswer a;
    int ttl = -1;
    if (status == ARES_SUCCESS && res) {
      for (ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
        a.addrs.push_back(IpAddress::FromSockaddr(n->ai_addr));
        if (ttl < 0 || n->ai_ttl < ttl) ttl = n->ai_ttl;
      }
    }
    if (res) ares_freeaddrinfo(res);
    if (status == ARES_SUCCESS && !a.addrs.empty()) {
      // Prefer IPv6 then IPv4 as returned, without duplicates.
      std::vector<IpAddress> uniq;
      for (const auto& ip : a.addrs) {
        if (std::find(uniq.begin(), uniq.end(), ip) == uniq.end()) uniq.push_back(ip);
      }
      a.addrs = std::move(uniq);
      self->stats_.ok++;
    } else if (status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND) {
      self->stats_.nxdomain++;
      a.outcome = DnsOutcome::kPermanent;
      a.error = Cat("Host ", q->host, " has no address (", ares_strerror(status == ARES_SUCCESS ? ARES_ENODATA : status), ")");
    } else {
      self->stats_.tempfail++;
      a.outcome = DnsOutcome::kTemporary;
      a.error = Cat("DNS lookup of ", q->host, " failed: ", ares_strerror(status));
    }
    if (a.outcome != DnsOutcome::kTemporary) self->addr_cache_.Put(q->host, a, self->Expiry(ttl));
    for (auto& done : self->addr_inflight_.Take(q->host)) done(a);
  }

  // c-ares tells us which sockets it wants watched; we watch them with
  // one-shot polls of the event loop.
  static void SockState(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<CaresResolver*>(data);
    auto it = self->by_fd_.find(fd);
    Poll* p = it == self->by_fd_.end() ? nullptr : self->polls_[it->second].get();
    if (!readable && !writable) {
      if (p) {
        p->closed = true;
        self->by_fd_.erase(it);
        if (p->armed) {
          self->loop_->Cancel(p, nullptr);
        } else {
          self->polls_.erase(p->id);
        }
      }
      return;
    }
    if (!p) {
      auto np = std::make_unique<Poll>();
      np->resolver = self;
      np->fd = fd;
      np->id = ++self->next_poll_id_;
      np->fn = &OnPoll;
      p = np.get();
      self->by_fd_[fd] = p->id;
      self->polls_[p->id] = std::move(np);
    }
    p->read = readable;
    p->write = writable;
    if (!p->armed) self->Arm(p);
  }

  void Arm(Poll* p) {
    loop_->PollAdd(p->fd, (p->read ? POLLIN : 0) | (p->write ? POLLOUT : 0), p);
    p->armed = true;
  }

  static void OnPoll(IoOp* op, const Completion* cqe) {
    Poll* p = static_cast<Poll*>(op);
    p->armed = false;
    CaresResolver* self = p->resolver;
    if (self == nullptr) {  // resolver destroyed
      delete p;
      return;
    }
    if (p->closed) {
      self->polls_.erase(p->id);
      return;
    }
    int ev = cqe->res;
    ares_socket_t rfd = ev > 0 && (ev & (POLLIN | POLLERR | POLLHUP)) ? p->fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = ev > 0 && (ev & POLLOUT) ? p->fd : ARES_SOCKET_BAD;
    uint64_t id = p->id;
    ares_process_fd(self->channel_, rfd, wfd);
    auto it = self->polls_.find(id);  // SockState may have closed it meanwhile
    if (it != self->polls_.end() && !it->second->closed && !it->second->armed) self->Arm(it->second.get());
  }

  EventLoop* loop_;
  DeliveryConfig cfg_;
  ares_channel channel_ = nullptr;
  std::mt19937_64 rng_;
  std::unordered_map<ares_socket_t, uint64_t> by_fd_;
  std::unordered_map<uint64_t, std::unique_ptr<Poll>> polls_;
  std::vector<std::unique_ptr<Poll>> orphans_;
  uint64_t next_poll_id_ = 0;
  TtlCache<MxCacheEntry> mx_cache_;
  TtlCache<AddrAnswer> addr_cache_;
  Inflight<MxAnswer> mx_inflight_;
  Inflight<AddrAnswer> addr_inflight_;
  Stats stats_;
  Histogram latency_{buckets::LatencyUs()};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Resolver>> MakeCaresResolver(EventLoop* loop, const DeliveryConfig& cfg) {
  auto r = std::make_unique<CaresResolver>(loop, cfg);
  absl::Status st = r->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Resolver>(std::move(r));
}

}  // namespace mxr::delivery
