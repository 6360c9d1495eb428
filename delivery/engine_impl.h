// EngineImpl: the delivery engine's state and the glue between the stages
// (see engine.h for the pipeline). It lives on the delivery thread, which
// creates it in DeliveryEngine::Start() and runs its loop; every method is
// for that thread except ReserveIntakeBudget(). Owns the scheduled queue,
// the active messages, the sites and the outbound connections, the spool
// I/O thread, the body loader and the bookkeeping.
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/event_loop.h"
#include "common/strings.h"
#include "delivery/automation.h"
#include "delivery/body_loader.h"
#include "delivery/classify.h"
#include "delivery/egress.h"
#include "delivery/shaping.h"
#include "delivery/destination_guard.h"
#include "delivery/bookkeeping.h"
#include "delivery/engine.h"
#include "delivery/event_log.h"
#include "delivery/message.h"
#include "delivery/oldest_tracker.h"
#include "delivery/mta_sts.h"
#include "delivery/outbound_connection.h"
#include "delivery/tls_rpt.h"
#include "delivery/tls_rpt_sender.h"
#include "delivery/resolver.h"
#include "delivery/router.h"
#include "delivery/scheduled_queue.h"
#include "delivery/site.h"
#include "delivery/site_metrics.h"
#include "delivery/spool_io.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {

inline constexpr size_t kMaxActiveMessages = 20000;
// Fresh messages keep their body in memory (sparing a spool read) while the
// total stays under this budget; larger ones are read when a connection is ready.
inline constexpr int64_t kIntakeBudgetBytes = 256ll << 20;
inline constexpr uint64_t kMaxInMemoryBody = 1ull << 20;
inline constexpr int64_t kSiteUnusedMs = 600'000;  // a site unused this long is forgotten

// The engine's state and the glue between the stages; see engine.h for the
// pipeline. Delivery loop thread only, except Enqueue's budget check.
class EngineImpl final : public ConnectionOwner {
 public:
  EngineImpl(DeliveryEngine::Deps deps, DeliveryStats* stats)
      : deps_(std::move(deps)),
        cfg_(deps_.config->delivery),
        guard_(DestinationGuard::FromConfig(*deps_.config)),
        stats_(stats),
        event_log_(cfg_.event_log),
        site_metrics_(deps_.config->metrics.site_labels) {}
  ~EngineImpl() override;

  absl::Status Init();  // on the loop thread
  void Run() { loop_->Run(); }
  void Enqueue(std::unique_ptr<ActiveMessage> m);
  bool ReserveIntakeBudget(uint64_t bytes);  // thread-safe
  std::atomic<int64_t>* intake_budget() { return &intake_budget_; }
  void ReopenLog() {
    auto st = event_log_.Reopen();
    if (!st.ok()) spdlog::error("event=event_log_reopen_failed error=\"{}\"", st);
  }
  void SetRoutes(std::vector<RouteConfig> routes);
  // Admin actions (engine.h); how many of `ids` were taken.
  size_t AdminApply(const std::vector<queue::QueueId>& ids, DeliveryEngine::AdminAction action);
  const std::unordered_map<std::string, std::string>& domain_sites() const { return domain_site_; }
  void BeginDrain(int64_t deadline_ms);
  void CloseAll();
  void StopIo() {
    bookkeeping_.reset();
    bodies_.reset();
    io_.reset();
  }

  // ConnectionOwner.
  EventLoop* loop() override { return loop_.get(); }
  Resolver* resolver() override { return resolver_.get(); }
  const DeliveryConfig& cfg() const override { return cfg_; }
  const std::string& helo_name() const override { return helo_; }
  SSL_CTX* tls_ctx(bool verify) override { return verify ? tls_verify_ : tls_noverify_; }
  DeliveryStats* stats() override { return stats_; }
  const DestinationGuard& guard() const override { return guard_; }
  void OnConnReady(OutboundConnection* c) override;
  void OnJobDone(OutboundConnection* c, Job* j, const std::vector<RcptResult>& results) override;
  void OnConnGone(OutboundConnection* c, bool ever_ready, const Reply& why) override;
  void GetBody(Job* j, std::function<void(const absl::Status&, BodyRef)> then) override;
  void Requeue(Job* j) override;
  void Freed(OutboundConnection* c) override { conns_.erase(c->self); }
  void ReportStsSession(const Site* s, const std::string& result_type, const std::string& mx,
                        const std::string& ip) override;

