// Disposition: what one round of attempts means for a message. Pure
// functions of (record, this round's per-recipient results, config, time):
// no clock, no I/O, table-tested in disposition_test.cc.
//
//   round results --Dispose--> per recipient: delivered / deferred / bounced /
//   expired (record updated, DSN list) --(DSN committed or not)-->
//   Reschedule: done (delete) or next attempt time.
//
// Postfix's qmgr_defer/qmgr_bounce decisions in one place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "delivery/dsn.h"
#include "delivery/stats.h"
#include "queue/types.h"

namespace mxr::delivery {

// The result of this round for one recipient.
struct RcptOutcome {
  bool set = false;            // false: nothing happened to it this round
  bool not_attempted = false;  // held back (site backed off, shutdown): no attempt charged
  bool record_reply = true;    // with not_attempted: the record keeps this as its last reply
  int64_t hold_until_us = 0;   // with not_attempted: retry no earlier than this
  int code = 0;
  std::string enhanced, text;
  std::string mx_host, ip, site, tls;
  std::string site_label;  // metrics label of the site (see SiteMetrics)
  std::string source;      // egress source name (delivery/egress.h), "" before routing
  bool next_hop_dsn = false;  // the server that answered offered DSN: NOTIFY went on with the mail

  // Held back without an attempt until `until_us`.
  static RcptOutcome Held(int64_t until_us, int code, std::string enhanced, std::string text);
  static RcptOutcome Local(int code, std::string enhanced, std::string text);
};

// One pending recipient's fate this round.
struct RcptDecision {
  size_t rcpt = 0;        // index into meta.recipients
  Outcome outcome = Outcome::kDeferred;
  bool dsn_suppressed = false;  // bounced, but its NOTIFY asked for no failure DSN
  bool delay_notice = false;    // a "delayed" notice is in Disposition::notices
  RcptOutcome shown;      // what the logs and the event log say (expiry rewrites it)
};

struct Disposition {
  std::vector<RcptDecision> decisions;  // one per recipient that was pending
  std::vector<FailedRecipient> bounces; // for the DSN; empty: none to send
  // RFC 3461 notices asked for by NOTIFY (action "relayed" for a success
  // the next hop cannot report, "delayed"): in the same DSN as the bounces.
  // Their loss (a failed DSN commit) does not put a recipient back.
  std::vector<FailedRecipient> notices;
};

// Applies `outcomes` (one per recipient of `meta`) to the record: state,
// per-recipient attempts and last reply. A recipient without a result this
// round keeps its last reply. 2xx -> delivered; 5xx -> bounced; otherwise
// past max_age -> expired (4.4.7, a bounce); otherwise deferred. A recipient
// held back (not_attempted) is not charged an attempt; the hold's reason
// becomes its last reply (unless !record_reply).
// RFC 3461: a bounced recipient whose NOTIFY lacks FAILURE (NEVER, or e.g.
// SUCCESS alone) gets no failure DSN; NOTIFY=SUCCESS delivered to a next hop
// without DSN gives a "relayed" notice; NOTIFY=DELAY still deferred
// `delay_dsn_after` seconds after reception gives one "delayed" notice
// (recipient.delay_dsn_sent is set).
// REQUIRES: outcomes->size() == meta->recipients.size().
Disposition Dispose(const DeliveryConfig& cfg, queue::MessageMeta* meta, std::vector<RcptOutcome>* outcomes,
                    int64_t now_us);

struct NextStep {
  bool done = false;             // no recipient left pending: delete the message
  int64_t next_attempt_us = 0;   // when not done
  bool charged = false;          // meta.attempts was incremented
};

// After the DSN for Dispose()'s bounces was committed (`bounce_committed`)
// or failed (its recipients go back to pending, to be bounced again later):
// whether the message is done, or when it is tried next. Recipients that
// were all held back retry at their hold time without a charge; any real
// attempt charges the message one attempt and backs off (RetryDelayMs with
// `jitter01`).
NextStep Reschedule(const DeliveryConfig& cfg, queue::MessageMeta* meta, const std::vector<RcptOutcome>& outcomes,
                    bool bounce_committed, int64_t now_us, double jitter01);

}  // namespace mxr::delivery
