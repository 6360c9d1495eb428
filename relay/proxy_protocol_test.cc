#include "relay/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace mxr::relay {
namespace {

std::string Sig() { return std::string(kProxyV2Signature, sizeof kProxyV2Signature); }

// A v2 header: signature, ver/cmd, fam, length, then `payload`.
std::string V2(unsigned char ver_cmd, unsigned char fam, const std::string& payload) {
  std::string h = Sig();
  h.push_back(static_cast<char>(ver_cmd));
  h.push_back(static_cast<char>(fam));
  h.push_back(static_cast<char>(payload.size() >> 8));
  h.push_back(static_cast<char>(payload.size() & 0xff));
  return h + payload;
}

std::string V2Tcp4(const std::string& tlvs = "") {
  // 192.0.2.10:54321 -> 198.51.100.1:587
  std::string a = {'\xc0', '\x00', '\x02', '\x0a', '\xc6', '\x33', '\x64', '\x01',
                   '\xd4', '\x31', '\x02', '\x4b'};
  return V2(0x21, 0x11, a + tlvs);
}

std::string V2Tcp6() {
  std::string a(36, '\0');
  a[0] = '\x20';
  a[1] = '\x01';
  a[2] = '\x0d';
  a[3] = '\xb8';
  a[15] = '\x07';  // 2001:db8::7
  a[16] = '\x20';
  a[17] = '\x01';
  a[18] = '\x0d';
  a[19] = '\xb8';
  a[31] = '\x01';  // 2001:db8::1
  a[32] = '\x01';
  a[33] = '\xbb';  // 443
  a[34] = '\x02';
  a[35] = '\x4b';  // 587
  return V2(0x21, 0x21, a);
}

TEST(ProxyProtocol, V1Tcp4) {
  std::string h = "PROXY TCP4 192.0.2.10 198.51.100.1 54321 587\r\n";
  auto p = ParseProxyHeader(h + "EHLO x\r\n");
  ASSERT_EQ(p.status, ProxyParse::kDone) << p.error;
  EXPECT_EQ(p.version, 1);
  EXPECT_FALSE(p.local);
  EXPECT_EQ(p.consumed, h.size());
  EXPECT_EQ(p.src.ToString(), "192.0.2.10");
  EXPECT_EQ(p.dst.ToString(), "198.51.100.1");
  EXPECT_EQ(p.src_port, 54321);
  EXPECT_EQ(p.dst_port, 587);
}

TEST(ProxyProtocol, V1Tcp6AndUnknown) {
  auto p = ParseProxyHeader("PROXY TCP6 2001:db8::7 2001:db8::1 443 587\r\n");
  ASSERT_EQ(p.status, ProxyParse::kDone) << p.error;
  EXPECT_EQ(p.src.ToString(), "2001:db8::7");
  EXPECT_FALSE(p.src.is_v4());
  p = ParseProxyHeader("PROXY UNKNOWN\r\n");
  ASSERT_EQ(p.status, ProxyParse::kDone);
  EXPECT_TRUE(p.local);
  EXPECT_EQ(p.consumed, 15u);
  p = ParseProxyHeader("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX");
  ASSERT_EQ(p.status, ProxyParse::kDone);
  EXPECT_TRUE(p.local);
}

TEST(ProxyProtocol, V1Malformed) {
  const char* bad[][2] = {
      {"PROXY TCP4 192.0.2.10 198.51.100.1 54321\r\n", "v1_syntax"},
      {"PROXY TCP4  192.0.2.10 198.51.100.1 1 2\r\n", "v1_syntax"},
      {"PROXY TCP5 192.0.2.10 198.51.100.1 1 2\r\n", "v1_syntax"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 1 2 3\r\n", "v1_syntax"},
      {"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n", "v1_address"},
      {"PROXY TCP6 192.0.2.10 2001:db8::1 1 2\r\n", "v1_address"},
      {"PROXY TCP4 192.0.2.010 198.51.100.1 1 2\r\n", "v1_address"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 65536 2\r\n", "v1_port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 01 2\r\n", "v1_port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 -1 2\r\n", "v1_port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 1 2\n", "v1_syntax"},
      {"PROXY TCP4 192.0.2.10\r198.51.100.1 1 2\r\n", "v1_syntax"},
      {"proxy TCP4 192.0.2.10 198.51.100.1 1 2\r\n", "not_proxy"},
      {"EHLO client.example\r\n", "not_proxy"},
      {"\x16\x03\x01\x02\x00", "not_proxy"},
  };
  for (auto& b : bad) {
    auto p = ParseProxyHeader(b[0]);
    EXPECT_EQ(p.status, ProxyParse::kError) << b[0];
    EXPECT_STREQ(p.error, b[1]) << b[0];
  }
  // 107 bytes without a CRLF: too long. 105 + CRLF fits.
  std::string line = "PROXY UNKNOWN " + std::string(91, 'x');
  ASSERT_EQ(line.size(), 105u);
  EXPECT_EQ(ParseProxyHeader(line + "\r\n").status, ProxyParse::kDone);
  EXPECT_EQ(ParseProxyHeader(line + "x").status, ProxyParse::kNeedMore);
  EXPECT_EQ(ParseProxyHeader(line + "x\r").status, ProxyParse::kError);
  EXPECT_STREQ(ParseProxyHeader(line + "x\r").error, "v1_too_long");
  // The same whatever follows (a CR in the 107th byte can never end the line).
  EXPECT_STREQ(ParseProxyHeader(line + "x\rPROXY").error, "v1_too_long");
}

TEST(ProxyProtocol, V2Tcp4WithTlvs) {
  std::string tlv = {'\x04', '\x00', '\x03', 'a', 'b', 'c'};  // PP2_TYPE_NOOP, skipped
  std::string h = V2Tcp4(tlv);
  auto p = ParseProxyHeader(h + "\x16\x03\x01");
  ASSERT_EQ(p.status, ProxyParse::kDone) << p.error;
  EXPECT_EQ(p.version, 2);
  EXPECT_EQ(p.consumed, h.size());
  EXPECT_EQ(p.src.ToString(), "192.0.2.10");
  EXPECT_EQ(p.dst.ToString(), "198.51.100.1");
  EXPECT_EQ(p.src_port, 54321);
  EXPECT_EQ(p.dst_port, 587);
}

TEST(ProxyProtocol, V2Tcp6) {
  auto p = ParseProxyHeader(V2Tcp6());
  ASSERT_EQ(p.status, ProxyParse::kDone) << p.error;
  EXPECT_EQ(p.src.ToString(), "2001:db8::7");
  EXPECT_EQ(p.dst.ToString(), "2001:db8::1");
  EXPECT_EQ(p.src_port, 443);
  EXPECT_EQ(p.dst_port, 587);
}

TEST(ProxyProtocol, V2LocalUnspecAndUnix) {
  auto p = ParseProxyHeader(V2(0x20, 0x00, ""));
  ASSERT_EQ(p.status, ProxyParse::kDone);
  EXPECT_TRUE(p.local);
  EXPECT_EQ(p.consumed, 16u);
  // LOCAL with an address block: still the socket's address.
  p = ParseProxyHeader(V2(0x20, 0x11, std::string(12, '\x01')));
  ASSERT_EQ(p.status, ProxyParse::kDone);
  EXPECT_TRUE(p.local);
  EXPECT_EQ(p.consumed, 28u);
  p = ParseProxyHeader(V2(0x21, 0x00, ""));
  EXPECT_TRUE(p.status == ProxyParse::kDone && p.local);
  p = ParseProxyHeader(V2(0x21, 0x31, std::string(216, '\0')));
  EXPECT_TRUE(p.status == ProxyParse::kDone && p.local);
}

TEST(ProxyProtocol, V2Malformed) {
  struct {
    std::string bytes;
    const char* error;
  } bad[] = {
      {V2(0x11, 0x11, std::string(12, '\0')), "v2_version"},
      {V2(0x22, 0x11, std::string(12, '\0')), "v2_command"},
      {V2(0x21, 0x12, std::string(12, '\0')), "v2_family"},  // UDP
      {V2(0x21, 0x41, std::string(12, '\0')), "v2_family"},
      {V2(0x21, 0x11, std::string(11, '\0')), "v2_length"},
      {V2(0x21, 0x21, std::string(35, '\0')), "v2_length"},
      {V2(0x21, 0x11, std::string(kProxyV2MaxPayload + 1, '\0')), "v2_too_long"},
      {std::string("\r\n\r\n\0\r\nQUIX\n", 12), "not_proxy"},
  };
  for (auto& b : bad) {
    auto p = ParseProxyHeader(b.bytes);
    EXPECT_EQ(p.status, ProxyParse::kError) << b.error;
    EXPECT_STREQ(p.error, b.error);
  }
  // The length is checked from the first 16 bytes on: no waiting for 64 KB.
  std::string h = V2Tcp4();
  h[14] = '\xff';
  EXPECT_EQ(ParseProxyHeader(h.substr(0, 16)).status, ProxyParse::kError);
}

// Every proper prefix needs more; the whole header, cut anywhere after, is
// the same header.
TEST(ProxyProtocol, SplitAcrossReads) {
  for (const std::string& h : {std::string("PROXY TCP4 192.0.2.10 198.51.100.1 54321 587\r\n"),
                               std::string("PROXY TCP6 2001:db8::7 2001:db8::1 443 587\r\n"), V2Tcp4(),
                               V2Tcp6(), V2(0x20, 0x00, "")}) {
    auto whole = ParseProxyHeader(h + "MAIL");
    ASSERT_EQ(whole.status, ProxyParse::kDone);
    for (size_t k = 0; k < h.size(); ++k) {
      EXPECT_EQ(ParseProxyHeader(h.substr(0, k)).status, ProxyParse::kNeedMore) << k;
    }
    auto exact = ParseProxyHeader(h);
    ASSERT_EQ(exact.status, ProxyParse::kDone);
    EXPECT_EQ(exact.consumed, whole.consumed);
    EXPECT_EQ(exact.src, whole.src);
    EXPECT_EQ(exact.src_port, whole.src_port);
  }
}

}  // namespace
}  // namespace mxr::relay
