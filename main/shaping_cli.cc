#include "main/shaping_cli.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/escape.h"
#include "common/strings.h"
#include "fmt/format.h"

namespace mxr {

std::string FormatShapingStatus(const delivery::DeliveryStats& stats) {
  delivery::DeliverySnapshot s = stats.Snapshot();
  std::string out = "OK shaping status\n";
  out += Cat("paths_suspended ", stats.paths_suspended.load(), "\n");
  for (size_t i = 1; i < delivery::kShapingActionNames.size(); ++i) {
    out += Cat("actions_total action=", delivery::kShapingActionNames[i], " count=", stats.shaping_actions[i].load(),
               "\n");
  }
  for (const auto& src : s.sources) {
    out += Cat("source name=", src.name, " assigned=", src.assigned, " warmup_day=", src.warmup_day,
               " warmup_cap=", src.warmup_cap, " warmup_sent_today=", src.warmup_sent,
               " warmup_overflow=", src.warmup_overflow, "\n");
  }
  for (const auto& [name, n] : s.pools) out += Cat("pool name=", name, " assigned=", n, "\n");
  for (const auto& [rule, n] : s.rule_paths) {
    if (n > 0) out += Cat("rule name=", rule, " paths=", n, "\n");
  }
  for (const auto& a : s.actions) {
    out += Cat("path source=", a.source, " site=", a.site, " rule=", a.rule);
    if (a.suspended_s) out += Cat(" suspended_s=", a.suspended_s);
    if (a.conn_limit_s) out += Cat(" connection_limit=", a.conn_limit, " connection_limit_s=", a.conn_limit_s);
    if (a.rate_s) out += Cat(" message_rate=", a.rate, " message_rate_s=", a.rate_s);
    out += Cat(" reason=\"", LogEscape(a.reason), "\"\n");
  }
  return out;
}

int RunShapingStatus(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    fmt::print(stderr, "mxrelay: admin socket path too long: {}\n", path);
    return 2;
  }
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    fmt::print(stderr, "mxrelay: cannot connect to the relay's admin socket {}: {} (is the relay running with this "
                       "config, and are you its user or root?)\n", path, strerror(errno));
    if (fd >= 0) ::close(fd);
    return 1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const char req[] = "SHAPING\n";
  if (::send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof req - 1)) {
    ::close(fd);
    fmt::print(stderr, "mxrelay: admin socket: send failed\n");
    return 1;
  }
  std::string all;
  char buf[8192];
  for (int i = 0; i < 10000; ++i) {  // bounded: the listing is small
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (all.starts_with("ERR")) {
    fmt::print(stderr, "mxrelay: {}", all.substr(4));
    return 1;
  }
  if (!all.starts_with("OK")) {
    fmt::print(stderr, "mxrelay: unexpected answer from the admin socket\n");
    return 1;
  }
  fmt::print("{}", all.substr(all.find('\n') + 1));
  return 0;
}

}  // namespace mxr
