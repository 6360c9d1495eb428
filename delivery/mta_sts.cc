#include "delivery/mta_sts.h"

#include <algorithm>
#include <utility>

#include "common/strings.h"
#include "delivery/resolver.h"
#include "delivery/site.h"

#include <openssl/x509_vfy.h>
#include "spdlog/spdlog.h"
#include "common/escape.h"

namespace mxr::delivery {
namespace {

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return o;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool IdChars(std::string_view id) {
  if (id.empty() || id.size() > 32) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

}  // namespace

const char* StsModeName(StsMode m) {
  switch (m) {
    case StsMode::kNone: return "none";
    case StsMode::kTesting: return "testing";
    case StsMode::kEnforce: return "enforce";
  }
  return "none";
}

// RFC 8461 3.1: "v=STSv1; id=<1-32 alnum>;" with optional extensions; the
// record must begin with v=STSv1.
std::optional<std::string> ParseStsTxt(std::string_view txt) {
  std::optional<std::string> id;
  bool first = true;
  while (!txt.empty()) {
    size_t semi = txt.find(';');
    std::string_view field = Trim(txt.substr(0, semi));
    txt = semi == std::string_view::npos ? std::string_view() : txt.substr(semi + 1);
    if (field.empty()) continue;
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string_view k = Trim(field.substr(0, eq)), v = Trim(field.substr(eq + 1));
    if (first) {
      if (k != "v" || v != "STSv1") return std::nullopt;
      first = false;
      continue;
    }
    if (k == "id") {
      if (!IdChars(v)) return std::nullopt;
      id = std::string(v);
    }
  }
  return id;
}

// RFC 8461 3.2: "key: value" lines (CRLF or LF); version, mode, max_age
// required, mx required unless mode is none.
std::optional<StsPolicy> ParseStsPolicy(std::string_view body, std::string* error) {
  StsPolicy p;
  bool version = false, mode = false, age = false;
  size_t lines = 0;
  while (!body.empty()) {
    if (++lines > 1000) {
      *error = "too many lines";
      return std::nullopt;
    }
    size_t nl = body.find('\n');
    std::string_view line = Trim(body.substr(0, nl));
    body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      *error = "a line without ':'";
      return std::nullopt;
    }
    std::string_view k = Trim(line.substr(0, colon)), v = Trim(line.substr(colon + 1));
    if (k == "version") {
      if (v != "STSv1") {
        *error = "version is not STSv1";
        return std::nullopt;
      }
      version = true;
    } else if (k == "mode") {
      if (v == "enforce") {
        p.mode = StsMode::kEnforce;
      } else if (v == "testing") {
        p.mode = StsMode::kTesting;
      } else if (v == "none") {
        p.mode = StsMode::kNone;
      } else {
        *error = "mode must be enforce, testing or none";
        return std::nullopt;
      }
      mode = true;
    } else if (k == "max_age") {
      int64_t n = 0;
      if (v.empty() || v.size() > 18) {
        *error = "bad max_age";
        return std::nullopt;
      }
      for (char c : v) {
        if (c < '0' || c > '9') {
          *error = "bad max_age";
          return std::nullopt;
        }
        n = n * 10 + (c - '0');
      }
      p.max_age = std::min<int64_t>(n, 31557600);  // RFC 8461: at most one year
      age = true;
    } else if (k == "mx") {
      if (v.empty() || p.mx.size() >= 100) {
        *error = "bad mx";
        return std::nullopt;
      }
      p.mx.push_back(Lower(v));
    }  // unknown keys are ignored (extensions)
  }
  if (!version || !mode || !age) {
    *error = "version, mode and max_age are required";
    return std::nullopt;
  }
  if (p.mode != StsMode::kNone && p.mx.empty()) {
    *error = "no mx pattern";
    return std::nullopt;
  }
  return p;
}

bool StsMxMatches(std::string_view pattern, std::string_view host) {
  std::string h = Lower(host);
  if (!h.empty() && h.back() == '.') h.pop_back();
  std::string p = Lower(pattern);
  if (!p.empty() && p.back() == '.') p.pop_back();
  if (p.rfind("*.", 0) == 0) {
    std::string_view suffix = std::string_view(p).substr(1);  // ".example.net"
    if (h.size() <= suffix.size() || h.compare(h.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    // The wildcard covers exactly one label.
    return h.substr(0, h.size() - suffix.size()).find('.') == std::string::npos;
  }
  return p == h;
}

bool StsAnyMxMatches(const StsPolicy& p, std::string_view host) {
  for (const auto& m : p.mx) {
    if (StsMxMatches(m, host)) return true;
  }
  return false;
}

// ------------------------------------------------------------------ cache

MtaSts::MtaSts(Resolver* resolver, StsFetcher* fetcher, const MtaStsConfig& cfg, std::function<int64_t()> now_s)
    : resolver_(resolver), fetcher_(fetcher), cfg_(cfg), now_s_(std::move(now_s)) {}

StsLookup MtaSts::Current(const Entry& e) const {
  StsLookup r;
  if (e.policy && e.expires_s > now_s_()) r.policy = e.policy;
  r.failure = e.last_failure;
  r.detail = e.last_detail;
  return r;
}

void MtaSts::Lookup(const std::string& domain, std::function<void(const StsLookup&)> done) {
  int64_t now = now_s_();
  if (cache_.size() >= kMaxEntries && !cache_.count(domain)) {
    // Bounded: forget the idle domains without a policy in force.
    std::erase_if(cache_, [now](const auto& kv) {
      const Entry& x = kv.second;
      return !x.busy && x.waiting.empty() && (!x.policy || x.expires_s <= now);
    });
  }
  Entry& e = cache_[domain];
  if (!e.busy && now - e.txt_checked_s < cfg_.txt_recheck && e.txt_checked_s > 0) {
    return done(Current(e));
  }
  e.waiting.push_back(std::move(done));
  if (e.busy) return;
  e.busy = true;
  resolver_->ResolveTxt(Cat("_mta-sts.", domain), [this, domain](bool ok, std::vector<std::string> txts) {
    OnTxt(domain, ok, std::move(txts));
  });
}

void MtaSts::OnTxt(const std::string& domain, bool ok, std::vector<std::string> txts) {
  Entry& e = cache_[domain];
  if (!ok) return Finish(domain);  // DNS trouble: a cached policy stays, checked again next time
  e.txt_checked_s = now_s_();
  std::optional<std::string> id;
  int valid = 0;
  for (const auto& t : txts) {
    if (auto i = ParseStsTxt(t)) {
      id = i;
      valid++;
    }
  }
  if (valid != 1) {
    // No record (or several: RFC 8461 3.1 says treat as none): a cached
    // policy that has not expired stays in force (5.1).
    e.last_failure.clear();
    e.last_detail.clear();
    return Finish(domain);
  }
  // The same policy, not yet in the second half of its max_age: kept. In the
  // second half it is fetched again (refresh, RFC 8461 10.2), and a failed
  // refresh keeps it until it expires.
  if (e.policy && e.policy->id == *id && e.expires_s - now_s_() > e.policy->max_age / 2) return Finish(domain);
  std::string host = Cat("mta-sts.", domain);
  resolver_->ResolveHost(host, [this, domain, host, id = *id](const AddrAnswer& a) {
    if (a.outcome != DnsOutcome::kOk || a.addrs.empty()) {
      StsFetcher::Result r;
      r.error = Cat("cannot resolve ", host, ": ", a.error);
      return Fetched(domain, id, std::move(r));
    }
    std::string ip = a.addrs.front().ToString();
    if (ip.find(':') != std::string::npos) ip = Cat("[", ip, "]");
    std::string url = Cat("https://", host, cfg_.https_port == 443 ? "" : Cat(":", cfg_.https_port),
                          "/.well-known/mta-sts.txt");
    fetcher_->Fetch(url, Cat(host, ":", cfg_.https_port, ":", ip),
                    [this, domain, id](StsFetcher::Result r) { Fetched(domain, id, std::move(r)); });
  });
}

void MtaSts::Fetched(const std::string& domain, const std::string& id, StsFetcher::Result r) {
  Entry& e = cache_[domain];
  if (!r.ok) {
    spdlog::warn("event=mta_sts_fetch_failed domain={} error=\"{}\" cached_policy={}", domain, LogEscape(r.error),
                 e.policy && e.expires_s > now_s_() ? StsModeName(e.policy->mode) : "none");
    return Finish(domain, r.tls_error ? "sts-webpki-invalid" : "sts-policy-fetch-error", r.error);
  }
  std::string why;
  auto p = ParseStsPolicy(r.body, &why);
  if (!p) {
    spdlog::warn("event=mta_sts_policy_invalid domain={} error=\"{}\"", domain, LogEscape(why));
    return Finish(domain, "sts-policy-invalid", why);
  }
  p->id = id;
  p->text = r.body.substr(0, 4096);
  e.policy = std::move(p);
  e.expires_s = now_s_() + e.policy->max_age;
  spdlog::info("event=mta_sts_policy domain={} mode={} id={} max_age={} mx={}", domain,
               StsModeName(e.policy->mode), id, e.policy->max_age, e.policy->mx.size());
  Finish(domain);
}

void MtaSts::Finish(const std::string& domain, std::string failure, std::string detail) {
  Entry& e = cache_[domain];
  e.busy = false;
  e.last_failure = std::move(failure);
  e.last_detail = std::move(detail);
  auto waiting = std::move(e.waiting);
  e.waiting.clear();
  StsLookup r = Current(e);
  for (auto& w : waiting) w(r);
}

}  // namespace mxr::delivery

namespace mxr::delivery {

bool ApplyStsPolicy(const StsLookup& l, const std::string& domain, std::vector<std::string>* hosts,
                    SiteSettings* settings, std::string* why) {
  if (!l.policy || l.policy->mode == StsMode::kNone) return true;
  settings->sts_domain = domain;
  settings->sts = std::make_shared<const StsPolicy>(*l.policy);
  if (l.policy->mode != StsMode::kEnforce) return true;
  std::vector<std::string> ok;
  for (const auto& h : *hosts) {
    if (StsAnyMxMatches(*l.policy, h)) ok.push_back(h);
  }
  if (ok.empty()) {
    std::string list;
    for (const auto& h : *hosts) list += Cat(list.empty() ? "" : ",", h);
    *why = Cat("MTA-STS policy of ", domain, " (enforce) matches none of its MX hosts (", list, ")");
    return false;
  }
  *hosts = std::move(ok);
  settings->tls = TlsPolicy::kRequiredVerify;  // never clear text, never an unverified certificate
  return true;
}

const char* TlsRptResultForVerifyCode(long code) {
  switch (code) {
    case X509_V_OK: return "validation-failure";
    case X509_V_ERR_HOSTNAME_MISMATCH: return "certificate-host-mismatch";
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return "certificate-expired";
    default: return "certificate-not-trusted";
  }
}

}  // namespace mxr::delivery
