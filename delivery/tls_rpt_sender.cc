#include "delivery/tls_rpt_sender.h"

#include <zlib.h>

#include "absl/strings/escaping.h"
#include "common/escape.h"
#include "common/strings.h"
#include "delivery/resolver.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {

std::string Gzip(std::string_view in) {
  z_stream z{};
  std::string out;
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return out;
  out.resize(deflateBound(&z, in.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(rc == Z_STREAM_END ? z.total_out : 0);
  deflateEnd(&z);
  return out;
}

queue::NewMessage BuildTlsRptMessage(const std::string& to, const std::string& domain, const std::string& json_gz,
                                     const std::string& organization, const std::string& report_id,
                                     int64_t start_s, int64_t end_s, const std::string& hostname,
                                     const queue::QueueId& id, int64_t now_us) {
  std::string boundary = Cat("tlsrpt-", id.ToString());
  // RFC 8460 5.1: sender!policy-domain!begin!end!unique-id.json.gz
  std::string filename = Cat(organization, "!", domain, "!", start_s, "!", end_s, "!", report_id, ".json.gz");
  std::string b;
  b += Cat("From: TLS reporting <noreply-tlsrpt@", hostname, ">\r\n");
  b += Cat("To: <", to, ">\r\n");
  b += Cat("Subject: Report Domain: ", domain, " Submitter: ", organization, " Report-ID: <", report_id, ">\r\n");
  b += Cat("Date: ", Rfc5322Date(now_us), "\r\n");
  b += Cat("Message-ID: <", id.ToString(), ".tlsrpt@", hostname, ">\r\n");
  b += Cat("TLS-Report-Domain: ", domain, "\r\n");
  b += Cat("TLS-Report-Submitter: ", organization, "\r\n");
  b += "Auto-Submitted: auto-generated\r\n";
  b += "MIME-Version: 1.0\r\n";
  b += Cat("Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"", boundary, "\"\r\n\r\n");
  b += Cat("--", boundary, "\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n");
  b += Cat("This is an aggregate TLS report (RFC 8460) from ", organization, " for ", domain, ".\r\n\r\n");
  b += Cat("--", boundary, "\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n",
           "Content-Disposition: attachment;\r\n\tfilename=\"", filename, "\"\r\n\r\n");
  std::string b64;
  absl::Base64Escape(json_gz, &b64);
  for (size_t i = 0; i < b64.size(); i += 76) b += Cat(b64.substr(i, 76), "\r\n");
  b += Cat("\r\n--", boundary, "--\r\n");
  queue::NewMessage m;
  m.meta.id = id;
  m.meta.received_us = now_us;
  m.meta.next_attempt_us = now_us;
  m.meta.sender = "";  // no bounce for a report (RFC 8460 leaves it to us; avoids loops)
  m.meta.recipients = {queue::Recipient{to}};
  m.meta.helo = hostname;
  m.meta.client_ip = "127.0.0.1";
  m.body = std::move(b);
  m.meta.body_size = m.body.size();
  return m;
}

TlsRptSender::TlsRptSender(Deps deps, TlsRptCollector* collector)
    : deps_(std::move(deps)), collector_(collector) {
  period_start_s_ = deps_.now_us() / 1'000'000;
}

void TlsRptSender::Tick() {
  if (deps_.cfg->tls_rpt_interval <= 0) return;
  int64_t now_s = deps_.now_us() / 1'000'000;
  if (now_s - period_start_s_ < deps_.cfg->tls_rpt_interval) return;
  int64_t start = period_start_s_;
  period_start_s_ = now_s;
  for (auto& d : collector_->Take()) Send(std::move(d), start, now_s);
}

void TlsRptSender::Send(TlsRptDomain d, int64_t start_s, int64_t end_s) {
  std::string domain = d.domain;
  deps_.resolver->ResolveTxt(Cat("_smtp._tls.", domain), [this, d = std::move(d), start_s, end_s](
                                                             bool ok, std::vector<std::string> txts) {
    std::vector<std::string> rua;
    for (const auto& t : txts) {
      auto r = ParseTlsRptTxt(t);
      if (!r.empty()) {
        rua = std::move(r);
        break;
      }
    }
    if (rua.empty()) {
      deps_.stats->tls_rpt_no_rua++;
      spdlog::info("event=tls_rpt_skipped domain={} reason=\"{}\"", d.domain,
                   ok ? "no TLSRPTv1 record" : "DNS lookup failed");
      return;
    }
    const std::string org = deps_.cfg->tls_rpt_organization.empty() ? deps_.hostname : deps_.cfg->tls_rpt_organization;
    const std::string contact =
        deps_.cfg->tls_rpt_contact.empty() ? Cat("postmaster@", deps_.hostname) : deps_.cfg->tls_rpt_contact;
    std::string report_id = Cat(end_s, ".", ++seq_, "@", deps_.hostname);
    std::string gz = Gzip(TlsRptReportJson(d, org, contact, report_id, start_s, end_s));
    for (const auto& uri : rua) {
      if (uri.rfind("mailto:", 0) == 0) {
        std::string to = uri.substr(7);
        size_t q = to.find('?');
        if (q != std::string::npos) to.resize(q);
        queue::NewMessage m = BuildTlsRptMessage(to, d.domain, gz, org, report_id, start_s, end_s, deps_.hostname,
                                                 deps_.ids->Next(), deps_.now_us());
        std::string qid = m.meta.id.ToString();
        DeliveryStats* stats = deps_.stats;
        std::string dom = d.domain;
        deps_.spool->Commit(std::move(m), [stats, qid, dom, to](absl::Status st) {
          if (st.ok()) {
            stats->tls_rpt_sent++;
            spdlog::info("event=tls_rpt_queued domain={} rua=mailto:{} id={}", dom, LogEscape(to), qid);
          } else {
            stats->tls_rpt_failed++;
            spdlog::error("event=tls_rpt_failed domain={} rua=mailto:{} error=\"{}\"", dom, LogEscape(to),
                          LogEscape(st.ToString()));
          }
        });
      } else {
        // https://host[:port]/path: the host resolved by our resolver, pinned for curl.
        std::string rest = uri.substr(8);
        std::string hostport = rest.substr(0, rest.find('/'));
        std::string host = hostport.substr(0, hostport.find(':'));
        std::string port = hostport.find(':') == std::string::npos ? "443" : hostport.substr(hostport.find(':') + 1);
        std::string dom = d.domain;
        deps_.resolver->ResolveHost(host, [this, uri, host, port, gz, dom](const AddrAnswer& a) {
          if (a.outcome != DnsOutcome::kOk || a.addrs.empty()) {
            deps_.stats->tls_rpt_failed++;
            spdlog::error("event=tls_rpt_failed domain={} rua={} error=\"cannot resolve {}\"", dom, LogEscape(uri),
                          host);
            return;
          }
          std::string ip = a.addrs.front().ToString();
          if (ip.find(':') != std::string::npos) ip = Cat("[", ip, "]");
          deps_.https->Post(uri, Cat(host, ":", port, ":", ip), gz, "application/tlsrpt+gzip",
                            [this, uri, dom](StsFetcher::Result r) {
                              if (r.ok) {
                                deps_.stats->tls_rpt_sent++;
                                spdlog::info("event=tls_rpt_posted domain={} rua={} status={}", dom,
                                             LogEscape(uri), r.http_status);
                              } else {
                                deps_.stats->tls_rpt_failed++;
                                spdlog::error("event=tls_rpt_failed domain={} rua={} error=\"{}\"", dom,
                                              LogEscape(uri), LogEscape(r.error));
                              }
                            });
        });
      }
    }
  });
}

}  // namespace mxr::delivery
