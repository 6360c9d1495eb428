// The HTTP injection API (docs/API.md): POST /api/v1/messages on its own
// listener (http_api.listen; HTTPS with the relay's certificate when
// http_api.tls, through api/tls_proxy.h), keep-alive, on civetweb's worker threads (the library the
// metrics endpoint already uses: Debian-packaged, keep-alive, OpenSSL).
//
// A request is authenticated by its tenant's API key (Authorization:
// Bearer <key>), parsed and built (api/inject.h), checked against the
// tenant's rules (tenants/tenants.h), then each message goes through the
// same path as an SMTP message: Received:/Date:/Message-ID: added
// (relay/headers.h), the DKIM SigningSpool in front of the RocksDB group
// commit. The answer lists the queue ids only after every commit is durable.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config.h"
#include "queue/spool.h"
#include "tenants/tenants.h"

class CivetServer;
typedef struct ssl_ctx_st SSL_CTX;

namespace mxr::api {

struct ApiStats {
  std::atomic<uint64_t> requests_ok{0};         // 200
  std::atomic<uint64_t> requests_bad{0};        // 400, 404, 405, 413
  std::atomic<uint64_t> requests_unauthorized{0};  // 401
  std::atomic<uint64_t> requests_refused{0};    // 403 (sender rules), 429 (rate, quota)
  std::atomic<uint64_t> requests_failed{0};     // 5xx
  std::atomic<uint64_t> messages{0};            // committed
  std::atomic<uint64_t> recipients{0};          // committed
};

struct HttpApiDeps {
  const Config* config = nullptr;
  std::string hostname;
  queue::Spool* spool = nullptr;  // the DKIM SigningSpool in front of the spool, as for SMTP
  queue::QueueIdGenerator* ids = nullptr;
  const Clock* clock = nullptr;
  tenants::Gate* gate = nullptr;
  SSL_CTX* tls = nullptr;  // certificate and key to serve HTTPS with (http_api.tls)
};

class HttpApi {
 public:
  static absl::StatusOr<std::unique_ptr<HttpApi>> Start(HttpApiDeps deps);
  ~HttpApi();
  const std::string& address() const { return address_; }
  const ApiStats& stats() const { return stats_; }

  struct Handler;

 private:
  HttpApi() = default;
  HttpApiDeps deps_;
  ApiStats stats_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<CivetServer> server_;
  std::unique_ptr<class TlsProxy> proxy_;  // http_api.tls: TLS in front of civetweb
  std::string address_;                    // what clients connect to
  std::string backend_;                    // civetweb's loopback address behind the proxy
};

}  // namespace mxr::api
