// mxr-sink: a fast counting SMTP sink for benchmarks.
//
//   mxr-sink --listen 127.0.0.1:2526 --seconds 30 --expect 100000 --report-every 1
//
// Answers 250 to everything (354 to DATA, 221 to QUIT), parses DATA
// (dot-aware) and BDAT without storing bodies, counts messages, recipients
// and bytes, and reads each message's `X-Mxr-Submitted: <unix us>` header
// (written by mxr-loadgen) to compute end-to-end latency: submission ->
// arrival of the final dot here. Advertises PIPELINING, 8BITMIME, SMTPUTF8,
// SIZE, CHUNKING, AUTH (accepts any credentials) and, with --starttls,
// STARTTLS with a self-signed certificate generated in memory at startup.
//
// More listeners (--also-listen, repeatable), each counted on its own in the
// JSON summary, may behave like troubled destinations: `/slow=MS` holds
// every reply (the greeting too) for MS ms, `/tempfail` answers the greeting
// with 421 and closes: the head-of-line isolation benchmark
// (bench/campaign.sh) mixes them with healthy ones. With troubled listeners,
// --expect counts the messages of the healthy ones only.
//
// One thread, edge-triggered epoll, non-blocking sockets. Per connection:
// one fixed 64 KB receive buffer and two reply strings whose capacity is
// reused; no allocation per message. Exits at --seconds, or --expect N
// messages (then lingers up to 2 s so the last replies reach their clients
// before the sockets close), or SIGINT/SIGTERM; prints a summary (or one
// JSON line with --json) on stdout, progress on stderr.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_common.h"
#include "common/strings.h"
#include "common/tls_endpoint.h"

namespace mxr::bench {
namespace {

constexpr size_t kReadBuf = 64 * 1024;
constexpr size_t kMaxLine = 4096;          // command lines (RFC 5321 says 512)
constexpr size_t kMaxPendingOut = 256 * 1024;  // stop reading a client that does not read replies
constexpr size_t kHeaderLineCap = 128;     // enough for X-Mxr-Submitted
constexpr int64_t kLingerUs = 2'000'000;
constexpr std::string_view kSubmittedHeader = "x-mxr-submitted:";

volatile sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

struct Options {
  std::string listen = "127.0.0.1:2526";
  std::vector<std::string> also_listen;
  double tempfail_percent = 0;  // of messages answered 451 at the end of data
  double seconds = 0;
  uint64_t expect = 0;
  double report_every = 0;
  bool json = false;
  bool starttls = false;
  std::string port_file;
  uint64_t max_conns = 20000;
  std::string hostname = "mxr-sink.test";
};

struct Stats {
  uint64_t messages = 0;
  uint64_t recipients = 0;
  uint64_t bytes = 0;
  uint64_t connections = 0;
  uint64_t tls_connections = 0;
  uint64_t tls_failures = 0;
  uint64_t aborted = 0;         // connection closed inside DATA/BDAT
  uint64_t missing_header = 0;  // messages without a usable X-Mxr-Submitted
  uint64_t rejected_conns = 0;  // over --max-conns
  uint64_t tempfailed = 0;      // answered 451 by --tempfail-percent (not counted as messages)
  int64_t first_conn_mono = 0;
  int64_t last_msg_mono = 0;
  LatencyHistogram latency;
};

// A listening socket and how its connections behave.
struct Listener {
  std::string spec;  // host:port as given (without the behaviour suffix)
  int fd = -1;
  uint16_t port = 0;
  int64_t slow_us = 0;    // hold every reply this long
  bool tempfail = false;  // 421 at the greeting, then close
  uint64_t messages = 0, recipients = 0, connections = 0;
  int64_t first_conn_mono = 0, last_msg_mono = 0;
};

// In-memory self-signed P-256 certificate; nothing is written to disk.
SSL_CTX* MakeTlsContext(const std::string& hostname, std::string* err) {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  if (pkey == nullptr) {
    *err = "EC key generation failed: " + OpenSslError();
    return nullptr;
  }
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(UnixMicros() & 0x7fffffff));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 7L * 24 * 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(hostname.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  SSL_CTX* ctx = nullptr;
  if (X509_sign(x, pkey, EVP_sha256()) == 0) {
    *err = "signing the certificate failed: " + OpenSslError();
  } else {
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr || SSL_CTX_use_certificate(ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
      *err = "SSL_CTX setup failed: " + OpenSslError();
      if (ctx) SSL_CTX_free(ctx);
      ctx = nullptr;
    }
  }
  X509_free(x);
  EVP_PKEY_free(pkey);
  return ctx;
}

// One client connection. Owned by Sink::conns_ (reused through a free list).
struct Conn {
  enum class Mode : uint8_t { kCommand, kData, kBdat };
  enum class Dot : uint8_t { kLineStart, kMid, kDot, kDotCr };

