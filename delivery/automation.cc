#include "delivery/automation.h"

#include <algorithm>

#include "common/strings.h"
#include "re2/re2.h"

namespace mxr::delivery {

std::string_view ActionName(ActionKind k) {
  switch (k) {
    case ActionKind::kNone: return "none";
    case ActionKind::kSuspend: return "suspend";
    case ActionKind::kConnectionLimit: return "connection_limit";
    case ActionKind::kMessageRate: return "message_rate";
  }
  return "?";
}

bool AutomationRule::Matches(int reply_code, std::string_view enhanced_code, std::string_view text) const {
  if (code != 0 && code != reply_code) return false;
  if (!enhanced.empty()) {
    if (enhanced_code.substr(0, enhanced.size()) != enhanced) return false;
    // "4.7.2" must not match "4.7.28": the prefix ends at a component boundary.
    if (enhanced_code.size() > enhanced.size() && enhanced_code[enhanced.size()] != '.') return false;
  }
  if (regex && !re2::RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *regex)) return false;
  return true;
}

std::string AutomationRule::Describe() const {
  std::string s;
  switch (action) {
    case ActionKind::kNone: break;
    case ActionKind::kSuspend: s = Cat("suspend ", duration_s, "s"); break;
    case ActionKind::kConnectionLimit: s = Cat("connection_limit=", connection_limit, " ", duration_s, "s"); break;
    case ActionKind::kMessageRate: s = Cat("message_rate=", rate.ToString(), " ", duration_s, "s"); break;
  }
  if (treat != Treat::kAsIs) s += Cat(s.empty() ? "" : " ", treat == Treat::kPermanent ? "permanent" : "temporary");
  return s;
}

absl::StatusOr<AutomationRule> MakeAutomationRule(std::string rule, int index, int code, std::string enhanced,
                                                  std::string regex, std::string_view action, int64_t value,
                                                  std::string_view rate, int64_t duration_s,
                                                  std::string_view treat) {
  AutomationRule r;
  r.rule = std::move(rule);
  r.index = index;
  r.code = code;
  r.enhanced = std::move(enhanced);
  r.regex_text = std::move(regex);
  if (code != 0 && (code < 200 || code > 599)) return absl::InvalidArgumentError("code must be 200..599");
  if (!r.regex_text.empty()) {
    re2::RE2::Options o;
    o.set_log_errors(false);
    o.set_case_sensitive(false);
    auto re = std::make_shared<re2::RE2>(r.regex_text, o);
    if (!re->ok()) return absl::InvalidArgumentError(Cat("regex '", r.regex_text, "': ", re->error()));
    r.regex = std::move(re);
  }
  if (code == 0 && r.enhanced.empty() && r.regex_text.empty()) {
    return absl::InvalidArgumentError("needs at least one of code, enhanced, regex");
  }
  if (treat == "permanent" || action == "permanent") {
    r.treat = Treat::kPermanent;
  } else if (treat == "temporary" || action == "temporary") {
    r.treat = Treat::kTemporary;
  } else if (!treat.empty()) {
    return absl::InvalidArgumentError(Cat("treat '", treat, "': expected permanent or temporary"));
  }
  if (action.empty() || action == "permanent" || action == "temporary") {
    r.action = ActionKind::kNone;
    if (r.treat == Treat::kAsIs) return absl::InvalidArgumentError("needs an action or treat");
  } else if (action == "suspend") {
    r.action = ActionKind::kSuspend;
  } else if (action == "connection_limit") {
    r.action = ActionKind::kConnectionLimit;
    if (value < 1 || value > 10000) return absl::InvalidArgumentError("connection_limit needs value 1..10000");
    r.connection_limit = static_cast<int>(value);
  } else if (action == "message_rate") {
    r.action = ActionKind::kMessageRate;
    auto spec = ParseRate(rate);
    if (!spec.ok()) return spec.status();
    if (!spec->limited()) return absl::InvalidArgumentError("message_rate needs rate = \"N/unit\"");
    r.rate = *spec;
  } else {
    return absl::InvalidArgumentError(Cat("action '", action,
                                          "': expected suspend, connection_limit, message_rate, permanent or "
                                          "temporary"));
  }
  bool timed = r.action != ActionKind::kNone;
  if (timed && (duration_s < 1 || duration_s > 30 * 86400)) {
    return absl::InvalidArgumentError("duration must be between 1 s and 30 days");
  }
  r.duration_s = timed ? duration_s : 0;
  return r;
}

const AutomationRule* FirstMatch(const std::vector<const AutomationRule*>& rules, int code,
                                 std::string_view enhanced, std::string_view text) {
  for (const AutomationRule* r : rules) {
    if (r->Matches(code, enhanced, text)) return r;
  }
  return nullptr;
}

int64_t PathOverrides::Apply(const AutomationRule& r, int64_t now_ms, std::string reply) {
  int64_t until = now_ms + r.duration_s * 1000;
  switch (r.action) {
    case ActionKind::kSuspend:
      if (!Suspended(now_ms)) suspended_since_ms = now_ms;
      suspended_until_ms = std::max(suspended_until_ms, until);
      break;
    case ActionKind::kConnectionLimit:
      conn_limit_until_ms = until;
      conn_limit = r.connection_limit;
      break;
    case ActionKind::kMessageRate:
      rate_until_ms = until;
      rate = r.rate;
      break;
    case ActionKind::kNone: return 0;
  }
  reason = std::move(reply);
  rule = r.rule;
  return until;
}

int PathOverrides::EffectiveConnLimit(int configured, int64_t now_ms) const {
  if (conn_limit_until_ms > now_ms && conn_limit > 0) return std::min(configured, conn_limit);
  return configured;
}

}  // namespace mxr::delivery
