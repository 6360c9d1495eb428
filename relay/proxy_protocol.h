// PROXY protocol (HAProxy, v1 text and v2 binary) header parser: what a
// load balancer in front of the relay says about the real client before the
// client's first byte (www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
//
// A pure function over the bytes received so far: it needs more, found a
// complete header (how many bytes it took; what follows belongs to the
// client: SMTP or a TLS ClientHello), or found something that is not a
// valid header. Once it says kError, no longer input can make it valid; a
// prefix of a complete header always gives kNeedMore.
//
//   v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" or
//       "PROXY UNKNOWN[ anything]\r\n", at most 107 bytes with the CRLF.
//   v2: the 12-byte signature "\r\n\r\n\0\r\nQUIT\n", version/command (0x20
//       LOCAL, 0x21 PROXY), family/protocol (0x11 TCP/IPv4, 0x21 TCP/IPv6,
//       0x00 UNSPEC, 0x31 UNIX stream), a 16-bit length, addresses, TLVs
//       (skipped: nothing in them is used).
//
// LOCAL (v2), UNKNOWN (v1), AF_UNSPEC and AF_UNIX (v2): the proxy speaks for
// itself (a health check) or has no IP to give: `local` is set and the
// connection's own peer address stays the client address.
//
//   ProxyParse p = ParseProxyHeader(buffered);
//   if (p.status == ProxyParse::kDone) { client = p.local ? peer : p.src; rest = buffered.substr(p.consumed); }
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/net.h"

namespace mxr::relay {

inline constexpr size_t kProxyV1MaxLength = 107;
// v2: 16 bytes, then at most this many bytes of addresses and TLVs. The
// protocol allows 65535; HAProxy's headers with every TLV it sends are a few
// hundred bytes. A longer one is refused (bounded memory per connection).
inline constexpr size_t kProxyV2MaxPayload = 4096;
inline constexpr char kProxyV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                               '\n', 'Q',  'U',  'I',  'T',  '\n'};

struct ProxyParse {
  enum Status { kNeedMore, kDone, kError };
  Status status = kNeedMore;
  // kError: a short reason for logs and metrics (a fixed token, never input
  // bytes): not_proxy, v1_too_long, v1_syntax, v1_address, v1_port,
  // v2_version, v2_command, v2_family, v2_length, v2_too_long.
  const char* error = "";
  size_t consumed = 0;  // kDone: header length
  int version = 0;      // kDone: 1 or 2
  bool local = false;   // kDone: no client address given (see above)
  IpAddress src, dst;   // kDone and !local
  uint16_t src_port = 0, dst_port = 0;
};

ProxyParse ParseProxyHeader(std::string_view data);

}  // namespace mxr::relay
