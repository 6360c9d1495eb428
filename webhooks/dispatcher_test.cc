#include "webhooks/dispatcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "queue/rocks_spool.h"
#include "webhooks/signature.h"

namespace mxr::webhooks {
namespace {

// A loopback HTTP/1.1 server (keep-alive) that records each POST and
// answers with what `status_for(n)` says for the n-th request (0-based).
class Receiver {
 public:
  struct Request {
    std::string signature;
    std::string body;
  };
  explicit Receiver(std::function<int(int)> status_for) : status_for_(std::move(status_for)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~Receiver() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }
  void Serve() {
    while (WaitReadable(fd_)) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string buf;
      for (;;) {
        size_t end;
        while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
          char tmp[4096];
          if (!WaitReadable(c)) break;
          ssize_t n = recv(c, tmp, sizeof tmp, 0);
          if (n <= 0) break;
          buf.append(tmp, static_cast<size_t>(n));
        }
        if (end == std::string::npos) break;
        std::string head = buf.substr(0, end);
        size_t cl = 0, p = head.find("Content-Length: ");
        if (p != std::string::npos) cl = std::stoul(head.substr(p + 16));
        while (buf.size() < end + 4 + cl) {
          char tmp[4096];
          if (!WaitReadable(c)) break;
          ssize_t n = recv(c, tmp, sizeof tmp, 0);
          if (n <= 0) break;
          buf.append(tmp, static_cast<size_t>(n));
        }
        if (buf.size() < end + 4 + cl) break;
        Request r;
        r.body = buf.substr(end + 4, cl);
        size_t s = head.find("X-MxRelay-Signature: ");
        if (s != std::string::npos) r.signature = head.substr(s + 21, head.find("\r\n", s) - s - 21);
        buf.erase(0, end + 4 + cl);
        int n;
        {
          std::lock_guard<std::mutex> l(mu_);
          n = static_cast<int>(requests_.size());
          requests_.push_back(std::move(r));
        }
        int status = status_for_(n);
        std::string resp = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: 2\r\n\r\nok";
        send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
      }
      close(c);
    }
  }

  std::function<int(int)> status_for_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Request> requests_;
  std::thread thread_;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-webhooks-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    queue::RocksSpoolOptions o;
    o.path = dir_ + "/spool";
    o.write_buffer_size = 4 << 20;
    o.extra_families = {std::string(EventLog::kEventsFamily), std::string(EventLog::kCursorsFamily)};
    auto s = queue::RocksSpool::Open(o, RealClock::Get());
    ASSERT_TRUE(s.ok());
    spool_ = std::move(*s);
    auto l = EventLog::Open(spool_->db(), spool_->Family(EventLog::kEventsFamily),
                            spool_->Family(EventLog::kCursorsFamily));
    ASSERT_TRUE(l.ok());
    log_ = std::move(*l);
  }
  void TearDown() override {
    log_.reset();
    spool_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Waits (bounded) until `pred` holds.
  static bool Eventually(const std::function<bool()>& pred, int ms = 10000) {
    for (int i = 0; i < ms / 10; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }
  // The ids of the events in every request body, in order.
  static std::vector<std::string> Ids(const std::vector<Receiver::Request>& reqs) {
    std::vector<std::string> ids;
    for (const auto& r : reqs) {
      size_t p = 0;
      while ((p = r.body.find("{\"id\":\"", p)) != std::string::npos) {
        p += 7;
        ids.push_back(r.body.substr(p, r.body.find('"', p) - p));
      }
    }
    return ids;
  }
  std::string dir_;
  std::unique_ptr<queue::RocksSpool> spool_;
  std::unique_ptr<EventLog> log_;
};

TEST_F(DispatcherTest, SendsSignedBatchesInOrderAndKeepsThePosition) {
  Receiver rx([](int) { return 200; });
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(log_->Append("acme", R"({"type":"delivered"})").ok());
  Endpoint ep{"crm", "acme", rx.url(), "s3cret", {}, 10, 5000, ""};
  DispatcherOptions slow_idle;
  slow_idle.idle_poll_ms = 60000;  // only Poke() can make it look again in time
  {
    Dispatcher d(*log_, {ep}, RealClock::Get(), slow_idle);
    d.Start();
    ASSERT_TRUE(Eventually([&] { return d.Stats()[0].position == 25; }));
    auto st = d.Stats()[0];
    EXPECT_EQ(st.events_sent, 25u);
    EXPECT_EQ(st.batches_sent, 3u);  // 10 + 10 + 5
    EXPECT_EQ(st.Lag(), 0u);
    // More events, poked: sent without waiting for the next tick.
    ASSERT_TRUE(log_->Append("acme", R"({"type":"bounced"})").ok());
    d.Poke();
    ASSERT_TRUE(Eventually([&] { return d.Stats()[0].position == 26; }));
  }
  auto reqs = rx.requests();
  ASSERT_EQ(reqs.size(), 4u);
  std::vector<std::string> ids = Ids(reqs);
  ASSERT_EQ(ids.size(), 26u);
  for (int i = 0; i < 26; ++i) EXPECT_EQ(ids[i], "acme:" + std::to_string(i + 1));
  for (const auto& r : reqs) {
    EXPECT_TRUE(Verify("s3cret", r.signature, r.body)) << r.signature;
    EXPECT_EQ(r.body.rfind("{\"schema_version\":1,\"endpoint\":\"crm\",\"events\":[", 0), 0u) << r.body;
  }
  EXPECT_EQ(log_->Cursor("webhook:crm"), 26u);
  // A new dispatcher (a restart) starts after the acknowledged position:
  // the next request carries event 27 only.
  ASSERT_TRUE(log_->Append("acme", R"({"type":"expired"})").ok());
  Dispatcher again(*log_, {ep}, RealClock::Get(), {});
  again.Start();
  ASSERT_TRUE(Eventually([&] { return rx.requests().size() == 5; }));
  EXPECT_EQ(Ids({rx.requests()[4]}), std::vector<std::string>{"acme:27"});
}

TEST_F(DispatcherTest, RetriesWithBackoffWithoutLosingOrSkipping) {
  // The first three requests fail (500, 503, 429), then the endpoint is back.
  Receiver rx([](int n) { return n == 0 ? 500 : n == 1 ? 503 : n == 2 ? 429 : 204; });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log_->Append("acme", R"({"type":"deferred"})").ok());
  DispatcherOptions o;
  o.retry_initial_ms = 50;
  o.retry_max_ms = 200;
  Dispatcher d(*log_, {{"crm", "acme", rx.url(), "k", {}, 100, 5000, ""}}, RealClock::Get(), o);
  auto t0 = std::chrono::steady_clock::now();
  d.Start();
  ASSERT_TRUE(Eventually([&] { return d.Stats()[0].position == 5; }));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  auto st = d.Stats()[0];
  EXPECT_EQ(st.failures, 3u);
  EXPECT_EQ(st.last_error, "HTTP 429");
  EXPECT_GE(ms, 45 + 90 + 180);  // 50, 100, 200 ms each -10%
  auto reqs = rx.requests();
  ASSERT_EQ(reqs.size(), 4u);
  for (const auto& r : reqs) EXPECT_EQ(r.body, reqs[0].body);  // the same batch each time
}

