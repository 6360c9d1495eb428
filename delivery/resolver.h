// DNS for delivery: MX lookups with RFC 5321 5.1 / RFC 7505 rules and an
// address lookup per MX host, behind an interface so the engine can be
// tested with a fake. CaresResolver drives c-ares from the event loop (no
// threads) and caches answers with their TTL clamped to [ttl_min, ttl_max].
//
// Rules: MX sorted by preference, shuffled within equal preference; no MX
// records -> implicit MX (the domain itself); null MX ("MX 0 .") ->
// permanent 5.1.10; NXDOMAIN -> permanent 5.1.2; SERVFAIL/timeout/refused ->
// temporary 4.4.3.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/histogram.h"
#include "common/event_loop.h"
#include "common/net.h"

namespace mxr::delivery {

enum class DnsOutcome { kOk, kNullMx, kPermanent, kTemporary };

struct MxAnswer {
  DnsOutcome outcome = DnsOutcome::kOk;
  std::vector<std::string> hosts;  // delivery order
  bool implicit = false;           // no MX: the domain itself
  std::string error;               // for logs / DSNs when not kOk
};

struct AddrAnswer {
  DnsOutcome outcome = DnsOutcome::kOk;
  std::vector<IpAddress> addrs;    // IPv6 and IPv4
  std::string error;
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Callbacks run later on the loop thread, never inside the call.
  virtual void ResolveMx(const std::string& domain, std::function<void(const MxAnswer&)> done) = 0;
  virtual void ResolveHost(const std::string& host, std::function<void(const AddrAnswer&)> done) = 0;
  // TXT records of `name` (each record's strings joined), uncached; for
  // MTA-STS and TLS-RPT discovery. `ok` false: the lookup failed
  // (temporary); ok with no records: NXDOMAIN or no TXT. The default
  // (resolvers without TXT) answers "no records" inside the call.
  virtual void ResolveTxt(const std::string& name, std::function<void(bool ok, std::vector<std::string>)> done) {
    (void)name;
    done(true, {});
  }
  // Called periodically by the owner (drives DNS timeouts).
  virtual void Tick() {}
  struct Stats {
    uint64_t lookups = 0, cache_hits = 0, ok = 0, nxdomain = 0, nullmx = 0, tempfail = 0;
    uint64_t coalesced = 0;  // joined a lookup already on the wire for the same name
    HistogramSnapshot micros;  // duration of lookups that went to the server
  };
  virtual Stats stats() const { return {}; }
};

// REQUIRES: created and used on `loop`'s thread.
absl::StatusOr<std::unique_ptr<Resolver>> MakeCaresResolver(EventLoop* loop,
                                                             const DeliveryConfig& cfg);

// Sorts by preference and shuffles equal preferences (`rand` yields [0, n)).
struct MxRecord {
  std::string host;
  int pref = 0;
};
std::vector<std::string> OrderMx(std::vector<MxRecord> records,
                                 const std::function<size_t(size_t)>& rand);

// Minimum TTL of the answer records in a raw DNS response, or -1.
int MinAnswerTtl(const unsigned char* buf, int len);

}  // namespace mxr::delivery
