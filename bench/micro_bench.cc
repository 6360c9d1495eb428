// Micro-benchmarks for the hot paths: command parsing, DATA unstuffing, a
// whole pipelined session transaction, and the spool's group commit.
//
//   build/bench/micro_bench                      # full run
//   build/bench/micro_bench --benchmark_filter=Spool
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <future>

#include "benchmark/benchmark.h"
#include "common/config.h"
#include "queue/rocks_spool.h"
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

std::string MakeBody(size_t size) {
  std::string b = "Subject: bench\r\nFrom: a@b.test\r\n\r\n";
  while (b.size() < size) b += "..a line of text that is dot-stuffed sometimes, 72 chars long.....\r\n";
  b += ".\r\n";
  return b;
}

void BM_DataReader(benchmark::State& state) {
  std::string body = MakeBody(state.range(0));
  std::string out;
  for (auto _ : state) {
    out.clear();
    relay::DataReader r(1 << 30, &out);
    benchmark::DoNotOptimize(r.Feed(body));
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_DataReader)->Arg(1024)->Arg(10240)->Arg(102400);

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

}  // namespace
}  // namespace mxr

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // the spool logs its stats on close
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
