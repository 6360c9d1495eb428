// TLS-RPT (RFC 8460): per policy domain, the outcome of every outbound
// session made under an MTA-STS policy (success, or a failure with its
// result type, receiving MX host and IP), and the aggregate report as the
// RFC's JSON.
//
//   TlsRptCollector c;
//   c.Success("example.com", policy);  c.Failure("example.com", policy, "starttls-not-supported", mx, ip);
//   std::string json = TlsRptReportJson(c.Take()[0], org, contact, report_id, start_s, end_s);
//
// Loop thread only. Bounded: at most kMaxDomains policy domains per period
// (later domains are not counted, and the overflow is counted), at most
// kMaxFailureRows distinct failure rows per domain (later ones are summed
// into the domain's failure count only).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "delivery/mta_sts.h"

namespace mxr::delivery {

struct TlsRptDomain {
  std::string domain;
  std::string policy_type = "sts";  // RFC 8460 4.4: "sts", "tlsa", "no-policy-found"
  std::string policy_text;          // the policy as fetched (policy-string lines)
  std::vector<std::string> mx;      // mx-host patterns
  uint64_t successes = 0;
  uint64_t failures = 0;
  // (result-type, receiving-mx-hostname, receiving-ip) -> sessions
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> failure_rows;
};

class TlsRptCollector {
 public:
  static constexpr size_t kMaxDomains = 10000;
  static constexpr size_t kMaxFailureRows = 100;

  void Success(const std::string& domain, const StsPolicy& policy);
  void Failure(const std::string& domain, const StsPolicy& policy, const std::string& result_type,
               const std::string& mx_host, const std::string& ip);
  // The period's counts (and a fresh period).
  std::vector<TlsRptDomain> Take();
  size_t domains() const { return by_domain_.size(); }
  uint64_t dropped() const { return dropped_; }

 private:
  TlsRptDomain* Get(const std::string& domain, const StsPolicy& policy);
  std::map<std::string, TlsRptDomain> by_domain_;
  uint64_t dropped_ = 0;
};

// RFC 8460 section 4 JSON for one policy domain; times are Unix seconds
// (written as RFC 3339 UTC).
std::string TlsRptReportJson(const TlsRptDomain& d, const std::string& organization, const std::string& contact,
                             const std::string& report_id, int64_t start_s, int64_t end_s);

// `_smtp._tls` TXT: "v=TLSRPTv1; rua=mailto:a@b,https://x/y" -> the rua
// URIs (mailto: and https: only); empty when not a TLSRPTv1 record.
std::vector<std::string> ParseTlsRptTxt(std::string_view txt);

}  // namespace mxr::delivery