  int fd = -1;
  uint32_t gen = 0;
  uint32_t idx = 0;  // in Sink::conns_
  uint32_t listener = 0;     // in Sink::listeners_
  int64_t release_at = 0;    // slow listener: replies held until then (0: none held)
  Mode mode = Mode::kCommand;
  Dot dot = Dot::kLineStart;
  bool quitting = false;       // QUIT answered: close once the reply is out
  bool read_blocked = false;   // too many unsent replies: resume after a flush
  bool discarding = false;     // inside an over-long command line
  bool auth_pending = false;   // AUTH without initial response: next line is it
  bool in_message = false;     // DATA or BDAT chunks of one message under way
  bool bdat_last = false;
  uint32_t rcpts = 0;
  uint64_t bdat_left = 0;
  uint64_t msg_bytes = 0;

  // Header scanning (X-Mxr-Submitted).
  bool in_headers = false;
  uint32_t hlen = 0;
  int64_t submitted_us = 0;
  char hline[kHeaderLineCap];

  std::unique_ptr<char[]> buf{new char[kReadBuf]};
  size_t len = 0;
  std::string out;   // plaintext replies not yet handed to the wire
  std::string wire;  // bytes for the socket (plaintext, or TLS records)
  size_t wire_off = 0;
  std::unique_ptr<TlsEndpoint> tls;
  std::string tls_plain;

  void Reset() {
    mode = Mode::kCommand;
    dot = Dot::kLineStart;
    quitting = read_blocked = discarding = auth_pending = in_message = bdat_last = false;
    rcpts = 0;
    release_at = 0;
    bdat_left = msg_bytes = 0;
    in_headers = false;
    hlen = 0;
    submitted_us = 0;
    len = 0;
    out.clear();
    wire.clear();
    wire_off = 0;
    tls.reset();
    tls_plain.clear();
  }
};

class Sink {
 public:
  explicit Sink(const Options& opt) : opt_(opt) {}
  ~Sink() {
    for (auto& c : conns_) {
      if (c->fd >= 0) close(c->fd);
    }
    for (auto& l : listeners_) {
      if (l.fd >= 0) close(l.fd);
    }
    if (ep_ >= 0) close(ep_);
    if (tls_ctx_) SSL_CTX_free(tls_ctx_);
  }

  // Binds and listens; returns false with a message on stderr.
  bool Start() {
    if (opt_.starttls) {
      std::string err;
      tls_ctx_ = MakeTlsContext(opt_.hostname, &err);
      if (tls_ctx_ == nullptr) {
        std::cerr << "mxr-sink: " << err << "\n";
        return false;
      }
    }
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (!Listen(opt_.listen)) return false;
    for (const auto& spec : opt_.also_listen) {
      if (!Listen(spec)) return false;
    }
    port_ = listeners_[0].port;
    if (!opt_.port_file.empty()) {
      std::string tmp = opt_.port_file + ".tmp";
      std::ofstream(tmp) << port_ << "\n";
      if (rename(tmp.c_str(), opt_.port_file.c_str()) != 0) {
        std::cerr << "mxr-sink: cannot write --port-file " << opt_.port_file << "\n";
        return false;
      }
    }
    return true;
  }

