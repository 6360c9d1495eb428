#include "delivery/shaping.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "common/status.h"
#include "common/strings.h"
#include "toml++/toml.h"

namespace mxr::delivery {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "alt1.gmail-smtp-in.l.google.com." -> lower case, no leading/trailing dot.
std::string NormalizeName(std::string_view s) {
  std::string out = Lower(s);
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

struct RawSection {
  PathLimits limits;
  std::optional<std::vector<std::string>> domains, mx_hosts, mx_suffixes;
  std::vector<AutomationRule> automation;
};

std::string Line(const toml::node& n) { return Cat(static_cast<unsigned>(n.source().begin.line)); }

absl::Status Err(const std::string& file, const toml::node& n, std::string_view section, std::string_view what) {
  return absl::InvalidArgumentError(Cat(file, ":", Line(n), ": ", section, ": ", what));
}

absl::Status IntKey(const std::string& file, const std::string& sec, const toml::node& n, const char* key, int min,
                    int max, std::optional<int>* out) {
  auto v = n.value<int64_t>();
  if (!n.is_integer() || !v || *v < min || *v > max) {
    return Err(file, n, sec, Cat(key, " must be an integer between ", min, " and ", max));
  }
  *out = static_cast<int>(*v);
  return absl::OkStatus();
}

absl::Status StrList(const std::string& file, const std::string& sec, const toml::node& n, const char* key,
                     std::optional<std::vector<std::string>>* out) {
  const toml::array* a = n.as_array();
  if (a == nullptr) return Err(file, n, sec, Cat(key, " must be an array of strings"));
  std::vector<std::string> v;
  for (const toml::node& el : *a) {
    auto s = el.value<std::string>();
    if (!s || NormalizeName(*s).empty()) return Err(file, el, sec, Cat(key, " must be an array of names"));
    v.push_back(NormalizeName(*s));
  }
  *out = std::move(v);
  return absl::OkStatus();
}

absl::Status ParseAutomation(const std::string& file, const std::string& sec, const std::string& rule_name,
                             const toml::node& n, std::vector<AutomationRule>* out) {
  const toml::array* arr = n.as_array();
  if (arr == nullptr || !n.is_array_of_tables()) {
    return Err(file, n, sec, "automation must be an array of tables ([[...automation]])");
  }
  int i = 0;
  for (const toml::node& el : *arr) {
    const toml::table& t = *el.as_table();
    int code = 0;
    int64_t value = 0, duration = 0;
    std::string enhanced, regex, action, rate, treat;
    std::string where = Cat(sec, ".automation[", i, "]");
    for (const auto& [k, v] : t) {
      std::string key(k.str());
      if (key == "code") {
        if (!v.is_integer()) return Err(file, v, where, "code must be an integer");
        code = static_cast<int>(*v.value<int64_t>());
      } else if (key == "enhanced" && v.is_string()) {
        enhanced = *v.value<std::string>();
      } else if (key == "regex" && v.is_string()) {
        regex = *v.value<std::string>();
      } else if (key == "action" && v.is_string()) {
        action = *v.value<std::string>();
      } else if (key == "treat" && v.is_string()) {
        treat = *v.value<std::string>();
      } else if (key == "rate" && v.is_string()) {
        rate = *v.value<std::string>();
      } else if (key == "value" && v.is_integer()) {
        value = *v.value<int64_t>();
      } else if (key == "duration" && (v.is_string() || v.is_integer())) {
        if (v.is_integer()) {
          duration = *v.value<int64_t>();
        } else {
          auto d = ParseDurationSeconds(*v.value<std::string>());
          if (!d.ok()) return Err(file, v, where, Cat(d.status().message()));
          duration = *d;
        }
      } else {
        return Err(file, v, where, Cat("unknown key or wrong type '", key, "'"));
      }
    }
    auto r = MakeAutomationRule(rule_name, i, code, enhanced, regex, action, value, rate, duration, treat);
    if (!r.ok()) return Err(file, el, where, Cat(r.status().message()));
    out->push_back(std::move(*r));
    ++i;
  }
  return absl::OkStatus();
}

absl::Status ParseSection(const std::string& file, const std::string& sec, const std::string& rule_name,
                          const toml::table& t, bool is_provider, bool is_source, RawSection* out) {
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    PathLimits& l = out->limits;
    if (key == "connection_limit" && !is_source) {
      MXR_RETURN_IF_ERROR(IntKey(file, sec, v, "connection_limit", 1, 10000, &l.connection_limit));
    } else if (key == "max_deliveries_per_connection" && !is_source) {
      MXR_RETURN_IF_ERROR(IntKey(file, sec, v, "max_deliveries_per_connection", 1, 1000000,
                                 &l.max_deliveries_per_connection));
    } else if (key == "max_recipients_per_transaction" && !is_source) {
      MXR_RETURN_IF_ERROR(IntKey(file, sec, v, "max_recipients_per_transaction", 1, 10000,
                                 &l.max_recipients_per_transaction));
    } else if (key == "max_burst") {
      MXR_RETURN_IF_ERROR(IntKey(file, sec, v, "max_burst", 1, 1000000, &l.max_burst));
    } else if (key == "max_message_rate") {
      auto s = v.value<std::string>();
      if (!s) return Err(file, v, sec, "max_message_rate must be a string such as \"120/min\"");
      auto spec = ParseRate(*s);
      if (!spec.ok()) return Err(file, v, sec, Cat(spec.status().message()));
      l.max_message_rate = *spec;
    } else if (is_provider && key == "mx_suffix") {
      MXR_RETURN_IF_ERROR(StrList(file, sec, v, "mx_suffix", &out->mx_suffixes));
    } else if (is_provider && key == "mx_hosts") {
      MXR_RETURN_IF_ERROR(StrList(file, sec, v, "mx_hosts", &out->mx_hosts));
    } else if (is_provider && key == "domains") {
      MXR_RETURN_IF_ERROR(StrList(file, sec, v, "domains", &out->domains));
    } else if (key == "automation" && !is_source) {
      MXR_RETURN_IF_ERROR(ParseAutomation(file, sec, rule_name, v, &out->automation));
    } else {
      return Err(file, v, sec, Cat("unknown key '", key, "'"));
    }
  }
  return absl::OkStatus();
}

// Sections of one file by canonical key ("default", "provider:x", "domain:x", "source:x").
absl::Status ParseFile(const std::string& file, const std::string& text, std::map<std::string, RawSection>* out) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        Cat(file, ":", static_cast<unsigned>(e.source().begin.line), ": ", e.description()));
  }
  for (const auto& [k, v] : root) {
    std::string top(k.str());
    const toml::table* t = v.as_table();
    if (t == nullptr) return Err(file, v, top, "expected a table");
    if (top == "default") {
      MXR_RETURN_IF_ERROR(ParseSection(file, "default", "default", *t, false, false, &(*out)["default"]));
      continue;
    }
    if (top != "provider" && top != "domain" && top != "source") {
      return Err(file, v, top, "unknown section (expected default, provider, domain or source)");
    }
    for (const auto& [name, sub] : *t) {
      const toml::table* st = sub.as_table();
      std::string n = top == "source" ? std::string(name.str()) : NormalizeName(name.str());
      std::string sec = Cat(top, ".\"", n, "\"");
      if (st == nullptr || n.empty()) return Err(file, sub, sec, "expected a named table");
      MXR_RETURN_IF_ERROR(ParseSection(file, sec, n, *st, top == "provider", top == "source",
                                       &(*out)[Cat(top, ":", n)]));
    }
  }
  return absl::OkStatus();
}

