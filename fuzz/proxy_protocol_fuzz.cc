// Fuzzes the PROXY protocol header parser (relay/proxy_protocol.h): the
// first bytes a load balancer sends on a proxy_protocol listener.
// Invariants besides ASan/UBSan:
//   - kDone: 0 < consumed <= size; v1 <= 107 bytes ending in CRLF, v2 =
//     16 + its length field; every proper prefix of the header needs more;
//     the header alone parses the same (what follows it changes nothing);
//     a v1 TCP4/TCP6 header re-serialised from the result parses back equal.
//   - kError: a fixed reason token; no extension of the input parses
//     (checked with the input doubled and with a CRLF appended).
//   - kNeedMore: never beyond the largest possible header.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "relay/proxy_protocol.h"

using mxr::relay::ParseProxyHeader;
using mxr::relay::ProxyParse;

namespace {

bool Same(const ProxyParse& a, const ProxyParse& b) {
  return a.status == b.status && a.consumed == b.consumed && a.version == b.version && a.local == b.local &&
         a.src == b.src && a.dst == b.dst && a.src_port == b.src_port && a.dst_port == b.dst_port &&
         std::strcmp(a.error, b.error) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ProxyParse p = ParseProxyHeader(in);
  switch (p.status) {
    case ProxyParse::kNeedMore:
      FUZZ_CHECK(size < 16 + mxr::relay::kProxyV2MaxPayload, "need more beyond any header: " + std::to_string(size));
      break;
    case ProxyParse::kError: {
      static const char* kReasons[] = {"not_proxy", "v1_too_long", "v1_syntax",  "v1_address", "v1_port",
                                       "v2_version", "v2_command", "v2_family", "v2_length", "v2_too_long"};
      bool known = false;
      for (const char* r : kReasons) known = known || std::strcmp(r, p.error) == 0;
      FUZZ_CHECK(known, std::string("reason ") + p.error);
      std::string more = std::string(in) + std::string(in) + "\r\n";
      FUZZ_CHECK(ParseProxyHeader(more).status == ProxyParse::kError, mxr::fuzz::Escape(in));
      FUZZ_CHECK(std::strcmp(ParseProxyHeader(more).error, p.error) == 0, mxr::fuzz::Escape(in));
      break;
    }
    case ProxyParse::kDone: {
      FUZZ_CHECK(p.consumed > 0 && p.consumed <= size);
      std::string_view h = in.substr(0, p.consumed);
      if (p.version == 1) {
        FUZZ_CHECK(p.consumed <= mxr::relay::kProxyV1MaxLength);
        FUZZ_CHECK(h.size() >= 8 && h.substr(h.size() - 2) == "\r\n" && h.substr(0, 6) == "PROXY ");
        FUZZ_CHECK(h.find('\n') == h.size() - 1, mxr::fuzz::Escape(h));
      } else {
        FUZZ_CHECK(p.version == 2);
        FUZZ_CHECK(p.consumed >= 16 && p.consumed == 16 + ((static_cast<size_t>(data[14]) << 8) | data[15]));
      }
      FUZZ_CHECK(Same(ParseProxyHeader(h), p), "the header alone parses differently");
      // Prefixes: all need more (sampled when long: a v2 header may be 4 KB).
      size_t step = p.consumed > 256 ? p.consumed / 64 : 1;
      for (size_t k = 0; k < p.consumed; k += step) {
        FUZZ_CHECK(ParseProxyHeader(in.substr(0, k)).status == ProxyParse::kNeedMore,
                   "prefix " + std::to_string(k) + " of " + mxr::fuzz::Escape(h));
      }
      FUZZ_CHECK(ParseProxyHeader(in.substr(0, p.consumed - 1)).status == ProxyParse::kNeedMore);
      if (p.version == 1 && !p.local) {
        bool v6 = !p.src.is_v4();
        FUZZ_CHECK(p.src.is_v4() == p.dst.is_v4(), mxr::fuzz::Escape(h));
        std::string again = std::string("PROXY ") + (v6 ? "TCP6 " : "TCP4 ") + p.src.ToString() + " " +
                            p.dst.ToString() + " " + std::to_string(p.src_port) + " " +
                            std::to_string(p.dst_port) + "\r\n";
        ProxyParse q = ParseProxyHeader(again);
        FUZZ_CHECK(q.status == ProxyParse::kDone && q.src == p.src && q.dst == p.dst &&
                       q.src_port == p.src_port && q.dst_port == p.dst_port,
                   mxr::fuzz::Escape(h) + " -> " + mxr::fuzz::Escape(again));
      }
      break;
    }
  }
  return 0;
}
