#include "dkim/policy.h"

#include <map>

#include "common/strings.h"
#include "dkim/address.h"

namespace mxr::dkim {

std::string_view MatchName(DkimMatch m) {
  switch (m) {
    case DkimMatch::kFromDomain: return "from_domain";
    case DkimMatch::kEnvelopeDomain: return "envelope_domain";
    case DkimMatch::kAuthUser: return "auth_user";
  }
  return "?";
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Build(const DkimConfig& cfg, Mode mode,
                                                            std::vector<std::string>* warnings) {
  auto p = std::shared_ptr<Policy>(new Policy());
  p->config_ = cfg;
  p->options_ = SignOptions::FromConfig(cfg);
  std::map<std::string, std::pair<std::shared_ptr<const PrivateKey>, absl::Status>> files;
  std::map<std::tuple<std::string, std::string, std::string>, size_t> index;  // (d, s, path) -> key
  for (size_t r = 0; r < cfg.rules.size(); ++r) {
    const DkimRuleConfig& rc = cfg.rules[r];
    Rule rule{rc.match, rc.value, {}};
    for (size_t k = 0; k < rc.keys.size(); ++k) {
      const DkimKeyConfig& kc = rc.keys[k];
      std::string where = Cat("dkim.rule[", r, "].keys[", k, "] (d=", kc.domain, " s=", kc.selector, ")");
      auto it = files.find(kc.key_file);
      if (it == files.end()) {
        auto loaded = PrivateKey::LoadFile(kc.key_file);
        it = files.emplace(kc.key_file, loaded.ok() ? std::make_pair(*loaded, absl::OkStatus())
                                                    : std::make_pair(nullptr, loaded.status()))
                 .first;
      }
      absl::Status st = it->second.second;
      std::shared_ptr<const PrivateKey> key = it->second.first;
      if (st.ok() && !kc.algorithm.empty()) {
        auto want = ParseAlgorithm(kc.algorithm);
        if (want && *want != key->algorithm()) {
          st = absl::InvalidArgumentError(Cat(kc.key_file, ": algorithm = \"", kc.algorithm, "\" but the file holds an ",
                                              AlgorithmName(key->algorithm()), " key"));
          key = nullptr;
        }
      }
      if (!st.ok()) {
        if (mode == Mode::kStrict) return absl::Status(st.code(), Cat(where, ": ", st.message()));
        if (warnings != nullptr) warnings->push_back(Cat(where, ": ", st.message()));
      }
      auto id = std::make_tuple(kc.domain, kc.selector, kc.key_file);
      auto ix = index.find(id);
      if (ix == index.end()) {
        ix = index.emplace(id, p->keys_.size()).first;
        p->keys_.push_back(Key{kc.domain, kc.selector, kc.key_file, key, st});
      }
      rule.keys.push_back(ix->second);
    }
    p->rules_.push_back(std::move(rule));
  }
  return std::shared_ptr<const Policy>(std::move(p));
}

Decision Policy::Decide(const MessageFacts& f) const {
  Decision d;
  for (size_t r = 0; r < rules_.size(); ++r) {
    const Rule& rule = rules_[r];
    bool match = false;
    switch (rule.match) {
      case DkimMatch::kFromDomain:
        match = f.from_domain.ok() && DomainMatches(rule.value, *f.from_domain);
        break;
      case DkimMatch::kEnvelopeDomain:
        match = DomainMatches(rule.value, f.envelope_domain);
        break;
      case DkimMatch::kAuthUser:
        match = !f.auth_user.empty() && (rule.value == "*" || rule.value == f.auth_user);
        break;
    }
    if (!match) continue;
    d.rule = static_cast<int>(r);
    std::string unusable;
    for (size_t k : rule.keys) {
      const Key& key = keys_[k];
      if (key.key) {
        d.keys.push_back(SigningKey{key.domain, key.selector, key.key});
      } else {
        d.failures.push_back(Failure::kKeyUnusable);
        if (unusable.empty()) unusable = Cat("d=", key.domain, " s=", key.selector, ": ", key.error.message());
      }
    }
    if (!unusable.empty()) {
      if (config_.on_key_error == DkimFallback::kDefer && !f.generated) {
        d.action = Decision::Action::kDefer;
        d.keys.clear();
        d.detail = Cat("4.7.5 DKIM key unusable (", unusable, "); try again later");
        return d;
      }
      d.detail = Cat("key unusable: ", unusable);
    }
    d.action = d.keys.empty() ? Decision::Action::kSendUnsigned : Decision::Action::kSign;
    return d;
  }
  // A message the relay made itself (a DSN, From: MAILER-DAEMON@<hostname>)
  // that no rule names: signed by the first usable key whose d= is its
  // From: domain or a parent of it (DMARC's relaxed alignment), if any.
  if (f.generated && f.from_domain.ok()) {
    const std::string& from = *f.from_domain;
    for (const Key& key : keys_) {
      bool aligned = from == key.domain ||
                     (from.size() > key.domain.size() && from.ends_with(key.domain) &&
                      from[from.size() - key.domain.size() - 1] == '.');
      if (key.key && aligned) {
        d.action = Decision::Action::kSign;
        d.keys.push_back(SigningKey{key.domain, key.selector, key.key});
        return d;
      }
    }
  }
  Failure why = f.from_domain.ok() ? Failure::kNoRule : Failure::kFromInvalid;
  d.failures.push_back(why);
  std::string what = f.from_domain.ok() ? Cat("no DKIM signing rule for From: domain ", *f.from_domain)
                                        : Cat("no DKIM signing rule: ", f.from_domain.status().message());
  if (config_.on_no_rule == DkimFallback::kDefer && !f.generated) {
    d.action = Decision::Action::kDefer;
    d.detail = Cat("4.7.0 ", what, "; try again later");
  } else {
    d.action = Decision::Action::kSendUnsigned;
    d.detail = what;
  }
  return d;
}

MessageFacts FactsOf(const ParsedMessage& m, const std::string& envelope_sender, const std::string& auth_user,
                     bool generated) {
  MessageFacts f;
  int froms = 0;
  std::string_view value;
  for (size_t i = 0; i < m.fields.size(); ++i) {
    if (!HeaderNameEquals(m.name(i), "from")) continue;
    ++froms;
    std::string_view raw = m.raw(i);
    value = raw.substr(raw.find(':') + 1);
  }
  if (froms == 0) {
    f.from_domain = absl::InvalidArgumentError("the message has no From: field");
  } else if (froms > 1) {
    f.from_domain = absl::InvalidArgumentError(Cat("the message has ", froms, " From: fields"));
  } else {
    f.from_domain = FromDomain(value);
  }
  f.envelope_domain = AddressDomain(envelope_sender);
  f.auth_user = auth_user;
  f.generated = generated;
  return f;
}

}  // namespace mxr::dkim
