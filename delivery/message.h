// An active message: one loaded from the spool (or handed over fresh by the
// intake) for a round of attempts, and its jobs (Postfix's qmgr_message and
// qmgr_entry). A job is the message's pending recipients of one domain (at
// most max_recipients_per_transaction), i.e. one SMTP transaction.
//
// Lifetime: the engine's `active` map owns the message from activation until
// its bookkeeping is written; a message owns its jobs. Invariants (checked
// with MXR_DCHECK): a message is freed only with no job pending; a job is on
// at most one ready queue and one connection at a time.
//
// Delivery loop thread only.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "delivery/disposition.h"
#include "delivery/smtp_client.h"
#include "queue/types.h"

namespace mxr::delivery {

class Site;
struct Source;
struct ActiveMessage;

// A message body held in memory for the transactions that send it. Shared by
// every transaction of the message that is under way; freed (and its bytes
// given back to the body budget) when the last one ends.
using BodyRef = std::shared_ptr<const std::string>;

struct Job {
  ActiveMessage* msg = nullptr;
  std::string domain;
  std::vector<size_t> rcpts;  // indexes into msg->meta.recipients
  Site* site = nullptr;       // set once routed
  Source* source = nullptr;   // egress source chosen at routing (delivery/egress.h)
  bool queued = false;        // on a site's ready queue (ReadyQueue keeps it)
  bool on_connection = false; // taken by a connection, results not yet in
  bool done = false;          // results recorded in msg->outcomes
  BodyRef body;               // held while a connection sends it
  OutboundMessage out;        // what the connection sends
};

struct ActiveMessage {
  ~ActiveMessage();
  queue::MessageMeta meta;
  std::vector<RcptOutcome> outcomes;  // this round, one per recipient
  std::vector<std::unique_ptr<Job>> jobs;
  int pending_jobs = 0;               // jobs without results yet
  bool abandoned = false;             // dropped at shutdown with work undone (no invariant holds)
  bool dsn_pending = false;           // its DSN is being built or committed: the record waits

  // Body. A fresh message may carry the client's body from the intake
  // (`pinned`, counted against the intake budget until the message is
  // freed); otherwise it is read from the spool when a connection is ready
  // for it (BodyLoader), and `loaded` finds it while a transaction holds it.
  BodyRef pinned;
  std::atomic<int64_t>* intake_budget = nullptr;  // gets `pinned_bytes` back at the end
  uint64_t pinned_bytes = 0;
  std::weak_ptr<const std::string> loaded;
  bool body_loading = false;
  std::vector<std::function<void(const absl::Status&, BodyRef)>> body_waiters;

  // The body if it is in memory now (pinned or held by a transaction).
  BodyRef Body() const { return pinned ? pinned : loaded.lock(); }
};

}  // namespace mxr::delivery