  // Opens one listener: "host:port[/slow=MS][/tempfail]".
  bool Listen(const std::string& full) {
    Listener l;
    std::string_view rest(full);
    size_t slash = rest.find('/');
    l.spec = std::string(rest.substr(0, slash));
    while (slash != std::string_view::npos) {
      rest.remove_prefix(slash + 1);
      slash = rest.find('/');
      std::string_view opt = rest.substr(0, slash);
      uint64_t ms = 0;
      if (opt == "tempfail") {
        l.tempfail = true;
      } else if (opt.substr(0, 5) == "slow=" && ParseU64(opt.substr(5), &ms)) {
        l.slow_us = static_cast<int64_t>(ms) * 1000;
      } else {
        std::cerr << "mxr-sink: listener " << full << ": unknown behaviour '" << opt
                  << "' (slow=MS or tempfail)\n";
        return false;
      }
    }
    auto hp = ParseHostPort(l.spec);
    if (!hp.ok()) {
      std::cerr << "mxr-sink: --listen " << full << ": " << Msg(hp.status()) << "\n";
      return false;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int gr = getaddrinfo(hp->host.c_str(), hp->port.c_str(), &hints, &res);
    if (gr != 0) {
      std::cerr << "mxr-sink: cannot resolve " << l.spec << ": " << gai_strerror(gr) << "\n";
      return false;
    }
    l.fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (l.fd >= 0) setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l.fd < 0 || bind(l.fd, res->ai_addr, res->ai_addrlen) != 0 || listen(l.fd, 4096) != 0) {
      std::cerr << "mxr-sink: cannot listen on " << l.spec << ": " << strerror(errno) << "\n";
      if (l.fd >= 0) close(l.fd);
      freeaddrinfo(res);
      return false;
    }
    freeaddrinfo(res);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    getsockname(l.fd, reinterpret_cast<sockaddr*>(&ss), &sl);
    l.port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenTag - listeners_.size();
    epoll_ctl(ep_, EPOLL_CTL_ADD, l.fd, &ev);
    if (listeners_.size() < 3 || opt_.also_listen.size() < 8) {
      std::cerr << "mxr-sink: listening on " << hp->host << ":" << l.port
                << (tls_ctx_ ? " (STARTTLS offered)" : "")
                << (l.slow_us ? Cat(" (replies held ", l.slow_us / 1000, " ms)") : "")
                << (l.tempfail ? " (421 at the greeting)" : "") << "\n";
    }
    listeners_.push_back(std::move(l));
    return true;
  }

  void Run() {
    start_mono_ = MonoMicros();
    int64_t deadline = opt_.seconds > 0 ? start_mono_ + static_cast<int64_t>(opt_.seconds * 1e6) : 0;
    int64_t report_period = static_cast<int64_t>(opt_.report_every * 1e6);
    int64_t next_report = report_period > 0 ? start_mono_ + report_period : 0;
    int64_t linger_until = 0;
    epoll_event events[256];
    for (;;) {
      int64_t now = MonoMicros();
      if (g_signal != 0) break;
      if (deadline && now >= deadline) break;
      if (opt_.expect && healthy_messages_ >= opt_.expect) {
        if (linger_until == 0) linger_until = now + kLingerUs;
        if (open_ == 0 || now >= linger_until) break;
      }
      if (next_report && now >= next_report) {
        Report(now);
        next_report += report_period;
        if (next_report <= now) next_report = now + report_period;
      }
      int64_t wait_us = 1'000'000;
      if (deadline) wait_us = std::min(wait_us, deadline - now);
      if (next_report) wait_us = std::min(wait_us, next_report - now);
      if (linger_until) wait_us = std::min<int64_t>(wait_us, 50'000);
      if (!held_.empty()) wait_us = std::min<int64_t>(wait_us, std::max<int64_t>(0, NextRelease() - now));
      int n = epoll_wait(ep_, events, 256, static_cast<int>(std::max<int64_t>(0, wait_us + 999) / 1000));
      if (n < 0) {
        if (errno == EINTR) continue;
        std::cerr << "mxr-sink: epoll_wait: " << strerror(errno) << "\n";
        break;
      }
      for (int i = 0; i < n; ++i) {
        uint64_t tag = events[i].data.u64;
        if (tag > kListenTag - listeners_.size()) {
          Accept(static_cast<uint32_t>(kListenTag - tag));
          continue;
        }
        Conn* c = conns_[static_cast<uint32_t>(tag)].get();
        if (c->fd < 0 || c->gen != static_cast<uint32_t>(tag >> 32)) continue;  // stale event
        uint32_t e = events[i].events;
        if (e & EPOLLOUT) Flush(c);
        if (c->fd >= 0 && (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))) OnReadable(c);
      }
      if (!held_.empty()) ReleaseDue(MonoMicros());
    }
    end_mono_ = MonoMicros();
  }

