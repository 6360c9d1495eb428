// The Prometheus exporter and the health/readiness endpoints.
//
// The components keep their own counters (relaxed atomics and fixed-bucket
// histograms: relay::IngressStats, queue::SpoolStats, delivery::DeliveryStats);
// nothing here is on a hot path. At scrape time Render() reads them and
// writes the text exposition format with prometheus-cpp's serializer. The
// names are the contract in docs/METRICS.md.
//
//   metrics::Sources src{...};
//   auto srv = metrics::MetricsServer::Start(config.metrics, src);
//   // GET /metrics, /healthz, /readyz on srv->address()
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "delivery/stats.h"
#include "dkim/stats.h"
#include "queue/spool.h"
#include "relay/stats.h"
#include "tenants/tenants.h"

namespace mxr::api {
struct ApiStats;
struct AdminStats;
}  // namespace mxr::api

class CivetServer;

namespace mxr::metrics {

struct Sources {
  const Config* config = nullptr;
  const relay::IngressStats* ingress = nullptr;    // may be null (not started)
  const queue::Spool* spool = nullptr;              // may be null
  const delivery::DeliveryStats* delivery = nullptr;  // null when delivery is off
  const dkim::DkimStats* dkim = nullptr;              // may be null
  const tenants::GateStats* tenants = nullptr;        // may be null
  const api::ApiStats* http_api = nullptr;            // null when http_api is off
  const api::AdminStats* admin = nullptr;             // null when admin_api is off
  // Why the relay is not ready ("" = ready). Called from HTTP threads.
  std::function<std::string()> not_ready;
  std::string version;
};

// The text exposition of every metric (what GET /metrics returns).
std::string Render(const Sources& src);

class MetricsServer {
 public:
  // Binds config.listen and serves on civetweb's own threads.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const MetricsConfig& config,
                                                              Sources src);
  ~MetricsServer();
  // The bound address, e.g. "127.0.0.1:9465" (the real port if 0 was asked).
  const std::string& address() const { return address_; }

  // HTTP workers, and how long one waits for a request (or a write) before
  // dropping the connection: idle connections must not starve /healthz.
  static constexpr int kHttpThreads = 32;
  static constexpr int kHttpRequestTimeoutMs = 2000;

 private:
  struct Handlers;
  MetricsServer() = default;
  Sources src_;
  std::string address_;
  std::unique_ptr<Handlers> handlers_;
  std::unique_ptr<CivetServer> server_;
};

}  // namespace mxr::metrics
