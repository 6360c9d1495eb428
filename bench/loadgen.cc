// mxr-loadgen: an SMTP load generator for benchmarks.
//
//   mxr-loadgen --server 127.0.0.1:2525 --sessions 20 --pipelining --seconds 10
//   mxr-loadgen --server 127.0.0.1:5587 --starttls --auth alice:secret
//       --size 1K:70,10K:25,100K:5 --rcpts 1:80,10:20 --messages 5000 --json
//
// N concurrent sessions each run transactions back to back (K per
// connection, then QUIT and reconnect; 0 = reuse until the end). The run
// stops starting transactions at --messages or --seconds, whichever comes
// first, lets the ones in flight finish for at most --drain-seconds, and
// always ends. With --pipelining (and PIPELINING advertised) MAIL, every
// RCPT and DATA go out in one write, then the content, and after the final
// dot the next transaction's MAIL/RCPT/DATA (or QUIT) in the same write, as
// RFC 2920 allows (the message content may be the first "command" of a
// group).
//
// Every message carries `X-Mxr-Submitted: <unix microseconds>` (taken when
// its content is written) and a unique Message-ID; mxr-sink reads the former
// for end-to-end latency. Sizes are whole messages (headers + body) before
// the final dot; filler lines never start with '.', so nothing is stuffed.
//
// One thread, edge-triggered epoll, non-blocking sockets, TLS through
// memory BIOs (common/tls_endpoint.h). Per connection: one 16 KB reply
// buffer and command/header strings whose capacity is reused; message bodies
// are built once per size class and written from shared memory (writev), so
// there is no heap allocation per message on the plaintext path.
//
// With --rate R the generator is open-loop: transaction k may start only at
// start + k/R (spread over whichever sessions are idle), so latency can be
// measured below saturation. A transaction whose start time came while every
// session was busy starts as soon as one is free; that wait is reported as
// the start lag, and "scheduled start -> 250" includes it (no coordinated
// omission).
//
// Output: progress once a second on stderr; a summary on stdout (or one JSON
// line with --json). Exit status 1 if any attempted message got no 250 (or
// nothing could be sent at all), 2 for bad flags.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_common.h"
#include "common/strings.h"
#include "common/tls_endpoint.h"
#include "fmt/format.h"

namespace mxr::bench {
namespace {

constexpr size_t kReplyBuf = 16 * 1024;
constexpr int kMaxDetailedErrors = 10;  // printed with their command; the rest only counted
constexpr int64_t kRetryDelayUs = 200'000;

volatile sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

struct Options {
  std::string server = "127.0.0.1:2525";
  uint32_t sessions = 10;
  uint64_t messages_per_session = 0;
  uint64_t messages = 0;
  double seconds = 10;
  double drain_seconds = 5;
  double timeout = 30;
  double rate = 0;  // msg/s started in total; 0 = closed loop (as fast as sessions go)
  std::string auth;
  bool starttls = false;
  bool implicit_tls = false;
  bool tls_resume = false;
  bool pipelining = false;
  std::string size = "1K";
  std::string rcpts = "1";
  std::string domains = "example.test";
  std::string from = "loadgen@mxr-loadgen.test";
  std::string ehlo = "mxr-loadgen.test";
  bool json = false;
  bool quiet = false;
  uint64_t seed = 1;
};

// What a queued reply answers.
enum class Cmd : uint8_t { kGreeting, kEhlo, kStartTls, kAuth, kMail, kRcpt, kData, kDot, kRset, kQuit };

const char* CmdName(Cmd c) {
  switch (c) {
    case Cmd::kGreeting: return "greeting";
    case Cmd::kEhlo: return "EHLO";
    case Cmd::kStartTls: return "STARTTLS";
    case Cmd::kAuth: return "AUTH PLAIN";
    case Cmd::kMail: return "MAIL FROM";
    case Cmd::kRcpt: return "RCPT TO";
    case Cmd::kData: return "DATA";
    case Cmd::kDot: return "end of data";
    case Cmd::kRset: return "RSET";
    case Cmd::kQuit: return "QUIT";
  }
  return "?";
}

struct Pending {
  Cmd cmd;
  uint8_t slot;  // transaction slot for MAIL/RCPT/DATA/dot
};

// A message body of one size class, built once.
struct Body {
  uint64_t size = 0;  // nominal whole-message size
  std::string text;   // filler lines, each ending in CRLF
};

// One transaction; a connection has two slots so that, pipelined, the next
// transaction can start while the previous final dot is unanswered.
struct Txn {
  bool active = false;
  bool followed = false;  // the next transaction (or QUIT) went out after its dot
  bool failed = false;    // first error recorded in err_*
  uint64_t seq = 0;
  uint32_t nrcpt = 0;
  uint32_t rcpt_sent = 0;
  uint32_t rcpt_replies = 0;
  uint32_t rcpt_ok = 0;
  uint32_t body = 0;
  uint64_t first_rcpt = 0;
  uint64_t bytes = 0;
  int64_t dot_mono = 0;  // when the last byte of the final dot left us
  int64_t intended_mono = 0;  // --rate: when it was scheduled to start
  Cmd err_cmd = Cmd::kMail;
  int err_code = 0;
  char err_text[160] = {0};
};

struct Reply {
  int code = 0;
  std::string_view line;  // the final line, without CRLF
};

struct Conn {
  enum class Phase : uint8_t { kClosed, kConnecting, kTlsHandshake, kSetup, kReady, kQuitting };
  int fd = -1;
  uint32_t gen = 0;
  uint32_t idx = 0;
  Phase phase = Phase::kClosed;
  bool tls_after_starttls = false;
  bool caps_pipelining = false, caps_starttls = false, caps_auth_plain = false, caps_size = false;
  bool quit_sent = false;
  bool idle = false;   // --rate: waiting in LoadGen::idle_ for its next start time
  int send_errno = 0;  // a send failed: read what the server said, then close
  uint64_t msgs_on_conn = 0;
  int64_t reconnect_at = 0;    // while closed: when to reconnect (0 = not scheduled)
  int64_t waiting_since = 0;   // oldest unanswered command (or connect) time
  Txn txn[2];

  std::vector<Pending> pending;  // ring, fixed capacity
  size_t p_head = 0, p_count = 0;

  // Output: pre + body + post, `sent` bytes of it already written.
  std::string pre, post;
  const char* body = nullptr;
  size_t body_len = 0;
  size_t sent = 0;
  size_t dot_end = 0;  // offset just past the final dot line (0: none in this batch)
  int dot_slot = -1;

  std::unique_ptr<char[]> rbuf{new char[kReplyBuf]};
  size_t rlen = 0;

  std::unique_ptr<TlsEndpoint> tls;
  std::string tls_wire;
  size_t tls_off = 0;
  std::string tls_plain;
  bool tls_dot_pending = false;

