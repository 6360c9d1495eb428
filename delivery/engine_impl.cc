#include "delivery/engine_impl.h"

#include <fstream>
#include <sstream>

#include "common/check.h"
#include "common/escape.h"
#include "common/status.h"
#include "common/strings.h"
#include "common/tls_policy.h"
#include "delivery/policy.h"

namespace mxr::delivery {

EngineImpl::~EngineImpl() {
  // Teardown after the loop stopped: what is left is abandoned.
  for (auto& [id, m] : active_) m->abandoned = true;
  conns_.clear();
  resolver_.reset();  // its callbacks look messages up: before active_ goes
  sites_.clear();
  active_.clear();
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
  helo_ = cfg_.helo_name.empty() ? deps_.hostname : cfg_.helo_name;
  MXR_RETURN_IF_ERROR(LoadShaping());
  io_ = std::make_unique<SpoolIo>();
  bodies_ = std::make_unique<BodyLoader>(deps_.spool, io_.get(), loop_.get(), stats_,
                                         static_cast<int64_t>(cfg_.max_body_memory));
  Bookkeeping::Deps bd;
  bd.cfg = &cfg_;
  bd.spool = deps_.spool;
  bd.loop = loop_.get();
  bd.event_log = &event_log_;
  bd.stats = stats_;
  bd.site_metrics = &site_metrics_;
  bd.clock = deps_.clock;
  bd.ids = deps_.ids;
  bd.hostname = deps_.hostname;
  bd.bodies = bodies_.get();
  bd.classifier = classifier_.get();
  bd.find = [this](const queue::QueueId& id) { return Find(id); };
  bookkeeping_ = std::make_unique<Bookkeeping>(
      std::move(bd), [this](ActiveMessage* m, const NextStep& step) { AfterRecord(m, step); });
  SetRoutes(deps_.config->routes);
  MXR_RETURN_IF_ERROR(event_log_.Open());
  tls_noverify_ = SSL_CTX_new(TLS_client_method());
  tls_verify_ = SSL_CTX_new(TLS_client_method());
  if (!tls_noverify_ || !tls_verify_) return absl::InternalError("SSL_CTX_new failed");
  for (SSL_CTX* c : {tls_noverify_, tls_verify_}) {
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    MXR_RETURN_IF_ERROR(ApplyTlsCipherPolicy(c));  // common/tls_policy.h
  }
  if (!cfg_.tls_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(tls_verify_, cfg_.tls_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(Cat("delivery.tls_ca_file ", cfg_.tls_ca_file, ": ", OpenSslError()));
    }
  } else {
    SSL_CTX_set_default_verify_paths(tls_verify_);
  }
  if (cfg_.mta_sts.enabled) {
    sts_fetcher_ = MakeCurlStsFetcher(loop_.get(), cfg_.mta_sts);
    mta_sts_ = std::make_unique<MtaSts>(resolver_.get(), sts_fetcher_.get(), cfg_.mta_sts,
                                        [this] { return deps_.clock->NowMicros() / 1'000'000; });
    TlsRptSender::Deps rd;
    rd.cfg = &cfg_;
    rd.resolver = resolver_.get();
    rd.https = sts_fetcher_.get();
    rd.spool = deps_.spool;
    rd.ids = deps_.ids;
    rd.stats = stats_;
    rd.hostname = deps_.hostname;
    rd.now_us = [this] { return deps_.clock->NowMicros(); };
    tls_rpt_sender_ = std::make_unique<TlsRptSender>(std::move(rd), &tls_rpt_);
  }
  SSL_CTX_set_verify(tls_verify_, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_verify(tls_noverify_, SSL_VERIFY_NONE, nullptr);

  // Rebuild the schedule from the spool (keys only).
  size_t n = 0;
  absl::Status st = deps_.spool->ScanSchedule([&](int64_t when, const queue::QueueId& id) {
    n += scheduled_.Add(when, id) ? 1 : 0;
    return true;
  });
  MXR_RETURN_IF_ERROR(st);
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  spdlog::info("event=delivery_started scheduled={} port={} resolver={} max_body_memory={}", n, cfg_.port,
               cfg_.resolver.empty() ? "system" : cfg_.resolver, cfg_.max_body_memory);
  loop_->SetTicker(250, [this] { Tick(); });
  return absl::OkStatus();
}

void EngineImpl::SetRoutes(std::vector<RouteConfig> routes) {
  routes_ = std::make_shared<const std::vector<RouteConfig>>(std::move(routes));
  site_metrics_.PinRoutes(*routes_);
  spdlog::info("event=routes_loaded routes={}", routes_->size());
}

// ---------------------------------------------------------- intake, schedule

void EngineImpl::Enqueue(std::unique_ptr<ActiveMessage> m) {
  const queue::QueueId id = m->meta.id;
  oldest_.Committed(id);
  if (active_.count(id) || scheduled_.Contains(id)) return;
  if (!Draining() && m->meta.next_attempt_us <= deps_.clock->NowMicros() &&
      active_.size() + loading_ < kMaxActiveMessages) {
    return StartMessage(std::move(m));  // fresh and due: no spool read needed
  }
  scheduled_.Add(m->meta.next_attempt_us, id);
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  PumpSchedule();
}

bool EngineImpl::ReserveIntakeBudget(uint64_t bytes) {
  if (bytes > kMaxInMemoryBody) return false;
  int64_t after = intake_budget_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  if (after > kIntakeBudgetBytes) {
    intake_budget_.fetch_sub(static_cast<int64_t>(bytes));
    return false;
  }
  return true;
}

void EngineImpl::PumpSchedule() {
  if (Draining()) return;  // nothing new starts while draining
  int64_t now_us = deps_.clock->NowMicros();
  while (active_.size() + loading_ < kMaxActiveMessages) {
    auto id = scheduled_.PopDue(now_us);
    if (!id) break;
    Activate(*id);
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
        admin_pending_.erase(id);  // gone already (delivered, or deleted)
        if (meta.status().code() != absl::StatusCode::kNotFound) {
          spdlog::error("event=load_failed id={} error=\"{}\"", id.ToString(), LogEscape(meta.status().ToString()));
        }
        return;
      }
      auto m = std::make_unique<ActiveMessage>();
      m->meta = std::move(*meta);
      if (Draining()) {  // stopping: it stays scheduled in the spool for the restart
        return;
      }
      StartMessage(std::move(m));
    });
  });
}

