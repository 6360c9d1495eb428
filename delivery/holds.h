// Admin holds (issue 18): delivery suspended by domain, site, tenant,
// campaign or for one message (a "hold"), with an optional end, persisted
// in a small file (data_dir/holds) so that a restart keeps them.
//
// The engine asks at activation (message: id, tenant, campaign; each job:
// its domain) and when a job reaches its site (site name). A held job is
// rescheduled to the end of the hold (at most kRecheckUs ahead) WITHOUT an
// attempt charged, like a backed-off site. Resuming makes the matching
// messages due at once (the admin API's walk).
//
// File format: one rule per line, "kind<TAB>value<TAB>until_us<TAB>created_us"
// (until_us 0 = until resumed); written to a temporary file, synced and
// renamed. Thread-safe (the admin threads write, the delivery loop reads).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "queue/types.h"

namespace mxr::delivery {

enum class HoldKind { kDomain, kSite, kTenant, kCampaign, kMessage };
const char* HoldKindName(HoldKind k);
std::optional<HoldKind> ParseHoldKind(std::string_view s);

struct HoldRule {
  HoldKind kind = HoldKind::kDomain;
  std::string value;       // lower-case for domains; as given otherwise
  int64_t until_us = 0;    // 0 = until resumed
  int64_t created_us = 0;
};

class Holds {
 public:
  // A held job with no end is looked at again this long after (a resume
  // also makes it due at once).
  static constexpr int64_t kRecheckUs = 600'000'000;

  // path "" = not persisted (tests).
  explicit Holds(std::string path) : path_(std::move(path)) {}
  // Reads the file (missing = none). Expired rules are dropped.
  absl::Status Load(int64_t now_us);

  // Adds or replaces the rule for (kind, value). Persisted before returning.
  absl::Status Add(HoldRule r);
  // Removes the rule; false when there was none. Persisted.
  absl::StatusOr<bool> Remove(HoldKind kind, std::string_view value);
  std::vector<HoldRule> List(int64_t now_us) const;

  // The rule holding this message / this job's domain / this site now, if
  // any; `until` is when to look again (the rule's end, or now + kRecheckUs).
  struct Match {
    HoldRule rule;
    int64_t until_us = 0;
  };
  std::optional<Match> ForMessage(const queue::MessageMeta& m, int64_t now_us) const;
  std::optional<Match> ForDomain(std::string_view domain, int64_t now_us) const;
  std::optional<Match> ForSite(std::string_view site, int64_t now_us) const;
  bool empty() const;

 private:
  std::optional<Match> Find(HoldKind k, std::string_view v, int64_t now_us) const;
  absl::Status SaveLocked() const;

  const std::string path_;
  mutable std::mutex mu_;
  std::vector<HoldRule> rules_;  // guarded by mu_
};

}  // namespace mxr::delivery