  void PrintSummary() const {
    int64_t from = stats_.first_conn_mono ? stats_.first_conn_mono : start_mono_;
    int64_t to = stats_.last_msg_mono ? stats_.last_msg_mono : end_mono_;
    double secs = std::max(1e-6, static_cast<double>(to - from) / 1e6);
    double mps = static_cast<double>(stats_.messages) / secs;
    double mbps = static_cast<double>(stats_.bytes) / 1e6 / secs;
    if (opt_.json) {
      std::cout << "{\"tool\":\"mxr-sink\",\"listen\":" << JsonString(opt_.listen)
                << ",\"port\":" << port_ << ",\"messages\":" << stats_.messages
                << ",\"recipients\":" << stats_.recipients << ",\"bytes\":" << stats_.bytes
                << ",\"connections\":" << stats_.connections
                << ",\"tls_connections\":" << stats_.tls_connections
                << ",\"tls_failures\":" << stats_.tls_failures << ",\"aborted\":" << stats_.aborted
                << ",\"missing_header\":" << stats_.missing_header
                << ",\"rejected_connections\":" << stats_.rejected_conns
                << ",\"tempfailed\":" << stats_.tempfailed
                << ",\"seconds\":" << JsonDouble(secs, 3) << ",\"msgs_per_s\":" << JsonDouble(mps, 1)
                << ",\"mb_per_s\":" << JsonDouble(mbps, 2)
                << ",\"latency_us\":" << PercentileJson(stats_.latency);
      if (listeners_.size() > 1) {
        // Per listener: counts and the time of its last message, in seconds
        // from the sink's start (its port file is written just before).
        std::cout << ",\"listeners\":[";
        for (size_t i = 0; i < listeners_.size(); ++i) {
          const Listener& l = listeners_[i];
          auto rel = [this](int64_t mono) {
            return mono ? JsonDouble(static_cast<double>(mono - start_mono_) / 1e6, 3) : std::string("null");
          };
          std::cout << (i ? "," : "") << "{\"listen\":" << JsonString(l.spec)
                    << ",\"slow_ms\":" << l.slow_us / 1000
                    << ",\"tempfail\":" << (l.tempfail ? "true" : "false")
                    << ",\"connections\":" << l.connections << ",\"messages\":" << l.messages
                    << ",\"recipients\":" << l.recipients
                    << ",\"first_connection_s\":" << rel(l.first_conn_mono)
                    << ",\"last_message_s\":" << rel(l.last_msg_mono) << "}";
        }
        std::cout << "]";
      }
      std::cout << "}" << std::endl;
      return;
    }
    std::cout << "mxr-sink: " << stats_.messages << " messages, " << stats_.recipients
              << " recipients, " << JsonDouble(static_cast<double>(stats_.bytes) / 1e6, 2)
              << " MB in " << JsonDouble(secs, 3) << " s (first connection -> last message)\n"
              << "  delivered: " << JsonDouble(mps, 1) << " msg/s, " << JsonDouble(mbps, 2)
              << " MB/s\n"
              << "  connections " << stats_.connections << " (TLS " << stats_.tls_connections
              << ", TLS failures " << stats_.tls_failures << ", refused over limit "
              << stats_.rejected_conns << "), transactions aborted by close " << stats_.aborted
              << ", messages without X-Mxr-Submitted " << stats_.missing_header << "\n"
              << "  end-to-end latency (X-Mxr-Submitted -> final dot here): "
              << PercentileLine(stats_.latency) << std::endl;
  }

  bool expect_met() const { return opt_.expect == 0 || healthy_messages_ >= opt_.expect; }

 private:
  static constexpr uint64_t kListenTag = ~uint64_t{0};

  void Accept(uint32_t li) {
    Listener& l = listeners_[li];
    for (int k = 0; k < 256; ++k) {
      int fd = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
          std::cerr << "mxr-sink: accept: " << strerror(errno) << "\n";
        }
        return;
      }
      if (open_ >= opt_.max_conns) {
        stats_.rejected_conns++;
        close(fd);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      uint32_t idx;
      if (!free_.empty()) {
        idx = free_.back();
        free_.pop_back();
      } else {
        idx = static_cast<uint32_t>(conns_.size());
        conns_.push_back(std::make_unique<Conn>());
        conns_.back()->idx = idx;
        conns_.back()->out.reserve(4096);
        conns_.back()->wire.reserve(4096);
      }
      Conn* c = conns_[idx].get();
      c->Reset();
      c->fd = fd;
      c->gen++;
      c->listener = li;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = (static_cast<uint64_t>(c->gen) << 32) | idx;
      epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
      open_++;
      stats_.connections++;
      l.connections++;
      if (stats_.first_conn_mono == 0) stats_.first_conn_mono = MonoMicros();
      if (l.first_conn_mono == 0) l.first_conn_mono = MonoMicros();
      if (l.tempfail) {
        c->out += "421 4.7.0 ";
        c->out += opt_.hostname;
        c->out += " mxr-sink: try again later (tempfail listener)\r\n";
        c->quitting = true;
      } else {
        c->out += "220 ";
        c->out += opt_.hostname;
        c->out += " ESMTP mxr-sink\r\n";
      }
      Flush(c);
    }
  }