void EngineImpl::StartMessage(std::unique_ptr<ActiveMessage> m) {
  ActiveMessage* msg = m.get();
  if (active_.count(m->meta.id)) return;
  active_[m->meta.id] = std::move(m);
  stats_->messages_active = static_cast<int64_t>(active_.size());
  msg->outcomes.assign(msg->meta.recipients.size(), RcptOutcome{});
  MakeJobs(msg, cfg_.max_recipients_per_transaction);
  if ((!admin_pending_.empty() || deps_.holds != nullptr) && AdminFirst(msg)) return;
  if (msg->jobs.empty() ||
      (Expired(cfg_, msg->meta.received_us, deps_.clock->NowMicros()) && msg->meta.attempts > 0)) {
    // Nothing pending, or too old: no further attempt (pending recipients expire).
    for (auto& j : msg->jobs) j->done = true;
    msg->pending_jobs = 0;
    return bookkeeping_->Finish(msg);
  }
  // Only the jobs made here: SplitJob may append jobs that are already routed.
  size_t made = msg->jobs.size();
  for (size_t i = 0; i < made; ++i) {
    Job* j = msg->jobs[i].get();
    if (!j->done) Route(j);  // (an admin hold on its domain finished it already)
  }
}

// ---------------------------------------------------------- admin actions

size_t EngineImpl::AdminApply(const std::vector<queue::QueueId>& ids, DeliveryEngine::AdminAction action) {
  int64_t now = deps_.clock->NowMicros();
  size_t n = 0;
  for (const auto& id : ids) {
    if (action != DeliveryEngine::AdminAction::kRetry) admin_pending_[id] = action;
    n++;
    if (active_.count(id)) continue;  // in a round now: AfterRecord makes it due again
    scheduled_.Remove(id);
    scheduled_.Add(now, id);
  }
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  PumpSchedule();
  return n;
}