  bool PushPending(Cmd c, uint8_t slot) {
    if (p_count == pending.size()) return false;
    pending[(p_head + p_count) % pending.size()] = Pending{c, slot};
    ++p_count;
    return true;
  }
  // Where the next command goes: before the body, or after it.
  std::string& W() { return body ? post : pre; }
};

struct Counters {
  uint64_t started = 0;
  uint64_t sent = 0;  // final dot written
  uint64_t acked = 0;
  uint64_t failed = 0;
  uint64_t bytes_acked = 0;
  uint64_t rcpts_ok = 0;
  uint64_t rcpts_rejected = 0;
  uint64_t connections = 0;
  uint64_t session_errors = 0;
  uint64_t tls_handshakes = 0;
  uint64_t tls_resumed = 0;
};

class LoadGen {
 public:
  explicit LoadGen(const Options& opt) : opt_(opt), rng_(opt.seed) {}
  ~LoadGen() {
    for (auto& c : conns_) {
      if (c->fd >= 0) close(c->fd);
    }
    if (ep_ >= 0) close(ep_);
    if (tls_session_) SSL_SESSION_free(tls_session_);
    if (tls_ctx_) SSL_CTX_free(tls_ctx_);
  }

  // Validates flags and prepares bodies; false with a message on stderr.
  bool Init() {
    auto hp = ParseHostPort(opt_.server);
    if (!hp.ok()) return Usage(Cat("--server: ", Msg(hp.status())));
    host_ = hp->host;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int gr = getaddrinfo(hp->host.c_str(), hp->port.c_str(), &hints, &res);
    if (gr != 0) return Usage(Cat("cannot resolve ", opt_.server, ": ", gai_strerror(gr)));
    std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
    addr_len_ = res->ai_addrlen;
    family_ = res->ai_family;
    freeaddrinfo(res);

    auto sizes = ParseDistribution(opt_.size, ParseSize);
    if (!sizes.ok()) return Usage(Cat("--size: ", Msg(sizes.status())));
    sizes_ = *sizes;
    auto rcpts = ParseDistribution(opt_.rcpts, ParseCount);
    if (!rcpts.ok()) return Usage(Cat("--rcpts: ", Msg(rcpts.status())));
    rcpts_ = *rcpts;
    for (const auto& e : rcpts_.entries) {
      if (e.value == 0 || e.value > 100000) return Usage("--rcpts: recipients per message must be 1..100000");
    }
    std::string_view ds = opt_.domains;
    while (!ds.empty()) {
      size_t comma = ds.find(',');
      std::string_view d = ds.substr(0, comma);
      ds = comma == std::string_view::npos ? std::string_view() : ds.substr(comma + 1);
      if (d.empty()) continue;
      domains_.emplace_back(d);
      if (!(d.size() > 5 && AsciiIEquals(d.substr(d.size() - 5), ".test"))) {
        std::cerr << "mxr-loadgen: warning: domain '" << d
                  << "' is not under .test: a relay may try to deliver to it for real\n";
      }
    }
    if (domains_.empty()) return Usage("--domains: need at least one domain");
    if (opt_.sessions == 0 || opt_.sessions > 50000) return Usage("--sessions must be 1..50000");
    if (!(opt_.rate >= 0) || opt_.rate > 1e8) return Usage("--rate must be 0..1e8 msg/s");
    if (opt_.seconds <= 0 && opt_.messages == 0) return Usage("need --seconds > 0 or --messages > 0");
    if (opt_.seconds <= 0) opt_.seconds = 3600;  // --messages bounds it; still always ends
    if (opt_.starttls && opt_.implicit_tls) return Usage("--starttls and --tls exclude each other");
    if (!opt_.auth.empty()) {
      size_t colon = opt_.auth.find(':');
      if (colon == std::string::npos) return Usage("--auth wants user:password");
      std::string raw = std::string(1, '\0') + opt_.auth.substr(0, colon) + '\0' + opt_.auth.substr(colon + 1);
      std::string b64(4 * ((raw.size() + 2) / 3) + 1, '\0');
      int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                              reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
      b64.resize(static_cast<size_t>(n));
      auth_line_ = "AUTH PLAIN " + b64 + "\r\n";
    }
    if (opt_.starttls || opt_.implicit_tls) {
      tls_ctx_ = SSL_CTX_new(TLS_client_method());
      if (tls_ctx_ == nullptr) return Usage("SSL_CTX_new failed: " + OpenSslError());
      SSL_CTX_set_verify(tls_ctx_, SSL_VERIFY_NONE, nullptr);  // benchmark: any certificate
      if (opt_.tls_resume) {
        // Keep the newest session the server hands out (TLS 1.3 tickets
        // arrive after the handshake) and offer it on every new connection,
        // as a client library with a session cache does.
        SSL_CTX_set_session_cache_mode(tls_ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_set_ex_data(tls_ctx_, 0, this);
        SSL_CTX_sess_set_new_cb(tls_ctx_, [](SSL* ssl, SSL_SESSION* sess) -> int {
          auto* self = static_cast<LoadGen*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), 0));
          if (self->tls_session_) SSL_SESSION_free(self->tls_session_);
          self->tls_session_ = sess;
          return 1;  // we keep the reference
        });
      }
      in6_addr tmp;
      bool is_ip = inet_pton(AF_INET, host_.c_str(), &tmp) == 1 || inet_pton(AF_INET6, host_.c_str(), &tmp) == 1;
      sni_ = is_ip ? "" : host_;
    }
    run_id_ = static_cast<uint64_t>(UnixMicros()) ^ (static_cast<uint64_t>(getpid()) << 40);
    BuildBodies();
    uint64_t max_rcpt = rcpts_.MaxValue();
    for (uint32_t i = 0; i < opt_.sessions; ++i) {
      auto c = std::make_unique<Conn>();
      c->idx = i;
      c->pending.resize(2 * max_rcpt + 16);
      c->pre.reserve(1024 + 48 * max_rcpt);
      c->post.reserve(1024 + 48 * max_rcpt);
      conns_.push_back(std::move(c));
    }
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    return true;
  }