  // Flushes the held replies of slow connections whose time has come.
  int64_t NextRelease() const {
    int64_t t = held_.front().at;
    for (const auto& h : held_) t = std::min(t, h.at);
    return t;
  }
  void ReleaseDue(int64_t now) {
    for (size_t i = 0; i < held_.size();) {
      Held h = held_[i];
      if (h.at > now) {
        ++i;
        continue;
      }
      held_[i] = held_.back();
      held_.pop_back();
      Conn* c = conns_[h.idx].get();
      if (c->fd >= 0 && c->gen == h.gen && c->release_at == h.at) Flush(c);
    }
  }

  void CloseConn(Conn* c) {
    if (c->fd < 0) return;
    if (c->in_message) stats_.aborted++;
    close(c->fd);
    c->fd = -1;
    c->tls.reset();
    open_--;
    free_.push_back(c->idx);
  }

  // Hands pending replies to the wire (encrypting under TLS) and writes as
  // much as the socket takes. May close the connection.
  void Flush(Conn* c) {
    const int64_t slow = listeners_[c->listener].slow_us;
    if (slow > 0 && !c->out.empty()) {
      // Replies wait (in order, together) until release_at; reading goes on.
      int64_t now = MonoMicros();
      if (c->release_at == 0) {
        c->release_at = now + slow;
        held_.push_back({c->release_at, c->idx, c->gen});
        return;
      }
      if (now < c->release_at) return;
      c->release_at = 0;
    }
    if (c->tls) {
      if (!c->out.empty()) {
        if (!c->tls->WritePlain(c->out)) {
          CloseConn(c);
          return;
        }
        c->out.clear();
      }
      c->tls->TakeCipher(&c->wire);
    } else if (!c->out.empty()) {
      if (c->wire_off == c->wire.size()) {
        c->wire.clear();
        c->wire_off = 0;
        c->wire.swap(c->out);
      } else {
        c->wire += c->out;
        c->out.clear();
      }
    }
    while (c->wire_off < c->wire.size()) {
      ssize_t n = send(c->fd, c->wire.data() + c->wire_off, c->wire.size() - c->wire_off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;  // EPOLLOUT (edge) calls us again
        CloseConn(c);
        return;
      }
      c->wire_off += static_cast<size_t>(n);
    }
    c->wire.clear();
    c->wire_off = 0;
    if (c->quitting) {
      CloseConn(c);
      return;
    }
    if (c->read_blocked) {
      c->read_blocked = false;
      OnReadable(c);
    }
  }

  // Reads until EAGAIN (edge-triggered), processing as it goes.
  void OnReadable(Conn* c) {
    static char cipher[kReadBuf];
    while (c->fd >= 0 && !c->quitting) {
      if (c->wire.size() - c->wire_off + c->out.size() > kMaxPendingOut) {
        c->read_blocked = true;
        return;
      }
      ssize_t n;
      if (c->tls) {
        n = recv(c->fd, cipher, sizeof cipher, MSG_DONTWAIT);
      } else {
        n = recv(c->fd, c->buf.get() + c->len, kReadBuf - c->len, MSG_DONTWAIT);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        CloseConn(c);
        return;
      }
      if (n == 0) {
        CloseConn(c);
        return;
      }
      if (c->tls) {
        if (!OnCipher(c, std::string_view(cipher, static_cast<size_t>(n)))) return;
      } else {
        c->len += static_cast<size_t>(n);
        Process(c);
      }
    }
    if (c->fd >= 0) Flush(c);
  }

  // Returns false when the connection was closed.
  bool OnCipher(Conn* c, std::string_view in) {
    c->tls->FeedCipher(in);
    if (!c->tls->handshake_done()) {
      auto r = c->tls->Handshake();
      if (r == TlsEndpoint::Result::kError) {
        stats_.tls_failures++;
        CloseConn(c);
        return false;
      }
      if (r == TlsEndpoint::Result::kOk) stats_.tls_connections++;
      Flush(c);
      if (c->fd < 0 || !c->tls->handshake_done()) return c->fd >= 0;
    }
    auto r = c->tls->ReadPlain(&c->tls_plain);
    size_t off = 0;
    while (off < c->tls_plain.size() && c->fd >= 0 && !c->quitting) {
      size_t take = std::min(kReadBuf - c->len, c->tls_plain.size() - off);
      std::memcpy(c->buf.get() + c->len, c->tls_plain.data() + off, take);
      c->len += take;
      off += take;
      Process(c);
    }
    c->tls_plain.clear();
    if (c->fd >= 0 && (r == TlsEndpoint::Result::kError || r == TlsEndpoint::Result::kClosed)) {
      CloseConn(c);
    }
    return c->fd >= 0;
  }

