// Response-driven automation (KumoMTA's "automation", PowerMTA's "backoff
// mode"): a rule matches a remote reply (code, enhanced status code prefix,
// an RE2 regex on the text) and acts on the egress path for a time:
//
//   suspend              no connection from that source to that site; its
//                        jobs are held without being charged an attempt
//   connection_limit=N   at most N connections on the path
//   message_rate="1/min" a lower delivery rate on the path
// and, alone or with one of those (`treat`):
//   permanent            this reply counts as a 5xx whatever its code
//   temporary            this reply counts as a 4xx whatever its code
//
// RE2 runs in time linear in the text (remote text is untrusted: no
// catastrophic backtracking). Pure: the engine applies the actions
// (PathOverrides) with its clock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "delivery/rate_limiter.h"

namespace re2 {
class RE2;
}

namespace mxr::delivery {

enum class ActionKind { kNone, kSuspend, kConnectionLimit, kMessageRate };
enum class Treat { kAsIs, kPermanent, kTemporary };
std::string_view ActionName(ActionKind k);

struct AutomationRule {
  std::string rule;        // the shaping rule it belongs to (logs, metrics)
  int index = 0;           // its position there (logs)
  int code = 0;            // 0 = any reply code
  std::string enhanced;    // prefix of the enhanced code ("4.7.28"), "" = any
  std::string regex_text;  // "" = any text
  std::shared_ptr<const re2::RE2> regex;
  ActionKind action = ActionKind::kSuspend;
  Treat treat = Treat::kAsIs;
  int connection_limit = 0;  // kConnectionLimit
  RateSpec rate;             // kMessageRate
  int64_t duration_s = 0;    // how long the action holds (0 without one)

  bool Matches(int reply_code, std::string_view enhanced_code, std::string_view text) const;
  std::string Describe() const;  // "suspend 3600s" / "connection_limit=1 5400s" / "permanent"
};

// Builds a rule; `regex` empty = any text. Errors name what is wrong.
absl::StatusOr<AutomationRule> MakeAutomationRule(std::string rule, int index, int code, std::string enhanced,
                                                  std::string regex, std::string_view action, int64_t value,
                                                  std::string_view rate, int64_t duration_s,
                                                  std::string_view treat = "");

// The first rule of `rules` matching the reply, nullptr if none.
const AutomationRule* FirstMatch(const std::vector<const AutomationRule*>& rules, int code,
                                 std::string_view enhanced, std::string_view text);

// What automation currently imposes on one egress path (times in ms of the
// delivery loop's clock; 0 = not in force).
struct PathOverrides {
  int64_t suspended_until_ms = 0;
  int64_t suspended_since_ms = 0;  // start of the current (possibly extended) suspension
  int64_t conn_limit_until_ms = 0;
  int conn_limit = 0;
  int64_t rate_until_ms = 0;
  RateSpec rate;
  std::string reason;  // the reply that triggered the latest action (shown in listings)
  std::string rule;    // its rule name

  // Applies `r`'s action at now_ms. Returns its end in ms (0: no action).
  int64_t Apply(const AutomationRule& r, int64_t now_ms, std::string reply);
  bool Suspended(int64_t now_ms) const { return suspended_until_ms > now_ms; }
  bool Active(int64_t now_ms) const {
    return suspended_until_ms > now_ms || conn_limit_until_ms > now_ms || rate_until_ms > now_ms;
  }
  // The limits after the overrides in force.
  int EffectiveConnLimit(int configured, int64_t now_ms) const;
};

}  // namespace mxr::delivery
