// Bounce classification: every failed attempt gets one category from an
// ordered list of rules (the operator's file first, then the shipped one,
// deploy/shaping/classify.toml compiled in); the first rule whose regex
// matches the reply line "CODE ENHANCED TEXT" wins; no match: `other`.
// Categories are a fixed, small set (a bounded metric label). A small pure
// library: the suppression list can reuse it.
//
//   auto c = Classifier::Load({{"shipped", kShippedClassification}});
//   (*c)->Classify(550, "5.1.1", "user unknown") == Category::kInvalidRecipient
//
// File format:
//   [[rule]]
//   category = "mailbox_full"
//   regex = '''^452 4\.2\.2 '''     # RE2 syntax, case-insensitive
//
// RE2 (linear time, no backtracking: remote text is untrusted). Immutable
// once loaded; thread-safe.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

#include "re2/re2.h"
#include "re2/set.h"

namespace mxr::delivery {

enum class Category : uint8_t {
  kInvalidRecipient = 0,
  kMailboxFull,
  kMessageTooLarge,
  kSpamReputation,
  kPolicy,
  kRateLimited,
  kDnsFailure,
  kTlsFailure,
  kConnectionFailure,
  kContentRejected,
  kOther,
};
inline constexpr size_t kCategoryCount = 11;
std::string_view CategoryName(Category c);  // "invalid_recipient", ...
std::optional<Category> CategoryFromName(std::string_view name);

class Classifier {
 public:
  // (name for errors, TOML text) in decreasing precedence: the first file's
  // rules are tried first.
  static absl::StatusOr<std::shared_ptr<const Classifier>> Load(
      const std::vector<std::pair<std::string, std::string>>& files);

  Category Classify(int code, std::string_view enhanced, std::string_view text) const;
  size_t size() const { return rules_.size(); }
  ~Classifier();

 private:
  struct Rule {
    Category category;
    std::unique_ptr<re2::RE2> re;
  };
  std::vector<Rule> rules_;
  // Every rule's regex in one automaton (one pass over the reply); the
  // lowest matching index wins. nullptr if it could not be built (then the
  // rules are tried one by one).
  std::unique_ptr<re2::RE2::Set> set_;
};

// The shipped rules (deploy/shaping/classify.toml, compiled in).
extern const char* const kShippedClassification;

}  // namespace mxr::delivery