  void Run() {
    // --rate: wake up on time (the default 50 us timer slack shows as start lag).
    if (opt_.rate > 0) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    start_mono_ = MonoMicros();
    deadline_ = start_mono_ + static_cast<int64_t>(opt_.seconds * 1e6);
    hard_end_ = deadline_ + static_cast<int64_t>(opt_.drain_seconds * 1e6);
    next_tick_ = start_mono_ + 1'000'000;
    for (auto& c : conns_) Connect(c.get());
    epoll_event events[512];
    while (fatal_.empty()) {
      int64_t now = MonoMicros();
      if (g_signal != 0 && !stopping_) {
        stopping_ = true;
        hard_end_ = std::min(hard_end_, now + 1'000'000);
      }
      if (!stopping_ && now >= deadline_) stopping_ = true;
      if (now >= hard_end_) break;
      if (now >= next_tick_) {
        Tick(now);
        next_tick_ += 1'000'000;
      }
      // Reconnects that are due (the list is short: closed sessions only).
      int64_t next_wake = std::min(next_tick_, stopping_ ? hard_end_ : deadline_);
      for (size_t i = 0; i < reconnect_.size();) {
        Conn* c = conns_[reconnect_[i]].get();
        bool keep = false;
        if (c->fd >= 0 || !WorkLeft()) {
          c->reconnect_at = 0;
        } else if (c->reconnect_at <= now) {
          Connect(c);
        } else {
          next_wake = std::min(next_wake, c->reconnect_at);
          keep = true;
        }
        if (keep) {
          ++i;
        } else {
          reconnect_[i] = reconnect_.back();
          reconnect_.pop_back();
        }
      }
      if (opt_.rate > 0) {
        DispatchIdle(now);
        if (!idle_.empty() && WorkLeft()) next_wake = std::min(next_wake, NextDue());
      }
      if (open_fds_ == 0 && reconnect_.empty()) break;  // every session finished
      if (!fatal_.empty()) break;
      int n;
      if (opt_.rate > 0) {
        // Microsecond wake-ups: at thousands of msg/s the start times are
        // closer together than epoll_wait's millisecond timeout.
        int64_t wait_us = std::max<int64_t>(0, next_wake - MonoMicros());
        timespec ts{static_cast<time_t>(wait_us / 1'000'000), static_cast<long>(wait_us % 1'000'000) * 1000};
        n = epoll_pwait2(ep_, events, 512, &ts, nullptr);
      } else {
        int wait_ms = static_cast<int>(std::max<int64_t>(0, next_wake - now + 999) / 1000);
        n = epoll_wait(ep_, events, 512, wait_ms);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        fatal_ = Cat("epoll_wait: ", strerror(errno));
        break;
      }
      for (int i = 0; i < n; ++i) {
        uint64_t tag = events[i].data.u64;
        Conn* c = conns_[static_cast<uint32_t>(tag)].get();
        if (c->fd < 0 || c->gen != static_cast<uint32_t>(tag >> 32)) continue;
        uint32_t e = events[i].events;
        if (c->phase == Conn::Phase::kConnecting) {
          if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) OnConnected(c);
          continue;
        }
        if (e & EPOLLOUT) Flush(c);
        if (c->fd >= 0 && (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))) OnReadable(c);
        if (c->fd >= 0 && c->send_errno != 0) OnSendFailed(c);
      }
    }
    end_mono_ = MonoMicros();
    // Anything still unanswered now gets no 250.
    for (auto& cp : conns_) {
      Conn* c = cp.get();
      if (c->fd < 0) continue;
      const char* at = c->phase == Conn::Phase::kConnecting     ? "connect"
                       : c->phase == Conn::Phase::kTlsHandshake ? "TLS handshake"
                       : c->p_count                             ? CmdName(c->pending[c->p_head].cmd)
                                                                : "nothing";
      bool setup = c->phase != Conn::Phase::kReady && c->phase != Conn::Phase::kQuitting;
      if (setup) {
        // A session that never got ready is an error of its own (no message
        // was attempted on it): e.g. a plaintext client on an implicit-TLS port.
        errors_[Cat("no reply to ", at, " before the run ended")]++;
        if (!ever_ready_ && fatal_.empty()) {
          fatal_ = Cat(opt_.server, ": no reply to ", at, " before the run ended",
                       std::string_view(at) == "greeting" && !opt_.implicit_tls
                           ? " (an implicit-TLS port? try --tls)"
                           : "");
        }
      }
      CloseConn(c, Cat("no reply before the run ended (waiting for ", at, ")"), setup);
    }
  }

  int PrintSummary() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    int64_t to = last_final_mono_ ? last_final_mono_ : end_mono_;
    double secs = std::max(1e-6, static_cast<double>(to - start_mono_) / 1e6);
    double mps = static_cast<double>(n_.acked) / secs;
    double mbps = static_cast<double>(n_.bytes_acked) / 1e6 / secs;
    double cpu_per_msg = n_.acked ? cpu * 1e6 / static_cast<double>(n_.acked) : 0;
    bool ok = fatal_.empty() && n_.failed == 0 && n_.acked > 0;
    if (!fatal_.empty()) std::cerr << "mxr-loadgen: " << fatal_ << "\n";
    if (opt_.json) {
      std::string errs;
      for (const auto& [k, v] : errors_) {
        if (!errs.empty()) errs += ",";
        errs += Cat(JsonString(k), ":", v);
      }
      std::cout << "{\"tool\":\"mxr-loadgen\",\"server\":" << JsonString(opt_.server)
                << ",\"sessions\":" << opt_.sessions
                << ",\"messages_per_session\":" << opt_.messages_per_session
                << ",\"pipelining\":" << (opt_.pipelining ? "true" : "false")
                << ",\"pipelining_used\":" << (pipelining_used_ ? "true" : "false")
                << ",\"starttls\":" << (opt_.starttls ? "true" : "false")
                << ",\"tls\":" << (opt_.implicit_tls ? "true" : "false")
                << ",\"auth\":" << (opt_.auth.empty() ? "false" : "true")
                << ",\"size\":" << JsonString(sizes_.ToString(true))
                << ",\"rcpts\":" << JsonString(rcpts_.ToString(false))
                << ",\"seconds\":" << JsonDouble(secs, 3) << ",\"attempted\":" << n_.started
                << ",\"acknowledged\":" << n_.acked << ",\"failed\":" << n_.failed
                << ",\"msgs_per_s\":" << JsonDouble(mps, 1) << ",\"mb_per_s\":" << JsonDouble(mbps, 2)
                << ",\"bytes_acknowledged\":" << n_.bytes_acked
                << ",\"recipients_accepted\":" << n_.rcpts_ok
                << ",\"recipients_rejected\":" << n_.rcpts_rejected
                << ",\"connections\":" << n_.connections
                << ",\"session_errors\":" << n_.session_errors << ",\"errors\":{" << errs << "}"
                << ",\"tls_handshakes\":" << n_.tls_handshakes
                << ",\"tls_resumed\":" << n_.tls_resumed
                << ",\"time_to_250_us\":" << PercentileJson(ttl_)
                << ",\"rate\":" << JsonDouble(opt_.rate, 1);
      if (opt_.rate > 0) {
        std::cout << ",\"start_lag_us\":" << PercentileJson(lag_)
                  << ",\"scheduled_to_250_us\":" << PercentileJson(sched_);
      }
      std::cout
                << ",\"cpu_s\":" << JsonDouble(cpu, 3)
                << ",\"cpu_us_per_msg\":" << JsonDouble(cpu_per_msg, 1)
                << ",\"fatal\":" << JsonString(fatal_) << ",\"ok\":" << (ok ? "true" : "false") << "}"
                << std::endl;
      return ok ? 0 : 1;
    }
    std::cout << "mxr-loadgen: " << opt_.server << ", " << opt_.sessions << " sessions, "
              << (opt_.messages_per_session ? Cat(opt_.messages_per_session, " msg/connection")
                                            : std::string("connections reused"))
              << ", pipelining "
              << (opt_.pipelining ? (pipelining_used_ ? "on" : "requested, not offered") : "off")
              << (opt_.starttls ? ", STARTTLS" : "") << (opt_.implicit_tls ? ", TLS" : "")
              << (opt_.auth.empty() ? "" : ", AUTH PLAIN") << ", size " << sizes_.ToString(true)
              << ", rcpts " << rcpts_.ToString(false) << "\n"
              << "  acknowledged " << n_.acked << " of " << n_.started << " attempted in "
              << JsonDouble(secs, 3) << " s: " << JsonDouble(mps, 1) << " msg/s, "
              << JsonDouble(mbps, 2) << " MB/s\n";
    if (errors_.empty()) {
      std::cout << "  errors: none\n";
    } else {
      std::cout << "  errors (" << n_.failed << " messages without 250, " << n_.session_errors
                << " session errors, " << n_.rcpts_rejected << " recipients rejected):\n";
      for (const auto& [k, v] : errors_) std::cout << "    " << k << ": " << v << "\n";
    }
    std::cout << "  time to 250 (last body byte written -> final reply): " << PercentileLine(ttl_)
              << "\n";
    if (opt_.rate > 0) {
      double started_rate = static_cast<double>(n_.started) / std::max(1e-6, opt_.seconds);
      std::cout << "  open loop at " << JsonDouble(opt_.rate, 1) << " msg/s requested ("
                << JsonDouble(started_rate, 1) << " msg/s started over --seconds)\n"
                << "  start lag (scheduled start -> MAIL written): " << PercentileLine(lag_) << "\n"
                << "  scheduled start -> final reply: " << PercentileLine(sched_) << "\n";
    }
    std::cout
              << "  connections " << n_.connections << ", recipients accepted " << n_.rcpts_ok
              << ", loadgen CPU " << JsonDouble(cpu, 2) << " s (" << JsonDouble(cpu_per_msg, 1)
              << " us/msg)";
    if (n_.tls_handshakes > 0) {
      std::cout << ", TLS handshakes " << n_.tls_handshakes << " (" << n_.tls_resumed << " resumed)";
    }
    std::cout << std::endl;
    return ok ? 0 : 1;
  }

 private:
  bool Usage(const std::string& msg) {
    std::cerr << "mxr-loadgen: " << msg << "\n";
    return false;
  }

  void BuildBodies() {
    // Header length for a long sequence number and address: sizes are the
    // whole message, so each class's body is its size minus this estimate.
    std::string sample;
    AppendHeaders(&sample, 999'999'999, 1'700'000'000'000'000, 999'999'999, 0);
    const std::string line =
        "The quick brown fox jumps over the lazy dog; mxr-loadgen filler text 0123456789\r\n";
    for (const auto& e : sizes_.entries) {
      Body b;
      b.size = e.value;
      size_t want = e.value > sample.size() ? static_cast<size_t>(e.value - sample.size()) : 0;
      while (b.text.size() + line.size() <= want) b.text += line;
      size_t rest = want - b.text.size();
      if (rest >= 3) {
        b.text.append(line, 0, rest - 2);
        b.text += "\r\n";
      }
      bodies_.push_back(std::move(b));
    }
  }

  void AppendHeaders(std::string* out, uint64_t seq, int64_t unix_us, uint64_t first_rcpt, size_t domain) {
    if (unix_us / 1'000'000 != date_sec_) {
      date_sec_ = unix_us / 1'000'000;
      date_ = Rfc5322Date(unix_us);
    }
    fmt::format_to(std::back_inserter(*out),
                   "Message-ID: <{}.{:x}@mxr-loadgen.test>\r\n"
                   "X-Mxr-Submitted: {}\r\n"
                   "Date: {}\r\n"
                   "From: <{}>\r\n"
                   "To: <u{}@{}>\r\n"
                   "Subject: mxr-loadgen message {}\r\n"
                   "\r\n",
                   seq, run_id_, unix_us, date_, opt_.from, first_rcpt,
                   domains_.empty() ? std::string_view("example.test") : std::string_view(domains_[domain]),
                   seq);
  }

  bool WorkLeft() const {
    return !stopping_ && (opt_.messages == 0 || n_.started < opt_.messages);
  }

  // Claims one message of the global budget for connection c: kGo (with
  // its scheduled start time in *intended), kWait (--rate: the next start
  // time has not come yet; c waits in idle_) or kNone (QUIT).
  enum class ClaimResult { kGo, kWait, kNone };
  ClaimResult Claim(Conn* c, int64_t* intended) {
    if (!WorkLeft()) return ClaimResult::kNone;
    if (opt_.messages_per_session && c->msgs_on_conn >= opt_.messages_per_session) return ClaimResult::kNone;
    int64_t now = MonoMicros();
    if (opt_.rate > 0) {
      int64_t due = NextDue();
      if (now < due) return ClaimResult::kWait;
      *intended = due;
      rate_issued_++;
    } else {
      *intended = now;
    }
    n_.started++;
    c->msgs_on_conn++;
    return ClaimResult::kGo;
  }

  // --rate: when the next transaction may start.
  int64_t NextDue() const {
    return start_mono_ + static_cast<int64_t>(static_cast<double>(rate_issued_) * 1e6 / opt_.rate);
  }

  void MarkIdle(Conn* c) {
    if (c->idle) return;
    c->idle = true;
    idle_.emplace_back(c->idx, c->gen);
  }

  // --rate: starts the transactions that are due on idle sessions (oldest
  // idle first, so the load spreads over every session); once nothing is
  // left to start, idle sessions QUIT.
  void DispatchIdle(int64_t now) {
    while (!idle_.empty() && (!WorkLeft() || now >= NextDue())) {
      auto [idx, gen] = idle_.front();
      idle_.pop_front();
      Conn* c = conns_[idx].get();
      if (c->gen != gen || !c->idle) continue;  // closed (and maybe reconnected) since
      c->idle = false;
      if (c->fd < 0 || c->quit_sent) continue;
      Next(c);
    }
  }

  // ---------------------------------------------------------------- connections

  void Connect(Conn* c) {
    c->reconnect_at = 0;
    c->fd = socket(family_, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      fatal_ = Cat("socket: ", strerror(errno));
      return;
    }
    open_fds_++;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->gen++;
    c->phase = Conn::Phase::kConnecting;
    c->waiting_since = MonoMicros();
    c->msgs_on_conn = 0;
    c->quit_sent = false;
    c->send_errno = 0;
    c->tls_after_starttls = false;
    c->caps_pipelining = c->caps_starttls = c->caps_auth_plain = c->caps_size = false;
    c->p_head = c->p_count = 0;
    c->pre.clear();
    c->post.clear();
    c->body = nullptr;
    c->body_len = c->sent = c->dot_end = 0;
    c->dot_slot = -1;
    c->rlen = 0;
    c->tls.reset();
    c->tls_wire.clear();
    c->tls_off = 0;
    c->tls_plain.clear();
    c->tls_dot_pending = false;
    c->txn[0] = Txn();
    c->txn[1] = Txn();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (static_cast<uint64_t>(c->gen) << 32) | c->idx;
    epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev);
    int r = connect(c->fd, reinterpret_cast<sockaddr*>(&addr_), addr_len_);
    if (r != 0 && errno != EINPROGRESS) {
      SessionError(c, Cat("cannot connect to ", opt_.server, ": ", strerror(errno)), "connect failed");
    }
  }

  void OnConnected(Conn* c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      SessionError(c, Cat("cannot connect to ", opt_.server, ": ", strerror(err)),
                   Cat("connect: ", strerror(err)));
      return;
    }
    n_.connections++;
    c->PushPending(Cmd::kGreeting, 0);
    if (opt_.implicit_tls) {
      StartTls(c);
    } else {
      c->phase = Conn::Phase::kSetup;
    }
    OnReadable(c);  // the banner may already be here (edge-triggered)
  }

  void StartTls(Conn* c) {
    c->tls = std::make_unique<TlsEndpoint>(tls_ctx_, sni_, false);
    if (tls_session_ != nullptr) SSL_set_session(c->tls->native(), tls_session_);
    c->phase = Conn::Phase::kTlsHandshake;
    if (c->tls->Handshake() == TlsEndpoint::Result::kError) {
      SessionError(c, Cat("TLS handshake with ", opt_.server, " failed: ", c->tls->last_error()),
                   "TLS handshake failed");
      return;
    }
    Flush(c);
  }

  // Closes c; every transaction still open fails with `why`.
  void CloseConn(Conn* c, const std::string& why, bool count_session_error) {
    if (c->fd < 0) return;
    for (int s = 0; s < 2; ++s) {
      if (c->txn[s].active) FailTxn(c, s, why, why);
    }
    close(c->fd);
    c->fd = -1;
    c->idle = false;
    open_fds_--;
    c->phase = Conn::Phase::kClosed;
    c->tls.reset();
    if (count_session_error) n_.session_errors++;
  }

  // A failure of the session (not of one reply to a transaction): counted,
  // printed (first few), and the session retried after a pause. Fatal when
  // no session ever got ready and every session has failed.
  void SessionError(Conn* c, const std::string& detail, const std::string& key) {
    errors_[key]++;
    if (!ever_ready_) {
      setup_failures_++;
      if (setup_failures_ >= opt_.sessions) fatal_ = detail;
    }
    if (detailed_errors_ < kMaxDetailedErrors && fatal_.empty()) {
      detailed_errors_++;
      std::cerr << "mxr-loadgen: session " << c->idx << ": " << detail << "\n";
    }
    CloseConn(c, Cat("connection lost (", key, ")"), true);
    ScheduleReconnect(c, MonoMicros() + kRetryDelayUs);
  }

  void ScheduleReconnect(Conn* c, int64_t at) {
    if (c->reconnect_at == 0) reconnect_.push_back(c->idx);
    c->reconnect_at = at;
  }

  // ---------------------------------------------------------------- I/O

  // A send failed (typically EPIPE: the server closed). Its last replies
  // (a 421, say) explain more than the errno: read and handle them first.
  // Called from the event loop only, never from inside reply parsing.
  void OnSendFailed(Conn* c) {
    int err = c->send_errno;
    OnReadable(c);
    if (c->fd >= 0) SessionError(c, Cat("send: ", strerror(err)), Cat("send: ", strerror(err)));
  }

  // Writes pending output. On a send error it only records send_errno (the
  // caller may be parsing replies); the event loop then calls OnSendFailed.
  void Flush(Conn* c) {
    if (c->fd < 0 || c->send_errno != 0) return;
    if (c->tls) {
      if (!c->pre.empty() || c->body || !c->post.empty()) {
        bool ok = c->tls->WritePlain(c->pre) &&
                  (c->body == nullptr || c->tls->WritePlain(std::string_view(c->body, c->body_len))) &&
                  c->tls->WritePlain(c->post);
        if (!ok) {
          SessionError(c, Cat("TLS write failed: ", c->tls->last_error()), "TLS error");
          return;
        }
        if (c->dot_end) c->tls_dot_pending = true;
        ResetPlainOut(c);
      }
      if (c->tls_off == c->tls_wire.size()) {
        c->tls_wire.clear();
        c->tls_off = 0;
      }
      c->tls->TakeCipher(&c->tls_wire);
      int64_t before = 0;
      while (c->tls_off < c->tls_wire.size()) {
        before = MonoMicros();
        ssize_t n = send(c->fd, c->tls_wire.data() + c->tls_off, c->tls_wire.size() - c->tls_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return;
          c->send_errno = errno;
          return;
        }
        c->tls_off += static_cast<size_t>(n);
      }
      if (c->tls_dot_pending) {
        c->tls_dot_pending = false;
        StampDot(c, before ? before : MonoMicros());
      }
      return;
    }
    for (;;) {
      iovec iov[3];
      int cnt = 0;
      size_t skip = c->sent;
      auto add = [&](const char* p, size_t len) {
        if (skip >= len) {
          skip -= len;
          return;
        }
        iov[cnt].iov_base = const_cast<char*>(p + skip);
        iov[cnt].iov_len = len - skip;
        skip = 0;
        ++cnt;
      };
      add(c->pre.data(), c->pre.size());
      if (c->body) add(c->body, c->body_len);
      add(c->post.data(), c->post.size());
      if (cnt == 0) break;
      msghdr mh{};
      mh.msg_iov = iov;
      mh.msg_iovlen = static_cast<size_t>(cnt);
      int64_t before = MonoMicros();
      ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        c->send_errno = errno;
        return;
      }
      c->sent += static_cast<size_t>(n);
      if (c->dot_end && c->sent >= c->dot_end) {
        c->dot_end = 0;
        StampDot(c, before);
      }
    }
    if (c->sent == c->pre.size() + c->body_len + c->post.size()) ResetPlainOut(c);
  }

  static void ResetPlainOut(Conn* c) {
    c->pre.clear();
    c->post.clear();
    c->body = nullptr;
    c->body_len = 0;
    c->sent = 0;
    c->dot_end = 0;
  }

  // The final dot of the pending content left in the write that started at
  // `at` (taken before the syscall: on loopback the peer may answer before
  // the sending syscall returns).
  void StampDot(Conn* c, int64_t at) {
    if (c->dot_slot < 0) return;
    Txn& t = c->txn[c->dot_slot];
    c->dot_slot = -1;
    if (!t.active) return;
    t.dot_mono = at;
    n_.sent++;
  }

  void OnReadable(Conn* c) {
    static char cipher[64 * 1024];
    while (c->fd >= 0) {
      ssize_t n;
      if (c->tls) {
        n = recv(c->fd, cipher, sizeof cipher, MSG_DONTWAIT);
      } else {
        if (c->rlen == kReplyBuf) {
          ProtocolError(c, "reply line longer than 16 KB");
          return;
        }
        n = recv(c->fd, c->rbuf.get() + c->rlen, kReplyBuf - c->rlen, MSG_DONTWAIT);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        LostConnection(c, errno == ECONNRESET ? "connection reset by server" : strerror(errno));
        return;
      }
      if (n == 0) {
        if (c->phase == Conn::Phase::kQuitting && c->p_count == 0) {
          CloseConn(c, "closed after QUIT", false);
          AfterClose(c);
        } else {
          LostConnection(c, "connection closed by server");
        }
        return;
      }
      if (c->tls) {
        if (!OnCipher(c, std::string_view(cipher, static_cast<size_t>(n)))) return;
      } else {
        c->rlen += static_cast<size_t>(n);
        ParseReplies(c);
      }
    }
  }

  bool OnCipher(Conn* c, std::string_view in) {
    c->tls->FeedCipher(in);
    if (!c->tls->handshake_done()) {
      auto r = c->tls->Handshake();
      if (r == TlsEndpoint::Result::kError) {
        SessionError(c, Cat("TLS handshake with ", opt_.server, " failed: ", c->tls->last_error()),
                     "TLS handshake failed");
        return false;
      }
      Flush(c);
      if (c->fd < 0) return false;
      if (r != TlsEndpoint::Result::kOk) return true;
      ++n_.tls_handshakes;
      n_.tls_resumed += SSL_session_reused(c->tls->native()) ? 1 : 0;
      if (c->phase == Conn::Phase::kTlsHandshake) {
        c->phase = Conn::Phase::kSetup;
        if (c->tls_after_starttls) SendEhlo(c);
      }
    }
    auto r = c->tls->ReadPlain(&c->tls_plain);
    size_t off = 0;
    while (off < c->tls_plain.size() && c->fd >= 0) {
      if (c->rlen == kReplyBuf) {
        ProtocolError(c, "reply line longer than 16 KB");
        return false;
      }
      size_t take = std::min(kReplyBuf - c->rlen, c->tls_plain.size() - off);
      std::memcpy(c->rbuf.get() + c->rlen, c->tls_plain.data() + off, take);
      c->rlen += take;
      off += take;
      ParseReplies(c);
    }
    c->tls_plain.clear();
    if (c->fd < 0) return false;
    if (r == TlsEndpoint::Result::kError) {
      SessionError(c, Cat("TLS error: ", c->tls->last_error()), "TLS error");
      return false;
    }
    if (r == TlsEndpoint::Result::kClosed) {
      LostConnection(c, "TLS closed by server");
      return false;
    }
    return true;
  }

  void LostConnection(Conn* c, const std::string& what) {
    std::string at = c->p_count ? CmdName(c->pending[c->p_head].cmd) : "idle";
    bool in_txn = c->txn[0].active || c->txn[1].active;
    if (!in_txn && (c->phase == Conn::Phase::kReady || c->phase == Conn::Phase::kQuitting)) {
      // Closed between transactions (e.g. an idle timeout): reconnect quietly.
      errors_[Cat(what, " between transactions")]++;
      CloseConn(c, what, true);
      ScheduleReconnect(c, MonoMicros() + kRetryDelayUs);
      return;
    }
    SessionError(c, Cat(what, " while waiting for the reply to ", at), Cat(what, " at ", at));
  }

  void ProtocolError(Conn* c, const std::string& what) {
    SessionError(c, what, "protocol error");
  }

  // Splits c->rbuf into reply lines; dispatches each complete reply.
  void ParseReplies(Conn* c) {
    char* b = c->rbuf.get();
    size_t pos = 0;
    while (c->fd >= 0 && pos < c->rlen) {
      char* nl = static_cast<char*>(std::memchr(b + pos, '\n', c->rlen - pos));
      if (nl == nullptr) break;
      std::string_view line(b + pos, static_cast<size_t>(nl - (b + pos)));
      pos = static_cast<size_t>(nl - b) + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
          line[2] < '0' || line[2] > '9' || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
        ProtocolError(c, Cat("malformed reply '", line.substr(0, 80), "' to ",
                             c->p_count ? CmdName(c->pending[c->p_head].cmd) : "nothing"));
        return;
      }
      if (c->p_count == 0) {
        ProtocolError(c, Cat("unexpected reply '", line.substr(0, 120), "' (no command outstanding)"));
        return;
      }
      Pending p = c->pending[c->p_head];
      bool last = line.size() == 3 || line[3] == ' ';
      if (p.cmd == Cmd::kEhlo) ParseCapability(c, line);
      if (!last) continue;
      c->p_head = (c->p_head + 1) % c->pending.size();
      c->p_count--;
      c->waiting_since = MonoMicros();
      Reply r{(line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'), line};
      OnReply(c, p, r);
      if (c->fd >= 0 && p.cmd == Cmd::kStartTls && c->tls) {
        c->rlen = 0;  // anything after the 220 was sent in plaintext: never trust it
        return;
      }
    }
    if (c->fd < 0) return;
    if (pos > 0) {
      std::memmove(b, b + pos, c->rlen - pos);
      c->rlen -= pos;
    }
  }

  void ParseCapability(Conn* c, std::string_view line) {
    if (line.size() <= 4) return;
    std::string_view kw = line.substr(4);
    if (AsciiIEquals(kw, "PIPELINING")) c->caps_pipelining = true;
    if (AsciiIEquals(kw, "STARTTLS")) c->caps_starttls = true;
    if (AsciiIStartsWith(kw, "SIZE")) c->caps_size = true;
    if (AsciiIStartsWith(kw, "AUTH ") || AsciiIStartsWith(kw, "AUTH=")) {
      for (size_t i = 5; i + 5 <= kw.size(); ++i) {
        if (AsciiIEquals(kw.substr(i, 5), "PLAIN") && (i + 5 == kw.size() || kw[i + 5] == ' ')) {
          c->caps_auth_plain = true;
        }
      }
    }
  }

  // ---------------------------------------------------------------- protocol

  void Send(Conn* c, std::string_view text, Cmd cmd, uint8_t slot) {
    c->W() += text;
    if (!c->PushPending(cmd, slot)) ProtocolError(c, "internal: too many outstanding commands");
  }

  void SendEhlo(Conn* c) {
    c->caps_pipelining = c->caps_starttls = c->caps_auth_plain = c->caps_size = false;
    c->W() += "EHLO ";
    c->W() += opt_.ehlo;
    Send(c, "\r\n", Cmd::kEhlo, 0);
    Flush(c);
  }

  void SetupFailed(Conn* c, Cmd cmd, const Reply& r) {
    SessionError(c, Cat("unexpected reply to ", CmdName(cmd), ": ", r.line),
                 Cat(ReplyKey(r), " at ", CmdName(cmd)));
  }

  static std::string ReplyKey(const Reply& r) {
    // "451 4.3.0" when an enhanced status code follows, else "451".
    std::string_view rest = r.line.size() > 4 ? r.line.substr(4) : std::string_view();
    size_t sp = rest.find(' ');
    std::string_view enh = rest.substr(0, sp);
    bool is_enh = enh.size() >= 5 && enh.size() <= 11 && enh[1] == '.' && enh[0] >= '2' && enh[0] <= '5';
    return is_enh ? Cat(r.code, " ", enh) : Cat(r.code);
  }

  void OnReply(Conn* c, Pending p, const Reply& r) {
    switch (p.cmd) {
      case Cmd::kGreeting:
        if (r.code != 220) return SetupFailed(c, p.cmd, r);
        SendEhlo(c);
        return;
      case Cmd::kEhlo:
        if (r.code != 250) return SetupFailed(c, p.cmd, r);
        if (opt_.starttls && !c->tls) {
          if (!c->caps_starttls) {
            return SessionError(c, Cat(opt_.server, " does not offer STARTTLS"), "STARTTLS not offered");
          }
          Send(c, "STARTTLS\r\n", Cmd::kStartTls, 0);
          Flush(c);
          return;
        }
        if (!auth_line_.empty()) {
          if (!c->caps_auth_plain) {
            return SessionError(c, Cat(opt_.server, " does not offer AUTH PLAIN",
                                       c->tls ? "" : " (without TLS: try --starttls)"),
                                "AUTH PLAIN not offered");
          }
          Send(c, auth_line_, Cmd::kAuth, 0);
          Flush(c);
          return;
        }
        return Ready(c);
      case Cmd::kStartTls:
        if (r.code != 220) return SetupFailed(c, p.cmd, r);
        c->tls_after_starttls = true;
        StartTls(c);
        return;
      case Cmd::kAuth:
        if (r.code != 235) return SetupFailed(c, p.cmd, r);
        return Ready(c);
      case Cmd::kMail: return OnMailReply(c, p.slot, r);
      case Cmd::kRcpt: return OnRcptReply(c, p.slot, r);
      case Cmd::kData: return OnDataReply(c, p.slot, r);
      case Cmd::kDot: return OnDotReply(c, p.slot, r);
      case Cmd::kRset:
        if (c->p_count == 0) Next(c);
        return;
      case Cmd::kQuit:
        CloseConn(c, "closed after QUIT", false);
        AfterClose(c);
        return;
    }
  }

  void Ready(Conn* c) {
    c->phase = Conn::Phase::kReady;
    ever_ready_ = true;
    if (opt_.pipelining && c->caps_pipelining) pipelining_used_ = true;
    Next(c);
  }

  bool Pipelined(const Conn* c) const { return opt_.pipelining && c->caps_pipelining; }

  // Nothing outstanding on c: start the next transaction, or QUIT.
  void Next(Conn* c) {
    if (c->fd < 0 || c->quit_sent) return;
    int slot = c->txn[0].active ? (c->txn[1].active ? -1 : 1) : 0;
    int64_t intended = 0;
    ClaimResult r = slot >= 0 ? Claim(c, &intended) : ClaimResult::kNone;
    if (r == ClaimResult::kGo) {
      StartTxn(c, slot, intended);
    } else if (r == ClaimResult::kWait) {
      MarkIdle(c);
    } else {
      SendQuit(c);
    }
    Flush(c);
  }

  void SendQuit(Conn* c) {
    c->quit_sent = true;
    c->phase = Conn::Phase::kQuitting;
    Send(c, "QUIT\r\n", Cmd::kQuit, 0);
  }

  // After a normal close: reconnect at once if there is work left.
  void AfterClose(Conn* c) {
    if (WorkLeft()) ScheduleReconnect(c, MonoMicros());
  }

  void StartTxn(Conn* c, int slot, int64_t intended) {
    Txn& t = c->txn[slot];
    t = Txn();
    t.active = true;
    t.intended_mono = intended;
    if (opt_.rate > 0) lag_.Record(MonoMicros() - intended);
    t.seq = ++seq_;
    t.body = static_cast<uint32_t>(sizes_.PickIndex(rng_));
    t.nrcpt = static_cast<uint32_t>(rcpts_.Pick(rng_));
    t.first_rcpt = rcpt_counter_;
    rcpt_counter_ += t.nrcpt;
    std::string& w = c->W();
    w += "MAIL FROM:<";
    w += opt_.from;
    w += ">";
    if (c->caps_size) fmt::format_to(std::back_inserter(w), " SIZE={}", bodies_[t.body].size);
    Send(c, "\r\n", Cmd::kMail, static_cast<uint8_t>(slot));
    if (Pipelined(c)) {
      for (uint32_t i = 0; i < t.nrcpt; ++i) AppendRcpt(c, slot);
      Send(c, "DATA\r\n", Cmd::kData, static_cast<uint8_t>(slot));
    }
  }

  void AppendRcpt(Conn* c, int slot) {
    Txn& t = c->txn[slot];
    uint64_t n = t.first_rcpt + t.rcpt_sent++;
    fmt::format_to(std::back_inserter(c->W()), "RCPT TO:<u{}@{}>", n, domains_[n % domains_.size()]);
    Send(c, "\r\n", Cmd::kRcpt, static_cast<uint8_t>(slot));
  }

  void NoteTxnError(Txn& t, Cmd cmd, const Reply& r) {
    if (t.failed) return;
    t.failed = true;
    t.err_cmd = cmd;
    t.err_code = r.code;
    size_t n = std::min(r.line.size(), sizeof t.err_text - 1);
    std::memcpy(t.err_text, r.line.data(), n);
    t.err_text[n] = '\0';
  }

  // Ends transaction `slot` without a 250 (its first recorded error, or `why`).
  void FailTxn(Conn* c, int slot, const std::string& key, const std::string& detail) {
    Txn& t = c->txn[slot];
    if (!t.active) return;
    t.active = false;
    if (c->dot_slot == slot) c->dot_slot = -1;
    n_.failed++;
    errors_[key]++;
    if (detailed_errors_ < kMaxDetailedErrors) {
      detailed_errors_++;
      std::cerr << "mxr-loadgen: message " << t.seq << " (session " << c->idx << "): " << detail << "\n";
    }
  }

  void FailTxnWithReply(Conn* c, int slot, Cmd cmd, const Reply& r) {
    Txn& t = c->txn[slot];
    NoteTxnError(t, cmd, r);
    Reply first{t.err_code, std::string_view(t.err_text)};
    FailTxn(c, slot, Cat(ReplyKey(first), " at ", CmdName(t.err_cmd)),
            Cat("unexpected reply to ", CmdName(t.err_cmd), ": ", first.line));
  }

  void OnMailReply(Conn* c, int slot, const Reply& r) {
    Txn& t = c->txn[slot];
    bool ok = r.code / 100 == 2;
    if (Pipelined(c)) {
      if (!ok) NoteTxnError(t, Cmd::kMail, r);
      return;  // RCPT and DATA replies follow
    }
    if (!ok) {
      FailTxnWithReply(c, slot, Cmd::kMail, r);
      Next(c);
      return;
    }
    AppendRcpt(c, slot);
    Flush(c);
  }

  void OnRcptReply(Conn* c, int slot, const Reply& r) {
    Txn& t = c->txn[slot];
    t.rcpt_replies++;
    if (r.code / 100 == 2) {
      t.rcpt_ok++;
    } else {
      n_.rcpts_rejected++;
      errors_[Cat(ReplyKey(r), " at RCPT TO (recipient)")]++;
      if (t.rcpt_ok == 0 && t.rcpt_replies == t.nrcpt) NoteTxnError(t, Cmd::kRcpt, r);
    }
    if (Pipelined(c)) return;
    if (t.rcpt_sent < t.nrcpt) {
      AppendRcpt(c, slot);
    } else if (t.rcpt_ok > 0) {
      Send(c, "DATA\r\n", Cmd::kData, static_cast<uint8_t>(slot));
    } else {
      FailTxnWithReply(c, slot, Cmd::kRcpt, r);
      Send(c, "RSET\r\n", Cmd::kRset, 0);
    }
    Flush(c);
  }

  void OnDataReply(Conn* c, int slot, const Reply& r) {
    Txn& t = c->txn[slot];
    if (r.code != 354) {
      FailTxnWithReply(c, slot, Cmd::kData, r);
      Send(c, "RSET\r\n", Cmd::kRset, 0);
      Flush(c);
      return;
    }
    if (t.rcpt_ok == 0 && !t.failed) {
      Reply none{0, "354 to DATA without an accepted recipient"};
      NoteTxnError(t, Cmd::kData, none);
    }
    n_.rcpts_ok += t.rcpt_ok;
    SendContent(c, slot);
  }

  // Headers + shared body + final dot, then (pipelined) the next
  // transaction's commands or QUIT in the same write.
  void SendContent(Conn* c, int slot) {
    Txn& t = c->txn[slot];
    if (c->body != nullptr) {
      ProtocolError(c, "internal: content queued while a previous body is unsent");
      return;
    }
    const Body& b = bodies_[t.body];
    uint64_t first = t.first_rcpt;
    AppendHeaders(&c->pre, t.seq, UnixMicros(), first, first % domains_.size());
    size_t before = c->pre.size();
    c->body = b.text.data();
    c->body_len = b.text.size();
    c->post += ".\r\n";
    t.bytes = before + b.text.size();
    c->dot_end = c->pre.size() + c->body_len + c->post.size();
    c->dot_slot = slot;
    if (!c->PushPending(Cmd::kDot, static_cast<uint8_t>(slot))) {
      ProtocolError(c, "internal: too many outstanding commands");
      return;
    }
    if (Pipelined(c)) {
      t.followed = true;
      int other = 1 - slot;
      int64_t intended = 0;
      ClaimResult cr = c->txn[other].active ? ClaimResult::kNone : Claim(c, &intended);
      if (cr == ClaimResult::kGo) {
        StartTxn(c, other, intended);
      } else if (cr == ClaimResult::kWait) {
        MarkIdle(c);  // DispatchIdle starts the next one when it is due
      } else {
        SendQuit(c);
      }
    }
    Flush(c);
  }

  void OnDotReply(Conn* c, int slot, const Reply& r) {
    Txn& t = c->txn[slot];
    if (r.code / 100 == 2 && !t.failed) {
      t.active = false;
      n_.acked++;
      n_.bytes_acked += t.bytes;
      int64_t now = MonoMicros();
      last_final_mono_ = now;
      if (t.dot_mono) {
        ttl_.Record(now - t.dot_mono);
        tick_ttl_.Record(now - t.dot_mono);
      }
      if (opt_.rate > 0 && t.intended_mono) sched_.Record(now - t.intended_mono);
    } else {
      FailTxnWithReply(c, slot, Cmd::kDot, r);
    }
    if (!t.followed) Next(c);
  }

  void Tick(int64_t now) {
    // Reply timeouts.
    int64_t limit = static_cast<int64_t>(opt_.timeout * 1e6);
    for (auto& cp : conns_) {
      Conn* c = cp.get();
      if (c->fd < 0) continue;
      bool waiting = c->phase == Conn::Phase::kConnecting || c->phase == Conn::Phase::kTlsHandshake ||
                     c->p_count > 0;
      if (waiting && now - c->waiting_since > limit) {
        std::string at = c->phase == Conn::Phase::kConnecting      ? "connect"
                         : c->phase == Conn::Phase::kTlsHandshake ? "TLS handshake"
                                                                  : CmdName(c->pending[c->p_head].cmd);
        SessionError(c, Cat("no reply within ", opt_.timeout, " s to ", at), Cat("timeout at ", at));
      }
    }
    if (opt_.quiet) return;
    double t = static_cast<double>(now - start_mono_) / 1e6;
    uint64_t d = n_.acked - last_tick_acked_;
    double dt = static_cast<double>(now - (last_tick_mono_ ? last_tick_mono_ : start_mono_)) / 1e6;
    uint64_t open = 0;
    for (auto& cp : conns_) open += cp->fd >= 0;
    char line[256];
    std::snprintf(line, sizeof line,
                  "[%6.1fs] loadgen: sent %llu acked %llu (%.0f msg/s) failed %llu errors %llu "
                  "open %llu ttl_p50_us %lld ttl_p99_us %lld\n",
                  t, static_cast<unsigned long long>(n_.sent),
                  static_cast<unsigned long long>(n_.acked), dt > 0 ? static_cast<double>(d) / dt : 0,
                  static_cast<unsigned long long>(n_.failed),
                  static_cast<unsigned long long>(n_.session_errors + n_.failed),
                  static_cast<unsigned long long>(open),
                  static_cast<long long>(tick_ttl_.Percentile(50)),
                  static_cast<long long>(tick_ttl_.Percentile(99)));
    std::cerr << line << std::flush;
    tick_ttl_ = LatencyHistogram();
    last_tick_acked_ = n_.acked;
    last_tick_mono_ = now;
  }

  Options opt_;
  Xorshift rng_;
  std::string host_, sni_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int family_ = AF_INET;
  int ep_ = -1;
  SSL_CTX* tls_ctx_ = nullptr;
  SSL_SESSION* tls_session_ = nullptr;  // --tls-resume: the newest session from the server
  std::string auth_line_;
  Distribution sizes_, rcpts_;
  std::vector<std::string> domains_;
  std::vector<Body> bodies_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<uint32_t> reconnect_;  // closed sessions waiting for reconnect_at
  uint64_t open_fds_ = 0;
  uint64_t run_id_ = 0;
  uint64_t seq_ = 0;
  uint64_t rcpt_counter_ = 0;
  int64_t date_sec_ = -1;
  std::string date_;

  Counters n_;
  std::map<std::string, uint64_t> errors_;  // touched only on errors
  LatencyHistogram ttl_;
  LatencyHistogram tick_ttl_;  // since the last progress line
  LatencyHistogram lag_, sched_;  // --rate only
  uint64_t rate_issued_ = 0;
  std::deque<std::pair<uint32_t, uint32_t>> idle_;  // (idx, gen) of sessions waiting to start
  int detailed_errors_ = 0;
  bool ever_ready_ = false;
  uint32_t setup_failures_ = 0;
  bool pipelining_used_ = false;
  bool stopping_ = false;
  std::string fatal_;
  int64_t start_mono_ = 0, end_mono_ = 0, deadline_ = 0, hard_end_ = 0, next_tick_ = 0;
  int64_t last_final_mono_ = 0;
  int64_t last_tick_mono_ = 0;
  uint64_t last_tick_acked_ = 0;
};

}  // namespace
}  // namespace mxr::bench

