#include "main/admin_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/escape.h"
#include "common/net.h"
#include "common/strings.h"
#include "common/thread_name.h"
#include "spdlog/spdlog.h"

namespace mxr {
namespace {

constexpr int kRequestTimeoutMs = 5000;
constexpr size_t kMaxRequest = 1024;

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    return absl::InvalidArgumentError(Cat("admin socket path too long (", path.size(), " bytes, at most ",
                                          sizeof a.sun_path - 1, "): ", path));
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// One request line (without the newline), within kRequestTimeoutMs.
std::optional<std::string> ReadLine(int fd) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
  while (line.size() < kMaxRequest) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) return std::nullopt;
    char c;
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminSocket>> AdminSocket::Start(const std::string& path, relay::TraceHub* hub) {
  auto addr = UnixAddress(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Cat("socket(AF_UNIX): ", strerror(errno)));
  ::unlink(path.c_str());  // a stale socket of an earlier run
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0 || ::listen(fd, 16) < 0) {
    int e = errno;
    ::close(fd);
    return absl::UnavailableError(Cat("admin socket ", path, ": ", strerror(e)));
  }
  ::chmod(path.c_str(), 0600);
  int stop = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop < 0) {
    int e = errno;
    ::close(fd);
    return absl::InternalError(Cat("eventfd: ", strerror(e)));
  }
  return std::unique_ptr<AdminSocket>(new AdminSocket(path, fd, stop, hub));
}

AdminSocket::AdminSocket(std::string path, int fd, int stop_fd, relay::TraceHub* hub)
    : path_(std::move(path)), listen_fd_(fd), stop_fd_(stop_fd), hub_(hub) {
  acceptor_ = std::thread([this] {
    SetThreadName("mxr-admin");
    AcceptLoop();
  });
}

AdminSocket::~AdminSocket() {
  stopping_ = true;
  uint64_t one = 1;
  ssize_t n = ::write(stop_fd_, &one, sizeof one);
  (void)n;
  acceptor_.join();
  std::vector<std::thread> ts;
  {
    std::lock_guard<std::mutex> l(mu_);
    ts.swap(threads_);
  }
  for (auto& t : ts) t.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
  ::unlink(path_.c_str());
}

void AdminSocket::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("event=admin_socket_failed error=\"poll: {}\"", strerror(errno));
      return;
    }
    if (p[1].revents != 0 || stopping_) return;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    if (clients_.load() >= kMaxClients) {
      SendAll(c, Cat("ERR too many admin clients (at most ", kMaxClients, ")\n"));
      ::close(c);
      continue;
    }
    clients_++;
    std::lock_guard<std::mutex> l(mu_);
    threads_.emplace_back([this, c] {
      SetThreadName("mxr-admin-c");
      Serve(c);
      ::close(c);
      clients_--;
    });
  }
}

void AdminSocket::Serve(int fd) {
  auto req = ReadLine(fd);
  if (!req) {
    SendAll(fd, "ERR expected one line: TRACE ip=ADDR user=NAME\n");
    return;
  }
  std::string_view r(*req);
  if (!r.empty() && r.back() == '\r') r.remove_suffix(1);
  if (AsciiIStartsWith(r, "SHAPING")) {
    std::function<std::string()> fn;
    {
      std::lock_guard<std::mutex> l(mu_);
      fn = shaping_status_;
    }
    SendAll(fd, fn ? fn() : std::string("ERR delivery is not running\n"));
    return;
  }
  relay::TraceSubscriber::Filter f;
  bool ok = AsciiIStartsWith(r, "TRACE");
  r.remove_prefix(std::min<size_t>(5, r.size()));
  while (ok && !r.empty()) {
    while (!r.empty() && r.front() == ' ') r.remove_prefix(1);
    std::string_view tok = r.substr(0, r.find(' '));
    r.remove_prefix(tok.size());
    if (tok.empty()) continue;
    if (tok.starts_with("ip=")) {
      auto ip = IpAddress::Parse(tok.substr(3));
      ok = ip.ok();
      if (ok) f.ip = ip->ToString();
    } else if (tok.starts_with("user=") && tok.size() > 5) {
      f.user = std::string(tok.substr(5));
    } else {
      ok = false;
    }
  }
  if (!ok || (f.ip.empty() && f.user.empty())) {
    SendAll(fd, "ERR usage: TRACE ip=ADDR and/or user=NAME\n");
    return;
  }
  auto sub = hub_->Subscribe(f);
  spdlog::info("event=trace_started ip={} user=\"{}\"", f.ip.empty() ? "*" : f.ip, LogEscape(f.user));
  bool alive = SendAll(fd, Cat("OK tracing ip=", f.ip.empty() ? "*" : f.ip, " user=",
                               f.user.empty() ? "*" : f.user, "\n"));
  while (alive && !stopping_) {
    auto lines = sub->Wait(500);
    if (!lines) break;
    std::string out;
    for (const auto& l : *lines) out += l + "\n";
    if (!out.empty()) alive = SendAll(fd, out);
    // The client went away (EOF or error on our side of the socket)?
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (alive && ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) alive = false;
  }
  hub_->Unsubscribe(sub);
  spdlog::info("event=trace_ended ip={} user=\"{}\"", f.ip.empty() ? "*" : f.ip, LogEscape(f.user));
}

int RunTraceClient(const std::string& path, const std::string& ip, const std::string& user, int seconds) {
  auto addr = UnixAddress(path);
  if (!addr.ok()) {
    fmt::print(stderr, "mxrelay: {}\n", addr.status().message());
    return 1;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0) {
    fmt::print(stderr, "mxrelay: cannot connect to the relay's admin socket {}: {} (is the relay running with this "
                       "config, and are you its user or root?)\n",
               path, strerror(errno));
    if (fd >= 0) ::close(fd);
    return 1;
  }
  std::string req = "TRACE";
  if (!ip.empty()) req += " ip=" + ip;
  if (!user.empty()) req += " user=" + user;
  if (!SendAll(fd, req + "\n")) {
    ::close(fd);
    return 1;
  }
  auto end = seconds > 0 ? std::chrono::steady_clock::now() + std::chrono::seconds(seconds)
                         : std::chrono::steady_clock::time_point::max();
  std::string pending;
  bool first = true;
  int rc = 0;
  char buf[16384];
  for (;;) {
    int wait_ms = 1000;
    if (seconds > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 1000));
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, wait_ms) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;  // the relay stopped
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (first) {
        first = false;
        if (line.starts_with("ERR")) {
          fmt::print(stderr, "mxrelay: {}\n", line.substr(4));
          rc = 2;
          break;
        }
        fmt::print(stderr, "mxrelay: {} (AUTH payloads and message contents are not shown)\n", line.substr(3));
        continue;
      }
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    if (rc != 0) break;
  }
  ::close(fd);
  return rc;
}

}  // namespace mxr