 private:
  void Tick();
  void PumpSchedule();
  void Activate(const queue::QueueId& id);
  void StartMessage(std::unique_ptr<ActiveMessage> m);
  // Admin delete/bounce pending for the message, or an admin hold on it or
  // its domains: applied here; true when the message needs nothing else.
  bool AdminFirst(ActiveMessage* msg);
  void Route(Job* j);
  void RouteByMx(Job* j, SiteSettings settings, const StsLookup& sts);
  void JobToSite(Job* j, const std::vector<std::string>& hosts, const SiteSettings& settings,
                 const std::string& route_domain);
  void FailJob(Job* j, int code, const std::string& enhanced, const std::string& text);
  void HoldJob(Job* j, int64_t until_us, const std::string& text, bool record_reply = true);
  void HoldForRestart(Job* j);  // stopping: not attempted, retried right after the restart
  void JobFinished(Job* j);
  void Pump(Site* s);
  // Egress-path shaping (delivery/shaping.h, automation.h).
  absl::Status LoadShaping();
  void SetUpPath(Site* s, Job* j, ResolvedShaping shaping);
  void SplitJob(Job* j, size_t max_rcpts);
  int64_t RateWaitUs(Site* s);  // until the path and its source may send one more (0: now)
  void ArmPump(Site* s, int64_t wait_us);
  // The automation rule matching a reply on the path (nullptr if none); its
  // action, if any, is applied to the path.
  const AutomationRule* OnRemoteReply(Site* s, int code, const std::string& enhanced, const std::string& text);
  void ApplyAutomation(Site* s, const AutomationRule& r, const std::string& reply);
  void HoldSuspended(Site* s, Job* j);
  void ShapingSnapshot(int64_t now_ms, DeliverySnapshot* snap);
  void AfterRecord(ActiveMessage* m, const NextStep& step);
  void RefreshOldest();
  void PublishSnapshot(int64_t now_ms);
  bool Draining() const { return drain_deadline_ms_ > 0; }
  void CheckDrained();
  ActiveMessage* Find(const queue::QueueId& id) {
    auto it = active_.find(id);
    return it == active_.end() ? nullptr : it->second.get();
  }

  DeliveryEngine::Deps deps_;
  DeliveryConfig cfg_;
  DestinationGuard guard_;
  DeliveryStats* stats_;
  EventLog event_log_;
  SiteMetrics site_metrics_;
  std::string helo_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Resolver> resolver_;
  std::unique_ptr<SpoolIo> io_;
  std::unique_ptr<BodyLoader> bodies_;
  std::unique_ptr<Bookkeeping> bookkeeping_;
  std::unique_ptr<StsFetcher> sts_fetcher_;  // MTA-STS (null when delivery.mta_sts = false)
  std::unique_ptr<MtaSts> mta_sts_;
  TlsRptCollector tls_rpt_;
  std::unique_ptr<TlsRptSender> tls_rpt_sender_;
  SSL_CTX* tls_verify_ = nullptr;
  SSL_CTX* tls_noverify_ = nullptr;

  ScheduledQueue scheduled_;
  std::unordered_map<queue::QueueId, std::unique_ptr<ActiveMessage>, QueueIdHash> active_;
  std::unordered_map<std::string, std::unique_ptr<Site>> sites_;  // by Site::identity()
  std::list<std::unique_ptr<OutboundConnection>> conns_;
  size_t loading_ = 0;
  bool stopping_ = false;       // final teardown: results are no longer recorded
  int64_t drain_deadline_ms_ = 0;
  std::atomic<int64_t> intake_budget_{0};
  int64_t last_site_gc_ms_ = 0;
  int64_t last_relabel_ms_ = 0;
  std::shared_ptr<const std::vector<RouteConfig>> routes_;
  // Admin actions waiting for the message's next activation (engine.h).
  std::unordered_map<queue::QueueId, DeliveryEngine::AdminAction, QueueIdHash> admin_pending_;
  std::unordered_map<std::string, std::string> domain_site_;  // domain -> site name (bounded)
  std::shared_ptr<const ShapingTable> shaping_;
  std::shared_ptr<const Classifier> classifier_;
  std::unique_ptr<Egress> egress_;

  // Oldest-message gauge: the spool's smallest id, asked on the spool I/O
  // thread once a second from the previous answer (delivery/oldest_tracker.h).
  OldestTracker oldest_;
  int64_t last_oldest_ms_ = 0;
  bool oldest_failing_ = false;  // log a failing query once, not every second
};

}  // namespace mxr::delivery
