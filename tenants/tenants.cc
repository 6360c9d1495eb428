#include "tenants/tenants.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "common/status.h"
#include "common/strings.h"
#include "dkim/address.h"
#include "toml++/toml.h"

namespace mxr::tenants {
namespace {

constexpr int64_t kDayUs = 86'400'000'000;

std::array<unsigned char, 32> Sha256(std::string_view s) {
  std::array<unsigned char, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

std::string Hex(const unsigned char* p, size_t n) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(k[p[i] >> 4]);
    out.push_back(k[p[i] & 15]);
  }
  return out;
}

std::string AsciiLower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z') c += 32;
  }
  return o;
}

std::string Join(const std::vector<std::string>& v) {
  std::string o;
  for (const auto& x : v) o += (o.empty() ? "" : ", ") + x;
  return o;
}

std::string Clip(std::string_view s) { return std::string(s.substr(0, 200)); }

bool FromHex(std::string_view hex, std::string* out) {
  if (hex.size() % 2) return false;
  out->clear();
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    int a = val(hex[i]), b = val(hex[i + 1]);
    if (a < 0 || b < 0) return false;
    out->push_back(static_cast<char>(a * 16 + b));
  }
  return true;
}

std::string Line(std::string_view source, const toml::node& n) {
  return Cat(source, ":", static_cast<unsigned>(n.source().begin.line));
}

// Reads the keys of one table, refusing unknown ones (typos must not pass).
class Reader {
 public:
  Reader(const toml::table& t, std::string_view source, std::string what)
      : t_(t), source_(source), what_(std::move(what)) {}
  absl::Status Err(const toml::node& n, std::string_view key, std::string_view msg) const {
    return absl::InvalidArgumentError(Cat(Line(source_, n), ": ", what_, ".", key, ": ", msg));
  }
  absl::Status Str(const char* key, std::string* out) {
    const toml::node* n = Find(key);
    if (!n) return absl::OkStatus();
    if (!n->is_string()) return Err(*n, key, "expected a string");
    *out = *n->value<std::string>();
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool* out) {
    const toml::node* n = Find(key);
    if (!n) return absl::OkStatus();
    if (!n->is_boolean()) return Err(*n, key, "expected true or false");
    *out = *n->value<bool>();
    return absl::OkStatus();
  }
  absl::Status Int(const char* key, int64_t* out, int64_t min, int64_t max) {
    const toml::node* n = Find(key);
    if (!n) return absl::OkStatus();
    if (!n->is_integer()) return Err(*n, key, "expected an integer");
    int64_t v = *n->value<int64_t>();
    if (v < min || v > max) return Err(*n, key, Cat("must be between ", min, " and ", max, ", got ", v));
    *out = v;
    return absl::OkStatus();
  }
  absl::Status List(const char* key, std::optional<std::vector<std::string>>* out) {
    const toml::node* n = Find(key);
    if (!n) return absl::OkStatus();
    const toml::array* a = n->as_array();
    if (!a) return Err(*n, key, "expected an array of strings");
    out->emplace();
    for (const auto& el : *a) {
      auto s = el.value<std::string>();
      if (!s) return Err(el, key, "expected an array of strings");
      (*out)->push_back(*s);
    }
    return absl::OkStatus();
  }
  const toml::node* Find(const char* key) {
    used_.insert(key);
    return t_.get(key);
  }
  absl::Status Finish() const {
    for (const auto& [k, v] : t_) {
      if (!used_.count(std::string(k.str()))) {
        return absl::InvalidArgumentError(
            Cat(source_, ":", static_cast<unsigned>(k.source().begin.line), ": unknown key '", what_, ".", k.str(), "'"));
      }
    }
    return absl::OkStatus();
  }

 private:
  const toml::table& t_;
  std::string_view source_;
  std::string what_;
  std::set<std::string> used_;
};

