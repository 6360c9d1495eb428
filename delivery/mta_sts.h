// MTA-STS (RFC 8461): the pure parts (TXT record, policy file, MX pattern
// matching) and the policy cache the engine asks before it delivers to a
// domain by MX.
//
//   MtaSts sts(loop, resolver, fetcher, cfg.mta_sts);
//   sts.Lookup("example.com", [](const StsLookup& r) { r.policy ... });
//
// Flow per domain (loop thread): the `_mta-sts.<domain>` TXT record (through
// the delivery Resolver, re-checked at most every `txt_recheck` seconds); a
// policy in the cache with the same id and not past max_age is used as is;
// otherwise `https://mta-sts.<domain>:<port>/.well-known/mta-sts.txt` is
// fetched (StsFetcher: libcurl on its own thread, certificate verified
// against the configured CA bundle, redirects refused, body capped at 64 KiB,
// 10 s timeout). RFC 8461 5.1: when the TXT record is gone or the fetch
// fails, a cached policy that has not expired stays in force; without one
// the domain has no policy. Cache: memory only (lost at restart; the first
// message to a domain after a restart waits for one fetch).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace mxr {
class EventLoop;
}

namespace mxr::delivery {

class Resolver;

enum class StsMode { kNone, kTesting, kEnforce };
const char* StsModeName(StsMode m);

struct StsPolicy {
  StsMode mode = StsMode::kNone;
  std::vector<std::string> mx;  // patterns, lower case ("mx.example.com", "*.example.net")
  int64_t max_age = 0;          // seconds
  std::string id;               // the TXT record's id it was fetched for
  std::string text;             // the policy as fetched (TLS-RPT reports carry it)
};

// "v=STSv1; id=20160831085700Z;" -> the id; nullopt when not an STSv1 record.
std::optional<std::string> ParseStsTxt(std::string_view txt);
// The policy file (RFC 8461 3.2). Error text on failure.
std::optional<StsPolicy> ParseStsPolicy(std::string_view body, std::string* error);
// RFC 8461 4.1: exact (case-insensitive) or "*." matching one leftmost label.
bool StsMxMatches(std::string_view pattern, std::string_view host);
bool StsAnyMxMatches(const StsPolicy& p, std::string_view host);

// The HTTPS GET of a policy file. Implementations call `done` on the loop
// thread, never inside Fetch().
class StsFetcher {
 public:
  struct Result {
    bool ok = false;
    long http_status = 0;
    std::string body;
    std::string error;  // for logs and TLS-RPT (sts-policy-fetch-error / sts-webpki-invalid)
    bool tls_error = false;
  };
  virtual ~StsFetcher() = default;
  // `pin`: "host:port:address" (the address our resolver found for the
  // URL's host), or "" to let the fetcher resolve it.
  virtual void Fetch(const std::string& url, const std::string& pin, std::function<void(Result)> done) = 0;
  // An HTTPS POST of `body` (TLS-RPT reports); ok = a 2xx answer.
  virtual void Post(const std::string& url, const std::string& pin, std::string body, std::string content_type,
                    std::function<void(Result)> done) {
    Result r;
    r.error = "POST not supported";
    done(std::move(r));
  }
};

// libcurl (easy interface) on one thread of its own; results are posted to
// `loop`. At most kMaxQueued fetches wait; more fail at once.
std::unique_ptr<StsFetcher> MakeCurlStsFetcher(EventLoop* loop, const MtaStsConfig& cfg);

struct StsLookup {
  std::optional<StsPolicy> policy;  // nullopt: the domain has no (usable) policy
  // A failure to report (TLS-RPT result type) when discovery went wrong,
  // e.g. "sts-policy-fetch-error"; "" when none.
  std::string failure;
  std::string detail;
};

struct SiteSettings;

// What a lookup means for a job to `domain` whose MX hosts are `*hosts`:
// with an enforce policy, the hosts that match it (in order) and TLS
// required with a verified certificate; "testing" only marks the settings
// (sessions are reported, nothing is refused). Returns false (and *why)
// when enforce leaves no MX host: the mail must wait (451 4.7.5).
bool ApplyStsPolicy(const StsLookup& l, const std::string& domain, std::vector<std::string>* hosts,
                    SiteSettings* settings, std::string* why);

// The RFC 8460 result type for a failed handshake's X509_V_* code (0: the
// handshake failed without a certificate verdict).
const char* TlsRptResultForVerifyCode(long code);

class MtaSts {
 public:
  // `now_s` returns wall-clock seconds (the cache's clock; tests shift it).
  MtaSts(Resolver* resolver, StsFetcher* fetcher, const MtaStsConfig& cfg, std::function<int64_t()> now_s);
  // `done` runs on the loop thread, maybe inside the call (cache hit).
  void Lookup(const std::string& domain, std::function<void(const StsLookup&)> done);
  size_t cached() const { return cache_.size(); }
  static constexpr size_t kMaxEntries = 100000;

 private:
  struct Entry {
    std::optional<StsPolicy> policy;
    int64_t expires_s = 0;     // policy's max_age from its fetch
    int64_t txt_checked_s = 0; // last TXT lookup
    bool busy = false;
    std::vector<std::function<void(const StsLookup&)>> waiting;
    std::string last_failure, last_detail;
  };
  void OnTxt(const std::string& domain, bool ok, std::vector<std::string> txts);
  void Fetched(const std::string& domain, const std::string& id, StsFetcher::Result r);
  void Finish(const std::string& domain, std::string failure = "", std::string detail = "");
  StsLookup Current(const Entry& e) const;

  Resolver* resolver_;
  StsFetcher* fetcher_;
  MtaStsConfig cfg_;
  std::function<int64_t()> now_s_;
  std::map<std::string, Entry> cache_;
};

}  // namespace mxr::delivery
