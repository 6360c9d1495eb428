#include "common/config.h"

#include <unistd.h>

#include <cctype>
#include <ctime>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>

#include "common/strings.h"

#include "common/status.h"
#include "toml++/toml.h"

namespace mxr {
namespace {

std::string Where(std::string_view source, const toml::node& node) {
  const auto& src = node.source();
  return Cat(source, ":", static_cast<unsigned>(src.begin.line));
}

// Walks one TOML table: typed getters that record which keys were used, then
// Finish() rejects any key nobody asked for (typos must not pass silently).
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, std::string_view source)
      : table_(table), prefix_(std::move(prefix)), source_(source) {}

  absl::Status Str(const char* key, std::string* out) {
    return Get<std::string>(key, "a string", [&](const toml::node& n) {
      *out = *n.value<std::string>();
      return absl::OkStatus();
    });
  }
  absl::Status Bool(const char* key, bool* out) {
    return Get<bool>(key, "true or false", [&](const toml::node& n) {
      *out = *n.value<bool>();
      return absl::OkStatus();
    });
  }
  template <typename T>
  absl::Status Int(const char* key, T* out, int64_t min, int64_t max) {
    return Get<int64_t>(key, "an integer", [&](const toml::node& n) -> absl::Status {
      int64_t v = *n.value<int64_t>();
      if (v < min || v > max) {
        return Error(key, n, Cat("must be between ", min, " and ", max, ", got ", v));
      }
      *out = static_cast<T>(v);
      return absl::OkStatus();
    });
  }
  absl::Status StrList(const char* key, std::vector<std::string>* out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return absl::OkStatus();
    const toml::array* arr = n->as_array();
    if (arr == nullptr) return Error(key, *n, "expected an array of strings");
    out->clear();
    for (const toml::node& el : *arr) {
      auto s = el.value<std::string>();
      if (!s) return Error(key, el, "expected an array of strings");
      out->push_back(*s);
    }
    return absl::OkStatus();
  }
  const toml::table* SubTable(const char* key, absl::Status* status) {
    const toml::node* n = Find(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) {
      *status = Error(key, *n, "expected a table");
      return nullptr;
    }
    return n->as_table();
  }
  const toml::array* ArrayOfTables(const char* key, absl::Status* status) {
    const toml::node* n = Find(key);
    if (n == nullptr) return nullptr;
    if (!n->is_array_of_tables()) {
      *status = Error(key, *n, Cat("expected an array of tables ([[", key, "]])"));
      return nullptr;
    }
    return n->as_array();
  }
  void Used(const char* key) { used_.insert(key); }  // read by the caller itself
  absl::Status Error(std::string_view key, const toml::node& n, std::string_view what) const {
    return absl::InvalidArgumentError(
        Cat(Where(source_, n), ": ", prefix_, key, ": ", what));
  }
  absl::Status Finish() const {
    for (const auto& [k, v] : table_) {
      if (!used_.count(std::string(k.str()))) {
        return absl::InvalidArgumentError(Cat(
            source_, ":", static_cast<unsigned>(k.source().begin.line), ": unknown key '", prefix_, k.str(), "'"));
      }
    }
    return absl::OkStatus();
  }

 private:
  const toml::node* Find(const char* key) {
    used_.insert(key);
    return table_.get(key);
  }
  template <typename T>
  absl::Status Get(const char* key, const char* expected,
                   const std::function<absl::Status(const toml::node&)>& set) {
    const toml::node* n = Find(key);
    if (n == nullptr) return absl::OkStatus();
    // The node's type first: toml++ converts a float to int64_t before its
    // range check (UB for 1e30), so value<int64_t>() must never see one.
    bool type_ok = true;
    if constexpr (std::is_same_v<T, int64_t>) type_ok = n->is_integer();
    if constexpr (std::is_same_v<T, bool>) type_ok = n->is_boolean();
    if constexpr (std::is_same_v<T, std::string>) type_ok = n->is_string();
    if (!type_ok || !n->value<T>()) {
      return Error(key, *n, Cat("expected ", expected));
    }
    return set(*n);
  }

  const toml::table& table_;
  std::string prefix_;
  std::string_view source_;
  std::set<std::string> used_;
};

// For an error about a combination of keys: the node of the first of `keys`
// present in `t` (so the message points at the line at fault), else `t`.
const toml::node& KeyOr(const toml::table& t, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    if (const toml::node* n = t.get(k)) return *n;
  }
  return t;
}