absl::Status ReadLimits(Reader& r, const toml::table& t, Limits* l) {
  MXR_RETURN_IF_ERROR(r.List("sender_domains", &l->sender_domains));
  if (l->sender_domains) {
    for (auto& d : *l->sender_domains) {
      d = AsciiLower(d);
      if (d.empty() || d.find('@') != std::string::npos || d.find(' ') != std::string::npos) {
        return r.Err(*t.get("sender_domains"), "sender_domains", Cat("not a domain pattern: \"", d, "\""));
      }
    }
  }
  std::string rate;
  int64_t burst = 1;
  MXR_RETURN_IF_ERROR(r.Str("rate", &rate));
  MXR_RETURN_IF_ERROR(r.Int("rate_burst", &burst, 1, 1'000'000));
  if (!rate.empty()) {
    auto parsed = Rate::Parse(rate, burst);
    if (!parsed.ok()) return r.Err(*t.get("rate"), "rate", std::string(parsed.status().message()));
    l->rate = *parsed;
  }
  MXR_RETURN_IF_ERROR(r.Int("daily_quota", &l->daily_quota, 0, int64_t{1} << 40));
  int64_t mr = 0;
  MXR_RETURN_IF_ERROR(r.Int("max_recipients", &mr, 0, 1'000'000));
  l->max_recipients = static_cast<int>(mr);
  return absl::OkStatus();
}

std::string QuotaDay(int64_t now_us) { return FormatUtc(now_us, "%Y-%m-%d"); }

}  // namespace

absl::StatusOr<Rate> Rate::Parse(std::string_view spec, int64_t burst) {
  Rate r;
  r.spec = std::string(spec);
  r.burst = burst;
  size_t slash = spec.find('/');
  if (slash == std::string_view::npos) return absl::InvalidArgumentError(Cat("\"", spec, "\": expected N/period, e.g. 100/1m"));
  int64_t n = 0;
  std::string_view num = spec.substr(0, slash), per = spec.substr(slash + 1);
  if (num.empty()) return absl::InvalidArgumentError(Cat("\"", spec, "\": no count before '/'"));
  for (char c : num) {
    if (c < '0' || c > '9' || n > 1'000'000'000) return absl::InvalidArgumentError(Cat("\"", spec, "\": bad count"));
    n = n * 10 + (c - '0');
  }
  int64_t mult = 1;
  std::string_view unit = per;
  size_t digits = 0;
  while (digits < per.size() && per[digits] >= '0' && per[digits] <= '9') digits++;
  if (digits > 0) {
    mult = 0;
    for (size_t i = 0; i < digits && i < 9; ++i) mult = mult * 10 + (per[i] - '0');
    unit = per.substr(digits);
  }
  int64_t unit_us = unit == "s" ? 1'000'000 : unit == "m" ? 60'000'000 : unit == "h" ? 3'600'000'000 : unit == "d" ? kDayUs : 0;
  if (unit_us == 0 || mult <= 0 || n <= 0) {
    return absl::InvalidArgumentError(Cat("\"", spec, "\": expected N/period with period s, m, h or d (e.g. 100/1m)"));
  }
  r.count = n;
  r.period_us = unit_us * mult;
  if (r.period_us / r.count <= 0) return absl::InvalidArgumentError(Cat("\"", spec, "\": more than one per microsecond"));
  return r;
}

std::string NormalizeUser(std::string_view name) {
  size_t at = name.rfind('@');
  if (at == std::string_view::npos) return std::string(name);
  return Cat(name.substr(0, at + 1), AsciiLower(name.substr(at + 1)));
}

std::string HashApiKey(std::string_view key) {
  auto d = Sha256(key);
  return "sha256:" + Hex(d.data(), d.size());
}

NewKey MintApiKey() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();
  std::string b64;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(raw), sizeof raw), &b64);
  OPENSSL_cleanse(raw, sizeof raw);
  NewKey k;
  k.key = "mxr_" + b64;
  k.stored = HashApiKey(k.key);
  return k;
}

