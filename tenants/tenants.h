// Tenants: accounts that group SMTP users and HTTP API keys, with the rules
// the relay enforces for them (docs/CONFIG.md "Tenants"):
//   - allowed sender domains, on the envelope sender (MAIL FROM, API "from")
//     and on the From: header field (550 5.7.1 naming the rule);
//   - a message rate (GCRA: smooth, O(1), one number of state per key) and
//     a daily recipient quota (UTC day), per tenant and per user
//     (450 4.7.1 / 452 4.5.3, temporary: the client retries);
//   - at most N recipients per message;
//   - the egress pool written into MessageMeta::pool at reception.
//
//   auto dir = Directory::Load("/etc/mxrelay/tenants.toml");
//   Gate gate(&clock);  gate.SetDirectory(*dir);   // SIGHUP: SetDirectory again
//   Verdict v = gate.Mail("alice@acme.test", "news@acme.test");
//   if (!v.ok) reply(v.code, v.enhanced, v.text);
//
// The directory is immutable and swapped whole; the limiter state (rates,
// quotas) lives in the Gate and survives reloads. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"

namespace mxr::tenants {

// "N/period" (period "s", "m", "h", "d", optionally with a count: "100/10m")
// with a burst of messages allowed at once (default 1 = evenly spaced).
struct Rate {
  int64_t count = 0;      // 0 = no limit
  int64_t period_us = 0;
  int64_t burst = 1;
  std::string spec;       // as written, for replies and logs
  bool limited() const { return count > 0; }
  int64_t interval_us() const { return period_us / count; }
  static absl::StatusOr<Rate> Parse(std::string_view spec, int64_t burst);
};

// Rules of a tenant or of one of its users; a user's unset fields take the
// tenant's. Both the user's and the tenant's rate and quota apply.
struct Limits {
  std::optional<std::vector<std::string>> sender_domains;  // unset/empty = any
  Rate rate;
  int64_t daily_quota = 0;  // recipients per UTC day; 0 = no limit
  int max_recipients = 0;   // per message; 0 = the relay's limit
};

struct Tenant {
  std::string name;
  Limits limits;
  bool check_from_header = true;   // also check From: against sender_domains
  std::string pool;                // egress pool ("" = decided at delivery)
  std::vector<std::string> users;  // as the users file writes them
  std::unordered_map<std::string, Limits> user_limits;  // normalized name -> rules
  std::vector<std::array<unsigned char, 32>> key_hashes;  // SHA-256 of the API keys
};

class Directory {
 public:
  // Errors name the file and line at fault.
  static absl::StatusOr<std::shared_ptr<const Directory>> Load(const std::string& path);
  static absl::StatusOr<std::shared_ptr<const Directory>> Parse(std::string_view text, std::string_view source);

  // The tenant of an authenticated user (the name as the users file writes
  // it; an address's domain matches in any case), or nullptr.
  const Tenant* ForUser(std::string_view user) const;
  // The tenant whose API key this is, or nullptr. Compares SHA-256 digests in
  // constant time against every key.
  const Tenant* ForApiKey(std::string_view key) const;
  const std::vector<Tenant>& tenants() const { return tenants_; }
  size_t key_count() const { return key_count_; }

 private:
  std::vector<Tenant> tenants_;
  std::unordered_map<std::string, size_t> by_user_;  // normalized user -> index
  size_t key_count_ = 0;
};

// "alice@Acme.TEST" -> "alice@acme.test"; bare names unchanged.
std::string NormalizeUser(std::string_view name);
// A new API key ("mxr_" + 43 base64url characters: 256 random bits) and its
// stored form ("sha256:" + 64 hex digits).
struct NewKey {
  std::string key;
  std::string stored;
};
NewKey MintApiKey();
std::string HashApiKey(std::string_view key);  // "sha256:<hex>"

// What a check answers: ok, or the SMTP reply (the HTTP API maps 4xx to 429
// and 5xx to 403) and the rule's name for metrics and logs.
struct Verdict {
  bool ok = true;
  int code = 250;
  std::string enhanced;
  std::string text;
  const char* rule = "";  // "sender_domains", "from_header", "rate", "daily_quota", "max_recipients", "unassigned"
  static Verdict Ok() { return Verdict{}; }
};

// Counters for metrics (monotonic), by rule.
struct GateStats {
  std::atomic<uint64_t> refused_sender{0};
  std::atomic<uint64_t> refused_from_header{0};
  std::atomic<uint64_t> refused_rate{0};
  std::atomic<uint64_t> refused_quota{0};
  std::atomic<uint64_t> refused_recipients{0};
  std::atomic<uint64_t> refused_unassigned{0};
  std::atomic<uint64_t> messages_accepted{0};  // messages assigned to a tenant
};

class Gate {
 public:
  explicit Gate(const Clock* clock, bool allow_unassigned = true) : clock_(clock), allow_unassigned_(allow_unassigned) {}
  void SetDirectory(std::shared_ptr<const Directory> dir);
  std::shared_ptr<const Directory> directory() const;
  void set_allow_unassigned(bool v) { allow_unassigned_ = v; }

  // Who the message is for: the tenant's name and pool ("" when the user is
  // in no tenant).
  struct Assignment {
    std::string tenant;
    std::string pool;
  };
  Assignment AssignUser(std::string_view user) const;

  // MAIL FROM of an authenticated user: sender domains, then one message of
  // rate (user's and tenant's). `user` "" (a trusted network, no AUTH): ok.
  Verdict Mail(std::string_view user, std::string_view sender);
  // The next RCPT when `accepted` recipients were already accepted: max
  // recipients, then one recipient of the daily quota (user's and tenant's).
  Verdict Rcpt(std::string_view user, size_t accepted);
  // The From: header field value at the end of DATA ("" = none).
  Verdict FromHeader(std::string_view user, std::string_view from_value);

  // The same for an HTTP API tenant (no user).
  Verdict SenderFor(const Tenant& t, const Limits* user, std::string_view sender, bool header) const;
  // Takes `messages` of rate and `recipients` of quota at once (all or none).
  Verdict Charge(const Tenant& t, const Limits* user, std::string_view user_name, int64_t messages,
                 int64_t recipients);

  GateStats& stats() { return stats_; }

 private:
  struct Bucket {
    int64_t tat_us = 0;       // GCRA theoretical arrival time
    int64_t day = -1;         // UTC day of `used`
    int64_t used = 0;         // recipients that day
  };
  // Both keys at once, all or nothing; mu_ held.
  Verdict TakeRate(const std::string& key, const Rate& r, int64_t n, int64_t now_us, std::string_view who,
                   bool commit);
  Verdict TakeQuota(const std::string& key, int64_t quota, int64_t n, int64_t now_us, std::string_view who,
                    bool commit);
  const Tenant* TenantOf(const Directory& d, std::string_view user, const Limits** ul) const;

  const Clock* clock_;
  std::atomic<bool> allow_unassigned_;
  mutable std::mutex mu_;
  std::shared_ptr<const Directory> dir_;           // guarded by mu_
  std::unordered_map<std::string, Bucket> state_;  // "t:name" / "u:name", guarded by mu_
  GateStats stats_;
};

// Whether `sender`'s domain is allowed by `domains` ("example.com" exactly,
// "*.example.com" its subdomains, "*" any); the null sender never is.
bool SenderAllowed(const std::vector<std::string>& domains, std::string_view domain);

}  // namespace mxr::tenants