absl::Status ParseListener(const toml::table& t, std::string prefix, std::string_view source,
                           ListenerConfig* l) {
  TableReader r(t, prefix, source);
  MXR_RETURN_IF_ERROR(r.Str("name", &l->name));
  MXR_RETURN_IF_ERROR(r.Str("address", &l->address));
  MXR_RETURN_IF_ERROR(r.Int("port", &l->port, 1, 65535));
  std::string mode(ListenerModeName(l->mode));
  MXR_RETURN_IF_ERROR(r.Str("mode", &mode));
  if (mode == "starttls") {
    l->mode = ListenerMode::kStartTls;
  } else if (mode == "implicit_tls") {
    l->mode = ListenerMode::kImplicitTls;
  } else if (mode == "plain") {
    l->mode = ListenerMode::kPlain;
  } else {
    return r.Error("mode", *t.get("mode"), "must be 'starttls', 'implicit_tls' or 'plain'");
  }
  MXR_RETURN_IF_ERROR(r.Bool("auth_without_tls", &l->auth_without_tls));
  MXR_RETURN_IF_ERROR(r.Bool("proxy_protocol", &l->proxy_protocol));
  std::vector<std::string> from;
  MXR_RETURN_IF_ERROR(r.StrList("proxy_from", &from));
  for (const auto& f : from) {
    auto cidr = Cidr::Parse(f);
    if (!cidr.ok()) return r.Error("proxy_from", *t.get("proxy_from"), std::string(cidr.status().message()));
    l->proxy_from.push_back(*cidr);
  }
  if (l->proxy_protocol && l->proxy_from.empty()) {
    return r.Error("proxy_protocol", *t.get("proxy_protocol"),
                   "needs proxy_from: the addresses of the proxies allowed to send the header "
                   "(e.g. proxy_from = [\"10.0.0.5/32\"])");
  }
  if (!l->proxy_protocol && !l->proxy_from.empty()) {
    return r.Error("proxy_from", *t.get("proxy_from"), "is only used with proxy_protocol = true");
  }
  if (!IpAddress::Parse(l->address).ok()) {
    return r.Error("address", *t.get("address"), "must be an IP address (e.g. 0.0.0.0 or ::)");
  }
  if (l->name.empty()) l->name = Cat(mode, "-", l->port);
  return r.Finish();
}

absl::Status ParseTlsPolicy(TableReader& r, const toml::table& t, const char* key,
                           TlsPolicy* out, bool* set = nullptr) {
  std::string v;
  MXR_RETURN_IF_ERROR(r.Str(key, &v));
  if (!t.get(key)) return absl::OkStatus();
  if (v == "none") {
    *out = TlsPolicy::kNone;
  } else if (v == "opportunistic") {
    *out = TlsPolicy::kOpportunistic;
  } else if (v == "required") {
    *out = TlsPolicy::kRequired;
  } else if (v == "required_verify") {
    *out = TlsPolicy::kRequiredVerify;
  } else {
    return r.Error(key, *t.get(key),
                   "must be 'none', 'opportunistic', 'required' or 'required_verify'");
  }
  if (set) *set = true;
  return absl::OkStatus();
}

absl::Status ParseDelivery(const toml::table& t, std::string_view source, DeliveryConfig* d) {
  TableReader r(t, "delivery.", source);
  MXR_RETURN_IF_ERROR(r.Bool("enabled", &d->enabled));
  MXR_RETURN_IF_ERROR(r.Int("port", &d->port, 1, 65535));
  MXR_RETURN_IF_ERROR(r.Str("helo_name", &d->helo_name));
  MXR_RETURN_IF_ERROR(r.Str("source_address", &d->source_address));
  if (!d->source_address.empty() && !IpAddress::Parse(d->source_address).ok()) {
    return r.Error("source_address", *t.get("source_address"), "must be an IP address");
  }
  MXR_RETURN_IF_ERROR(r.Str("resolver", &d->resolver));
  MXR_RETURN_IF_ERROR(ParseTlsPolicy(r, t, "tls", &d->tls));
  MXR_RETURN_IF_ERROR(r.Int("max_connections_per_site", &d->max_connections_per_site, 1, 10000));
  MXR_RETURN_IF_ERROR(r.Int("initial_window", &d->initial_window, 1, 10000));
  MXR_RETURN_IF_ERROR(r.Int("max_messages_per_connection", &d->max_messages_per_connection, 1, 1000000));
  MXR_RETURN_IF_ERROR(r.Int("max_recipients_per_transaction", &d->max_recipients_per_transaction, 1, 10000));
  MXR_RETURN_IF_ERROR(r.Int("idle_timeout", &d->idle_timeout, 0, 3600));
  MXR_RETURN_IF_ERROR(r.Int("retry_initial", &d->retry_initial, 1, 86400));
  MXR_RETURN_IF_ERROR(r.Int("retry_max", &d->retry_max, 1, 7 * 86400));
  MXR_RETURN_IF_ERROR(r.Int("max_age", &d->max_age, 1, 60 * 86400));
  MXR_RETURN_IF_ERROR(r.Int("delay_dsn_after", &d->delay_dsn_after, 0, 60 * 86400));
  MXR_RETURN_IF_ERROR(r.Str("tls_ca_file", &d->tls_ca_file));
  MXR_RETURN_IF_ERROR(r.Bool("mta_sts", &d->mta_sts.enabled));
  MXR_RETURN_IF_ERROR(r.Int("mta_sts_https_port", &d->mta_sts.https_port, 1, 65535));
  MXR_RETURN_IF_ERROR(r.Str("mta_sts_ca_file", &d->mta_sts.ca_file));
  MXR_RETURN_IF_ERROR(r.Int("mta_sts_fetch_timeout", &d->mta_sts.fetch_timeout, 1, 300));
  MXR_RETURN_IF_ERROR(r.Int("mta_sts_txt_recheck", &d->mta_sts.txt_recheck, 0, 86400));
  MXR_RETURN_IF_ERROR(r.Int("tls_rpt_interval", &d->tls_rpt_interval, 0, 7 * 86400));
  MXR_RETURN_IF_ERROR(r.Str("tls_rpt_organization", &d->tls_rpt_organization));
  MXR_RETURN_IF_ERROR(r.Str("tls_rpt_contact", &d->tls_rpt_contact));
  MXR_RETURN_IF_ERROR(r.Int("site_backoff_initial", &d->site_backoff_initial, 1, 86400));
  MXR_RETURN_IF_ERROR(r.Int("site_backoff_max", &d->site_backoff_max, 1, 7 * 86400));
  MXR_RETURN_IF_ERROR(r.Int("dns_ttl_min", &d->dns_ttl_min, 0, 86400));
  MXR_RETURN_IF_ERROR(r.Int("dns_ttl_max", &d->dns_ttl_max, 0, 7 * 86400));
  MXR_RETURN_IF_ERROR(r.Int("dns_timeout_ms", &d->dns_timeout_ms, 100, 60000));
  MXR_RETURN_IF_ERROR(r.Str("event_log", &d->event_log));
  MXR_RETURN_IF_ERROR(r.Int("connect_timeout", &d->connect_timeout, 1, 3600));
  MXR_RETURN_IF_ERROR(r.Int("banner_timeout", &d->banner_timeout, 1, 3600));
  MXR_RETURN_IF_ERROR(r.Int("command_timeout", &d->command_timeout, 1, 3600));
  MXR_RETURN_IF_ERROR(r.Int("data_timeout", &d->data_timeout, 1, 3600));
  MXR_RETURN_IF_ERROR(r.Int("drain_timeout", &d->drain_timeout, 0, 3600));
  MXR_RETURN_IF_ERROR(r.Int("max_body_memory", &d->max_body_memory, 1 << 20, int64_t{1} << 40));
  if (t.get("deny_networks")) {
    std::vector<std::string> nets;
    MXR_RETURN_IF_ERROR(r.StrList("deny_networks", &nets));
    d->deny_networks.clear();
    for (const auto& n : nets) {
      auto cidr = Cidr::Parse(n);
      if (!cidr.ok()) return r.Error("deny_networks", *t.get("deny_networks"), std::string(cidr.status().message()));
      d->deny_networks.push_back(*cidr);
    }
  }
  if (d->initial_window > d->max_connections_per_site) d->initial_window = d->max_connections_per_site;
  if (d->retry_max < d->retry_initial) {
    return r.Error("retry_max", KeyOr(t, {"retry_max", "retry_initial"}), "must be >= retry_initial");
  }
  if (d->dns_ttl_max < d->dns_ttl_min) {
    return r.Error("dns_ttl_max", KeyOr(t, {"dns_ttl_max", "dns_ttl_min"}), "must be >= dns_ttl_min");
  }
  return r.Finish();
}

