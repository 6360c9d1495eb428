// Fuzz target: the TOML configuration (common/config.h ParseConfig: toml++
// plus our schema walk and validation).
//
// Input: the text of a config file.
//
// Invariants:
//  - an error names the file ("fuzz.toml: ..." or "fuzz.toml:LINE: ...");
//  - an accepted config satisfies what docs/CONFIG.md promises: at least one
//    listener, each on an IP address with a name; every number in its
//    documented range; retry_max >= retry_initial, dns_ttl_max >=
//    dns_ttl_min, initial_window <= max_connections_per_site; TLS cert and
//    key together; route domains non-empty and lower-case; a route with AUTH
//    has a host and a required-TLS policy (never a password in clear);
//    DKIM rules have one match and keys whose d= and s= cannot break a
//    DKIM-Signature field, x= is 0 or at least an hour.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/net.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxr;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Config> c = ParseConfig(text, "fuzz.toml");
  if (!c.ok()) {
    std::string_view msg(c.status().message().data(), c.status().message().size());
    FUZZ_CHECK(msg.rfind("fuzz.toml:", 0) == 0, "error does not name the file: " + fuzz::Escape(msg));
    FUZZ_CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  const Config& cfg = *c;
  FUZZ_CHECK(!cfg.listeners.empty());
  for (const auto& l : cfg.listeners) {
    FUZZ_CHECK(l.port >= 1);
    FUZZ_CHECK(!l.name.empty());
    FUZZ_CHECK(IpAddress::Parse(l.address).ok(), fuzz::Escape(l.address));
  }
  FUZZ_CHECK(cfg.threads >= 0 && cfg.threads <= 256);
  FUZZ_CHECK(cfg.tls.min_version == "1.2" || cfg.tls.min_version == "1.3");
  FUZZ_CHECK(cfg.tls.cert_file.empty() == cfg.tls.key_file.empty());
  FUZZ_CHECK(cfg.auth.max_failures >= 1 && cfg.auth.max_failures <= 100);
  FUZZ_CHECK(cfg.auth.ip_block_seconds >= 1);
  const auto& lim = cfg.limits;
  FUZZ_CHECK(lim.max_message_size >= 1024 && lim.max_message_size <= (uint64_t{1} << 34));
  FUZZ_CHECK(lim.max_recipients >= 1 && lim.max_recipients <= 100000);
  FUZZ_CHECK(lim.max_line_length >= 512 && lim.max_line_length <= 65536);
  FUZZ_CHECK(lim.max_errors >= 1 && lim.max_errors <= 1000);
  FUZZ_CHECK(lim.max_connections >= 1 && lim.max_connections_per_ip >= 1);
  const auto& t = cfg.timeouts;
  FUZZ_CHECK(t.greeting >= 1 && t.command >= 1 && t.data >= 1 && t.tls_handshake >= 1 &&
             t.spool_write >= 1);
  FUZZ_CHECK(cfg.spool.max_write_buffer_number >= 2 && cfg.spool.write_buffer_size >= (1u << 20));
  const auto& d = cfg.delivery;
  FUZZ_CHECK(d.port >= 1);
  FUZZ_CHECK(d.retry_initial >= 1 && d.retry_max >= d.retry_initial);
  FUZZ_CHECK(d.dns_ttl_min >= 0 && d.dns_ttl_max >= d.dns_ttl_min);
  FUZZ_CHECK(d.max_connections_per_site >= 1 && d.initial_window >= 1 &&
             d.initial_window <= d.max_connections_per_site);
  FUZZ_CHECK(d.dns_timeout_ms >= 100);
  FUZZ_CHECK(d.source_address.empty() || IpAddress::Parse(d.source_address).ok());
  for (const auto& r : cfg.routes) {
    FUZZ_CHECK(!r.domain.empty());
    for (char ch : r.domain) FUZZ_CHECK(!(ch >= 'A' && ch <= 'Z'), fuzz::Escape(r.domain));
    if (!r.auth_user.empty()) {
      FUZZ_CHECK(!r.host.empty());
      FUZZ_CHECK(r.tls == TlsPolicy::kRequiredVerify ||
                     (r.tls == TlsPolicy::kRequired && r.auth_over_unverified_tls),
                 "route AUTH without verified TLS (and without the explicit opt-in)");
    }
    FUZZ_CHECK(!r.auth_over_unverified_tls || !r.auth_user.empty());
  }
  for (const auto& n : cfg.trusted_networks) {
    FUZZ_CHECK(n.base.is_v4() || !n.Contains(*IpAddress::Parse("0.0.0.0")),
               "an IPv6 trusted network that trusts every IPv4 client");
  }
  FUZZ_CHECK(cfg.limits.ipv6_prefix >= 32 && cfg.limits.ipv6_prefix <= 128);
  FUZZ_CHECK(cfg.limits.max_hops >= 1);
  FUZZ_CHECK(cfg.metrics.site_labels >= 0 && cfg.metrics.site_labels <= 1000);
  const auto& k = cfg.dkim;
  FUZZ_CHECK(k.expire_after == 0 || (k.expire_after >= 3600 && k.expire_after <= 366 * 86400));
  FUZZ_CHECK(k.threads >= 0 && k.threads <= 64 && k.domain_labels >= 0);
  for (const auto& r : k.rules) {
    FUZZ_CHECK(!r.keys.empty() && !r.value.empty());
    if (r.match != DkimMatch::kAuthUser) {
      for (char ch : r.value) FUZZ_CHECK(!(ch >= 'A' && ch <= 'Z') && ch != '@', fuzz::Escape(r.value));
    }
    for (const auto& key : r.keys) {
      FUZZ_CHECK(!key.domain.empty() && !key.selector.empty() && !key.key_file.empty());
      FUZZ_CHECK(key.algorithm.empty() || key.algorithm == "rsa-sha256" || key.algorithm == "ed25519-sha256");
      for (char ch : key.domain + key.selector) {
        FUZZ_CHECK(ch != ';' && ch != ' ' && ch != '=' && ch != '\r' && ch != '\n', "d=/s= would break the field");
      }
    }
  }
  return 0;
}
