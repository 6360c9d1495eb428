// Micro-benchmarks of egress shaping decisions (issue 17; target: under
// 1 us per decision): the GCRA rate limiter, the shaping rule lookup (exact
// domain, MX host, MX suffix over the shipped provider file plus 1,000
// operator domain rules), automation matching of a reply, bounce
// classification, and the weighted source choice with warm-up.
//
//   build/bench/shaping_bench
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/config.h"
#include "common/strings.h"
#include "delivery/classify.h"
#include "delivery/egress.h"
#include "delivery/rate_limiter.h"
#include "delivery/shaping.h"

namespace mxr::delivery {
namespace {

std::shared_ptr<const ShapingTable> BigTable() {
  std::string op;
  for (int i = 0; i < 1000; ++i) op += Cat("[domain.\"customer", i, ".example\"]\nmax_message_rate = \"100/min\"\n");
  op += "[provider.bigcorp]\nmx_hosts = [\"mx.bigcorp.example\"]\nconnection_limit = 3\n";
  return *ShapingTable::Load({{"shipped", kShippedShaping}, {"operator", op}});
}

void BM_GcraTake(benchmark::State& state) {
  Gcra g(*ParseRate("120/min"), 5);
  int64_t now = 0;
  for (auto _ : state) {
    now += 100'000;
    benchmark::DoNotOptimize(g.Take(now));
  }
}
BENCHMARK(BM_GcraTake);

void BM_ShapingLookupMxSuffix(benchmark::State& state) {
  auto t = BigTable();
  std::vector<std::string> hosts = {"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com",
                                    "alt2.gmail-smtp-in.l.google.com", "alt3.gmail-smtp-in.l.google.com",
                                    "alt4.gmail-smtp-in.l.google.com"};
  for (auto _ : state) {
    auto r = t->Lookup("workspace-customer.example", hosts);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ShapingLookupMxSuffix);

void BM_ShapingLookupDomain(benchmark::State& state) {
  auto t = BigTable();
  std::vector<std::string> hosts = {"mx1.customer500.example", "mx2.customer500.example"};
  for (auto _ : state) {
    auto r = t->Lookup("customer500.example", hosts);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ShapingLookupDomain);

void BM_ShapingLookupNoRule(benchmark::State& state) {
  auto t = BigTable();
  std::vector<std::string> hosts = {"mx1.smallisp.example", "mx2.smallisp.example"};
  for (auto _ : state) {
    auto r = t->Lookup("smallisp.example", hosts);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ShapingLookupNoRule);

void BM_AutomationMatch(benchmark::State& state) {
  auto t = BigTable();
  auto r = t->Lookup("yahoo.com", {"mta5.am0.yahoodns.net"});
  std::string text = "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
                     "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes";
  for (auto _ : state) {
    benchmark::DoNotOptimize(FirstMatch(r.automation, 421, "4.7.0", text));
  }
}
BENCHMARK(BM_AutomationMatch);

void BM_Classify(benchmark::State& state) {
  auto c = *Classifier::Load({{"shipped", kShippedClassification}});
  std::string text = "The email account that you tried to reach does not exist. Please try double-checking the "
                     "recipient's email address for typos or unnecessary spaces.";
  for (auto _ : state) {
    benchmark::DoNotOptimize(c->Classify(550, "5.1.1", text));
  }
}
BENCHMARK(BM_Classify);

void BM_EgressChoose(benchmark::State& state) {
  Config cfg = DefaultConfig();
  PoolConfig p;
  p.name = "mkt";
  for (int i = 0; i < 4; ++i) {
    cfg.sources.push_back({Cat("s", i), Cat("192.0.2.", 10 + i), "", i == 3 ? "2026-01-01" : "",
                           i == 3 ? std::vector<int64_t>{1000000000} : std::vector<int64_t>{}});
    p.sources.push_back({Cat("s", i), i + 1});
  }
  cfg.pools.push_back(p);
  auto e = *Egress::Create(cfg, "h", *ShapingTable::Empty());
  Pool* pool = e->PoolFor("mkt", "");
  int64_t now = 1'767'225'600'000'000;  // 2026-01-01
  for (auto _ : state) {
    benchmark::DoNotOptimize(e->Choose(pool, now++));
  }
}
BENCHMARK(BM_EgressChoose);

}  // namespace
}  // namespace mxr::delivery

BENCHMARK_MAIN();