absl::Status ParseRoute(const toml::table& t, std::string prefix, std::string_view source,
                        RouteConfig* rt) {
  TableReader r(t, prefix, source);
  MXR_RETURN_IF_ERROR(r.Str("domain", &rt->domain));
  if (rt->domain.empty()) {
    return r.Error("domain", t, "is required (a domain name or \"*\")");
  }
  for (char& ch : rt->domain) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  MXR_RETURN_IF_ERROR(r.Str("host", &rt->host));
  MXR_RETURN_IF_ERROR(r.Int("port", &rt->port, 1, 65535));
  MXR_RETURN_IF_ERROR(ParseTlsPolicy(r, t, "tls", &rt->tls, &rt->tls_set));
  MXR_RETURN_IF_ERROR(r.Str("auth_user", &rt->auth_user));
  MXR_RETURN_IF_ERROR(r.Str("auth_password", &rt->auth_password));
  MXR_RETURN_IF_ERROR(r.Int("max_connections", &rt->max_connections, 0, 10000));
  MXR_RETURN_IF_ERROR(r.Bool("auth_over_unverified_tls", &rt->auth_over_unverified_tls));
  MXR_RETURN_IF_ERROR(r.Str("pool", &rt->pool));
  if (!rt->auth_user.empty() && rt->host.empty()) {
    return r.Error("auth_user", KeyOr(t, {"auth_user"}), "needs 'host' (AUTH is only for smarthost routes)");
  }
  if (rt->auth_over_unverified_tls && rt->auth_user.empty()) {
    return r.Error("auth_over_unverified_tls", KeyOr(t, {"auth_over_unverified_tls"}),
                   "only applies to a route with auth_user");
  }
  if (!rt->auth_user.empty() && rt->tls_set && rt->tls != TlsPolicy::kRequired &&
      rt->tls != TlsPolicy::kRequiredVerify) {
    return r.Error("tls", KeyOr(t, {"tls"}), "must be 'required' or 'required_verify' when auth_user is set");
  }
  if (!rt->auth_user.empty() && rt->tls == TlsPolicy::kRequired && !rt->auth_over_unverified_tls) {
    return r.Error("tls", KeyOr(t, {"tls"}),
                   "'required' does not verify the certificate, so whoever can intercept the connection "
                   "receives the AUTH password: use 'required_verify', or set auth_over_unverified_tls = "
                   "true to accept that risk");
  }
  if (!rt->auth_user.empty() && !rt->tls_set) {
    rt->tls = TlsPolicy::kRequiredVerify;  // never send a password in clear or to an unverified peer
    rt->tls_set = true;
  }
  return r.Finish();
}

