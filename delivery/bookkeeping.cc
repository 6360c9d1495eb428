#include "delivery/bookkeeping.h"

#include "common/check.h"
#include "common/escape.h"
#include "common/strings.h"
#include "delivery/dsn.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {

Bookkeeping::Bookkeeping(Deps deps, Done done)
    : deps_(std::move(deps)), done_(std::move(done)), rng_(std::random_device{}()) {}

namespace {
const char* LogEvent(Outcome o) {
  switch (o) {
    case Outcome::kDelivered: return "event=delivered";
    case Outcome::kDeferred: return "event=deferred";
    case Outcome::kBounced: return "event=bounced";
    case Outcome::kExpired: return "event=expired";
  }
  return "event=unknown_outcome";
}
}  // namespace

std::string_view Bookkeeping::CategoryOf(const RcptDecision& d) const {
  if (d.outcome == Outcome::kDelivered || deps_.classifier == nullptr) return "";
  const RcptOutcome& o = d.shown;
  return CategoryName(deps_.classifier->Classify(o.code, o.enhanced, o.text));
}

void Bookkeeping::Log(const ActiveMessage& m, const RcptDecision& d, std::string_view category) {
  const RcptOutcome& o = d.shown;
  DeliveryEvent e;
  e.time_us = deps_.clock->NowMicros();
  e.queue_id = m.meta.id.ToString();
  e.sender = m.meta.sender;
  e.recipient = m.meta.recipients[d.rcpt].address;
  e.outcome = std::string(OutcomeName(d.outcome));
  e.site = o.site;
  e.mx_host = o.mx_host;
  e.ip = o.ip;
  e.tls = o.tls;
  e.code = o.code;
  e.enhanced = o.enhanced;
  e.response = o.text;
  e.category = std::string(category);
  e.source = o.source;
  // Dispose() already counted this attempt in the record, unless the
  // recipient was held back and stays pending.
  bool counted = !(o.not_attempted && d.outcome == Outcome::kDeferred);
  e.attempt = m.meta.recipients[d.rcpt].attempts + (counted ? 0 : 1);
  e.queue_seconds = static_cast<double>(e.time_us - m.meta.received_us) / 1e6;
  e.tenant = m.meta.tenant;
  e.campaign = m.meta.campaign;
  // The operator's log: with event=queued (ingress) and event=rescheduled
  // below, `grep <queue id>` tells the message's story.
  spdlog::info("{} id={} rcpt=<{}> site={} mx={} ip={} tls={} code={} enhanced={} reply=\"{}\" attempt={}{} "
               "source={}{}{} queue_s={:.1f}{}{}",
               LogEvent(d.outcome), e.queue_id, LogEscape(e.recipient), e.site.empty() ? "-" : e.site,
               e.mx_host.empty() ? "-" : e.mx_host, e.ip.empty() ? "-" : e.ip, e.tls.empty() ? "no" : e.tls, e.code,
               e.enhanced.empty() ? "-" : e.enhanced, LogEscape(e.response), e.attempt,
               o.not_attempted ? " held=1" : "", e.source.empty() ? "-" : e.source,
               category.empty() ? "" : " category=", category, e.queue_seconds,
               e.tenant.empty() ? "" : Cat(" tenant=", LogEscape(e.tenant)),
               e.campaign.empty() ? "" : Cat(" campaign=", LogEscape(e.campaign)));
  deps_.event_log->Write(e);
}

