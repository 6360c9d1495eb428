// The admin API (docs/API.md "Admin API"): queue summaries, one message's
// story, and actions — suspend / resume delivery by domain, site, tenant or
// campaign (optionally for a duration; persisted, delivery/holds.h),
// bounce (with DSN), delete (without), retry now, hold / release one
// message. Its own listener (admin_api.listen, loopback by default) and its
// own bearer token (admin_api.token_file, created 0600 with 256 random bits
// when missing). `mxrelay queue ...` (main/admin_cli.h) is its client.
//
// Actions walk the spool on the request's own thread (a RocksDB iterator:
// neither the delivery loop nor its spool I/O thread is held) and hand the
// matching ids to the delivery engine in batches of kBatch, waiting for
// each batch to be taken: ingress and delivery go on meanwhile. Every
// action is logged (event=admin_action), counted, and answers how many
// messages it touched.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config.h"
#include "delivery/engine.h"
#include "delivery/holds.h"
#include "queue/spool.h"

class CivetServer;

namespace mxr::api {

struct AdminStats {
  std::atomic<uint64_t> suspend{0}, resume{0}, bounce{0}, del{0}, retry{0}, hold{0}, release{0};
  std::atomic<uint64_t> messages_touched{0};
  std::atomic<uint64_t> unauthorized{0};
};

struct AdminDeps {
  const Config* config = nullptr;
  queue::Spool* spool = nullptr;                // the RocksDB spool (reads only)
  delivery::DeliveryEngine* engine = nullptr;   // null when delivery is off: actions other than suspend/resume answer 503
  delivery::Holds* holds = nullptr;
  const Clock* clock = nullptr;
  std::string token;                            // the bearer token
};

class AdminApi {
 public:
  static constexpr size_t kBatch = 1000;
  static absl::StatusOr<std::unique_ptr<AdminApi>> Start(AdminDeps deps);
  ~AdminApi();
  const std::string& address() const { return address_; }
  const AdminStats& stats() const { return stats_; }

  struct Handler;

 private:
  AdminApi() = default;
  AdminDeps deps_;
  AdminStats stats_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<CivetServer> server_;
  std::string address_;
};

// Reads the token file, creating it (0600, 64 hex digits) when missing.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);

// "90" (seconds), "90s", "15m", "2h", "1d" -> microseconds; error otherwise.
absl::StatusOr<int64_t> ParseDuration(std::string_view s);

}  // namespace mxr::api