// A DNS name made of letter-digit-hyphen labels (DKIM d= and s=).
bool IsLdhName(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.') return false;
  size_t label = 0;
  for (char ch : s) {
    if (ch == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_';
    if (!ok || ++label > 63) return false;
  }
  return true;
}

absl::Status ParseDkimFallback(TableReader& r, const toml::table& t, const char* key, DkimFallback* out) {
  std::string v;
  MXR_RETURN_IF_ERROR(r.Str(key, &v));
  if (!t.get(key)) return absl::OkStatus();
  if (v == "send_unsigned") {
    *out = DkimFallback::kSendUnsigned;
  } else if (v == "defer") {
    *out = DkimFallback::kDefer;
  } else {
    return r.Error(key, *t.get(key), "must be 'send_unsigned' or 'defer'");
  }
  return absl::OkStatus();
}

absl::Status ParseDkimHeaderList(TableReader& r, const toml::table& t, const char* key,
                                 std::vector<std::string>* out) {
  MXR_RETURN_IF_ERROR(r.StrList(key, out));
  for (const auto& h : *out) {
    bool ok = !h.empty();
    for (char ch : h) ok &= ch > 32 && ch < 127 && ch != ':';
    if (!ok) return r.Error(key, *t.get(key), Cat("'", h, "' is not a header field name"));
  }
  return absl::OkStatus();
}

absl::Status ParseDkimKey(const toml::table& t, std::string prefix, std::string_view source, DkimKeyConfig* k) {
  TableReader r(t, prefix, source);
  MXR_RETURN_IF_ERROR(r.Str("domain", &k->domain));
  MXR_RETURN_IF_ERROR(r.Str("selector", &k->selector));
  MXR_RETURN_IF_ERROR(r.Str("algorithm", &k->algorithm));
  MXR_RETURN_IF_ERROR(r.Str("key_file", &k->key_file));
  for (const char* req : {"domain", "selector", "key_file"}) {
    if (!t.get(req)) return r.Error(req, t, "is required");
  }
  for (char& ch : k->domain) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!IsLdhName(k->domain)) {
    return r.Error("domain", *t.get("domain"), Cat("'", k->domain, "' is not a domain name (d=; IDNs in A-label form)"));
  }
  if (!IsLdhName(k->selector)) {
    return r.Error("selector", *t.get("selector"), Cat("'", k->selector, "' is not a selector (letters, digits, '-', '.')"));
  }
  if (!k->algorithm.empty() && k->algorithm != "rsa-sha256" && k->algorithm != "ed25519-sha256") {
    return r.Error("algorithm", *t.get("algorithm"), "must be 'rsa-sha256' or 'ed25519-sha256' (or left out: from the key)");
  }
  if (k->key_file.empty()) return r.Error("key_file", *t.get("key_file"), "must not be empty");
  return r.Finish();
}

absl::Status ParseDkimRule(const toml::table& t, std::string prefix, std::string_view source, DkimRuleConfig* rule) {
  TableReader r(t, prefix, source);
  int kinds = 0;
  for (auto [key, match] : {std::pair{"from_domain", DkimMatch::kFromDomain},
                            std::pair{"envelope_domain", DkimMatch::kEnvelopeDomain},
                            std::pair{"auth_user", DkimMatch::kAuthUser}}) {
    std::string v;
    MXR_RETURN_IF_ERROR(r.Str(key, &v));
    if (!t.get(key)) continue;
    ++kinds;
    rule->match = match;
    rule->value = v;
    if (match != DkimMatch::kAuthUser) {
      for (char& ch : rule->value) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string_view d = rule->value;
      if (d.size() > 2 && d.substr(0, 2) == "*.") d.remove_prefix(2);
      if (d != "*" && (d.empty() || d.find_first_of(" \t@*") != std::string_view::npos)) {
        return r.Error(key, *t.get(key), Cat("'", v, "' is not a domain, \"*.domain\" or \"*\""));
      }
    } else if (v.empty()) {
      return r.Error(key, *t.get(key), "must not be empty (\"*\" = any authenticated user)");
    }
  }
  if (kinds != 1) {
    return r.Error("from_domain", t, "needs exactly one of from_domain, envelope_domain, auth_user");
  }
  absl::Status st;
  const toml::array* keys = r.ArrayOfTables("keys", &st);
  MXR_RETURN_IF_ERROR(st);
  if (keys == nullptr || keys->empty()) {
    return r.Error("keys", t, "needs at least one key: keys = [{ domain = ..., selector = ..., key_file = ... }]");
  }
  int i = 0;
  for (const toml::node& n : *keys) {
    DkimKeyConfig k;
    MXR_RETURN_IF_ERROR(ParseDkimKey(*n.as_table(), Cat(prefix, "keys[", i++, "]."), source, &k));
    rule->keys.push_back(std::move(k));
  }
  return r.Finish();
}

