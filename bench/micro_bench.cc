// Micro-benchmarks for the hot paths: command parsing, DATA unstuffing, a
// whole pipelined session transaction, the spool's group commit, and the
// delivery scheduler's pieces reachable through public headers (retry
// delays, site windows, MX ordering, the MX cache, the schedule scan at
// start).
//
//   build/bench/micro_bench                      # full run
//   build/bench/micro_bench --benchmark_filter=Spool
#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>

#include "benchmark/benchmark.h"
#include "common/config.h"
#include "delivery/dns_cache.h"
#include "delivery/policy.h"
#include "delivery/resolver.h"
#include "queue/rocks_spool.h"
#include "delivery/smtp_client.h"
#include "relay/data_reader.h"
#include "relay/session.h"
#include "relay/smtp_parser.h"
#include "spdlog/spdlog.h"

namespace mxr {
namespace {

void BM_ParseMailFrom(benchmark::State& state) {
  for (auto _ : state) {
    auto r = relay::ParseMailFrom("FROM:<sender.name+tag@example.com> SIZE=10240 BODY=8BITMIME");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ParseMailFrom);

void BM_ParseCommandLine(benchmark::State& state) {
  std::string buf = "RCPT TO:<recipient@example.net>\r\n";
  for (auto _ : state) {
    size_t used;
    std::string_view line;
    relay::NextLine(buf, 1000, &used, &line);
    auto c = relay::ParseCommand(line);
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_ParseCommandLine);

// Every line dot-stuffed (the reader's worst case) or, with `plain`, text
// lines of 72 characters with one dot-stuffed line in 50 (ordinary mail).
std::string MakeBody(size_t size, bool plain = false) {
  std::string b = "Subject: bench\r\nFrom: a@b.test\r\n\r\n";
  for (int n = 0; b.size() < size; ++n) {
    if (!plain || n % 50 == 49) {
      b += "..a line of text that is dot-stuffed sometimes, 72 chars long.....\r\n";
    } else {
      b += "An ordinary line of message text, seventy-two characters long......\r\n";
    }
  }
  b += ".\r\n";
  return b;
}

// Delivery's dot-stuffing of an unstuffed body (ordinary mail: one line in
// 50 begins with a dot).
void BM_DotStuff(benchmark::State& state) {
  std::string body = MakeBody(state.range(0), /*plain=*/true);
  body.resize(body.size() - 3);  // the reader's output has no end marker
  std::string out;
  for (auto _ : state) {
    out.clear();
    delivery::DotStuff(body, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_DotStuff)->Arg(1024)->Arg(102400);

// range(0) bytes; range(1) 0 = every line dot-stuffed (the worst case),
// 1 = ordinary text (BM_DataReaderPlain in older result tables).
void BM_DataReader(benchmark::State& state) {
  std::string body = MakeBody(state.range(0), /*plain=*/state.range(1) != 0);
  std::string out;
  for (auto _ : state) {
    out.clear();
    relay::DataReader r(1 << 30, &out);
    benchmark::DoNotOptimize(r.Feed(body));
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_DataReader)->ArgsProduct({{1024, 10240, 102400}, {0, 1}});

// A host that answers commits immediately (from the loop's point of view).
class NullHost : public relay::SessionHost {
 public:
  void StartTls() override {}
  void Close() override {}
  void Authenticate(std::string, std::string) override {}
  void Submit(queue::NewMessage msg) override { pending = true; }
  bool SpoolAccepting() override { return true; }
  bool pending = false;
};

void BM_SessionPipelinedTransaction(benchmark::State& state) {
  Config cfg = DefaultConfig();
  cfg.trusted_networks.push_back(*Cidr::Parse("127.0.0.0/8"));
  ListenerConfig lc;
  lc.mode = ListenerMode::kPlain;
  ManualClock clock;
  queue::QueueIdGenerator ids(clock);
  relay::SessionEnv env{&cfg, &lc, "relay.test", &ids, &clock};
  std::string tx = "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" +
                   MakeBody(state.range(0));
  NullHost host;
  relay::Session s(env, &host, relay::ConnInfo{"127.0.0.1", true});
  s.Start();
  s.Feed("EHLO client.test\r\n");
  s.TakeOutput();
  for (auto _ : state) {
    s.Feed(tx);
    s.OnCommitted(absl::OkStatus());
    benchmark::DoNotOptimize(s.TakeOutput());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SessionPipelinedTransaction)->Arg(1024)->Arg(102400);

// Group commit: `threads` writers each commit and wait; throughput shows
// how many messages share one synced write.
void BM_SpoolCommit(benchmark::State& state) {
  static std::unique_ptr<queue::RocksSpool> spool;
  static std::string dir;
  static ManualClock clock;
  static queue::QueueIdGenerator ids(clock);
  if (state.thread_index() == 0) {
    char tmpl[] = "/tmp/mxrelay-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    queue::RocksSpoolOptions o;
    o.path = dir + "/spool";
    o.sync = state.range(1) != 0;
    spool = std::move(*queue::RocksSpool::Open(o, clock));
  }
  std::string body(state.range(0), 'x');
  for (auto _ : state) {
    queue::NewMessage m;
    m.meta.id = ids.Next();
    m.meta.sender = "a@b.test";
    m.meta.recipients = {{"c@d.test"}};
    m.header_prefix = "Received: bench\r\n";
    m.body = body;
    std::promise<void> p;
    spool->Commit(std::move(m), [&p](absl::Status) { p.set_value(); });
    p.get_future().wait();
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    auto st = spool->Stats();
    state.counters["avg_batch"] =
        st.commits ? static_cast<double>(st.committed_messages) / st.commits : 0;
    spool.reset();
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_SpoolCommit)
    ->Args({1024, 1})
    ->Args({10240, 1})
    ->Args({1024, 0})
    ->Threads(1)
    ->Threads(32)
    ->UseRealTime();

// Scheduler: the retry delay after a deferral (called once per deferred
// recipient attempt).
void BM_RetryDelayMs(benchmark::State& state) {
  DeliveryConfig cfg;
  uint32_t attempts = 1;
  double jitter = 0.0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(delivery::RetryDelayMs(cfg, attempts, jitter));
    attempts = attempts == 20 ? 1 : attempts + 1;
    jitter += 0.0371;
    if (jitter >= 1.0) jitter -= 1.0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RetryDelayMs);

// Scheduler: a site's connection window through a cycle of 8 successful
// connections, one failure and the AllowedConnections checks the engine
// makes before opening each (10 window updates per iteration).
void BM_SiteWindow(benchmark::State& state) {
  DeliveryConfig cfg;
  const int max_conns = 20;
  delivery::SiteWindow w;
  delivery::InitWindow(cfg, max_conns, &w);
  int64_t now_ms = 1'000'000;
  for (auto _ : state) {
    for (int i = 0; i < 8; ++i) {
      benchmark::DoNotOptimize(delivery::AllowedConnections(now_ms, &w));
      delivery::OnConnectSuccess(max_conns, &w);
    }
    benchmark::DoNotOptimize(delivery::OnConnectFailure(cfg, now_ms, &w));
    benchmark::DoNotOptimize(delivery::AllowedConnections(now_ms, &w));
    now_ms += 10;
  }
  state.SetItemsProcessed(state.iterations() * 10);
}
BENCHMARK(BM_SiteWindow);

// MX ordering: sort by preference, shuffle within equal preferences
// (records in two or three preference levels, as big providers publish).
void BM_OrderMx(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<delivery::MxRecord> recs;
  for (int i = 0; i < n; ++i) {
    recs.push_back({"mx" + std::to_string(i) + ".mail.example-provider.test", 10 * (i % 3)});
  }
  uint64_t seed = 1;
  auto rnd = [&seed](size_t k) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>((seed >> 33) % k);
  };
  for (auto _ : state) {
    auto order = delivery::OrderMx(recs, rnd);
    benchmark::DoNotOptimize(order);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OrderMx)->Arg(1)->Arg(5)->Arg(10);

// MX cache (delivery/dns_cache.h): a hit among `n` cached domains (the
// lookup every message makes before it joins a site), and a miss that
// inserts into a full cache of 100,000 and drops the least recently used
// (a campaign to many cold domains).
struct CachedMx {
  std::vector<std::string> hosts;
  std::vector<delivery::MxRecord> records;
};
std::vector<std::string> BenchDomains(int n) {
  std::vector<std::string> d;
  d.reserve(n);
  for (int i = 0; i < n; ++i) d.push_back("customer" + std::to_string(i) + ".example-domain.test");
  return d;
}
void BM_MxCacheHit(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<std::string> domains = BenchDomains(n);
  delivery::TtlCache<CachedMx> cache;
  for (const auto& d : domains) {
    cache.Put(d, CachedMx{{"mx1." + d, "mx2." + d}, {{"mx1." + d, 10}, {"mx2." + d, 20}}}, 1'000'000);
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.Find(domains[i], 1000));
    i = (i + 7919) % domains.size();  // a stride that defeats the cache lines of neighbours
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MxCacheHit)->Arg(100)->Arg(100000);

void BM_MxCacheMissInsertEvict(benchmark::State& state) {
  std::vector<std::string> domains = BenchDomains(200000);
  delivery::TtlCache<CachedMx> cache;  // kDnsCacheEntries = 100,000
  size_t i = 0;
  for (const auto& d : domains) {
    if (cache.size() == cache.capacity()) break;
    cache.Put(d, CachedMx{{"mx." + d}, {{"mx." + d, 10}}}, 1'000'000);
    ++i;
  }
  for (auto _ : state) {
    const std::string& d = domains[i];
    if (cache.Find(d, 1000) == nullptr) cache.Put(d, CachedMx{{"mx." + d}, {{"mx." + d, 10}}}, 1'000'000);
    i = (i + 1) % domains.size();
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["evicted"] = static_cast<double>(cache.evicted());
}
BENCHMARK(BM_MxCacheMissInsertEvict);

// A spool holding `count` deferred messages, filled once per process
// (unsynced, many commits in flight) and removed at exit.
struct FilledSpool {
  std::string dir;
  std::unique_ptr<queue::RocksSpool> spool;
};
std::unique_ptr<FilledSpool> g_scan_spool;

// A fresh unsynced spool in a temporary directory holding `count` messages
// made by make(i), committed with up to 4,096 in flight.
std::unique_ptr<FilledSpool> MakeFilledSpool(const char* name, size_t count,
                                             const std::function<queue::NewMessage(size_t)>& make) {
  static ManualClock clock;
  auto f = std::make_unique<FilledSpool>();
  std::string tmpl = std::string("/tmp/mxrelay-bench-") + name + "-XXXXXX";
  f->dir = mkdtemp(tmpl.data());
  queue::RocksSpoolOptions o;
  o.path = f->dir + "/spool";
  o.sync = false;
  f->spool = std::move(*queue::RocksSpool::Open(o, clock));
  std::mutex mu;
  std::condition_variable cv;
  size_t outstanding = 0;
  for (size_t i = 0; i < count; ++i) {
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return outstanding < 4096; });
      outstanding++;
    }
    f->spool->Commit(make(i), [&](absl::Status) {
      std::lock_guard<std::mutex> l(mu);
      outstanding--;
      cv.notify_one();
    });
  }
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return outstanding == 0; });
  return f;
}

queue::RocksSpool* ScanSpool(size_t count) {
  if (g_scan_spool) return g_scan_spool->spool.get();
  static ManualClock clock;
  static queue::QueueIdGenerator ids(clock);
  std::string body(200, 'x');
  g_scan_spool = MakeFilledSpool("scan", count, [&](size_t i) {
    queue::NewMessage m;
    m.meta.id = ids.Next();
    m.meta.received_us = 1'700'000'000'000'000;
    // Spread over a day, as retries of different ages would be.
    m.meta.next_attempt_us = m.meta.received_us + static_cast<int64_t>((i * 7919) % 86'400) * 1'000'000;
    m.meta.sender = "a@b.test";
    m.meta.recipients = {{"c" + std::to_string(i) + "@d.test"}};
    m.body = body;
    m.meta.body_size = body.size();
    return m;
  });
  return g_scan_spool->spool.get();
}

void CloseSpool(std::unique_ptr<FilledSpool>& f) {
  if (!f) return;
  f->spool.reset();
  std::filesystem::remove_all(f->dir);
  f.reset();
}

// Scheduler at start: the engine rebuilds its schedule by visiting every
// schedule key (ScanSchedule, keys only). Per iteration: one whole scan of
// 100k entries; items/s = entries/s.
void BM_ScanSchedule(benchmark::State& state) {
  const size_t count = static_cast<size_t>(state.range(0));
  queue::RocksSpool* spool = ScanSpool(count);
  size_t seen = 0;
  for (auto _ : state) {
    seen = 0;
    int64_t last = 0;
    auto st = spool->ScanSchedule([&](int64_t when, const queue::QueueId& id) {
      last = when;
      ++seen;
      return true;
    });
    benchmark::DoNotOptimize(last);
    if (!st.ok() || seen != count) {
      state.SkipWithError("ScanSchedule failed or saw a different count");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(count));
}
BENCHMARK(BM_ScanSchedule)->Arg(100000)->Unit(benchmark::kMillisecond);

// The oldest-message gauge (delivery engine, once a second): Spool::OldestFrom
// on a spool of 20,000 messages whose 10,000 oldest were delivered (deleted,
// still tombstones in the memtable). Arg 0: asked from the start of the key
// space (every tombstone skipped); arg 1: asked from the previous answer, as
// the engine does (one seek). The walk this replaced visited every scheduled
// message in a hash set on the delivery loop every 5 s.
std::unique_ptr<FilledSpool> g_oldest_spool;  // built once, removed at exit

void BM_OldestFrom(benchmark::State& state) {
  std::unique_ptr<FilledSpool>& f = g_oldest_spool;
  static queue::QueueId first_live;
  if (!f) {
    static ManualClock clock;
    static queue::QueueIdGenerator ids(clock);
    std::vector<queue::MessageMeta> metas;
    f = MakeFilledSpool("oldest", 20000, [&](size_t) {
      queue::NewMessage m;
      m.meta.id = ids.Next();
      m.meta.received_us = 1'700'000'000'000'000;
      m.meta.next_attempt_us = m.meta.received_us;
      m.meta.sender = "a@b.test";
      m.meta.recipients = {{"c@d.test"}};
      m.body = "x";
      m.meta.body_size = 1;
      metas.push_back(m.meta);
      return m;
    });
    for (int i = 0; i < 10000; ++i) (void)f->spool->Delete(metas[i]);
    first_live = metas[10000].id;
  }
  const queue::QueueId from = state.range(0) ? first_live : queue::QueueId{};
  for (auto _ : state) {
    auto r = f->spool->OldestFrom(from);
    if (!r.ok() || !r->has_value() || **r != first_live) {
      state.SkipWithError("OldestFrom gave a different answer");
      break;
    }
  }
}
BENCHMARK(BM_OldestFrom)->Arg(0)->Arg(1);

}  // namespace
}  // namespace mxr

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // the spool logs its stats on close
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  mxr::CloseSpool(mxr::g_scan_spool);
  mxr::CloseSpool(mxr::g_oldest_spool);
  benchmark::Shutdown();
  return 0;
}
