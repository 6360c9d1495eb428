#include "delivery/disposition.h"

#include <algorithm>

#include "common/check.h"
#include "common/strings.h"
#include "delivery/policy.h"

namespace mxr::delivery {

RcptOutcome RcptOutcome::Held(int64_t until_us, int code, std::string enhanced, std::string text) {
  RcptOutcome o;
  o.set = true;
  o.not_attempted = true;
  o.hold_until_us = until_us;
  o.code = code;
  o.enhanced = std::move(enhanced);
  o.text = std::move(text);
  return o;
}

RcptOutcome RcptOutcome::Local(int code, std::string enhanced, std::string text) {
  RcptOutcome o;
  o.set = true;
  o.code = code;
  o.enhanced = std::move(enhanced);
  o.text = std::move(text);
  return o;
}

namespace {

// RFC 3461 4.1: no NOTIFY means failure DSNs (and delays at our discretion).
bool WantsFailureDsn(const queue::Recipient& r) {
  return r.notify == 0 || (r.notify & queue::kNotifyFailure) != 0;
}

FailedRecipient Notice(const queue::Recipient& r, int code, const std::string& enhanced, const std::string& text,
                       const std::string& mx, const char* action) {
  FailedRecipient f{r.address, code, enhanced, text, mx};
  f.action = action;
  f.orcpt = r.orcpt;
  return f;
}

}  // namespace

Disposition Dispose(const DeliveryConfig& cfg, queue::MessageMeta* meta, std::vector<RcptOutcome>* outcomes,
                    int64_t now_us) {
  MXR_DCHECK(outcomes->size() == meta->recipients.size(), "one outcome per recipient");
  Disposition d;
  bool expired = Expired(cfg, meta->received_us, now_us);
  for (size_t i = 0; i < meta->recipients.size(); ++i) {
    auto& r = meta->recipients[i];
    if (r.state != queue::RcptState::kPending) continue;
    RcptOutcome& o = (*outcomes)[i];
    if (!o.set) {  // no attempt this round (expired before trying)
      o.set = true;
      o.code = r.last_code ? static_cast<int>(r.last_code) : 451;
      o.text = r.last_response.empty() ? "No delivery attempt" : r.last_response;
    }
    RcptDecision dec;
    dec.rcpt = i;
    dec.shown = o;
    ReplyClass cls = Classify(o.code);
    if (cls == ReplyClass::kSuccess) {
      dec.outcome = Outcome::kDelivered;
      r.state = queue::RcptState::kDelivered;
      if ((r.notify & queue::kNotifySuccess) && !o.next_hop_dsn) {
        d.notices.push_back(Notice(r, o.code, o.enhanced, o.text, o.mx_host, "relayed"));
      }
    } else if (cls == ReplyClass::kPermanent) {
      dec.outcome = Outcome::kBounced;
      r.state = queue::RcptState::kBounced;
      if (WantsFailureDsn(r)) {
        d.bounces.push_back(Notice(r, o.code, o.enhanced, o.text, o.mx_host, "failed"));
      } else {
        dec.dsn_suppressed = true;
      }
    } else if (expired) {
      dec.outcome = Outcome::kExpired;
      dec.shown.enhanced = "4.4.7";
      dec.shown.text = Cat("Delivery time expired; last error: ", o.code, " ", o.enhanced, " ", o.text);
      r.state = queue::RcptState::kBounced;
      if (WantsFailureDsn(r)) {
        d.bounces.push_back(Notice(r, o.code, "4.4.7", dec.shown.text, o.mx_host, "failed"));
      } else {
        dec.dsn_suppressed = true;
      }
    } else {
      dec.outcome = Outcome::kDeferred;
      if ((r.notify & queue::kNotifyDelay) && !r.delay_dsn_sent && cfg.delay_dsn_after > 0 &&
          now_us - meta->received_us >= int64_t{cfg.delay_dsn_after} * 1'000'000) {
        r.delay_dsn_sent = true;
        dec.delay_notice = true;
        d.notices.push_back(Notice(r, o.code, o.enhanced, o.text, o.mx_host, "delayed"));
      }
    }
    d.decisions.push_back(std::move(dec));
    if (o.not_attempted && r.state == queue::RcptState::kPending) {
      // Held back: no attempt charged, but the reason is what `queue list`
      // shows (e.g. the destination's connection error), unless the hold
      // says nothing about the destination (a stop).
      if (o.record_reply) {
        r.last_code = static_cast<uint32_t>(o.code);
        r.last_response = Cat(o.enhanced, o.enhanced.empty() ? "" : " ", o.text);
      }
      continue;
    }
    r.attempts++;
    r.last_code = static_cast<uint32_t>(o.code);
    r.last_response = Cat(o.enhanced, o.enhanced.empty() ? "" : " ", o.text);
  }
  return d;
}

NextStep Reschedule(const DeliveryConfig& cfg, queue::MessageMeta* meta, const std::vector<RcptOutcome>& outcomes,
                    bool bounce_committed, int64_t now_us, double jitter01) {
  if (!bounce_committed) {
    // The DSN is not durable: the bounced recipients stay pending and are tried again.
    for (auto& r : meta->recipients) {
      if (r.state == queue::RcptState::kBounced) r.state = queue::RcptState::kPending;
    }
  }
  NextStep step;
  step.done = meta->PendingRecipients() == 0;
  if (step.done) return step;
  bool attempted = false;
  int64_t hold = 0;
  for (size_t i = 0; i < meta->recipients.size(); ++i) {
    if (meta->recipients[i].state != queue::RcptState::kPending) continue;
    if (i < outcomes.size() && outcomes[i].not_attempted) {
      hold = std::max(hold, outcomes[i].hold_until_us);
    } else {
      attempted = true;
    }
  }
  if (attempted) {
    meta->attempts++;
    step.charged = true;
    step.next_attempt_us = now_us + RetryDelayMs(cfg, meta->attempts, jitter01) * 1000;
  } else {
    step.next_attempt_us = std::max(now_us, hold);
  }
  meta->next_attempt_us = step.next_attempt_us;
  return step;
}

}  // namespace mxr::delivery