bool SenderAllowed(const std::vector<std::string>& domains, std::string_view domain) {
  if (domain.empty()) return false;
  std::string d = AsciiLower(domain);
  for (const auto& p : domains) {
    if (dkim::DomainMatches(p, d)) return true;
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const Directory>> Directory::Load(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(Cat("tenants file ", path, ": cannot read"));
  std::stringstream ss;
  ss << f.rdbuf();
  return Parse(ss.str(), path);
}

absl::StatusOr<std::shared_ptr<const Directory>> Directory::Parse(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        Cat(source, ":", static_cast<unsigned>(e.source().begin.line), ": ", e.description()));
  }
  auto dir = std::make_shared<Directory>();
  for (const auto& [k, v] : root) {
    if (k.str() != "tenant") {
      return absl::InvalidArgumentError(Cat(source, ":", static_cast<unsigned>(k.source().begin.line),
                                            ": unknown key '", k.str(), "' (expected [[tenant]] tables)"));
    }
  }
  const toml::node* tn = root.get("tenant");
  if (tn == nullptr) return std::shared_ptr<const Directory>(dir);
  if (!tn->is_array_of_tables()) return absl::InvalidArgumentError(Cat(Line(source, *tn), ": tenant: expected [[tenant]] tables"));
  std::set<std::string> names, keys;
  for (const auto& el : *tn->as_array()) {
    const toml::table& t = *el.as_table();
    Reader r(t, source, "tenant");
    Tenant ten;
    MXR_RETURN_IF_ERROR(r.Str("name", &ten.name));
    if (ten.name.empty()) return absl::InvalidArgumentError(Cat(Line(source, el), ": tenant.name: required"));
    for (char c : ten.name) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
        return absl::InvalidArgumentError(Cat(Line(source, el), ": tenant.name \"", ten.name,
                                              "\": letters, digits, '-', '_' and '.' only"));
      }
    }
    if (!names.insert(ten.name).second) {
      return absl::InvalidArgumentError(Cat(Line(source, el), ": tenant \"", ten.name, "\" defined twice"));
    }
    MXR_RETURN_IF_ERROR(ReadLimits(r, t, &ten.limits));
    MXR_RETURN_IF_ERROR(r.Bool("check_from_header", &ten.check_from_header));
    MXR_RETURN_IF_ERROR(r.Str("pool", &ten.pool));
    std::optional<std::vector<std::string>> users, api_keys;
    MXR_RETURN_IF_ERROR(r.List("users", &users));
    MXR_RETURN_IF_ERROR(r.List("api_keys", &api_keys));
    if (users) ten.users = *users;
    if (api_keys) {
      for (const auto& k : *api_keys) {
        std::string hex = k.starts_with("sha256:") ? k.substr(7) : "";
        std::string raw;
        if (hex.size() != 64 || !FromHex(hex, &raw) || raw.size() != 32) {
          return absl::InvalidArgumentError(Cat(Line(source, *t.get("api_keys")), ": tenant \"", ten.name,
                                                "\": api_keys: expected \"sha256:<64 hex digits>\" (`mxrelay tenant apikey` prints one)"));
        }
        if (!keys.insert(hex).second) {
          return absl::InvalidArgumentError(Cat(Line(source, *t.get("api_keys")), ": an API key is listed twice"));
        }
        std::array<unsigned char, 32> h{};
        std::copy(raw.begin(), raw.end(), h.begin());
        ten.key_hashes.push_back(h);
      }
    }
    if (const toml::node* un = r.Find("user")) {
      if (!un->is_array_of_tables()) return absl::InvalidArgumentError(Cat(Line(source, *un), ": tenant.user: expected [[tenant.user]] tables"));
      for (const auto& ue : *un->as_array()) {
        const toml::table& ut = *ue.as_table();
        Reader ur(ut, source, "tenant.user");
        std::string name;
        MXR_RETURN_IF_ERROR(ur.Str("name", &name));
        if (name.empty()) return absl::InvalidArgumentError(Cat(Line(source, ue), ": tenant.user.name: required"));
        Limits l;
        MXR_RETURN_IF_ERROR(ReadLimits(ur, ut, &l));
        MXR_RETURN_IF_ERROR(ur.Finish());
        ten.user_limits[NormalizeUser(name)] = std::move(l);
        if (std::find(ten.users.begin(), ten.users.end(), name) == ten.users.end()) ten.users.push_back(name);
      }
    }
    MXR_RETURN_IF_ERROR(r.Finish());
    size_t idx = dir->tenants_.size();
    for (const auto& u : ten.users) {
      auto [it, fresh] = dir->by_user_.emplace(NormalizeUser(u), idx);
      if (!fresh) {
        return absl::InvalidArgumentError(Cat(Line(source, el), ": user \"", u, "\" is in tenants \"",
                                              dir->tenants_[it->second].name, "\" and \"", ten.name, "\""));
      }
    }
    dir->key_count_ += ten.key_hashes.size();
    dir->tenants_.push_back(std::move(ten));
  }
  return std::shared_ptr<const Directory>(dir);
}

