#include "delivery/tls_rpt.h"

#include <ctime>

#include "common/escape.h"
#include "common/strings.h"

namespace mxr::delivery {
namespace {

std::string Rfc3339(int64_t s) {
  time_t t = static_cast<time_t>(s);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string J(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

TlsRptDomain* TlsRptCollector::Get(const std::string& domain, const StsPolicy& policy) {
  auto it = by_domain_.find(domain);
  if (it == by_domain_.end()) {
    if (by_domain_.size() >= kMaxDomains) {
      dropped_++;
      return nullptr;
    }
    it = by_domain_.emplace(domain, TlsRptDomain{}).first;
    it->second.domain = domain;
  }
  it->second.policy_text = policy.text;  // the latest policy of the period
  it->second.mx = policy.mx;
  return &it->second;
}

void TlsRptCollector::Success(const std::string& domain, const StsPolicy& policy) {
  if (TlsRptDomain* d = Get(domain, policy)) d->successes++;
}

void TlsRptCollector::Failure(const std::string& domain, const StsPolicy& policy, const std::string& result_type,
                              const std::string& mx_host, const std::string& ip) {
  TlsRptDomain* d = Get(domain, policy);
  if (d == nullptr) return;
  d->failures++;
  auto key = std::make_tuple(result_type, mx_host, ip);
  auto it = d->failure_rows.find(key);
  if (it != d->failure_rows.end()) {
    it->second++;
  } else if (d->failure_rows.size() < kMaxFailureRows) {
    d->failure_rows.emplace(key, 1);
  }
}

std::vector<TlsRptDomain> TlsRptCollector::Take() {
  std::vector<TlsRptDomain> out;
  out.reserve(by_domain_.size());
  for (auto& [k, v] : by_domain_) out.push_back(std::move(v));
  by_domain_.clear();
  return out;
}

std::string TlsRptReportJson(const TlsRptDomain& d, const std::string& organization, const std::string& contact,
                             const std::string& report_id, int64_t start_s, int64_t end_s) {
  std::string o = "{";
  o += Cat("\"organization-name\":", J(organization), ",");
  o += Cat("\"date-range\":{\"start-datetime\":", J(Rfc3339(start_s)), ",\"end-datetime\":", J(Rfc3339(end_s)),
           "},");
  o += Cat("\"contact-info\":", J(contact), ",");
  o += Cat("\"report-id\":", J(report_id), ",");
  o += "\"policies\":[{\"policy\":{";
  o += Cat("\"policy-type\":", J(d.policy_type), ",\"policy-string\":[");
  bool first = true;
  std::string_view text = d.policy_text;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    o += Cat(first ? "" : ",", J(line));
    first = false;
  }
  o += Cat("],\"policy-domain\":", J(d.domain));
  if (!d.mx.empty()) {
    o += ",\"mx-host\":[";
    for (size_t i = 0; i < d.mx.size(); ++i) o += Cat(i ? "," : "", J(d.mx[i]));
    o += "]";
  }
  o += Cat("},\"summary\":{\"total-successful-session-count\":", d.successes,
           ",\"total-failure-session-count\":", d.failures, "}");
  if (!d.failure_rows.empty()) {
    o += ",\"failure-details\":[";
    bool f = true;
    for (const auto& [key, n] : d.failure_rows) {
      const auto& [type, mx, ip] = key;
      o += Cat(f ? "" : ",", "{\"result-type\":", J(type));
      if (!ip.empty()) o += Cat(",\"receiving-ip\":", J(ip));
      if (!mx.empty()) o += Cat(",\"receiving-mx-hostname\":", J(mx));
      o += Cat(",\"failed-session-count\":", n, "}");
      f = false;
    }
    o += "]";
  }
  o += "}]}";
  return o;
}

std::vector<std::string> ParseTlsRptTxt(std::string_view txt) {
  std::vector<std::string> out;
  bool first = true;
  while (!txt.empty()) {
    size_t semi = txt.find(';');
    std::string_view field = Trim(txt.substr(0, semi));
    txt = semi == std::string_view::npos ? std::string_view() : txt.substr(semi + 1);
    if (field.empty()) continue;
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) return {};
    std::string_view k = Trim(field.substr(0, eq)), v = Trim(field.substr(eq + 1));
    if (first) {
      if (k != "v" || v != "TLSRPTv1") return {};
      first = false;
      continue;
    }
    if (k != "rua") continue;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view uri = Trim(v.substr(0, comma));
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
      if (uri.rfind("mailto:", 0) == 0 || uri.rfind("https://", 0) == 0) out.emplace_back(uri);
    }
  }
  return out;
}

}  // namespace mxr::delivery
