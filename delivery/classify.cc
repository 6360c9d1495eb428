#include "delivery/classify.h"

#include <algorithm>

#include "common/strings.h"
#include "delivery/stats.h"
#include "re2/re2.h"
#include "re2/set.h"
#include "toml++/toml.h"

namespace mxr::delivery {

namespace {
constexpr std::array<std::string_view, kCategoryCount> kNames = {
    "invalid_recipient", "mailbox_full", "message_too_large", "spam_reputation", "policy", "rate_limited",
    "dns_failure",       "tls_failure",  "connection_failure", "content_rejected", "other"};
constexpr bool SameNames() {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] != kFailureCategoryNames[i]) return false;
  }
  return kNames.size() == kFailureCategoryNames.size();
}
static_assert(SameNames(), "delivery/stats.h kFailureCategoryNames must list the categories in order");
}  // namespace

std::string_view CategoryName(Category c) { return kNames[static_cast<size_t>(c)]; }

std::optional<Category> CategoryFromName(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<Category>(i);
  }
  return std::nullopt;
}

Classifier::~Classifier() = default;

absl::StatusOr<std::shared_ptr<const Classifier>> Classifier::Load(
    const std::vector<std::pair<std::string, std::string>>& files) {
  auto c = std::make_shared<Classifier>();
  for (const auto& [file, text] : files) {
    toml::table root;
    try {
      root = toml::parse(text, file);
    } catch (const toml::parse_error& e) {
      return absl::InvalidArgumentError(
          Cat(file, ":", static_cast<unsigned>(e.source().begin.line), ": ", e.description()));
    }
    for (const auto& [k, v] : root) {
      if (k.str() != "rule" || !v.is_array_of_tables()) {
        return absl::InvalidArgumentError(Cat(file, ":", static_cast<unsigned>(v.source().begin.line),
                                              ": expected only [[rule]] tables, got '", k.str(), "'"));
      }
      for (const toml::node& el : *v.as_array()) {
        const toml::table& t = *el.as_table();
        std::string where = Cat(file, ":", static_cast<unsigned>(el.source().begin.line), ": rule: ");
        auto cat = t["category"].value<std::string>();
        auto re = t["regex"].value<std::string>();
        for (const auto& [rk, rv] : t) {
          if (rk.str() != "category" && rk.str() != "regex" && rk.str() != "example") {
            return absl::InvalidArgumentError(Cat(where, "unknown key '", rk.str(), "'"));
          }
        }
        if (!cat || !CategoryFromName(*cat)) {
          return absl::InvalidArgumentError(Cat(where, "category must be one of invalid_recipient, mailbox_full, "
                                                       "message_too_large, spam_reputation, policy, rate_limited, "
                                                       "dns_failure, tls_failure, connection_failure, "
                                                       "content_rejected, other"));
        }
        if (!re || re->empty()) return absl::InvalidArgumentError(Cat(where, "regex is required"));
        re2::RE2::Options o;
        o.set_log_errors(false);
        o.set_case_sensitive(false);
        auto rx = std::make_unique<re2::RE2>(*re, o);
        if (!rx->ok()) return absl::InvalidArgumentError(Cat(where, "regex '", *re, "': ", rx->error()));
        c->rules_.push_back(Rule{*CategoryFromName(*cat), std::move(rx)});
      }
    }
  }
  re2::RE2::Options o;
  o.set_log_errors(false);
  o.set_case_sensitive(false);
  auto set = std::make_unique<re2::RE2::Set>(o, re2::RE2::UNANCHORED);
  bool ok = true;
  for (const Rule& r : c->rules_) ok = ok && set->Add(r.re->pattern(), nullptr) >= 0;
  if (ok && set->Compile()) c->set_ = std::move(set);
  return std::shared_ptr<const Classifier>(std::move(c));
}

Category Classifier::Classify(int code, std::string_view enhanced, std::string_view text) const {
  // The reply as one line: "550 5.1.1 text" (multi-line replies joined by spaces).
  std::string line = Cat(code, " ", enhanced.empty() ? "-" : enhanced, " ");
  line.reserve(line.size() + text.size());
  for (char ch : text) line += (ch == '\r' || ch == '\n') ? ' ' : ch;
  re2::StringPiece sp(line);
  if (set_) {
    std::vector<int> hits;
    if (!set_->Match(sp, &hits) || hits.empty()) return Category::kOther;
    return rules_[static_cast<size_t>(*std::min_element(hits.begin(), hits.end()))].category;
  }
  for (const Rule& r : rules_) {
    if (re2::RE2::PartialMatch(sp, *r.re)) return r.category;
  }
  return Category::kOther;
}

}  // namespace mxr::delivery
