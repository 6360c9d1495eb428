// The ingress server: N event-loop threads (one io_uring each), each with
// its own SO_REUSEPORT socket per listener, its own connections and its own
// provided-buffer ring. A connection never changes threads.
//
// Per connection: multishot recv into provided buffers -> (TLS) -> Session
// -> replies appended to one output buffer, at most one send in flight.
// Messages go to the spool's group commit; its answer is posted back to the
// owning loop. Backpressure: reading stops while the session holds more than
// kMaxBuffered bytes of unprocessed input or unsent output.
//
//   IngressServer srv(deps);
//   MXR_RETURN_IF_ERROR(srv.Start());   // listening once this returns
//   ...
//   srv.Shutdown(30'000);               // drain, then stop
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/net.h"
#include "queue/spool.h"
#include "relay/auth.h"
#include "relay/auth_limiter.h"
#include "relay/stats.h"
#include "relay/tls.h"
#include "relay/trace.h"
#include "tenants/tenants.h"

namespace mxr::relay {

struct IngressDeps {
  const Config* config = nullptr;
  std::string hostname;
  queue::Spool* spool = nullptr;
  queue::QueueIdGenerator* ids = nullptr;
  const Clock* clock = nullptr;
  Authenticator* auth = nullptr;
  std::shared_ptr<TlsContext> tls;  // may be null if no listener needs TLS
  TraceHub* trace = nullptr;        // live trace subscribers (`mxrelay trace`); may be null
  tenants::Gate* tenants = nullptr;  // tenant rules (tenants/); may be null
};


class Worker;
class Connection;

class IngressServer {
 public:
  explicit IngressServer(IngressDeps deps);
  ~IngressServer();

  // Binds every listener on every thread and starts serving.
  absl::Status Start();
  // Stops accepting, asks sessions to finish (421 at their next command),
  // waits up to grace_ms for connections to end, then closes the rest.
  void Shutdown(int grace_ms);
  // Replaces the certificate for connections accepted from now on; open
  // sessions keep theirs (SIGHUP). Call after Start(). Thread-safe.
  void SetTls(std::shared_ptr<TlsContext> tls);

  const IngressStats& stats() const { return stats_; }

  // Per-IP connection accounting shared by all threads (striped locks; only
  // touched at accept and close). IPv6 clients count per limits.ipv6_prefix.
  bool AcquireIp(const IpAddress& ip);
  void ReleaseIp(const IpAddress& ip);

 private:
  friend class Worker;
  friend class Connection;
  IngressDeps deps_;
  IngressStats stats_;
  AuthLimiter auth_limiter_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;

  static constexpr int kStripes = 64;
  struct Stripe {
    std::mutex mu;
    std::unordered_map<IpAddress, int, absl::Hash<IpAddress>> counts;
  };
  Stripe stripes_[kStripes];
};

}  // namespace mxr::relay