void MergeRaw(RawSection* base, RawSection over) {
  base->limits.MergeFrom(over.limits);
  if (over.domains) base->domains = std::move(over.domains);
  if (over.mx_hosts) base->mx_hosts = std::move(over.mx_hosts);
  if (over.mx_suffixes) base->mx_suffixes = std::move(over.mx_suffixes);
  // The later file's rules are tried first.
  for (auto& r : base->automation) over.automation.push_back(std::move(r));
  base->automation = std::move(over.automation);
}

}  // namespace

void PathLimits::MergeFrom(const PathLimits& o) {
  if (o.connection_limit) connection_limit = o.connection_limit;
  if (o.max_deliveries_per_connection) max_deliveries_per_connection = o.max_deliveries_per_connection;
  if (o.max_message_rate) max_message_rate = o.max_message_rate;
  if (o.max_burst) max_burst = o.max_burst;
  if (o.max_recipients_per_transaction) max_recipients_per_transaction = o.max_recipients_per_transaction;
}

std::string PathLimits::ToString() const {
  std::string s;
  auto add = [&s](std::string_view k, const std::string& v) { s += Cat(s.empty() ? "" : " ", k, "=", v); };
  if (connection_limit) add("connection_limit", Cat(*connection_limit));
  if (max_deliveries_per_connection) add("max_deliveries_per_connection", Cat(*max_deliveries_per_connection));
  if (max_message_rate) add("max_message_rate", max_message_rate->ToString());
  if (max_burst) add("max_burst", Cat(*max_burst));
  if (max_recipients_per_transaction) add("max_recipients_per_transaction", Cat(*max_recipients_per_transaction));
  return s;
}

std::shared_ptr<const ShapingTable> ShapingTable::Empty() { return std::make_shared<ShapingTable>(); }

