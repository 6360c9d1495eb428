// Egress sources and pools. A source is a local IP with its own EHLO name
// (and optionally a warm-up schedule and overall rate); a pool is a
// weighted set of sources. Limits hold per egress path = (source, site):
// the engine makes one Site per path (the source is part of the site's
// identity), which is how providers count.
//
// Which pool a message uses (first that applies):
//   1. the X-MxRelay-Pool header (shaping.pool_header) of an authenticated
//      or trusted client, removed at reception      -> meta.pool
//   2. the authenticated user's pool ([[pool]] users) -> meta.pool at reception
//   3. the tenant's pool (issue 18)                   -> meta.pool at reception
//   4. the [[route]]'s pool for the recipient domain  (at delivery)
//   5. the pool named "default" if defined, else the default source
//      (delivery.source_address / helo_name)
// A pool name that no longer exists falls back to 4-5 (logged).
//
// Choice within a pool: smooth weighted round-robin (exact proportions,
// no randomness) among the sources not over today's warm-up cap; when all
// are capped the job waits for the next UTC day. Delivery loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "delivery/rate_limiter.h"
#include "delivery/shaping.h"
#include "delivery/warmup.h"

namespace mxr::delivery {

struct Source {
  std::string name;     // "default" for the default source
  std::string address;  // "" = the kernel's choice
  std::string ehlo;
  Warmup warmup;
  Gcra rate;            // [source."name"] max_message_rate (overall)
  uint64_t assigned = 0;        // jobs given to this source (metric)
  uint64_t warmup_overflow = 0; // jobs that could not use it: warm-up cap reached (metric)
};

struct Pool {
  std::string name;
  struct Member {
    Source* source;
    int weight;
    int64_t current = 0;  // smooth weighted round-robin state
  };
  std::vector<Member> members;
  uint64_t assigned = 0;  // metric
};

// Loads [shaping]: the shipped and operator shaping files, the
// classification rules; checks that the sources and pools build. Errors name
// the file and line (used at start and by `mxrelay check-config`).
struct ShapingSetup {
  std::shared_ptr<const ShapingTable> table;
  std::shared_ptr<const class Classifier> classifier;
};
absl::StatusOr<ShapingSetup> LoadShapingSetup(const Config& cfg);

class Egress {
 public:
  // `default_ehlo`: delivery.helo_name or the hostname.
  static absl::StatusOr<std::unique_ptr<Egress>> Create(const Config& cfg, const std::string& default_ehlo,
                                                        const ShapingTable& shaping);

  // The pool for a message: its own (meta.pool), else the route's, else the default.
  Pool* PoolFor(const std::string& meta_pool, const std::string& route_pool);

  struct Choice {
    Source* source = nullptr;  // nullptr: every source is over its warm-up cap
    int64_t retry_at_us = 0;   // with nullptr: when to try again
  };
  Choice Choose(Pool* pool, int64_t now_us);

  // For metrics and listings.
  const std::vector<std::unique_ptr<Source>>& sources() const { return sources_; }
  const std::vector<std::unique_ptr<Pool>>& pools() const { return pools_; }
  Source* FindSource(const std::string& name);

 private:
  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<std::unique_ptr<Pool>> pools_;
  std::unordered_map<std::string, Pool*> by_name_;
  Pool* default_ = nullptr;
};

}  // namespace mxr::delivery