bool EngineImpl::AdminFirst(ActiveMessage* msg) {
  const queue::QueueId id = msg->meta.id;
  auto it = admin_pending_.find(id);
  if (it != admin_pending_.end()) {
    DeliveryEngine::AdminAction a = it->second;
    admin_pending_.erase(it);
    if (a == DeliveryEngine::AdminAction::kDelete) {
      spdlog::info("event=admin_deleted id={} sender=<{}> pending={} tenant={} campaign={}", id.ToString(),
                   LogEscape(msg->meta.sender), msg->meta.PendingRecipients(),
                   msg->meta.tenant.empty() ? "-" : LogEscape(msg->meta.tenant),
                   msg->meta.campaign.empty() ? "-" : LogEscape(msg->meta.campaign));
      deps_.spool->DeleteAsync(msg->meta);
      deps_.spool->FlushAsync();
      for (auto& j : msg->jobs) j->done = true;
      msg->pending_jobs = 0;
      active_.erase(id);  // frees msg
      stats_->messages_active = static_cast<int64_t>(active_.size());
      PumpSchedule();
      return true;
    }
    if (a == DeliveryEngine::AdminAction::kBounce && !msg->jobs.empty()) {
      // Every pending recipient fails now: the DSN goes out like any bounce.
      size_t n = msg->jobs.size();
      for (size_t i = 0; i < n; ++i) {
        FailJob(msg->jobs[i].get(), 550, "5.3.0", "Message bounced by the relay's administrator");
      }
      return true;
    }
  }
  if (deps_.holds == nullptr || msg->jobs.empty()) return false;
  int64_t now = deps_.clock->NowMicros();
  if (auto h = deps_.holds->ForMessage(msg->meta, now)) {
    std::string text = Cat("Delivery suspended by the administrator (", HoldKindName(h->rule.kind), " ",
                           h->rule.value, ")");
    size_t n = msg->jobs.size();
    for (size_t i = 0; i < n; ++i) HoldJob(msg->jobs[i].get(), h->until_us, text, /*record_reply=*/false);
    return true;
  }
  // Jobs of a suspended domain are held here; the others are routed.
  std::vector<std::pair<Job*, Holds::Match>> held;
  for (auto& j : msg->jobs) {
    if (auto h = deps_.holds->ForDomain(j->domain, now)) held.emplace_back(j.get(), *h);
  }
  if (held.empty()) return false;
  bool all = held.size() == msg->jobs.size();
  if (all) {
    for (auto& [j, h] : held) HoldJob(j, h.until_us, Cat("Delivery to ", j->domain, " suspended by the administrator"), false);
    return true;
  }
  for (auto& [j, h] : held) HoldJob(j, h.until_us, Cat("Delivery to ", j->domain, " suspended by the administrator"), false);
  return false;  // the rest is routed (held jobs are done)
}

// --------------------------------------------------------------- routing

void EngineImpl::Route(Job* j) {
  const RouteConfig* route = FindRoute(*routes_, j->domain);
  SiteSettings settings = SettingsFor(cfg_, route);
  // The egress source: the message's pool (header, user, tenant), else the
  // route's, else the default; within it by weight and warm-up (egress.h).
  Pool* pool = egress_->PoolFor(j->msg->meta.pool, route ? route->pool : std::string());
  Egress::Choice choice = egress_->Choose(pool, deps_.clock->NowMicros());
  if (choice.source == nullptr) {
    spdlog::info("event=warmup_hold id={} pool={} domain={} until_s={}", j->msg->meta.id.ToString(), pool->name,
                 j->domain, (choice.retry_at_us - deps_.clock->NowMicros()) / 1'000'000);
    return HoldJob(j, choice.retry_at_us, Cat("Warm-up: every source of pool ", pool->name,
                                              " reached its daily cap; waiting for the next day"));
  }
  j->source = choice.source;
  settings.source = choice.source->name;
  settings.bind_address = choice.source->address;
  settings.ehlo = choice.source->ehlo;
  if (route && !route->host.empty()) return JobToSite(j, {route->host}, settings, route->domain);
  if (j->domain.empty()) return FailJob(j, 550, "5.1.3", "Recipient address has no domain");
  if (mta_sts_) {
    queue::QueueId id = j->msg->meta.id;
    return mta_sts_->Lookup(j->domain, [this, j, id, settings](const StsLookup& l) {
      if (Find(id) == nullptr) return;
      RouteByMx(j, settings, l);
    });
  }
  RouteByMx(j, settings, StsLookup{});
}