  // Consumes c->buf[0, len): commands, DATA and BDAT bytes. Leaves at most an
  // incomplete command line (< kMaxLine) in the buffer.
  void Process(Conn* c) {
    char* b = c->buf.get();
    size_t pos = 0;
    while (pos < c->len && !c->quitting && c->fd >= 0) {
      if (c->mode == Conn::Mode::kData) {
        pos += ScanData(c, b + pos, c->len - pos);
        continue;
      }
      if (c->mode == Conn::Mode::kBdat) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(c->bdat_left, c->len - pos));
        if (c->in_headers) FeedHeaders(c, b + pos, take);
        c->bdat_left -= take;
        c->msg_bytes += take;
        pos += take;
        if (c->bdat_left == 0) EndBdatChunk(c);
        continue;
      }
      char* nl = static_cast<char*>(std::memchr(b + pos, '\n', c->len - pos));
      if (nl == nullptr) {
        if (c->len - pos >= kMaxLine) {
          if (!c->discarding) c->out += "500 5.5.2 Line too long\r\n";
          c->discarding = true;
          pos = c->len;
        }
        break;
      }
      size_t end = static_cast<size_t>(nl - b);
      std::string_view line(b + pos, end - pos);
      pos = end + 1;
      if (c->discarding) {
        c->discarding = false;
        continue;
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (OnCommand(c, line)) {
        pos = c->len;  // STARTTLS: anything pipelined after it is discarded
        break;
      }
    }
    if (c->fd < 0) return;
    if (pos < c->len) std::memmove(b, b + pos, c->len - pos);
    c->len -= std::min(pos, c->len);
  }

  static bool IsVerb(std::string_view line, const char (&verb)[5]) {
    if (line.size() < 4 || (line.size() > 4 && line[4] != ' ')) return false;
    for (int i = 0; i < 4; ++i) {
      char ch = line[i];
      if (ch >= 'a' && ch <= 'z') ch -= 32;
      if (ch != verb[i]) return false;
    }
    return true;
  }

  void StartMessage(Conn* c) {
    c->in_message = true;
    c->in_headers = true;
    c->hlen = 0;
    c->submitted_us = 0;
    c->msg_bytes = 0;
  }

  // Returns true when the rest of the buffer must be dropped (STARTTLS).
  bool OnCommand(Conn* c, std::string_view line) {
    std::string& o = c->out;
    if (c->auth_pending) {
      c->auth_pending = false;
      o += "235 2.7.0 Authentication successful\r\n";
      return false;
    }
    if (IsVerb(line, "MAIL")) {
      c->rcpts = 0;
      o += "250 2.1.0 Ok\r\n";
    } else if (IsVerb(line, "RCPT")) {
      c->rcpts++;
      o += "250 2.1.5 Ok\r\n";
    } else if (IsVerb(line, "DATA")) {
      o += "354 End data with <CR><LF>.<CR><LF>\r\n";
      c->mode = Conn::Mode::kData;
      c->dot = Conn::Dot::kLineStart;
      StartMessage(c);
    } else if (IsVerb(line, "BDAT")) {
      std::string_view args = line.size() > 5 ? line.substr(5) : std::string_view();
      size_t sp = args.find(' ');
      uint64_t n = 0;
      if (!ParseU64(args.substr(0, sp), &n)) {
        o += "501 5.5.4 BDAT needs a size\r\n";
        return false;
      }
      c->bdat_last = sp != std::string_view::npos && AsciiIEquals(args.substr(sp + 1), "LAST");
      if (!c->in_message) StartMessage(c);
      c->bdat_left = n;
      c->mode = Conn::Mode::kBdat;
      if (n == 0) EndBdatChunk(c);
    } else if (IsVerb(line, "EHLO")) {
      o += "250-";
      o += opt_.hostname;
      o += "\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE 1073741824\r\n"
           "250-CHUNKING\r\n250-AUTH PLAIN LOGIN\r\n";
      if (tls_ctx_ && !c->tls) o += "250-STARTTLS\r\n";
      o += "250 ENHANCEDSTATUSCODES\r\n";
    } else if (IsVerb(line, "HELO")) {
      o += "250 " + opt_.hostname + "\r\n";
    } else if (IsVerb(line, "QUIT")) {
      o += "221 2.0.0 Bye\r\n";
      c->quitting = true;
    } else if (IsVerb(line, "AUTH")) {
      // "AUTH PLAIN <initial-response>" -> 235; "AUTH LOGIN" / "AUTH PLAIN" -> 334 first.
      size_t sp = line.find(' ', 5);
      if (sp != std::string_view::npos) {
        o += "235 2.7.0 Authentication successful\r\n";
      } else if (line.size() > 5 && AsciiIEquals(line.substr(5), "LOGIN")) {
        o += "334 VXNlcm5hbWU6\r\n";  // then the password prompt is skipped: 235 after one line
        c->auth_pending = true;
      } else {
        o += "334 \r\n";
        c->auth_pending = true;
      }
    } else if (AsciiIEquals(line, "STARTTLS")) {
      if (!tls_ctx_ || c->tls) {
        o += "454 4.7.0 TLS not available\r\n";
        return false;
      }
      o += "220 2.0.0 Ready to start TLS\r\n";
      // The 220 goes out in plaintext; everything after it is TLS.
      c->wire += o;
      o.clear();
      c->tls = std::make_unique<TlsEndpoint>(tls_ctx_);
      Flush(c);
      return true;
    } else if (IsVerb(line, "VRFY")) {
      o += "252 2.0.0 Cannot VRFY user\r\n";
    } else {
      o += "250 2.0.0 Ok\r\n";  // RSET, NOOP and anything else
    }
    return false;
  }