const Tenant* Directory::ForUser(std::string_view user) const {
  auto it = by_user_.find(NormalizeUser(user));
  return it == by_user_.end() ? nullptr : &tenants_[it->second];
}

const Tenant* Directory::ForApiKey(std::string_view key) const {
  auto d = Sha256(key);
  const Tenant* found = nullptr;
  for (const auto& t : tenants_) {
    for (const auto& h : t.key_hashes) {
      // Every key is compared (no early exit), each in constant time.
      if (CRYPTO_memcmp(h.data(), d.data(), d.size()) == 0) found = &t;
    }
  }
  return found;
}

void Gate::SetDirectory(std::shared_ptr<const Directory> dir) {
  std::lock_guard<std::mutex> l(mu_);
  dir_ = std::move(dir);
}

std::shared_ptr<const Directory> Gate::directory() const {
  std::lock_guard<std::mutex> l(mu_);
  return dir_;
}

const Tenant* Gate::TenantOf(const Directory& d, std::string_view user, const Limits** ul) const {
  const Tenant* t = d.ForUser(user);
  *ul = nullptr;
  if (t) {
    auto it = t->user_limits.find(NormalizeUser(user));
    if (it != t->user_limits.end()) *ul = &it->second;
  }
  return t;
}

Gate::Assignment Gate::AssignUser(std::string_view user) const {
  auto d = directory();
  Assignment a;
  if (!d || user.empty()) return a;
  if (const Tenant* t = d->ForUser(user)) {
    a.tenant = t->name;
    a.pool = t->pool;
  }
  return a;
}

Verdict Gate::SenderFor(const Tenant& t, const Limits* u, std::string_view sender, bool header) const {
  const auto* domains = u && u->sender_domains ? &*u->sender_domains : t.limits.sender_domains ? &*t.limits.sender_domains : nullptr;
  if (domains == nullptr || domains->empty()) return Verdict::Ok();
  std::string domain;
  if (header) {
    auto fd = dkim::FromDomain(sender);
    if (!fd.ok()) {
      Verdict v{false, 550, "5.7.1", Cat("From: header \"", Clip(sender), "\" has no single domain; tenant \"", t.name,
                                         "\" may send only from ", Join(*domains), " (rule: sender_domains)"),
                "from_header"};
      return v;
    }
    domain = *fd;
  } else {
    domain = dkim::AddressDomain(sender);
  }
  if (SenderAllowed(*domains, domain)) return Verdict::Ok();
  std::string who = u && u->sender_domains ? "user" : Cat("tenant \"", t.name, "\"");
  return Verdict{false, 550, "5.7.1",
                 Cat(header ? "From: header domain " : "Sender ", header ? domain : Cat("<", sender, ">"),
                     " not allowed: ", who, " may send only from ", Join(*domains),
                     " (rule: sender_domains", header ? ", checked on the From: header" : "", ")"),
                 header ? "from_header" : "sender_domains"};
}

