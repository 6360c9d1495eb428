// mxr-spool-fill: fills a spool directory with N deferred messages, as the
// relay would have stored them, for the big-spool benchmark
// (bench/big-spool.sh): restart time and throughput with a large queue.
//
//   mxr-spool-fill --path /tmp/x/data/spool --count 1000000 --size 1K --days 3
//
// Each message has one recipient (u<N>@<domain>; with --domains D > 0 the
// recipient domain is d<1 + N % D>.<domain>, so the spool holds D recipient
// domains round-robin: bench/shaping-scale.sh), a trace header prefix like
// the relay's, a ~SIZE body, one failed attempt (451 4.4.1) and its next
// attempt --days in the future, so a relay started on the spool schedules
// every message but delivers none of them during a benchmark. Commits go
// through RocksSpool::Commit with --in-flight of them outstanding at once,
// so the group commit writes them in large synced batches (as it would for
// that many concurrent clients). Progress once a second on stderr; a summary
// on stdout. Exit status 1 on any failed commit.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "CLI/CLI.hpp"
#include "bench/bench_common.h"
#include "common/clock.h"
#include "fmt/format.h"
#include "queue/rocks_spool.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  using namespace mxr;
  std::string path, size_str = "1K", domain = "deferred.test";
  uint64_t count = 1000;
  uint64_t domains = 0;
  double days = 3;
  uint32_t in_flight = 4096;
  bool no_sync = false;
  CLI::App app{"mxr-spool-fill: fill a spool with deferred messages (bench/big-spool.sh)"};
  app.add_option("--path", path, "spool directory (the relay's data_dir/spool)")->required();
  app.add_option("--count", count, "messages to add")->capture_default_str();
  app.add_option("--size", size_str, "approximate message size (headers + body): 1K, 10K...")
      ->capture_default_str();
  app.add_option("--days", days, "next attempt this many days from now")->capture_default_str();
  app.add_option("--domain", domain, "recipient domain")->capture_default_str();
  app.add_option("--domains", domains,
                 "spread recipients over d1..dD.<domain> round-robin (0: every recipient at <domain>)")
      ->capture_default_str();
  app.add_option("--in-flight", in_flight, "commits outstanding at once (group commit batch size)")
      ->capture_default_str();
  app.add_flag("--no-sync", no_sync, "unsynced writes (faster fill; the spool is still valid)");
  CLI11_PARSE(app, argc, argv);
  auto size = bench::ParseSize(size_str);
  if (!size.ok() || in_flight == 0) {
    std::cerr << "mxr-spool-fill: bad --size or --in-flight\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  const Clock& clock = RealClock::Get();
  queue::RocksSpoolOptions so;
  so.path = path;
  so.sync = !no_sync;
  auto spool_or = queue::RocksSpool::Open(so, clock);
  if (!spool_or.ok()) {
    std::cerr << "mxr-spool-fill: " << spool_or.status() << "\n";
    return 1;
  }
  std::unique_ptr<queue::RocksSpool> spool = std::move(*spool_or);
  queue::QueueIdGenerator ids(clock);

  // One body for every message (the filler lines of mxr-loadgen's kind).
  std::string body =
      "From: <sender@fill.test>\r\nTo: <someone@" + domain + ">\r\nSubject: deferred\r\n\r\n";
  const std::string line = "The quick brown fox jumps over the lazy dog; mxr-spool-fill filler 0123456789\r\n";
  while (body.size() + line.size() <= *size) body += line;

  std::mutex mu;
  std::condition_variable cv;
  uint64_t outstanding = 0, done = 0, failed = 0;
  std::string first_error;
  const int64_t ahead_us = static_cast<int64_t>(days * 86400e6);
  auto t0 = std::chrono::steady_clock::now();
  auto next_report = t0 + std::chrono::seconds(1);
  for (uint64_t i = 0; i < count; ++i) {
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return outstanding < in_flight; });
      outstanding++;
    }
    queue::NewMessage m;
    int64_t now = clock.NowMicros();
    m.meta.id = ids.Next();
    m.meta.received_us = now;
    m.meta.next_attempt_us = now + ahead_us;
    m.meta.attempts = 1;
    m.meta.sender = "sender@fill.test";
    m.meta.client_ip = "127.0.0.1";
    m.meta.helo = "fill.test";
    const std::string rdomain = domains ? fmt::format("d{}.{}", 1 + i % domains, domain) : domain;
    queue::Recipient r;
    r.address = fmt::format("u{}@{}", i, rdomain);
    r.attempts = 1;
    r.last_code = 451;
    r.last_response = "451 4.4.1 mxr-spool-fill: deferred";
    m.meta.recipients.push_back(std::move(r));
    m.header_prefix = fmt::format(
        "Received: from fill.test (localhost [127.0.0.1])\r\n\tby relay.bench.invalid (mxrelay) with ESMTP "
        "id {}\r\n\tfor <u{}@{}>; Sun, 22 Nov 2026 04:00:00 +0000\r\n",
        m.meta.id.ToString(), i, rdomain);
    m.body = body;
    m.meta.body_size = m.header_prefix.size() + m.body.size();
    spool->Commit(std::move(m), [&](absl::Status st) {
      std::lock_guard<std::mutex> l(mu);
      outstanding--;
      done++;
      if (!st.ok()) {
        if (failed++ == 0) first_error = st.ToString();
      }
      cv.notify_one();
    });
    auto now_t = std::chrono::steady_clock::now();
    if (now_t >= next_report) {
      next_report += std::chrono::seconds(1);
      std::lock_guard<std::mutex> l(mu);
      double s = std::chrono::duration<double>(now_t - t0).count();
      std::fprintf(stderr, "[%6.1fs] spool-fill: %llu of %llu committed (%.0f msg/s)\n", s,
                   static_cast<unsigned long long>(done), static_cast<unsigned long long>(count),
                   static_cast<double>(done) / s);
    }
  }
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return outstanding == 0; });
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto st = spool->Stats();
  spool.reset();  // syncs the WAL and closes
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "mxr-spool-fill: " << (done - failed) << " of " << count << " messages ("
            << body.size() << "-byte body + trace header) committed in " << fmt::format("{:.1f}", secs)
            << " s (" << fmt::format("{:.0f}", static_cast<double>(done - failed) / secs)
            << " msg/s; closed after " << fmt::format("{:.1f}", total) << " s), " << st.commits
            << " synced commits, avg batch "
            << fmt::format("{:.0f}", st.commits ? static_cast<double>(st.committed_messages) / st.commits : 0.0)
            << ", next attempt in " << days << " days, " << (no_sync ? "unsynced" : "synced") << "\n";
  if (failed) {
    std::cerr << "mxr-spool-fill: " << failed << " commits failed, first: " << first_error << "\n";
    return 1;
  }
  return 0;
}
