#include "common/net.h"

#include <arpa/inet.h>

#include <cstring>

#include <charconv>
#include "common/strings.h"

namespace mxr {

absl::StatusOr<IpAddress> IpAddress::Parse(std::string_view text) {
  // inet_pton reads a C string: a NUL would end the text early and
  // "127.0.0.1\0junk" would parse (fuzz finding ip-nul).
  if (text.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("not an IP address: holds a NUL character");
  }
  std::string s(text);
  if (!s.empty() && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  IpAddress ip;
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    ip.bytes[10] = 0xff;
    ip.bytes[11] = 0xff;
    std::memcpy(&ip.bytes[12], &v4, 4);
    return ip;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(ip.bytes.data(), &v6, 16);
    return ip;
  }
  return absl::InvalidArgumentError(Cat("not an IP address: '", text, "'"));
}

IpAddress IpAddress::FromSockaddr(const sockaddr* sa) {
  IpAddress ip;
  if (sa->sa_family == AF_INET) {
    ip.bytes[10] = 0xff;
    ip.bytes[11] = 0xff;
    std::memcpy(&ip.bytes[12], &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    std::memcpy(ip.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
  }
  return ip;
}

IpAddress IpAddress::ClientKey(int v6_prefix_len) const {
  if (is_v4() || v6_prefix_len >= 128) return *this;
  IpAddress k = *this;
  int len = v6_prefix_len < 0 ? 0 : v6_prefix_len;
  int full = len / 8, rest = len % 8;
  if (rest != 0) k.bytes[full++] &= static_cast<uint8_t>(0xff << (8 - rest));
  for (int i = full; i < 16; ++i) k.bytes[i] = 0;
  return k;
}

bool IpAddress::is_v4() const {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(bytes.data(), kPrefix, 12) == 0;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4()) {
    inet_ntop(AF_INET, &bytes[12], buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

absl::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  Cidr c;
  size_t slash = text.find('/');
  auto ip = IpAddress::Parse(text.substr(0, slash));
  if (!ip.ok()) return ip.status();
  c.base = *ip;
  int max_len = c.base.is_v4() ? 32 : 128;
  int len = max_len;
  if (slash != std::string_view::npos) {
    std::string_view num = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), len);
    if (ec != std::errc() || end != num.data() + num.size() || num.empty() || len < 0 ||
        len > max_len) {
      return absl::InvalidArgumentError(Cat("bad prefix length in '", text, "'"));
    }
  }
  c.prefix_len = c.base.is_v4() ? len + 96 : len;
  return c;
}

bool Cidr::Contains(const IpAddress& ip) const {
  int full = prefix_len / 8, rest = prefix_len % 8;
  if (std::memcmp(base.bytes.data(), ip.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (base.bytes[full] & mask) == (ip.bytes[full] & mask);
}

std::string Cidr::ToString() const {
  return Cat(base.ToString(), "/", base.is_v4() ? prefix_len - 96 : prefix_len);
}

absl::StatusOr<socklen_t> MakeSockaddr(std::string_view address, uint16_t port,
                                       sockaddr_storage* out) {
  auto ip = IpAddress::Parse(address);
  if (!ip.ok()) return ip.status();
  std::memset(out, 0, sizeof *out);
  if (ip->is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, &ip->bytes[12], 4);
    return static_cast<socklen_t>(sizeof *sin);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, ip->bytes.data(), 16);
  return static_cast<socklen_t>(sizeof *sin6);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) {
    return absl::InvalidArgumentError(Cat("'", text, "' is not ip:port"));
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError(Cat("'", text, "': an IPv6 address needs brackets, e.g. [::1]:9465"));
  }
  if (!IpAddress::Parse(host).ok()) {
    return absl::InvalidArgumentError(Cat("'", text, "': '", host, "' is not an IP address"));
  }
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || p > 65535) return absl::InvalidArgumentError(Cat("'", text, "': bad port"));
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p > 65535) return absl::InvalidArgumentError(Cat("'", text, "': bad port"));
  return HostPort{std::string(host), static_cast<uint16_t>(p)};
}

}  // namespace mxr