TEST_F(DispatcherTest, AnEndpointDownDoesNotHoldAnotherAndTypesFilter) {
  Receiver ok([](int) { return 200; });
  Receiver down([](int) { return 500; });
  ASSERT_TRUE(log_->Append("*", R"({"type":"received"})").ok());
  ASSERT_TRUE(log_->Append("*", R"({"type":"bounced","category":"invalid_recipient"})").ok());
  ASSERT_TRUE(log_->Append("*", R"({"type":"received"})").ok());
  DispatcherOptions o;
  o.retry_initial_ms = 20;
  Dispatcher d(*log_,
               {{"bounces", "*", ok.url(), "k", {"bounced", "complaint"}, 100, 5000, ""},
                {"dead", "*", down.url(), "k", {}, 100, 5000, ""}},
               RealClock::Get(), o);
  d.Start();
  ASSERT_TRUE(Eventually([&] { return d.Stats()[0].position == 3; }));
  ASSERT_TRUE(Eventually([&] { return d.Stats()[1].failures >= 2; }));
  auto st = d.Stats();
  EXPECT_EQ(st[0].events_sent, 1u);
  EXPECT_EQ(st[0].events_skipped, 2u);
  EXPECT_EQ(st[1].position, 0u);
  EXPECT_EQ(st[1].Lag(), 3u);
  EXPECT_EQ(Ids(ok.requests()), std::vector<std::string>{"*:2"});
}

TEST_F(DispatcherTest, ConnectionRefusedIsAFailureToo) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);  // nothing listens on that port now
  ASSERT_TRUE(log_->Append("acme", "{}").ok());
  DispatcherOptions o;
  o.retry_initial_ms = 20;
  Dispatcher d(*log_, {{"x", "acme", "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/", "k", {}, 10, 2000, ""}},
               RealClock::Get(), o);
  d.Start();
  ASSERT_TRUE(Eventually([&] { return d.Stats()[0].failures >= 2; }));
  EXPECT_NE(d.Stats()[0].last_error.find("onnect"), std::string::npos) << d.Stats()[0].last_error;
  EXPECT_EQ(d.Stats()[0].position, 0u);
}

}  // namespace
}  // namespace mxr::webhooks
