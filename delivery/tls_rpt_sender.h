// TLS-RPT (RFC 8460) report delivery: every `tls_rpt_interval` seconds the
// collector's counts are taken and, per policy domain, sent to each `rua`
// of its `_smtp._tls.<domain>` TXT record: `mailto:` as a message committed
// to our own spool (multipart/report; report-type="tlsrpt" with the gzip'd
// JSON as application/tlsrpt+gzip, null envelope sender so a failing report
// address cannot start a bounce loop), `https:` as a POST of the gzip'd
// JSON (Content-Type application/tlsrpt+gzip) through the StsFetcher's
// thread. A domain without a TLSRPTv1 record is skipped (counted).
//
// Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/config.h"
#include "delivery/mta_sts.h"
#include "delivery/stats.h"
#include "delivery/tls_rpt.h"
#include "queue/spool.h"

namespace mxr::delivery {

class Resolver;

// gzip (RFC 1952) of `in`.
std::string Gzip(std::string_view in);

// The RFC 8460 5.3 report message for one domain (mailto:). `to` without
// "mailto:". The body is CRLF text with the attachment base64'd.
queue::NewMessage BuildTlsRptMessage(const std::string& to, const std::string& domain, const std::string& json_gz,
                                     const std::string& organization, const std::string& report_id,
                                     int64_t start_s, int64_t end_s, const std::string& hostname,
                                     const queue::QueueId& id, int64_t now_us);

class TlsRptSender {
 public:
  struct Deps {
    const DeliveryConfig* cfg = nullptr;
    Resolver* resolver = nullptr;
    StsFetcher* https = nullptr;
    queue::Spool* spool = nullptr;
    queue::QueueIdGenerator* ids = nullptr;
    DeliveryStats* stats = nullptr;
    std::string hostname;
    std::function<int64_t()> now_us;
  };
  TlsRptSender(Deps deps, TlsRptCollector* collector);
  // Sends the period's reports once `tls_rpt_interval` has passed.
  void Tick();

 private:
  void Send(TlsRptDomain d, int64_t start_s, int64_t end_s);
  Deps deps_;
  TlsRptCollector* collector_;
  int64_t period_start_s_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace mxr::delivery