  void EndBdatChunk(Conn* c) {
    c->mode = Conn::Mode::kCommand;
    if (c->bdat_last) {
      EndMessage(c);
    } else {
      c->out += "250 2.0.0 Chunk received\r\n";
    }
  }

  // Scans DATA bytes for <CRLF>.<CRLF>; returns how many were consumed (up to
  // and including the terminating dot line when found).
  size_t ScanData(Conn* c, const char* p, size_t n) {
    size_t i = 0;
    while (i < n) {
      switch (c->dot) {
        case Conn::Dot::kLineStart:
          if (p[i] == '.') {
            c->dot = Conn::Dot::kDot;
            ++i;
          } else {
            c->dot = Conn::Dot::kMid;
          }
          break;
        case Conn::Dot::kDot:
          if (p[i] == '\r') {
            c->dot = Conn::Dot::kDotCr;
            ++i;
          } else {
            c->dot = Conn::Dot::kMid;  // a dot-stuffed line
          }
          break;
        case Conn::Dot::kDotCr:
          if (p[i] == '\n') {
            ++i;
            c->msg_bytes += i;
            c->msg_bytes = c->msg_bytes >= 3 ? c->msg_bytes - 3 : 0;
            c->mode = Conn::Mode::kCommand;
            EndMessage(c);
            return i;
          }
          c->dot = Conn::Dot::kMid;
          if (c->in_headers) FeedHeaders(c, "\r", 1);
          break;
        case Conn::Dot::kMid: {
          const char* nl = static_cast<const char*>(std::memchr(p + i, '\n', n - i));
          size_t stop = nl ? static_cast<size_t>(nl - p) + 1 : n;
          if (c->in_headers) FeedHeaders(c, p + i, stop - i);
          i = stop;
          if (nl) c->dot = Conn::Dot::kLineStart;
          break;
        }
      }
    }
    c->msg_bytes += n;
    return n;
  }

