// DeliveryEngine: the delivery thread and the thread-safe entry points
// (intake, SIGHUP, stop); the work itself is EngineImpl's (engine_impl.h).
#include "delivery/engine.h"

#include <chrono>
#include <future>

#include "common/thread_name.h"
#include "delivery/engine_impl.h"

namespace mxr::delivery {

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

void DeliveryEngine::BeginStop() {
  if (!thread_.joinable() || stop_begun_.exchange(true)) return;
  EngineImpl* impl = impl_.get();
  int drain_ms = deps_.config->delivery.drain_timeout * 1000;
  if (drain_ms > 0) {
    impl->loop()->Post([impl, drain_ms] { impl->BeginDrain(impl->loop()->now_ms() + drain_ms); });
  } else {
    impl->loop()->Stop();
  }
}

void DeliveryEngine::Stop() {
  if (!thread_.joinable()) return;
  BeginStop();
  thread_.join();
  running_.store(false, std::memory_order_release);
  // Finish queued spool reads now, while the spool surely exists. The loop
  // stays allocated until the destructor: late spool callbacks may Post().
  impl_->StopIo();
}

void DeliveryEngine::Enqueue(queue::NewMessage& msg) {
  if (!running_.load(std::memory_order_acquire)) return;
  EngineImpl* impl = impl_.get();
  auto m = std::make_unique<ActiveMessage>();
  m->meta = std::move(msg.meta);
  if (impl->ReserveIntakeBudget(m->meta.body_size)) {
    // The client's body with our trace headers in front: an in-place move
    // (no new allocation of a 100 KB string, no page faults) when its
    // capacity allows, as it usually does after the reader's growth.
    std::string body = std::move(msg.body);
    body.insert(0, msg.header_prefix);
    m->pinned = std::make_shared<const std::string>(std::move(body));
    m->pinned_bytes = m->meta.body_size;
    m->intake_budget = impl->intake_budget();
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

namespace mxr::delivery {

void DeliveryEngine::Admin(std::vector<queue::QueueId> ids, AdminAction action, std::function<void(size_t)> done) {
  if (!running_.load()) return;
  EngineImpl* impl = impl_.get();
  impl->loop()->Post([impl, ids = std::move(ids), action, done = std::move(done)]() mutable {
    size_t n = impl->AdminApply(ids, action);
    if (done) done(n);
  });
}

void DeliveryEngine::DomainSites(std::function<void(std::unordered_map<std::string, std::string>)> done) {
  if (!running_.load()) return;
  EngineImpl* impl = impl_.get();
  impl->loop()->Post([impl, done = std::move(done)] { done(impl->domain_sites()); });
}

}  // namespace mxr::delivery