absl::Status ParseDkim(const toml::table& t, std::string_view source, DkimConfig* d) {
  TableReader r(t, "dkim.", source);
  std::string canon;
  MXR_RETURN_IF_ERROR(r.Str("canonicalization", &canon));
  if (t.get("canonicalization")) {
    auto one = [](std::string_view s, DkimCanon* out) {
      if (s == "simple") {
        *out = DkimCanon::kSimple;
      } else if (s == "relaxed") {
        *out = DkimCanon::kRelaxed;
      } else {
        return false;
      }
      return true;
    };
    size_t slash = canon.find('/');
    std::string_view hv = std::string_view(canon).substr(0, slash);
    std::string_view bv = slash == std::string::npos ? "simple" : std::string_view(canon).substr(slash + 1);
    if (!one(hv, &d->header_canon) || !one(bv, &d->body_canon)) {
      return r.Error("canonicalization", *t.get("canonicalization"),
                     "must be 'relaxed/relaxed', 'relaxed/simple', 'simple/relaxed' or 'simple/simple'");
    }
  }
  MXR_RETURN_IF_ERROR(r.Int("expire_after", &d->expire_after, 0, 366 * 86400));
  if (d->expire_after > 0 && d->expire_after < 3600) {
    return r.Error("expire_after", *t.get("expire_after"),
                   "must be 0 (no x= tag) or at least 3600: messages are signed at reception and may wait in "
                   "the queue (delivery.max_age)");
  }
  MXR_RETURN_IF_ERROR(ParseDkimHeaderList(r, t, "headers", &d->headers));
  MXR_RETURN_IF_ERROR(ParseDkimHeaderList(r, t, "oversign_headers", &d->oversign_headers));
  MXR_RETURN_IF_ERROR(ParseDkimFallback(r, t, "on_no_rule", &d->on_no_rule));
  MXR_RETURN_IF_ERROR(ParseDkimFallback(r, t, "on_key_error", &d->on_key_error));
  MXR_RETURN_IF_ERROR(r.Int("threads", &d->threads, 0, 64));
  MXR_RETURN_IF_ERROR(r.Int("domain_labels", &d->domain_labels, 0, 1000));
  absl::Status st;
  if (const toml::array* arr = r.ArrayOfTables("rule", &st)) {
    int i = 0;
    for (const toml::node& n : *arr) {
      DkimRuleConfig rule;
      MXR_RETURN_IF_ERROR(ParseDkimRule(*n.as_table(), Cat("dkim.rule[", i++, "]."), source, &rule));
      d->rules.push_back(std::move(rule));
    }
  }
  MXR_RETURN_IF_ERROR(st);
  return r.Finish();
}