int main(int argc, char** argv) {
  using namespace mxr::bench;
  Options opt;
  CLI::App app{"mxr-loadgen: SMTP load generator (see bench/README.md)"};
  app.add_option("--server", opt.server, "host:port of the SMTP server")->capture_default_str();
  app.add_option("--sessions", opt.sessions, "concurrent connections")->capture_default_str();
  app.add_option("--messages-per-session", opt.messages_per_session,
                 "messages per connection before QUIT and reconnect (0: reuse until the end)")
      ->capture_default_str();
  app.add_option("--messages", opt.messages, "stop after this many messages (0: no bound)")
      ->capture_default_str();
  app.add_option("--seconds", opt.seconds, "stop starting messages after this many seconds")
      ->capture_default_str();
  app.add_option("--drain-seconds", opt.drain_seconds,
                 "then wait at most this long for replies in flight")
      ->capture_default_str();
  app.add_option("--timeout", opt.timeout, "seconds to wait for any one reply")->capture_default_str();
  app.add_option("--rate", opt.rate,
                 "open loop: start transactions at this many msg/s in total, spread over the "
                 "sessions (0: each session starts the next as soon as it can)")
      ->capture_default_str();
  app.add_option("--auth", opt.auth, "user:password for AUTH PLAIN");
  app.add_flag("--starttls", opt.starttls, "STARTTLS after EHLO (certificate not verified)");
  app.add_flag("--tls", opt.implicit_tls, "implicit TLS from connect, e.g. port 465 (certificate not verified)");
  app.add_flag("--tls-resume", opt.tls_resume,
               "offer the newest TLS session the server gave on each new connection (resumption)");
  app.add_flag("--pipelining", opt.pipelining,
               "pipeline MAIL/RCPT/DATA and the next transaction after the dot (if offered)");
  app.add_option("--size", opt.size, "message size, or weighted sizes: 1K or 1K:70,10K:25,100K:5")
      ->capture_default_str();
  app.add_option("--rcpts", opt.rcpts, "recipients per message, or weighted: 1 or 1:80,10:20")
      ->capture_default_str();
  app.add_option("--domains", opt.domains, "recipient domains, comma-separated (use .test)")
      ->capture_default_str();
  app.add_option("--from", opt.from, "envelope sender")->capture_default_str();
  app.add_option("--ehlo", opt.ehlo, "EHLO name")->capture_default_str();
  app.add_option("--seed", opt.seed, "random seed for sizes and recipient counts")->capture_default_str();
  app.add_flag("--json", opt.json, "print only one JSON line on stdout at the end");
  app.add_flag("-q,--quiet", opt.quiet, "no progress lines on stderr");
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto gen = std::make_unique<LoadGen>(opt);
  if (!gen->Init()) return 2;
  gen->Run();
  return gen->PrintSummary();
}
