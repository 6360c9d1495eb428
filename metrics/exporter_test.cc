#include "metrics/exporter.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "common/strings.h"
#include "gtest/gtest.h"

namespace mxr::metrics {
namespace {

// name{labels} -> value, from the text format.
std::map<std::string, double> Parse(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t sp = line.rfind(' ');
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

TEST(Exporter, IngressCountersAndHistogramsRender) {
  Config cfg = DefaultConfig();
  relay::IngressStats in(cfg.listeners.size());
  in.accepted_by_listener[0] += 3;
  in.auth_failure += 2;
  in.messages_accepted += 5;
  in.CountReply(relay::ReplyCmd::kRcpt, 554);
  in.CountReply(relay::ReplyCmd::kRcpt, 250);
  in.CountReply(relay::ReplyCmd::kRcpt, 250);
  in.time_to_250_us.Observe(700);     // 0.0007 s
  in.time_to_250_us.Observe(20000);   // 0.02 s
  Sources src;
  src.config = &cfg;
  src.ingress = &in;
  src.version = "test";
  auto m = Parse(Render(src));
  EXPECT_EQ(m[Cat("mxrelay_connections_accepted_total{listener=\"", cfg.listeners[0].name, "\"}")], 3);
  EXPECT_EQ((m["mxrelay_auth_attempts_total{result=\"failure\"}"]), 2);
  EXPECT_EQ(m["mxrelay_messages_received_total"], 5);
  EXPECT_EQ((m["mxrelay_smtp_replies_total{command=\"rcpt\",class=\"5xx\"}"]), 1);
  EXPECT_EQ((m["mxrelay_smtp_replies_total{command=\"rcpt\",class=\"2xx\"}"]), 2);
  EXPECT_EQ(m.count("mxrelay_smtp_replies_total{command=\"mail\",class=\"2xx\"}"), 0u);
  EXPECT_EQ(m["mxrelay_time_to_250_seconds_count"], 2);
  EXPECT_EQ((m["mxrelay_time_to_250_seconds_bucket{le=\"0.001\"}"]), 1);
  EXPECT_EQ((m["mxrelay_time_to_250_seconds_bucket{le=\"0.025\"}"]), 2);
  EXPECT_EQ((m["mxrelay_time_to_250_seconds_bucket{le=\"+Inf\"}"]), 2);
  EXPECT_NEAR(m["mxrelay_time_to_250_seconds_sum"], 0.0207, 1e-9);
  EXPECT_EQ(m["mxrelay_ready"], 1);
  EXPECT_GT(m["mxrelay_process_resident_memory_bytes"], 1e6);
  EXPECT_GT(m["mxrelay_process_open_fds"], 2);
  EXPECT_GT(m["mxrelay_process_start_time_seconds"], 1.7e9);
}

TEST(Exporter, NotReadyReasonClearsTheGauge) {
  Config cfg = DefaultConfig();
  Sources src;
  src.config = &cfg;
  src.not_ready = [] { return std::string("spool unhealthy: disk full"); };
  auto m = Parse(Render(src));
  EXPECT_EQ(m["mxrelay_ready"], 0);
}

TEST(Exporter, EveryNameHasTheOnePrefixAndCountersEndInTotal) {
  Config cfg = DefaultConfig();
  relay::IngressStats in(cfg.listeners.size());
  delivery::DeliveryStats d;
  delivery::DeliverySnapshot snap;
  delivery::SiteFigures site;
  site.label = "mx.example.test";
  site.attempts[delivery::Outcome::kDelivered] = 4;
  snap.sites.push_back(site);
  d.Publish(snap);
  Sources src;
  src.config = &cfg;
  src.ingress = &in;
  src.delivery = &d;
  std::string text = Render(src);
  std::istringstream is(text);
  std::string line;
  std::regex type_re("^# TYPE (\\S+) (\\S+)$");
  int families = 0;
  while (std::getline(is, line)) {
    std::smatch mt;
    if (!std::regex_match(line, mt, type_re)) continue;
    families++;
    std::string name = mt[1], type = mt[2];
    EXPECT_EQ(name.rfind("mxrelay_", 0), 0u) << name;
    if (type == "counter") {
      EXPECT_TRUE(name.size() > 6 && name.substr(name.size() - 6) == "_total") << name;
    }
  }
  EXPECT_GT(families, 30);
  auto m = Parse(text);
  EXPECT_EQ((m["mxrelay_site_attempts_total{site=\"mx.example.test\",outcome=\"delivered\"}"]), 4);
}

TEST(Exporter, DkimFamilies) {
  Config cfg = DefaultConfig();
  dkim::DkimStats k(1);
  k.CountSignature("customer.test", "rsa-sha256");
  k.CountSignature("customer.test", "rsa-sha256");
  k.CountSignature("platform.test", "ed25519-sha256");
  k.CountResult(dkim::Result::kSigned);
  k.CountResult(dkim::Result::kDeferred);
  k.CountFailure(dkim::Failure::kNoRule);
  k.signing_us().Observe(40);
  Sources src;
  src.config = &cfg;
  src.dkim = &k;
  auto m = Parse(Render(src));
  EXPECT_EQ((m["mxrelay_dkim_signatures_total{domain=\"customer.test\",algorithm=\"rsa-sha256\"}"]), 2);
  EXPECT_EQ((m["mxrelay_dkim_signatures_total{domain=\"other\",algorithm=\"ed25519-sha256\"}"]), 1);
  EXPECT_EQ(m.count("mxrelay_dkim_signatures_total{domain=\"platform.test\",algorithm=\"ed25519-sha256\"}"), 0u);
  EXPECT_EQ((m["mxrelay_dkim_messages_total{result=\"signed\"}"]), 1);
  EXPECT_EQ((m["mxrelay_dkim_messages_total{result=\"deferred\"}"]), 1);
  EXPECT_EQ((m["mxrelay_dkim_messages_total{result=\"unsigned\"}"]), 0);
  EXPECT_EQ((m["mxrelay_dkim_failures_total{reason=\"no_rule\"}"]), 1);
  EXPECT_EQ((m["mxrelay_dkim_failures_total{reason=\"key_unusable\"}"]), 0);
  EXPECT_EQ(m["mxrelay_dkim_signing_duration_seconds_count"], 1);
  EXPECT_EQ(m["mxrelay_dkim_signing_duration_seconds_bucket{le=\"5e-05\"}"], 1);
}

// Scrapes race with the hot paths by design (relaxed atomics, histogram
// buckets); run under TSan by scripts/test.sh.
TEST(Exporter, RenderWhileTheComponentsCount) {
  Config cfg = DefaultConfig();
  relay::IngressStats in(cfg.listeners.size());
  delivery::DeliveryStats d;
  Sources src;
  src.config = &cfg;
  src.ingress = &in;
  src.delivery = &d;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < 200000 && !stop.load(); ++i) {
        in.messages_accepted.fetch_add(1, std::memory_order_relaxed);
        in.CountReply(relay::ReplyCmd::kRcpt, 250);
        in.time_to_250_us.Observe(static_cast<uint64_t>(i % 5000));
        d.delivery_latency_us.Observe(static_cast<uint64_t>(i));
        if (i % 1000 == 0) {
          delivery::DeliverySnapshot s;
          s.sites.push_back(delivery::SiteFigures{"x", {{static_cast<uint64_t>(i), 0, 0, 0}}, 1, 2, false});
          d.Publish(std::move(s));
        }
      }
    });
  }
  uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    auto m = Parse(Render(src));
    auto count = static_cast<uint64_t>(m["mxrelay_time_to_250_seconds_count"]);
    EXPECT_GE(count, last);  // counters never go back
    EXPECT_EQ(m["mxrelay_time_to_250_seconds_count"], m["mxrelay_time_to_250_seconds_bucket{le=\"+Inf\"}"]);
    last = count;
  }
  stop = true;
  for (auto& w : writers) w.join();
}