Verdict Gate::TakeRate(const std::string& key, const Rate& r, int64_t n, int64_t now_us, std::string_view who,
                       bool commit) {
  if (!r.limited() || n <= 0) return Verdict::Ok();
  Bucket& b = state_[key];
  int64_t t = r.interval_us();
  int64_t tau = t * (r.burst - 1);
  int64_t tat = std::max(b.tat_us, now_us);
  int64_t new_tat = tat + t * n;
  if (new_tat - now_us > tau + t) {
    int64_t wait_s = (new_tat - t - tau - now_us + 999'999) / 1'000'000;
    return Verdict{false, 450, "4.7.1",
                   Cat("Message rate of ", who, " exceeded (", r.spec, r.burst > 1 ? Cat(", burst ", r.burst) : "",
                       "); try again in ", std::max<int64_t>(1, wait_s), " s (rule: rate)"),
                   "rate"};
  }
  if (commit) b.tat_us = new_tat;
  return Verdict::Ok();
}

Verdict Gate::TakeQuota(const std::string& key, int64_t quota, int64_t n, int64_t now_us, std::string_view who,
                        bool commit) {
  if (quota <= 0 || n <= 0) return Verdict::Ok();
  Bucket& b = state_[key];
  int64_t day = now_us / kDayUs;
  if (b.day != day) {
    b.day = day;
    b.used = 0;
  }
  if (b.used + n > quota) {
    return Verdict{false, 452, "4.5.3",
                   Cat("Daily quota of ", who, " reached (", quota, " recipients per UTC day, ", b.used,
                       " used on ", QuotaDay(now_us), "); try again after 00:00 UTC (rule: daily_quota)"),
                   "daily_quota"};
  }
  if (commit) b.used += n;
  return Verdict::Ok();
}

Verdict Gate::Charge(const Tenant& t, const Limits* u, std::string_view user_name, int64_t messages,
                     int64_t recipients) {
  int64_t now = clock_->NowMicros();
  std::lock_guard<std::mutex> l(mu_);
  std::string tk = "t:" + t.name, uk = u ? "u:" + NormalizeUser(user_name) : std::string();
  std::string tw = Cat("tenant \"", t.name, "\""), uw = Cat("user \"", user_name, "\"");
  // Check every bucket first, then take from all: all or nothing.
  for (bool commit : {false, true}) {
    if (u) {
      if (Verdict v = TakeRate(uk, u->rate, messages, now, uw, commit); !v.ok) return v;
      if (Verdict v = TakeQuota(uk, u->daily_quota, recipients, now, uw, commit); !v.ok) return v;
    }
    if (Verdict v = TakeRate(tk, t.limits.rate, messages, now, tw, commit); !v.ok) return v;
    if (Verdict v = TakeQuota(tk, t.limits.daily_quota, recipients, now, tw, commit); !v.ok) return v;
  }
  return Verdict::Ok();
}

namespace {
void Count(GateStats& s, const Verdict& v) {
  if (v.ok) return;
  std::string_view r = v.rule;
  if (r == "sender_domains") s.refused_sender++;
  else if (r == "from_header") s.refused_from_header++;
  else if (r == "rate") s.refused_rate++;
  else if (r == "daily_quota") s.refused_quota++;
  else if (r == "max_recipients") s.refused_recipients++;
  else if (r == "unassigned") s.refused_unassigned++;
}
}  // namespace

Verdict Gate::Mail(std::string_view user, std::string_view sender) {
  if (user.empty()) return Verdict::Ok();
  auto d = directory();
  if (!d) return Verdict::Ok();
  const Limits* ul = nullptr;
  const Tenant* t = TenantOf(*d, user, &ul);
  Verdict v;
  if (t == nullptr) {
    if (!allow_unassigned_) {
      v = Verdict{false, 550, "5.7.1", Cat("User \"", user, "\" belongs to no tenant and may not send (rule: tenants.allow_unassigned)"),
                  "unassigned"};
    }
  } else {
    v = SenderFor(*t, ul, sender, false);
    if (v.ok) v = Charge(*t, ul, user, 1, 0);
  }
  Count(stats_, v);
  return v;
}

Verdict Gate::Rcpt(std::string_view user, size_t accepted) {
  if (user.empty()) return Verdict::Ok();
  auto d = directory();
  if (!d) return Verdict::Ok();
  const Limits* ul = nullptr;
  const Tenant* t = TenantOf(*d, user, &ul);
  if (t == nullptr) return Verdict::Ok();
  int max = ul && ul->max_recipients > 0 ? ul->max_recipients : t->limits.max_recipients;
  Verdict v;
  if (max > 0 && accepted >= static_cast<size_t>(max)) {
    v = Verdict{false, 452, "4.5.3",
                Cat("Too many recipients: ", ul && ul->max_recipients > 0 ? Cat("user \"", user, "\"") : Cat("tenant \"", t->name, "\""),
                    " may send to at most ", max, " per message (rule: max_recipients)"),
                "max_recipients"};
  } else {
    v = Charge(*t, ul, user, 0, 1);
  }
  Count(stats_, v);
  return v;
}

Verdict Gate::FromHeader(std::string_view user, std::string_view from_value) {
  if (user.empty()) return Verdict::Ok();
  auto d = directory();
  if (!d) return Verdict::Ok();
  const Limits* ul = nullptr;
  const Tenant* t = TenantOf(*d, user, &ul);
  if (t == nullptr || !t->check_from_header) return Verdict::Ok();
  Verdict v = SenderFor(*t, ul, from_value, true);
  Count(stats_, v);
  if (v.ok) stats_.messages_accepted++;
  return v;
}

}  // namespace mxr::tenants
