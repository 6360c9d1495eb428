#include "api/tls_proxy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/net.h"
#include "common/strings.h"
#include "common/thread_name.h"
#include "spdlog/spdlog.h"

namespace mxr::api {
namespace {

constexpr int kIdleMs = 60'000;

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void Timeouts(int fd) {
  timeval tv{kIdleMs / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsProxy>> TlsProxy::Start(const std::string& listen, SSL_CTX* ctx,
                                                          const std::string& backend, int max_conns) {
  auto hp = ParseHostPort(listen);
  if (!hp.ok()) return hp.status();
  auto bp = ParseHostPort(backend);
  if (!bp.ok()) return bp.status();
  sockaddr_storage ss;
  auto len = MakeSockaddr(hp->address, hp->port, &ss);
  if (!len.ok()) return len.status();
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&ss), *len) != 0 || ::listen(fd, 128) != 0) {
    int e = errno;
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(Cat("http_api.listen ", listen, ": cannot listen (", strerror(e), ")"));
  }
  sockaddr_storage bound;
  socklen_t bl = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  uint16_t port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                     : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::unique_ptr<TlsProxy> p(new TlsProxy());
  p->ctx_ = ctx;
  p->listen_fd_ = fd;
  p->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  p->backend_host_ = bp->address;
  p->backend_port_ = bp->port;
  p->max_conns_ = max_conns;
  bool v6 = hp->address.find(':') != std::string::npos;
  p->address_ = v6 ? Cat("[", hp->address, "]:", port) : Cat(hp->address, ":", port);
  TlsProxy* self = p.get();
  p->acceptor_ = std::thread([self] {
    SetThreadName("mxr-api-tls");
    self->AcceptLoop();
  });
  return p;
}

TlsProxy::~TlsProxy() {
  uint64_t one = 1;
  ssize_t n = ::write(stop_fd_, &one, sizeof one);
  (void)n;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<Worker> ts;
  {
    std::lock_guard<std::mutex> l(mu_);
    ts.swap(threads_);
  }
  for (auto& w : ts) w.thread.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
}

void TlsProxy::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    if (conns_.load() >= max_conns_) {
      ::close(c);
      continue;
    }
    conns_++;
    std::lock_guard<std::mutex> l(mu_);
    std::erase_if(threads_, [](Worker& w) {
      if (!w.done->load()) return false;
      w.thread.join();
      return true;
    });
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back(Worker{std::thread([this, c, done] {
                                SetThreadName("mxr-api-tls-c");
                                Serve(c);
                                ::close(c);
                                conns_--;
                                done->store(true);
                              }),
                              done});
  }
}

void TlsProxy::Serve(int cfd) {
  Timeouts(cfd);
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return;
  SSL_set_fd(ssl, cfd);
  if (SSL_accept(ssl) != 1) {
    SSL_free(ssl);
    return;
  }
  sockaddr_storage ss;
  auto len = MakeSockaddr(backend_host_, backend_port_, &ss);
  int bfd = len.ok() ? ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
  if (bfd < 0 || ::connect(bfd, reinterpret_cast<sockaddr*>(&ss), *len) != 0) {
    if (bfd >= 0) ::close(bfd);
    SSL_free(ssl);
    return;
  }
  Timeouts(bfd);
  char buf[16384];
  bool open = true;
  while (open) {
    bool from_client = SSL_pending(ssl) > 0, from_backend = false;
    if (!from_client) {
      pollfd p[3] = {{cfd, POLLIN, 0}, {bfd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      int r = ::poll(p, 3, kIdleMs);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || p[2].revents != 0) break;
      from_client = p[0].revents != 0;
      from_backend = p[1].revents != 0;
    }
    if (from_client) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0 || !WriteAll(bfd, buf, static_cast<size_t>(n))) open = false;
    }
    if (open && from_backend) {
      ssize_t n = ::recv(bfd, buf, sizeof buf, 0);
      if (n <= 0 || SSL_write(ssl, buf, static_cast<int>(n)) != static_cast<int>(n)) open = false;
    }
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ::close(bfd);
}

}  // namespace mxr::api