// A server on a free loopback port with only the config as source.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartOnLoopback(const Config& cfg) {
  MetricsConfig mc;
  mc.listen = "127.0.0.1:0";
  Sources src;
  src.config = &cfg;
  return MetricsServer::Start(mc, src);
}

TEST(Exporter, ServesMetricsHealthAndReadinessOverHttp) {
  Config cfg = DefaultConfig();
  Sources src;
  src.config = &cfg;
  auto srv = StartOnLoopback(cfg);
  ASSERT_TRUE(srv.ok()) << srv.status();
  EXPECT_NE((*srv)->address(), "127.0.0.1:0");  // the real port is reported
  MetricsConfig bad;
  bad.listen = (*srv)->address();  // taken
  auto again = MetricsServer::Start(bad, src);
  EXPECT_FALSE(again.ok());
}

// GET `path` from `addr`; the response (possibly partial) once the server
// closes or `deadline` passes.
std::string HttpGet(const std::string& addr, const std::string& path, std::chrono::milliseconds deadline) {
  auto hp = ParseHostPort(addr);
  if (!hp.ok()) return "";
  sockaddr_storage ss;
  auto len = MakeSockaddr(hp->address, hp->port, &ss);
  if (!len.ok()) return "";
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  std::string out;
  auto end = std::chrono::steady_clock::now() + deadline;
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), *len) == 0) {
    std::string req = Cat("GET ", path, " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    (void)send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

// Issue 15, item 8: civetweb ran two workers with a 10 s request timeout, so
// two idle TCP connections (a port scan, a stuck client) kept /healthz from
// answering for 10 s or more: Kubernetes restarted a healthy relay. Now there
// are enough workers, and an idle connection is dropped after 2 s.
TEST(Exporter, HttpHealthzAnswersWithinOneSecondWhileTwentyIdleConnectionsAreHeld) {
  Config cfg = DefaultConfig();
  auto srv = StartOnLoopback(cfg);
  ASSERT_TRUE(srv.ok()) << srv.status();
  const std::string addr = (*srv)->address();
  auto hp = ParseHostPort(addr);
  ASSERT_TRUE(hp.ok());
  sockaddr_storage ss;
  auto len = MakeSockaddr(hp->address, hp->port, &ss);
  ASSERT_TRUE(len.ok());
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) {
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ss), *len), 0) << strerror(errno);
    idle.push_back(fd);  // connected, sends nothing
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the workers have taken them
  for (const char* path : {"/healthz", "/readyz"}) {
    auto t0 = std::chrono::steady_clock::now();
    std::string r = HttpGet(addr, path, std::chrono::milliseconds(5000));
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << path << ": " << r;
    EXPECT_LT(took.count(), 1000) << path;
  }
  for (int fd : idle) close(fd);
}

// civetweb notices a stop only when its 2 s poll() on the listening socket
// returns; the server wakes it, so a relay's stop does not wait for it.
// (Without the wake-up this takes ~1.95 s: the poll began 50 ms before.)
TEST(Exporter, HttpServerStopsWithoutWaitingForCivetwebsPollTimeout) {
  Config cfg = DefaultConfig();
  auto srv = StartOnLoopback(cfg);
  ASSERT_TRUE(srv.ok()) << srv.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = std::chrono::steady_clock::now();
  srv->reset();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, std::chrono::milliseconds(1500))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
}

}  // namespace
}  // namespace mxr::metrics
