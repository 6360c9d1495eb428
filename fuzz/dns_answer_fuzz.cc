// Fuzz target: what delivery does with a DNS answer (delivery/resolver.cc):
// the raw response goes to c-ares' ares_parse_mx_reply, the MX records are
// turned into hosts exactly as CaresResolver::OnMx does (trailing dot
// dropped, null MX recognised, empty hosts dropped, OrderMx), and
// MinAnswerTtl reads the answer TTLs for the cache. The same bytes also go
// through ares_parse_a_reply / ares_parse_aaaa_reply (answers to address
// queries) as a cross-check of MinAnswerTtl's hand-written wire parsing.
//
// Input: one DNS response message (wire format, as received over UDP/TCP).
//
// Invariants:
//  - MinAnswerTtl is -1 or in [0, 2^31-1];
//  - when c-ares parsed an answer with records, MinAnswerTtl saw them too
//    (>= 0) and is not above any address record's TTL c-ares reports;
//  - OrderMx returns the same hosts, sorted by preference, only ever asking
//    its random source for a choice among >= 2.
//
// Note: the Debian c-ares library is not instrumented, so libFuzzer gets no
// coverage from inside it and ASan does not check its reads; a crash there
// still shows as a SEGV.
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "delivery/resolver.h"
#include "fuzz/fuzz_util.h"

namespace {

using mxr::delivery::MxRecord;

void CheckOrder(const std::vector<MxRecord>& recs, uint32_t seed) {
  mxr::fuzz::Splitter rng(seed);
  auto rand = [&](size_t n) -> size_t {
    FUZZ_CHECK(n >= 2, "OrderMx asked for a choice among " + std::to_string(n));
    return rng.Next() % n;
  };
  std::vector<std::string> out = mxr::delivery::OrderMx(recs, rand);
  FUZZ_CHECK(out.size() == recs.size());
  // Pair each output position with the preference sorted into it: the
  // multiset of (pref, host) must be the input's.
  std::vector<int> prefs;
  for (const auto& r : recs) prefs.push_back(r.pref);
  std::sort(prefs.begin(), prefs.end());
  std::multiset<std::pair<int, std::string>> want, got;
  for (const auto& r : recs) want.insert({r.pref, r.host});
  for (size_t i = 0; i < out.size(); ++i) got.insert({prefs[i], out[i]});
  FUZZ_CHECK(want == got, "OrderMx lost, duplicated or misordered a host");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65535) return 0;  // a DNS message is at most 64 KiB (TCP)
  const int len = static_cast<int>(size);

  int ttl = mxr::delivery::MinAnswerTtl(data, len);
  FUZZ_CHECK(ttl >= -1, std::to_string(ttl));

  // MX, as CaresResolver::OnMx.
  ares_mx_reply* mx = nullptr;
  if (ares_parse_mx_reply(data, len, &mx) == ARES_SUCCESS) {
    std::vector<MxRecord> recs;
    for (ares_mx_reply* m = mx; m; m = m->next) {
      std::string h = m->host ? m->host : "";
      if (!h.empty() && h.back() == '.') h.pop_back();
      recs.push_back(MxRecord{h, m->priority});
    }
    ares_free_data(mx);
    if (!recs.empty()) FUZZ_CHECK(ttl >= 0, "c-ares found MX records, MinAnswerTtl none");
    bool null_mx = recs.size() == 1 && recs[0].host.empty();
    if (!null_mx) {
      std::erase_if(recs, [](const MxRecord& r) { return r.host.empty(); });
      uint32_t seed = static_cast<uint32_t>(size) * 2654435761u ^ (size ? data[size - 1] : 0);
      CheckOrder(recs, seed);
    }
  }

  // A and AAAA answers: c-ares reports per-address TTLs.
  ares_addrttl a[32];
  int na = 32;
  hostent* he = nullptr;
  if (ares_parse_a_reply(data, len, &he, a, &na) == ARES_SUCCESS) {
    if (he) ares_free_hostent(he);
    FUZZ_CHECK(na >= 0 && na <= 32);
    if (na > 0) FUZZ_CHECK(ttl >= 0, "c-ares found A records, MinAnswerTtl none");
    for (int i = 0; i < na; ++i) {
      if (a[i].ttl >= 0) FUZZ_CHECK(ttl <= a[i].ttl, std::to_string(ttl) + " > A ttl " + std::to_string(a[i].ttl));
    }
  }
  ares_addr6ttl a6[32];
  int na6 = 32;
  he = nullptr;
  if (ares_parse_aaaa_reply(data, len, &he, a6, &na6) == ARES_SUCCESS) {
    if (he) ares_free_hostent(he);
    FUZZ_CHECK(na6 >= 0 && na6 <= 32);
    if (na6 > 0) FUZZ_CHECK(ttl >= 0, "c-ares found AAAA records, MinAnswerTtl none");
    for (int i = 0; i < na6; ++i) {
      if (a6[i].ttl >= 0) FUZZ_CHECK(ttl <= a6[i].ttl, std::to_string(ttl) + " > AAAA ttl " + std::to_string(a6[i].ttl));
    }
  }
  return 0;
}
