// Traffic-shaping rules: what limits hold on an egress path (source, site)
// for a destination, from the shipped provider file (deploy/shaping/
// shaping.toml, compiled in) and the operator's file on top of it.
//
//   auto t = ShapingTable::Load({{"shipped", kShippedShaping}, {"/etc/mxrelay/shaping.toml", text}});
//   ResolvedShaping r = t->Lookup("example.com", {"alt1.aspmx.l.google.com"});
//   r.rule == "google"; r.limits.connection_limit == 5 ...
//
// File format (docs/CONFIG.md "Traffic shaping"):
//   [default]                    every destination
//   [provider.NAME]              mx_suffix = [...], mx_hosts = [...], domains = [...]
//   [domain."example.com"]       one recipient domain
//   [source."NAME"]              overall limits of one egress source
//   [[<section>.automation]]     reply rules (delivery/automation.h)
// Lookup: the recipient domain (domain sections, provider `domains`) wins
// over an MX host name (`mx_hosts`), which wins over an MX suffix (longest
// first), which wins over [default]; the limits are merged key by key in
// that order. A later file overrides an earlier one key by key (same
// section name); its automation rules are tried before the earlier file's.
//
// Immutable once loaded: shared by the delivery thread, read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "delivery/automation.h"
#include "delivery/rate_limiter.h"

namespace mxr::delivery {

// Limits of one egress path; an unset key inherits from a less specific rule.
struct PathLimits {
  std::optional<int> connection_limit;
  std::optional<int> max_deliveries_per_connection;
  std::optional<RateSpec> max_message_rate;
  std::optional<int> max_burst;
  std::optional<int> max_recipients_per_transaction;
  // Keys set in `over` replace ours.
  void MergeFrom(const PathLimits& over);
  std::string ToString() const;  // "connection_limit=5 max_message_rate=120/min ..." (set keys only)
};

struct ShapingRule {
  std::string name;  // "default", provider name, or the domain of a [domain."x"] section
  std::vector<std::string> domains, mx_hosts, mx_suffixes;  // lower case, no leading/trailing dot
  PathLimits limits;
  std::vector<AutomationRule> automation;  // in order; the later file's first
};

// What holds for one destination.
struct ResolvedShaping {
  std::string rule = "default";  // the most specific rule that matched (a bounded metric label)
  PathLimits limits;             // merged
  // Automation rules to try, most specific rule's first.
  std::vector<const AutomationRule*> automation;
};

class ShapingTable {
 public:
  // (source name for errors, TOML text) in increasing precedence.
  static absl::StatusOr<std::shared_ptr<const ShapingTable>> Load(
      const std::vector<std::pair<std::string, std::string>>& files);
  // A table with nothing in it (every limit from [delivery]).
  static std::shared_ptr<const ShapingTable> Empty();

  // `hosts`: the site's MX host names (or a route's host), any order.
  ResolvedShaping Lookup(std::string_view domain, const std::vector<std::string>& hosts) const;
  // [source."name"] limits, nullptr if none.
  const PathLimits* SourceLimits(const std::string& source) const;
  // Every rule name (the bounded set of `rule` metric labels).
  std::vector<std::string> RuleNames() const;

 private:
  const ShapingRule* FindProvider(const std::vector<std::string>& hosts, bool exact) const;

  // Lookups by std::string_view without building a std::string.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using Index = std::unordered_map<std::string, const ShapingRule*, Hash, std::equal_to<>>;

  ShapingRule default_;
  std::vector<std::unique_ptr<ShapingRule>> rules_;  // providers and domains
  Index by_domain_;   // recipient domain
  Index by_mx_host_;  // exact MX host
  Index by_suffix_;   // MX suffix
  std::unordered_map<std::string, PathLimits> sources_;
};

// The provider file shipped with the relay (deploy/shaping/shaping.toml,
// compiled in by CMake).
extern const char* const kShippedShaping;

}  // namespace mxr::delivery