void EngineImpl::RouteByMx(Job* j, SiteSettings settings, const StsLookup& sts) {
  queue::QueueId id = j->msg->meta.id;
  resolver_->ResolveMx(j->domain, [this, j, id, settings, sts](const MxAnswer& a) mutable {
    if (Find(id) == nullptr) return;
    switch (a.outcome) {
      case DnsOutcome::kNullMx: return FailJob(j, 556, "5.1.10", a.error);
      case DnsOutcome::kPermanent: return FailJob(j, 550, "5.1.2", a.error);
      case DnsOutcome::kTemporary: return FailJob(j, 451, "4.4.3", a.error);
      case DnsOutcome::kOk: break;
    }
    std::vector<std::string> hosts = a.hosts;
    std::string why;
    if (!ApplyStsPolicy(sts, j->domain, &hosts, &settings, &why)) {
      stats_->sts_mx_mismatch++;
      if (sts.policy) tls_rpt_.Failure(j->domain, *sts.policy, "validation-failure", a.hosts.front(), "");
      spdlog::warn("event=mta_sts_mx_mismatch domain={} mx={} action=deferred", j->domain, a.hosts.front());
      return FailJob(j, 451, "4.7.5", why);
    }
    JobToSite(j, hosts, settings, "");
  });
}

void EngineImpl::ReportStsSession(const Site* s, const std::string& result_type, const std::string& mx,
                                  const std::string& ip) {
  const SiteSettings& st = s->settings();
  if (!st.sts) return;
  bool enforce = st.sts->mode == StsMode::kEnforce;
  if (result_type.empty()) {
    tls_rpt_.Success(st.sts_domain, *st.sts);
    (enforce ? stats_->sts_enforce_ok : stats_->sts_testing_ok)++;
    return;
  }
  tls_rpt_.Failure(st.sts_domain, *st.sts, result_type, mx, ip);
  (enforce ? stats_->sts_enforce_failed : stats_->sts_testing_failed)++;
  spdlog::warn("event=mta_sts_session_failed domain={} mode={} mx={} ip={} result={}", st.sts_domain,
               StsModeName(st.sts->mode), mx, ip, result_type);
}

