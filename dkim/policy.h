// Signing rules and their keys ([dkim] in the configuration): which keys
// sign a message, and what happens when none can. An immutable snapshot:
// built at start and on SIGHUP, shared by the signing threads.
//
//   auto p = Policy::Build(cfg.dkim, Policy::Mode::kStrict);   // start: any key error fails
//   Decision d = p->Decide(facts);                             // pure, table-tested
//
// Decide() is a pure function of the snapshot and the message's facts:
//   - rules are tried in order; the first whose match (From: domain,
//     envelope sender domain, or AUTH user) fits signs, with all its keys;
//   - a key that could not be loaded (only after a SIGHUP; at start it is
//     an error) is skipped, or defers the message (on_key_error = "defer");
//   - no rule: unsigned, or deferred (on_no_rule = "defer");
//   - a message the relay generated itself (a DSN) is never deferred; when
//     no rule matches it, the first usable key whose d= is its From: domain
//     (the relay's hostname) or a parent of it signs it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "dkim/keys.h"
#include "dkim/signer.h"
#include "dkim/stats.h"

namespace mxr::dkim {

// What the signer knows about a message when it chooses.
struct MessageFacts {
  absl::StatusOr<std::string> from_domain = std::string();  // error: no usable From:
  std::string envelope_domain;                              // "" for the null sender
  std::string auth_user;                                    // "" without AUTH
  bool generated = false;                                   // made by the relay (DSN)
};

struct Decision {
  enum class Action { kSign, kSendUnsigned, kDefer };
  Action action = Action::kSendUnsigned;
  std::vector<SigningKey> keys;  // kSign: the usable keys, in rule order
  // Failures to count (an unusable key next to usable ones is counted too).
  std::vector<Failure> failures;
  // For logs, and the 451 text when deferred ("4.7.x ..."): why.
  std::string detail;
  int rule = -1;  // index of the matching rule, -1 = none
};

class Policy {
 public:
  enum class Mode {
    kStrict,   // start, check-config: any key that cannot be loaded is an error
    kLenient,  // SIGHUP: such a key is kept as unusable (its rule's fallback applies)
  };
  struct Key {
    std::string domain, selector, path;
    std::shared_ptr<const PrivateKey> key;  // null when unusable
    absl::Status error;                     // why it is unusable
  };
  struct Rule {
    DkimMatch match;
    std::string value;
    std::vector<size_t> keys;  // indexes into keys()
  };

  // Every key file is read once however many rules name it. Warnings
  // (lenient mode: unusable keys) are appended to `warnings`.
  static absl::StatusOr<std::shared_ptr<const Policy>> Build(const DkimConfig& cfg, Mode mode,
                                                             std::vector<std::string>* warnings = nullptr);

  bool empty() const { return rules_.empty(); }
  const std::vector<Rule>& rules() const { return rules_; }
  const std::vector<Key>& keys() const { return keys_; }
  const SignOptions& options() const { return options_; }
  const DkimConfig& config() const { return config_; }

  Decision Decide(const MessageFacts& facts) const;

 private:
  DkimConfig config_;
  SignOptions options_;
  std::vector<Key> keys_;
  std::vector<Rule> rules_;
};

// The facts of a parsed message: its From: domain (exactly one From:
// field with mailboxes of one domain), the envelope sender's domain, the
// AUTH user.
MessageFacts FactsOf(const ParsedMessage& m, const std::string& envelope_sender, const std::string& auth_user,
                     bool generated);

// Printable name of a match kind ("from_domain", "envelope_domain", "auth_user").
std::string_view MatchName(DkimMatch m);

}  // namespace mxr::dkim
