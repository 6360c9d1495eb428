// Cost of the suppression check per recipient (issue 22: under 2 µs with
// 10 M entries), on a real spool (RocksDB on disk, column family
// "suppression"):
//
//   MXR_SUPPRESSION_ENTRIES=10000000 build/bench/suppression_bench
//
// The store is filled once (in batches, as a CSV import does), reopened so
// the in-memory filter is loaded the way a restart loads it, then:
//   BM_FindMiss         an address that is not listed (the common case)
//   BM_FindHitTenant    a listed address, tenant scope (a RocksDB read)
//   BM_FindHitGlobal    a listed address in the global list (tenant miss + global read)
//   BM_FindMissBeforeLoad  the same miss while the filter is not loaded (RocksDB Get x2)
// Prints the fill and load times and the process RSS after the load.
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "queue/rocks_spool.h"
#include "suppression/store.h"

namespace {

using mxr::suppression::Entry;
using mxr::suppression::Store;

const mxr::Clock& g_clock = mxr::RealClock::Get();
std::string g_dir;
std::unique_ptr<mxr::queue::RocksSpool> g_spool;
std::unique_ptr<Store> g_store;
uint64_t g_entries = 0;

std::unique_ptr<mxr::queue::RocksSpool> OpenSpool() {
  mxr::queue::RocksSpoolOptions o;
  o.path = g_dir + "/spool";
  o.extra_families = {std::string(Store::kFamily)};
  auto s = mxr::queue::RocksSpool::Open(o, g_clock);
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(s.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*s);
}

double RssMiB() {
  std::ifstream f("/proc/self/status");
  std::string k;
  while (f >> k) {
    if (k == "VmRSS:") {
      double kb;
      f >> kb;
      return kb / 1024;
    }
  }
  return 0;
}

// Listed: "u<i>@d<i % 1000>.test" for i < n; 10% of them in the global list.
std::string Listed(uint64_t i) { return "u" + std::to_string(i) + "@d" + std::to_string(i % 1000) + ".test"; }

void Setup() {
  const char* env = std::getenv("MXR_SUPPRESSION_ENTRIES");
  g_entries = env ? std::strtoull(env, nullptr, 10) : 10'000'000;
  char tmpl[] = "/tmp/mxr-suppression-bench-XXXXXX";
  g_dir = mkdtemp(tmpl);
  auto t0 = std::chrono::steady_clock::now();
  {
    auto spool = OpenSpool();
    auto store = Store::Open(spool->db(), spool->Family(Store::kFamily), g_clock);
    (*store)->WaitLoaded();
    std::vector<Entry> chunk;
    for (uint64_t i = 0; i < g_entries; ++i) {
      Entry e;
      e.scope = i % 10 == 0 ? "" : "tenant" + std::to_string(i % 7);
      e.address = Listed(i);
      e.category = "invalid_recipient";
      e.source = "bench";
      chunk.push_back(std::move(e));
      if (chunk.size() == 100'000 || i + 1 == g_entries) {
        auto n = (*store)->AddMany(chunk);
        if (!n.ok()) std::exit(1);
        chunk.clear();
      }
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  g_spool = OpenSpool();
  g_store = std::move(*Store::Open(g_spool->db(), g_spool->Family(Store::kFamily), g_clock));
  g_store->WaitLoaded();
  auto t2 = std::chrono::steady_clock::now();
  std::fprintf(stderr,
               "suppression_bench: %llu entries; fill %.1f s; reopen + filter load %.1f s; RSS after "
               "load %.0f MiB\n",
               static_cast<unsigned long long>(g_entries),
               std::chrono::duration<double>(t1 - t0).count(),
               std::chrono::duration<double>(t2 - t1).count(), RssMiB());
}

void BM_FindMiss(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) {
    std::string a = "nobody" + std::to_string(i++ % 1'000'000) + "@d7.test";
    benchmark::DoNotOptimize(g_store->Find("tenant3", a));
  }
}
BENCHMARK(BM_FindMiss);

void BM_FindHitTenant(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) {
    // i with i % 10 != 0 and the tenant it was stored for.
    uint64_t k = (i++ * 7919) % g_entries;
    if (k % 10 == 0) ++k;
    if (k >= g_entries) k = 1;
    std::string t = "tenant" + std::to_string(k % 7);
    auto hit = g_store->Find(t, Listed(k));
    if (!hit) state.SkipWithError("expected a hit");
    benchmark::DoNotOptimize(hit);
  }
}
BENCHMARK(BM_FindHitTenant);

void BM_FindHitGlobal(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) {
    uint64_t k = ((i++ * 7919) % (g_entries / 10 + 1)) * 10;
    if (k >= g_entries) k = 0;
    auto hit = g_store->Find("tenant1", Listed(k));
    if (!hit) state.SkipWithError("expected a hit");
    benchmark::DoNotOptimize(hit);
  }
}
BENCHMARK(BM_FindHitGlobal);

void BM_FindMissBeforeLoad(benchmark::State& state) {
  // A second store on the same family, its filter not loaded: what a lookup
  // costs in the seconds after a start (RocksDB Get for both scopes).
  static std::unique_ptr<Store> cold;
  if (!cold) {
    cold = std::move(*Store::Open(g_spool->db(), g_spool->Family(Store::kFamily), g_clock,
                                  /*load_filter=*/false));
  }
  uint64_t i = 0;
  for (auto _ : state) {
    std::string a = "nobody" + std::to_string(i++ % 1'000'000) + "@d7.test";
    benchmark::DoNotOptimize(cold->Find("tenant3", a));
  }
}
BENCHMARK(BM_FindMissBeforeLoad);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Setup();
  benchmark::RunSpecifiedBenchmarks();
  g_store.reset();
  g_spool.reset();
  std::filesystem::remove_all(g_dir);
  return 0;
}