void EngineImpl::JobToSite(Job* j, const std::vector<std::string>& hosts, const SiteSettings& settings,
                           const std::string& route_domain) {
  // Shaping: the most specific rule for the domain and its MX hosts.
  ResolvedShaping shaping = shaping_->Lookup(j->domain, hosts);
  SiteSettings st = settings;
  st.rule = shaping.rule;
  if (!st.max_conns_set && shaping.limits.connection_limit) st.max_conns = *shaping.limits.connection_limit;
  SiteId sid = IdentifySite(hosts, st, route_domain);
  auto& sp = sites_[sid.identity];
  if (!sp) {
    sp = std::make_unique<Site>(sid.identity, sid.name, sid.label, st);
    InitWindow(cfg_, st.max_conns, &sp->window);
    SetUpPath(sp.get(), j, std::move(shaping));
  }
  Site* s = sp.get();
  MXR_DCHECK(j->site == nullptr || j->site == s, "a job moved to another site");
  s->hosts = hosts;  // latest order (shuffled within preference)
  j->site = s;
  if (Draining()) return HoldForRestart(j);
  if (domain_site_.size() > 100'000) domain_site_.clear();
  domain_site_[j->domain] = s->name();
  if (deps_.holds != nullptr) {
    if (auto h = deps_.holds->ForSite(s->name(), deps_.clock->NowMicros())) {
      return HoldJob(j, h->until_us, Cat("Delivery to site ", s->name(), " suspended by the administrator"), false);
    }
  }
  if (s->window.dead_until_ms > loop_->now_ms()) {
    std::string text = Cat("Destination ", s->name(), " backed off after connection failures");
    if (s->last_error.code) text += Cat("; last error: ", s->last_error.ToString());
    return HoldJob(j, deps_.clock->NowMicros() + (s->window.dead_until_ms - loop_->now_ms()) * 1000, text);
  }
  if (s->overrides.Suspended(loop_->now_ms())) return HoldSuspended(s, j);
  if (int m = s->shaping.limits.max_recipients_per_transaction.value_or(0); m > 0 && j->rcpts.size() > size_t(m)) {
    SplitJob(j, static_cast<size_t>(m));
  }
  s->ready.Push(j);
  Pump(s);
}

// The job is held back without an attempt until `until_us` (a backed-off
// site, or a stop).
void EngineImpl::HoldJob(Job* j, int64_t until_us, const std::string& text, bool record_reply) {
  Site* s = j->site;
  std::string enhanced = s && !s->last_error.enhanced.empty() ? s->last_error.enhanced : "4.4.1";
  for (size_t i : j->rcpts) {
    RcptOutcome o = RcptOutcome::Held(until_us, 451, enhanced, text);
    o.record_reply = record_reply;
    if (s) {
      o.source = s->settings().source;
      o.site = s->name();
      o.site_label = s->label();
    }
    j->msg->outcomes[i] = std::move(o);
  }
  JobFinished(j);
}

// A local result for every recipient of `j` (no server said it: the DSN
// says X-mxrelay). Before routing (DNS) the job has no site yet.
void EngineImpl::FailJob(Job* j, int code, const std::string& enhanced, const std::string& text) {
  for (size_t i : j->rcpts) {
    RcptOutcome o = RcptOutcome::Local(code, enhanced, text);
    if (j->site) {
      o.source = j->site->settings().source;
      o.site = j->site->name();
      o.site_label = j->site->label();
    }
    j->msg->outcomes[i] = std::move(o);
  }
  JobFinished(j);
}

void EngineImpl::HoldForRestart(Job* j) {
  HoldJob(j, deps_.clock->NowMicros(), "Relay stopping: not attempted", /*record_reply=*/false);
}

void EngineImpl::JobFinished(Job* j) {
  MXR_DCHECK(!j->done && !j->queued && !j->on_connection, "a job finished twice or while queued");
  j->done = true;
  ActiveMessage* m = j->msg;
  if (--m->pending_jobs == 0) bookkeeping_->Finish(m);
}

void EngineImpl::AfterRecord(ActiveMessage* m, const NextStep& step) {
  queue::QueueId id = m->meta.id;
  int64_t next = m->meta.next_attempt_us;
  active_.erase(id);  // frees m
  stats_->messages_active = static_cast<int64_t>(active_.size());
  if (!step.done && admin_pending_.count(id)) next = deps_.clock->NowMicros();  // its admin action next
  if (step.done) admin_pending_.erase(id);
  if (!step.done) scheduled_.Add(next, id);
  stats_->messages_scheduled = static_cast<int64_t>(scheduled_.size());
  if (Draining()) return CheckDrained();
  PumpSchedule();
}

// ----------------------------------------------------------- connections

void EngineImpl::Pump(Site* s) {
  if (Draining()) return;
  int64_t now = loop_->now_ms();
  s->last_used_ms = now;
  for (OutboundConnection* c : s->conns) {  // idle connections first
    if (s->ready.empty()) break;
    if (c->idle()) OnConnReady(c);
  }
  if (s->overrides.Suspended(now)) return;
  int allowed = std::min(AllowedConnections(now, &s->window),
                         s->overrides.EffectiveConnLimit(s->settings().max_conns, now));
  // Waiting for the rate limiter: the open connections will do (and if they
  // end meanwhile, the timer pumps the path again).
  if (!s->conns.empty() && !s->ready.empty()) {
    if (int64_t wait = RateWaitUs(s); wait > 0) return ArmPump(s, wait);
  }
  for (;;) {
    size_t setting_up = 0;
    for (OutboundConnection* c : s->conns) setting_up += c->setting_up() ? 1 : 0;
    // Each connection still being set up will take one queued job.
    if (s->ready.size() <= setting_up || static_cast<int>(s->conns.size()) >= allowed) break;
    conns_.push_back(std::make_unique<OutboundConnection>(this, s));
    OutboundConnection* c = conns_.back().get();
    c->self = std::prev(conns_.end());
    s->conns.push_back(c);
    c->in_site = std::prev(s->conns.end());
    c->Begin();
  }
}

void EngineImpl::OnConnReady(OutboundConnection* c) {
  Site* s = c->site();
  if (Draining() || c->messages() >= s->max_msgs_per_conn || s->overrides.Suspended(loop_->now_ms())) {
    return c->Quit();
  }
  if (s->ready.empty()) return;  // idle until the idle timeout
  if (int64_t wait = RateWaitUs(s); wait > 0) return ArmPump(s, wait);
  int64_t now_us = deps_.clock->NowMicros();
  s->rate.Take(now_us);
  if (s->source) s->source->rate.Take(now_us);
  Job* j = s->ready.Pop();
  c->Take(j);  // its body is read now, while the connection waits
}

void EngineImpl::GetBody(Job* j, std::function<void(const absl::Status&, BodyRef)> then) {
  bodies_->Get(j->msg, std::move(then), [this](const queue::QueueId& id) { return Find(id); });
}

void EngineImpl::Requeue(Job* j) {
  if (stopping_) return;
  if (Draining()) return HoldForRestart(j);
  Site* s = j->site;
  s->ready.Push(j);
  loop_->Post([this, s] { Pump(s); });
}

void EngineImpl::OnJobDone(OutboundConnection* c, Job* j, const std::vector<RcptResult>& results) {
  if (stopping_) return;  // aborted by the final stop: not recorded, retried after restart
  ActiveMessage* m = j->msg;
  Site* site = j->site;
  bool acted = false;  // one automation action per transaction
  for (size_t k = 0; k < j->rcpts.size() && k < results.size(); ++k) {
    RcptOutcome& o = m->outcomes[j->rcpts[k]];
    RcptResult r = results[k];
    if (r.code >= 400 || r.code < 200) {
      const AutomationRule* rule = nullptr;
      if (!acted) {
        rule = OnRemoteReply(site, r.code, r.enhanced, r.text);
        acted = rule && rule->action != ActionKind::kNone;
      } else {
        rule = FirstMatch(site->shaping.automation, r.code, r.enhanced, r.text);
      }
      if (rule && rule->treat == Treat::kPermanent && r.code >= 400 && r.code < 500) {
        r.code += 100;
        if (!r.enhanced.empty()) r.enhanced[0] = '5';
      } else if (rule && rule->treat == Treat::kTemporary && r.code >= 500) {
        r.code -= 100;
        if (!r.enhanced.empty()) r.enhanced[0] = '4';
      }
    }
    o = RcptOutcome::Local(r.code, r.enhanced, r.text);
    o.source = site->settings().source;
    o.mx_host = c->host();
    o.ip = c->ip();
    o.site = j->site->name();
    o.site_label = j->site->label();
    o.tls = c->tls_version();
    o.next_hop_dsn = c->next_hop_dsn();
  }
  // The site works if the server really answered (2xx or 5xx); a transaction
  // ended by 421 or a timeout counts against the connection in OnConnGone.
  bool answered = false;
  for (const auto& r : results) answered |= Classify(r.code) != ReplyClass::kTransient;
  if (answered) OnConnectSuccess(j->site->settings().max_conns, &j->site->window);
  JobFinished(j);
}

void EngineImpl::OnConnGone(OutboundConnection* c, bool ever_ready, const Reply& why) {
  Site* s = c->site();
  if (!c->destination_refused() && why.code >= 400 && !stopping_ && !Draining()) {
    OnRemoteReply(s, why.code, why.enhanced, why.text);  // e.g. a 421 greeting or a 421 that ended the session
  }
  if (c->destination_refused()) {
    // Not a connection failure: the destination is one delivery must never
    // use. Everything queued for the site bounces with the reason.
    const Reply& r = c->refusal();
    while (Job* j = s->ready.Pop()) FailJob(j, r.code, r.enhanced, r.text);
  } else {
    (ever_ready ? stats_->connections_ok : stats_->connections_failed)++;
    // A session that worked and then failed (421, timeout, reset) is a
    // connection-level failure too; a normal end (QUIT answered) is not.
    if (!stopping_ && !Draining() && (!ever_ready || why.code >= 400)) {
      stats_->connection_failures++;
      s->last_error = why;
      if (OnConnectFailure(cfg_, loop_->now_ms(), &s->window)) {
        stats_->site_backoffs++;
        spdlog::warn("event=site_backoff site={} seconds={} last_error=\"{}\" queued={}", s->name(),
                     s->window.backoff_ms / 1000, LogEscape(why.ToString()), s->ready.size());
        std::string text = Cat("Destination ", s->name(), " backed off after connection failures; last error: ",
                               why.ToString());
        int64_t until = deps_.clock->NowMicros() + (s->window.dead_until_ms - loop_->now_ms()) * 1000;
        while (Job* held = s->ready.Pop()) HoldJob(held, until, text);
      } else {
        spdlog::info("event=connection_failed site={} error=\"{}\"", s->name(), LogEscape(why.ToString()));
      }
    }
  }
  s->conns.erase(c->in_site);
  c->in_site = s->conns.end();
  if (!s->ready.empty() && !stopping_) loop_->Post([this, s] { Pump(s); });
  if (Draining()) CheckDrained();
}

// ----------------------------------------------------------------- ticks

void EngineImpl::Tick() {
  resolver_->Tick();
  int64_t now = loop_->now_ms();
  for (auto it = conns_.begin(); it != conns_.end();) {
    OutboundConnection* c = (it++)->get();
    c->CheckTimeout(now);
  }
  if (tls_rpt_sender_) tls_rpt_sender_->Tick();
  if (Draining()) return CheckDrained();
  for (auto& [k, s] : sites_) {
    if (!s->ready.empty()) Pump(s.get());
  }
  // Forget sites unused for 10 minutes (bounded memory with many domains);
  // keep backed-off ones so their backoff survives.
  if (now - last_site_gc_ms_ > 60'000) {
    last_site_gc_ms_ = now;
    std::erase_if(sites_, [now](const auto& kv) { return kv.second->Idle(now, kSiteUnusedMs); });
  }
  PumpSchedule();
  if (now - last_relabel_ms_ >= 60'000) {
    last_relabel_ms_ = now;
    site_metrics_.Relabel(now);
  }
  if (now - last_oldest_ms_ >= 1'000 && !oldest_.in_flight()) {
    last_oldest_ms_ = now;
    RefreshOldest();
  }
  stats_->messages_deferred = static_cast<int64_t>(scheduled_.Waiting(deps_.clock->NowMicros()));
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
                       LogEscape(r.status().ToString()), "mxrelay_queue_oldest_message_age_seconds");
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

void EngineImpl::PublishSnapshot(int64_t now_ms) {
  DeliverySnapshot snap;
  std::vector<SiteMetrics::Live> live;
  live.reserve(sites_.size());
  int64_t backed_off = 0;
  for (const auto& [k, s] : sites_) {
    bool dead = s->window.dead_until_ms > now_ms;
    backed_off += dead ? 1 : 0;
    live.push_back(SiteMetrics::Live{s->label(), static_cast<int64_t>(s->conns.size()),
                                     static_cast<int64_t>(s->ready.size()), dead});
  }
  snap.sites = site_metrics_.Figures(live);
  ShapingSnapshot(now_ms, &snap);
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

// ------------------------------------------------------------- stopping

// SIGTERM: nothing new starts; jobs waiting for a connection are held for
// right after the restart (no attempt charged); transactions in flight
// finish and are recorded. The loop stops when none is left or at the
// deadline (then CloseAll abandons the rest).
void EngineImpl::BeginDrain(int64_t deadline_ms) {
  drain_deadline_ms_ = std::max<int64_t>(1, deadline_ms);
  size_t in_flight = 0;
  for (auto& c : conns_) in_flight += c->busy() ? 1 : 0;
  spdlog::info("event=delivery_draining transactions={} timeout_ms={}", in_flight,
               deadline_ms - loop_->now_ms());
  for (auto& [k, s] : sites_) {
    while (Job* j = s->ready.Pop()) HoldForRestart(j);
  }
  for (auto it = conns_.begin(); it != conns_.end();) {
    OutboundConnection* c = (it++)->get();
    if (c->idle() || c->setting_up()) c->ForceClose();
  }
  CheckDrained();
}

void EngineImpl::CheckDrained() {
  size_t busy = 0;
  for (auto& c : conns_) busy += c->busy() ? 1 : 0;
  bool timed_out = loop_->now_ms() >= drain_deadline_ms_;
  // Every active message ends its round soon: its transactions finish, its
  // queued jobs were held, DNS answers hold the rest, DSNs get committed.
  if (!active_.empty() && !timed_out) return;
  spdlog::info("event=delivery_drained transactions_abandoned={} messages_active={} reason={}", busy,
               active_.size(), timed_out && busy > 0 ? "timeout" : "done");
  deps_.spool->FlushAsync();  // the recorded results, before the spool closes
  loop_->Stop();
}

void EngineImpl::CloseAll() {
  stopping_ = true;
  for (auto it = conns_.begin(); it != conns_.end();) {
    OutboundConnection* c = (it++)->get();
    c->ForceClose();
  }
}

}  // namespace mxr::delivery