absl::StatusOr<std::shared_ptr<const ShapingTable>> ShapingTable::Load(
    const std::vector<std::pair<std::string, std::string>>& files) {
  std::map<std::string, RawSection> merged;
  for (const auto& [name, text] : files) {
    std::map<std::string, RawSection> one;
    MXR_RETURN_IF_ERROR(ParseFile(name, text, &one));
    for (auto& [k, sec] : one) MergeRaw(&merged[k], std::move(sec));
  }
  auto t = std::make_shared<ShapingTable>();
  // Renumber automation rules per section after the merge (logs name them by position).
  auto renumber = [](std::vector<AutomationRule>* v) {
    for (size_t i = 0; i < v->size(); ++i) (*v)[i].index = static_cast<int>(i);
  };
  for (auto& [key, raw] : merged) {
    size_t colon = key.find(':');
    std::string kind = colon == std::string::npos ? key : key.substr(0, colon);
    std::string name = colon == std::string::npos ? key : key.substr(colon + 1);
    if (kind == "default") {
      t->default_.name = "default";
      t->default_.limits = raw.limits;
      t->default_.automation = std::move(raw.automation);
      renumber(&t->default_.automation);
      continue;
    }
    if (kind == "source") {
      t->sources_[name] = raw.limits;
      continue;
    }
    auto r = std::make_unique<ShapingRule>();
    r->name = name;
    r->limits = raw.limits;
    r->automation = std::move(raw.automation);
    renumber(&r->automation);
    if (kind == "domain") {
      r->domains = {name};
    } else {
      r->domains = raw.domains.value_or(std::vector<std::string>{});
      r->mx_hosts = raw.mx_hosts.value_or(std::vector<std::string>{});
      r->mx_suffixes = raw.mx_suffixes.value_or(std::vector<std::string>{});
    }
    for (const auto& d : r->domains) {
      if (!t->by_domain_.emplace(d, r.get()).second) {
        return absl::InvalidArgumentError(Cat("shaping: domain '", d, "' is matched by two rules"));
      }
    }
    for (const auto& h : r->mx_hosts) {
      if (!t->by_mx_host_.emplace(h, r.get()).second) {
        return absl::InvalidArgumentError(Cat("shaping: MX host '", h, "' is matched by two rules"));
      }
    }
    for (const auto& s : r->mx_suffixes) {
      if (!t->by_suffix_.emplace(s, r.get()).second) {
        return absl::InvalidArgumentError(Cat("shaping: MX suffix '", s, "' is matched by two rules"));
      }
    }
    t->rules_.push_back(std::move(r));
  }
  return std::shared_ptr<const ShapingTable>(std::move(t));
}

namespace {

// `s` in lower case: a view of it when it already is (DNS names usually
// are), else a copy in `buf`.
std::string_view LowerView(std::string_view s, std::string* buf) {
  while (!s.empty() && s.back() == '.') s.remove_suffix(1);
  bool lower = true;
  for (char c : s) lower &= !(c >= 'A' && c <= 'Z');
  if (lower) return s;
  buf->assign(s);
  for (char& c : *buf) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return *buf;
}

}  // namespace

// exact: a host equal to an mx_hosts entry; else the longest mx_suffix any host ends with.
const ShapingRule* ShapingTable::FindProvider(const std::vector<std::string>& hosts, bool exact) const {
  const Index& index = exact ? by_mx_host_ : by_suffix_;
  if (index.empty()) return nullptr;
  const ShapingRule* best = nullptr;
  size_t best_len = 0;
  std::string buf;
  for (const std::string& raw : hosts) {
    std::string_view host = LowerView(raw, &buf);
    if (exact) {
      auto it = index.find(host);
      if (it != index.end()) return it->second;
      continue;
    }
    // Every suffix at a label boundary, longest first: "a.b.google.com",
    // "b.google.com", "google.com", "com".
    for (size_t pos = 0; pos != std::string_view::npos && host.size() - pos > best_len;) {
      auto it = index.find(host.substr(pos));
      if (it != index.end()) {
        best = it->second;
        best_len = host.size() - pos;
        break;
      }
      pos = host.find('.', pos);
      if (pos != std::string_view::npos) ++pos;
    }
  }
  return best;
}

ResolvedShaping ShapingTable::Lookup(std::string_view domain, const std::vector<std::string>& hosts) const {
  ResolvedShaping r;
  r.limits = default_.limits;
  const ShapingRule* suffix = FindProvider(hosts, false);
  const ShapingRule* host = FindProvider(hosts, true);
  const ShapingRule* dom = nullptr;
  if (!by_domain_.empty()) {
    std::string buf;
    auto it = by_domain_.find(LowerView(domain, &buf));
    if (it != by_domain_.end()) dom = it->second;
  }
  // Least specific first for the limits; most specific first for automation.
  const ShapingRule* chain[] = {suffix, host, dom};
  size_t n = default_.automation.size();
  for (const ShapingRule* x : chain) {
    if (x == nullptr) continue;
    r.limits.MergeFrom(x->limits);
    r.rule = x->name;
    n += x->automation.size();
  }
  r.automation.reserve(n);
  for (int i = 2; i >= 0; --i) {
    const ShapingRule* x = chain[i];
    // One rule may match at several levels (domains and mx_suffix): once.
    if (x == nullptr || (i < 2 && x == chain[i + 1]) || (i == 0 && x == chain[2])) continue;
    for (const auto& a : x->automation) r.automation.push_back(&a);
  }
  for (const auto& a : default_.automation) r.automation.push_back(&a);
  return r;
}

const PathLimits* ShapingTable::SourceLimits(const std::string& source) const {
  auto it = sources_.find(source);
  return it == sources_.end() ? nullptr : &it->second;
}

std::vector<std::string> ShapingTable::RuleNames() const {
  std::vector<std::string> out{"default"};
  for (const auto& r : rules_) out.push_back(r->name);
  return out;
}

}  // namespace mxr::delivery
