#include "relay/proxy_protocol.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>

namespace mxr::relay {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";

ProxyParse Error(const char* why) {
  ProxyParse p;
  p.status = ProxyParse::kError;
  p.error = why;
  return p;
}

// "0".."65535", no sign, no leading zero.
bool ParsePort(std::string_view s, uint16_t* out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// Strict textual address of one family (inet_pton: dotted quad for IPv4).
bool ParseAddr(std::string_view s, bool v6, IpAddress* out) {
  if (s.empty() || s.size() > 45) return false;
  char buf[46];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  if (v6) {
    in6_addr a;
    if (inet_pton(AF_INET6, buf, &a) != 1) return false;
    std::memcpy(out->bytes.data(), &a, 16);
  } else {
    in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1) return false;
    *out = IpAddress{};
    out->bytes[10] = 0xff;
    out->bytes[11] = 0xff;
    std::memcpy(&out->bytes[12], &a, 4);
  }
  return true;
}

ProxyParse ParseV1(std::string_view data) {
  size_t n = std::min(data.size(), kProxyV1MaxLength);
  size_t end = std::string_view::npos;  // index of the LF
  for (size_t i = 0; i < n; ++i) {
    if (data[i] == '\n') {
      if (i == 0 || data[i - 1] != '\r') return Error("v1_syntax");
      end = i;
      break;
    }
    // A CR must be followed by LF; one in the last byte of the window is
    // "too long" whatever follows (fuzz finding regress-cr-at-length-limit).
    if (data[i] == '\r' && i + 1 < n && data[i + 1] != '\n') return Error("v1_syntax");
  }
  if (end == std::string_view::npos) {
    return data.size() >= kProxyV1MaxLength ? Error("v1_too_long") : ProxyParse{};
  }
  std::string_view line = data.substr(0, end - 1);  // without CRLF
  std::string_view rest = line.substr(kV1Prefix.size());
  ProxyParse p;
  p.status = ProxyParse::kDone;
  p.version = 1;
  p.consumed = end + 1;
  if (rest == "UNKNOWN" || rest.substr(0, 8) == "UNKNOWN ") {
    p.local = true;  // the receiver ignores the rest of the line
    return p;
  }
  std::string_view tok[5];
  size_t count = 0, start = 0;
  for (size_t i = 0; i <= rest.size(); ++i) {
    if (i == rest.size() || rest[i] == ' ') {
      if (count == 5) return Error("v1_syntax");
      tok[count++] = rest.substr(start, i - start);
      start = i + 1;
    }
  }
  if (count != 5) return Error("v1_syntax");
  for (auto& t : tok) {
    if (t.empty()) return Error("v1_syntax");  // two spaces in a row
  }
  bool v6;
  if (tok[0] == "TCP4") {
    v6 = false;
  } else if (tok[0] == "TCP6") {
    v6 = true;
  } else {
    return Error("v1_syntax");
  }
  if (!ParseAddr(tok[1], v6, &p.src) || !ParseAddr(tok[2], v6, &p.dst)) return Error("v1_address");
  if (!ParsePort(tok[3], &p.src_port) || !ParsePort(tok[4], &p.dst_port)) return Error("v1_port");
  return p;
}

uint16_t Be16(const unsigned char* b) { return static_cast<uint16_t>((b[0] << 8) | b[1]); }

ProxyParse ParseV2(std::string_view data) {
  if (data.size() < 16) return ProxyParse{};
  const auto* b = reinterpret_cast<const unsigned char*>(data.data());
  if ((b[12] >> 4) != 2) return Error("v2_version");
  int command = b[12] & 0x0f;
  if (command > 1) return Error("v2_command");
  unsigned fam = b[13];
  size_t len = Be16(b + 14);
  if (len > kProxyV2MaxPayload) return Error("v2_too_long");
  size_t need = 0;  // address bytes the family needs
  if (command == 1) {
    switch (fam) {
      case 0x00: need = 0; break;     // UNSPEC
      case 0x11: need = 12; break;    // TCP over IPv4
      case 0x21: need = 36; break;    // TCP over IPv6
      case 0x31: need = 216; break;   // UNIX stream
      default: return Error("v2_family");  // UDP, UNIX datagram, unknown
    }
    if (len < need) return Error("v2_length");
  }
  if (data.size() < 16 + len) return ProxyParse{};
  ProxyParse p;
  p.status = ProxyParse::kDone;
  p.version = 2;
  p.consumed = 16 + len;  // TLVs after the addresses are skipped
  if (command == 0 || fam == 0x00 || fam == 0x31) {
    p.local = true;
    return p;
  }
  const unsigned char* a = b + 16;
  if (fam == 0x11) {
    p.src.bytes[10] = p.src.bytes[11] = 0xff;
    p.dst.bytes[10] = p.dst.bytes[11] = 0xff;
    std::memcpy(&p.src.bytes[12], a, 4);
    std::memcpy(&p.dst.bytes[12], a + 4, 4);
    p.src_port = Be16(a + 8);
    p.dst_port = Be16(a + 10);
  } else {
    std::memcpy(p.src.bytes.data(), a, 16);
    std::memcpy(p.dst.bytes.data(), a + 16, 16);
    p.src_port = Be16(a + 32);
    p.dst_port = Be16(a + 34);
  }
  return p;
}

}  // namespace

ProxyParse ParseProxyHeader(std::string_view data) {
  if (data.empty()) return ProxyParse{};
  if (data[0] == kProxyV2Signature[0]) {
    size_t n = std::min(data.size(), sizeof kProxyV2Signature);
    if (std::memcmp(data.data(), kProxyV2Signature, n) != 0) return Error("not_proxy");
    return ParseV2(data);
  }
  size_t n = std::min(data.size(), kV1Prefix.size());
  if (data.substr(0, n) != kV1Prefix.substr(0, n)) return Error("not_proxy");
  if (data.size() < kV1Prefix.size()) return ProxyParse{};
  return ParseV1(data);
}

}  // namespace mxr::relay