  // Raw message bytes while still inside the header section: captures the
  // start of each line and parses X-Mxr-Submitted; an empty line ends it.
  void FeedHeaders(Conn* c, const char* p, size_t n) {
    while (n > 0 && c->in_headers) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
      size_t seg = nl ? static_cast<size_t>(nl - p) : n;
      size_t room = kHeaderLineCap - c->hlen;
      size_t copy = std::min(room, seg);
      std::memcpy(c->hline + c->hlen, p, copy);
      c->hlen += static_cast<uint32_t>(copy);
      if (!nl) return;
      EndHeaderLine(c);
      p += seg + 1;
      n -= seg + 1;
    }
  }

  void EndHeaderLine(Conn* c) {
    std::string_view l(c->hline, c->hlen);
    c->hlen = 0;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.empty()) {
      c->in_headers = false;
      return;
    }
    if (c->submitted_us == 0 && AsciiIStartsWith(l, kSubmittedHeader)) {
      std::string_view v = l.substr(kSubmittedHeader.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      uint64_t us = 0;
      if (ParseU64(v, &us)) c->submitted_us = static_cast<int64_t>(us);
    }
  }

  void EndMessage(Conn* c) {
    c->in_message = false;
    c->in_headers = false;
    if (opt_.tempfail_percent > 0) {
      rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
      if (static_cast<double>(rng_ >> 11) * 0x1.0p-53 * 100.0 < opt_.tempfail_percent) {
        stats_.tempfailed++;
        c->rcpts = 0;
        c->out += "451 4.3.0 mxr-sink: temporary failure (--tempfail-percent), try again later\r\n";
        return;
      }
    }
    stats_.messages++;
    stats_.recipients += c->rcpts;
    stats_.bytes += c->msg_bytes;
    stats_.last_msg_mono = MonoMicros();
    Listener& l = listeners_[c->listener];
    l.messages++;
    l.recipients += c->rcpts;
    l.last_msg_mono = stats_.last_msg_mono;
    if (l.slow_us == 0 && !l.tempfail) healthy_messages_++;
    if (c->submitted_us > 0) {
      int64_t lat = UnixMicros() - c->submitted_us;
      stats_.latency.Record(lat);
      interval_latency_.Record(lat);
    } else {
      stats_.missing_header++;
    }
    c->rcpts = 0;
    c->out += "250 2.0.0 Ok: queued\r\n";
  }

  void Report(int64_t now) {
    double t = static_cast<double>(now - start_mono_) / 1e6;
    double dt = last_report_mono_ ? static_cast<double>(now - last_report_mono_) / 1e6 : t;
    uint64_t dm = stats_.messages - last_report_msgs_;
    char line[512];
    std::snprintf(line, sizeof line,
                  "[%6.1fs] sink: msgs %llu (+%.0f/s) rcpts %llu MB %.1f conns %llu open  "
                  "e2e p50 %s p99 %s healthy %llu tempfailed %llu\n",
                  t, static_cast<unsigned long long>(stats_.messages),
                  dt > 0 ? static_cast<double>(dm) / dt : 0.0,
                  static_cast<unsigned long long>(stats_.recipients),
                  static_cast<double>(stats_.bytes) / 1e6, static_cast<unsigned long long>(open_),
                  FormatMicros(interval_latency_.Percentile(50)).c_str(),
                  FormatMicros(interval_latency_.Percentile(99)).c_str(),
                  static_cast<unsigned long long>(healthy_messages_),
                  static_cast<unsigned long long>(stats_.tempfailed));
    std::cerr << line << std::flush;
    last_report_mono_ = now;
    last_report_msgs_ = stats_.messages;
    interval_latency_ = LatencyHistogram();
  }

  struct Held {
    int64_t at;
    uint32_t idx, gen;
  };

  const Options& opt_;
  std::vector<Listener> listeners_;
  std::vector<Held> held_;  // slow listeners' connections with replies waiting
  uint64_t healthy_messages_ = 0;  // at listeners without slow= or tempfail
  uint64_t rng_ = 0x9e3779b97f4a7c15ULL;  // --tempfail-percent draws
  int ep_ = -1;
  uint16_t port_ = 0;
  SSL_CTX* tls_ctx_ = nullptr;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<uint32_t> free_;
  uint64_t open_ = 0;
  Stats stats_;
  LatencyHistogram interval_latency_;
  int64_t start_mono_ = 0, end_mono_ = 0;
  int64_t last_report_mono_ = 0;
  uint64_t last_report_msgs_ = 0;
};

}  // namespace
}  // namespace mxr::bench

int main(int argc, char** argv) {
  using namespace mxr::bench;
  Options opt;
  CLI::App app{"mxr-sink: a counting SMTP sink (answers 250 to everything) that measures "
               "end-to-end latency from mxr-loadgen's X-Mxr-Submitted header"};
  app.add_option("--listen", opt.listen, "host:port to listen on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--also-listen", opt.also_listen,
                 "another host:port to listen on (repeatable), optionally /slow=MS (hold each "
                 "reply MS ms) or /tempfail (421 at the greeting); counted per listener in --json");
  app.add_option("--tempfail-percent", opt.tempfail_percent,
                 "answer this percentage of messages 451 4.3.0 at the end of data (not counted)");
  app.add_option("--seconds", opt.seconds, "exit after this many seconds (0: until SIGINT/SIGTERM)")
      ->capture_default_str();
  app.add_option("--expect", opt.expect,
                 "exit once this many messages arrived (after a <= 2 s linger for the last replies)");
  app.add_option("--report-every", opt.report_every, "progress line on stderr every N seconds (0: off)")
      ->capture_default_str();
  app.add_flag("--json", opt.json, "print only one JSON line on stdout at the end");
  app.add_flag("--starttls", opt.starttls,
               "offer STARTTLS (self-signed P-256 certificate generated in memory)");
  app.add_option("--port-file", opt.port_file, "write the bound port to this file once listening");
  app.add_option("--max-conns", opt.max_conns, "close connections beyond this many open ones")
      ->capture_default_str();
  app.add_option("--hostname", opt.hostname, "name in the banner and EHLO reply")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto sink = std::make_unique<Sink>(opt);
  if (!sink->Start()) return 2;
  sink->Run();
  sink->PrintSummary();
  return sink->expect_met() ? 0 : 1;
}