// [[source]], [[pool]], [shaping] (delivery/egress.h).
absl::Status ParseEgress(TableReader& r, const toml::table& root, std::string_view source, Config* c) {
  absl::Status st;
  std::set<std::string> names{"default"};
  if (const toml::array* arr = r.ArrayOfTables("source", &st)) {
    int i = 0;
    for (const toml::node& n : *arr) {
      const toml::table& t = *n.as_table();
      TableReader s(t, Cat("source[", i++, "]."), source);
      SourceConfig sc;
      MXR_RETURN_IF_ERROR(s.Str("name", &sc.name));
      MXR_RETURN_IF_ERROR(s.Str("address", &sc.address));
      MXR_RETURN_IF_ERROR(s.Str("ehlo_name", &sc.ehlo_name));
      MXR_RETURN_IF_ERROR(s.Str("warmup_start", &sc.warmup_start));
      if (const toml::node* w = t.get("warmup")) {
        const toml::array* a = w->as_array();
        if (a == nullptr) return s.Error("warmup", *w, "expected an array of integers (messages per day)");
        for (const toml::node& el : *a) {
          if (!el.is_integer() || *el.value<int64_t>() < 0) {
            return s.Error("warmup", el, "expected an array of integers >= 0 (messages per day)");
          }
          sc.warmup.push_back(*el.value<int64_t>());
        }
        s.Used("warmup");
      }
      if (sc.name.empty() || !names.insert(sc.name).second) {
        return s.Error("name", t, "is required and must be unique (\"default\" is the default source)");
      }
      if (!IpAddress::Parse(sc.address).ok()) return s.Error("address", KeyOr(t, {"address"}), "must be an IP address");
      if (!sc.warmup.empty() != !sc.warmup_start.empty()) {
        return s.Error("warmup", KeyOr(t, {"warmup", "warmup_start"}), "warmup and warmup_start go together");
      }
      if (!sc.warmup_start.empty()) {
        struct tm tmv {};
        const char* end = strptime(sc.warmup_start.c_str(), "%Y-%m-%d", &tmv);
        if (end == nullptr || *end != '\0') return s.Error("warmup_start", *t.get("warmup_start"), "expected YYYY-MM-DD");
      }
      MXR_RETURN_IF_ERROR(s.Finish());
      c->sources.push_back(std::move(sc));
    }
  }
  MXR_RETURN_IF_ERROR(st);
  std::set<std::string> pools, users;
  if (const toml::array* arr = r.ArrayOfTables("pool", &st)) {
    int i = 0;
    for (const toml::node& n : *arr) {
      const toml::table& t = *n.as_table();
      TableReader s(t, Cat("pool[", i++, "]."), source);
      PoolConfig pc;
      std::vector<std::string> srcs;
      MXR_RETURN_IF_ERROR(s.Str("name", &pc.name));
      MXR_RETURN_IF_ERROR(s.StrList("sources", &srcs));
      MXR_RETURN_IF_ERROR(s.StrList("users", &pc.users));
      std::vector<int64_t> weights;
      if (const toml::node* w = t.get("weights")) {
        const toml::array* a = w->as_array();
        if (a == nullptr) return s.Error("weights", *w, "expected an array of integers");
        for (const toml::node& el : *a) {
          if (!el.is_integer() || *el.value<int64_t>() < 1 || *el.value<int64_t>() > 1000000) {
            return s.Error("weights", el, "expected integers between 1 and 1000000");
          }
          weights.push_back(*el.value<int64_t>());
        }
        s.Used("weights");
      }
      if (pc.name.empty() || !pools.insert(pc.name).second) return s.Error("name", t, "is required and must be unique");
      if (srcs.empty()) return s.Error("sources", t, "needs at least one source");
      if (!weights.empty() && weights.size() != srcs.size()) {
        return s.Error("weights", *t.get("weights"), "needs one weight per source");
      }
      for (size_t k = 0; k < srcs.size(); ++k) {
        if (!names.count(srcs[k])) return s.Error("sources", *t.get("sources"), Cat("unknown source '", srcs[k], "'"));
        pc.sources.push_back({srcs[k], weights.empty() ? 1 : static_cast<int>(weights[k])});
      }
      for (const auto& u : pc.users) {
        if (!users.insert(u).second) return s.Error("users", *t.get("users"), Cat("user '", u, "' is in two pools"));
      }
      MXR_RETURN_IF_ERROR(s.Finish());
      c->pools.push_back(std::move(pc));
    }
  }
  MXR_RETURN_IF_ERROR(st);
  for (const auto& rt : c->routes) {
    if (!rt.pool.empty() && !pools.count(rt.pool) && rt.pool != "default") {
      return absl::InvalidArgumentError(Cat(source, ": route for '", rt.domain, "': unknown pool '", rt.pool, "'"));
    }
  }
  if (const toml::table* t = r.SubTable("shaping", &st)) {
    TableReader s(*t, "shaping.", source);
    MXR_RETURN_IF_ERROR(s.Bool("shipped", &c->shaping.shipped));
    MXR_RETURN_IF_ERROR(s.Str("file", &c->shaping.file));
    MXR_RETURN_IF_ERROR(s.Str("classification_file", &c->shaping.classification_file));
    MXR_RETURN_IF_ERROR(s.Str("pool_header", &c->shaping.pool_header));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  return st;
}

absl::Status ParseRoot(const toml::table& root, std::string_view source, Config* c) {
  TableReader r(root, "", source);
  MXR_RETURN_IF_ERROR(r.Str("hostname", &c->hostname));
  MXR_RETURN_IF_ERROR(r.Str("data_dir", &c->data_dir));
  MXR_RETURN_IF_ERROR(r.Int("threads", &c->threads, 0, 256));
  MXR_RETURN_IF_ERROR(r.Str("event_loop", &c->event_loop));
  if (c->event_loop != "auto" && c->event_loop != "io_uring" && c->event_loop != "epoll") {
    return r.Error("event_loop", *root.get("event_loop"), "must be \"auto\", \"io_uring\" or \"epoll\"");
  }
  MXR_RETURN_IF_ERROR(r.Str("user", &c->user));
  MXR_RETURN_IF_ERROR(r.Bool("allow_core_dumps", &c->allow_core_dumps));
  std::vector<std::string> nets;
  MXR_RETURN_IF_ERROR(r.StrList("trusted_networks", &nets));
  if (root.get("trusted_networks")) {
    c->trusted_networks.clear();
    for (const auto& n : nets) {
      auto cidr = Cidr::Parse(n);
      if (!cidr.ok()) {
        return r.Error("trusted_networks", *root.get("trusted_networks"),
                       std::string(cidr.status().message()));
      }
      // IPv4 clients are matched as ::ffff:a.b.c.d: an IPv6 prefix covering
      // that range (::/0 ... ::/80) would silently trust every IPv4 client.
      static const IpAddress kMappedV4Zero = *IpAddress::Parse("0.0.0.0");
      if (!cidr->base.is_v4() && cidr->prefix_len <= 96 && cidr->Contains(kMappedV4Zero)) {
        return r.Error("trusted_networks", *root.get("trusted_networks"),
                       Cat("'", n, "' would trust every IPv4 client: IPv4 clients are matched as IPv4-mapped "
                           "IPv6 addresses (::ffff:a.b.c.d), which this IPv6 prefix contains. List IPv4 "
                           "networks in IPv4 notation (e.g. \"10.0.0.0/8\", or \"0.0.0.0/0\" to really "
                           "trust all of IPv4) and IPv6 prefixes that do not cover ::ffff:0:0/96 "
                           "(e.g. \"2001:db8::/32\")"));
      }
      c->trusted_networks.push_back(*cidr);
    }
  }
  absl::Status st;
  if (const toml::table* t = r.SubTable("log", &st)) {
    TableReader s(*t, "log.", source);
    MXR_RETURN_IF_ERROR(s.Str("level", &c->log_level));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::array* arr = r.ArrayOfTables("listener", &st)) {
    c->listeners.clear();
    int i = 0;
    for (const toml::node& n : *arr) {
      ListenerConfig l;
      MXR_RETURN_IF_ERROR(
          ParseListener(*n.as_table(), Cat("listener[", i++, "]."), source, &l));
      c->listeners.push_back(l);
    }
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("tls", &st)) {
    TableReader s(*t, "tls.", source);
    MXR_RETURN_IF_ERROR(s.Str("cert_file", &c->tls.cert_file));
    MXR_RETURN_IF_ERROR(s.Str("key_file", &c->tls.key_file));
    MXR_RETURN_IF_ERROR(s.Str("min_version", &c->tls.min_version));
    if (c->tls.min_version != "1.2" && c->tls.min_version != "1.3") {
      return s.Error("min_version", *t->get("min_version"), "must be \"1.2\" or \"1.3\"");
    }
    if (c->tls.cert_file.empty() != c->tls.key_file.empty()) {
      return s.Error(c->tls.cert_file.empty() ? "cert_file" : "key_file", *t,
                     "cert_file and key_file must be set together");
    }
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("auth", &st)) {
    TableReader s(*t, "auth.", source);
    MXR_RETURN_IF_ERROR(s.Str("users_file", &c->auth.users_file));
    MXR_RETURN_IF_ERROR(s.Bool("local_part_login", &c->auth.local_part_login));
    MXR_RETURN_IF_ERROR(s.Int("max_failures", &c->auth.max_failures, 1, 100));
    MXR_RETURN_IF_ERROR(s.Int("failure_delay_ms", &c->auth.failure_delay_ms, 0, 60000));
    MXR_RETURN_IF_ERROR(s.Int("max_failures_per_ip", &c->auth.max_failures_per_ip, 0, 1000000));
    MXR_RETURN_IF_ERROR(s.Int("ip_block_seconds", &c->auth.ip_block_seconds, 1, 86400));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("limits", &st)) {
    TableReader s(*t, "limits.", source);
    auto& l = c->limits;
    MXR_RETURN_IF_ERROR(s.Int("max_message_size", &l.max_message_size, 1024, int64_t{1} << 34));
    MXR_RETURN_IF_ERROR(s.Int("max_recipients", &l.max_recipients, 1, 100000));
    MXR_RETURN_IF_ERROR(s.Int("max_connections", &l.max_connections, 1, 1000000));
    MXR_RETURN_IF_ERROR(s.Int("max_connections_per_ip", &l.max_connections_per_ip, 1, 1000000));
    MXR_RETURN_IF_ERROR(s.Int("max_line_length", &l.max_line_length, 512, 65536));
    MXR_RETURN_IF_ERROR(s.Int("max_errors", &l.max_errors, 1, 1000));
    MXR_RETURN_IF_ERROR(s.Int("ipv6_prefix", &l.ipv6_prefix, 32, 128));
    MXR_RETURN_IF_ERROR(s.Int("max_hops", &l.max_hops, 1, 1000));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("timeouts", &st)) {
    TableReader s(*t, "timeouts.", source);
    auto& x = c->timeouts;
    MXR_RETURN_IF_ERROR(s.Int("greeting", &x.greeting, 1, 3600));
    MXR_RETURN_IF_ERROR(s.Int("command", &x.command, 1, 3600));
    MXR_RETURN_IF_ERROR(s.Int("data", &x.data, 1, 3600));
    MXR_RETURN_IF_ERROR(s.Int("tls_handshake", &x.tls_handshake, 1, 600));
    MXR_RETURN_IF_ERROR(s.Int("implicit_tls_wait", &x.implicit_tls_wait, 0, 600));
    MXR_RETURN_IF_ERROR(s.Int("spool_write", &x.spool_write, 1, 600));
    MXR_RETURN_IF_ERROR(s.Int("proxy_header", &x.proxy_header, 1, 600));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("spool", &st)) {
    TableReader s(*t, "spool.", source);
    auto& x = c->spool;
    MXR_RETURN_IF_ERROR(s.Str("path", &x.path));
    MXR_RETURN_IF_ERROR(s.Int("write_buffer_size", &x.write_buffer_size, 1 << 20, int64_t{1} << 34));
    MXR_RETURN_IF_ERROR(s.Int("max_write_buffer_number", &x.max_write_buffer_number, 2, 16));
    MXR_RETURN_IF_ERROR(s.Int("max_total_wal_size", &x.max_total_wal_size, 1 << 20, int64_t{1} << 40));
    MXR_RETURN_IF_ERROR(s.Int("min_free_space", &x.min_free_space, 0, int64_t{1} << 44));
    MXR_RETURN_IF_ERROR(s.Int("commit_delay_us", &x.commit_delay_us, 0, 10000));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("delivery", &st)) {
    MXR_RETURN_IF_ERROR(ParseDelivery(*t, source, &c->delivery));
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("metrics", &st)) {
    TableReader s(*t, "metrics.", source);
    auto& x = c->metrics;
    MXR_RETURN_IF_ERROR(s.Bool("enabled", &x.enabled));
    MXR_RETURN_IF_ERROR(s.Str("listen", &x.listen));
    MXR_RETURN_IF_ERROR(s.Int("site_labels", &x.site_labels, 0, 1000));
    if (auto hp = ParseHostPort(x.listen); !hp.ok()) {
      const toml::node* n = t->get("listen");
      return absl::InvalidArgumentError(Cat(n ? Where(source, *n) : std::string(source), ": metrics.listen: ",
                                            hp.status().message()));
    }
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("tenants", &st)) {
    TableReader s(*t, "tenants.", source);
    MXR_RETURN_IF_ERROR(s.Str("file", &c->tenants.file));
    MXR_RETURN_IF_ERROR(s.Bool("allow_unassigned", &c->tenants.allow_unassigned));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  for (const char* sect : {"http_api", "admin_api"}) {
    const toml::table* t = r.SubTable(sect, &st);
    MXR_RETURN_IF_ERROR(st);
    if (t == nullptr) continue;
    TableReader s(*t, Cat(sect, "."), source);
    bool http = std::string_view(sect) == "http_api";
    std::string* listen = http ? &c->http_api.listen : &c->admin_api.listen;
    MXR_RETURN_IF_ERROR(s.Bool("enabled", http ? &c->http_api.enabled : &c->admin_api.enabled));
    MXR_RETURN_IF_ERROR(s.Str("listen", listen));
    if (http) {
      MXR_RETURN_IF_ERROR(s.Bool("tls", &c->http_api.tls));
      MXR_RETURN_IF_ERROR(s.Int("max_body", &c->http_api.max_body, 1024, int64_t{1} << 30));
      MXR_RETURN_IF_ERROR(s.Int("max_recipients", &c->http_api.max_recipients, 1, 1000000));
      MXR_RETURN_IF_ERROR(s.Int("threads", &c->http_api.threads, 1, 1024));
    } else {
      MXR_RETURN_IF_ERROR(s.Str("token_file", &c->admin_api.token_file));
    }
    if (auto hp = ParseHostPort(*listen); !hp.ok()) {
      const toml::node* n = t->get("listen");
      return absl::InvalidArgumentError(Cat(n ? Where(source, *n) : std::string(source), ": ", sect,
                                            ".listen: ", hp.status().message()));
    }
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  if (const toml::table* t = r.SubTable("dkim", &st)) {
    MXR_RETURN_IF_ERROR(ParseDkim(*t, source, &c->dkim));
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::array* arr = r.ArrayOfTables("route", &st)) {
    int i = 0;
    for (const toml::node& n : *arr) {
      RouteConfig rt;
      MXR_RETURN_IF_ERROR(
          ParseRoute(*n.as_table(), Cat("route[", i++, "]."), source, &rt));
      c->routes.push_back(rt);
    }
  }
  MXR_RETURN_IF_ERROR(st);
  MXR_RETURN_IF_ERROR(ParseEgress(r, root, source, c));
  MXR_RETURN_IF_ERROR(r.Finish());
  if (c->listeners.empty()) {
    return absl::InvalidArgumentError(Cat(source, ": at least one [[listener]] is required"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ListenerModeName(ListenerMode m) {
  switch (m) {
    case ListenerMode::kStartTls: return "starttls";
    case ListenerMode::kImplicitTls: return "implicit_tls";
    case ListenerMode::kPlain: return "plain";
  }
  return "?";
}

std::string_view TlsPolicyName(TlsPolicy p) {
  switch (p) {
    case TlsPolicy::kNone: return "none";
    case TlsPolicy::kOpportunistic: return "opportunistic";
    case TlsPolicy::kRequired: return "required";
    case TlsPolicy::kRequiredVerify: return "required_verify";
  }
  return "?";
}

std::string Config::SpoolPath() const {
  return spool.path.empty() ? data_dir + "/spool" : spool.path;
}
std::string Config::UsersFile() const {
  return auth.users_file.empty() ? data_dir + "/users" : auth.users_file;
}
std::string Config::AdminTokenFile() const {
  return admin_api.token_file.empty() ? data_dir + "/admin-token" : admin_api.token_file;
}

std::vector<Cidr> DefaultDenyNetworks() {
  static const char* const kNets[] = {
      "127.0.0.0/8",     "::1/128",          // loopback
      "169.254.0.0/16",  "fe80::/10",        // link-local (cloud metadata: 169.254.169.254)
      "0.0.0.0/8",       "::/128",           // unspecified / "this network"
      "224.0.0.0/4",     "ff00::/8",         // multicast
      "240.0.0.0/4",                         // reserved (incl. 255.255.255.255)
      "192.0.0.0/24",    "198.18.0.0/15",    // IETF protocol assignments, benchmarking
      "100::/64",        "2001:db8::/32",    // discard-only, documentation
  };
  std::vector<Cidr> out;
  for (const char* n : kNets) out.push_back(*Cidr::Parse(n));
  return out;
}

Config DefaultConfig() {
  Config c;
  c.listeners = {
      {"submission-2525", "127.0.0.1", 2525, ListenerMode::kStartTls, false},
      {"submission-587", "127.0.0.1", 5587, ListenerMode::kStartTls, false},
      {"submissions-465", "127.0.0.1", 5465, ListenerMode::kImplicitTls, false},
  };
  return c;
}

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source) {
  Config c = DefaultConfig();
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(Cat(source, ":", static_cast<unsigned>(e.source().begin.line), ": ",
                                                   e.description()));
  }
  MXR_RETURN_IF_ERROR(ParseRoot(root, source, &c));
  return c;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(Cat("cannot read config file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace mxr
