// Network address helpers: parse/format IPs and match CIDR networks.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/hash/hash.h"
#include "absl/status/statusor.h"

namespace mxr {

// An IPv4 or IPv6 address; IPv4 is stored as an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) so one comparison serves both families.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  static absl::StatusOr<IpAddress> Parse(std::string_view text);
  static IpAddress FromSockaddr(const sockaddr* sa);
  bool is_v4() const;
  std::string ToString() const;
  // The key per-client limits count under: an IPv4 address as is, an IPv6
  // address cut to its first `v6_prefix_len` bits (one /64 is one site or
  // one host's privacy addresses, so it is counted as one client).
  IpAddress ClientKey(int v6_prefix_len) const;
  bool operator==(const IpAddress&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpAddress& a) {
    return H::combine_contiguous(std::move(h), a.bytes.data(), a.bytes.size());
  }
};

// A CIDR network such as 10.0.0.0/8 or ::1/128 (a bare address means /32 or /128).
struct Cidr {
  IpAddress base;
  int prefix_len = 128;  // over the 128-bit (mapped) form

  static absl::StatusOr<Cidr> Parse(std::string_view text);
  bool Contains(const IpAddress& ip) const;
  std::string ToString() const;
};

// "ip:port" or "[ipv6]:port" -> (address text, port). The address must be a
// literal IP (no names: nothing here may trigger a DNS lookup).
struct HostPort {
  std::string address;
  uint16_t port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);

// Fills `out` for address:port; returns its length or an error.
absl::StatusOr<socklen_t> MakeSockaddr(std::string_view address, uint16_t port,
                                       sockaddr_storage* out);

}  // namespace mxr