void Bookkeeping::Finish(ActiveMessage* m) {
  MXR_DCHECK(m->pending_jobs == 0, "bookkeeping with a job still pending");
  int64_t now_us = deps_.clock->NowMicros();
  Disposition disp = Dispose(*deps_.cfg, &m->meta, &m->outcomes, now_us);
  int64_t now_ms = deps_.loop->now_ms();
  for (const RcptDecision& d : disp.decisions) {
    std::string_view category = CategoryOf(d);
    Log(*m, d, category);
    if (!category.empty() && !(d.shown.not_attempted && d.outcome == Outcome::kDeferred)) {
      deps_.stats->CountFailure(static_cast<size_t>(*CategoryFromName(category)));
    }
    deps_.stats->CountAttempt(d.outcome);
    deps_.site_metrics->Count(d.shown.site_label, d.outcome, now_ms);
    if (d.outcome == Outcome::kDelivered) {
      deps_.stats->delivery_latency_us.Observe(
          static_cast<uint64_t>(std::max<int64_t>(0, now_us - m->meta.received_us)));
    }
  }
  if (deps_.classifier) {
    for (FailedRecipient& f : disp.bounces) {
      f.category = std::string(CategoryName(deps_.classifier->Classify(f.code, f.enhanced, f.text)));
    }
  }
  for (const RcptDecision& d : disp.decisions) {
    if (!d.dsn_suppressed) continue;
    deps_.stats->dsn_ext_failure_suppressed++;
    spdlog::info("event=dsn_suppressed id={} rcpt=<{}> reason=notify", m->meta.id.ToString(),
                 LogEscape(m->meta.recipients[d.rcpt].address));
  }
  if (m->meta.sender.empty()) {
    if (!disp.bounces.empty()) {
      spdlog::info("event=bounce_discarded id={} reason=null_sender recipients={}", m->meta.id.ToString(),
                   disp.bounces.size());
    }
    return Record(m, true);
  }
  if (disp.bounces.empty() && disp.notices.empty()) return Record(m, true);
  // RFC 3461 notices (relayed, delayed) ride in the same DSN as the bounces.
  bool has_bounces = !disp.bounces.empty();
  std::vector<size_t> delayed;  // recipients whose delay_dsn_sent this DSN sets
  for (const RcptDecision& d : disp.decisions) {
    if (d.delay_notice) delayed.push_back(d.rcpt);
  }
  for (auto& n : disp.notices) {
    if (n.action == "relayed") deps_.stats->dsn_ext_success++;
    if (n.action == "delayed") deps_.stats->dsn_ext_delay++;
    disp.bounces.push_back(std::move(n));
  }
  // The DSN returns the original's headers: read the body if no attempt
  // holds it. An unreadable body still gives a DSN (saying so): otherwise a
  // message whose body was lost could never leave the queue.
  queue::QueueId id = m->meta.id;
  m->dsn_pending = true;
  deps_.bodies->Get(
      m,
      [this, id, has_bounces, delayed = std::move(delayed), bounces = std::move(disp.bounces)](const absl::Status& st, BodyRef body) mutable {
        ActiveMessage* msg = deps_.find(id);
        if (msg == nullptr) return;
        std::string_view original = st.ok() && body ? std::string_view(*body) : std::string_view();
        queue::NewMessage dsn = BuildDsn(msg->meta, original, bounces, deps_.hostname, deps_.ids->Next(),
                                         deps_.clock->NowMicros());
        std::string dsn_id = dsn.meta.id.ToString();
        EventLoop* loop = deps_.loop;
        deps_.spool->Commit(std::move(dsn), [this, loop, id, dsn_id, has_bounces, delayed](absl::Status cst) {
          loop->Post([this, id, cst, dsn_id, has_bounces, delayed] {
            ActiveMessage* m2 = deps_.find(id);
            if (m2 == nullptr) return;
            m2->dsn_pending = false;
            if (cst.ok()) {
              deps_.stats->dsns_queued++;
              spdlog::info("event=dsn_queued id={} dsn_id={}", id.ToString(), dsn_id);
            } else {
              spdlog::error("event=dsn_commit_failed id={} error=\"{}\" action=\"kept the recipients pending\"",
                            id.ToString(), LogEscape(cst.ToString()));
              // A delay DSN that was not written is owed again next round.
              for (size_t i : delayed) m2->meta.recipients[i].delay_dsn_sent = false;
            }
            Record(m2, cst.ok() || !has_bounces);
          });
        });
      },
      deps_.find);
}

void Bookkeeping::Record(ActiveMessage* m, bool bounce_committed) {
  MXR_DCHECK(!m->dsn_pending, "a record updated before its DSN was committed");
  int64_t old_next = m->meta.next_attempt_us;
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  NextStep step = Reschedule(*deps_.cfg, &m->meta, m->outcomes, bounce_committed, deps_.clock->NowMicros(),
                             jitter(rng_));
  // Unsynced, riding the spool's next group commit: a crash can only mean a
  // redelivery.
  if (step.done) {
    deps_.spool->DeleteAsync(m->meta);
    deps_.stats->messages_completed++;
  } else {
    deps_.spool->UpdateAsync(m->meta, old_next);
    int64_t now_us = deps_.clock->NowMicros();
    spdlog::info("event=rescheduled id={} pending={} attempts={} next_attempt_in_s={}", m->meta.id.ToString(),
                 m->meta.PendingRecipients(), m->meta.attempts,
                 std::max<int64_t>(0, (step.next_attempt_us - now_us + 500'000) / 1'000'000));
  }
  ScheduleFlush();
  done_(m, step);
}

void Bookkeeping::ScheduleFlush() {
  if (flush_armed_) return;
  flush_armed_ = true;
  deps_.loop->RunAfter(kFlushMs, [this] {
    flush_armed_ = false;
    deps_.spool->FlushAsync();
  });
}

}  // namespace mxr::delivery
