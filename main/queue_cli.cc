#include "main/queue_cli.h"

#include <cstdio>
#include <fstream>

#include "common/escape.h"
#include "common/strings.h"
#include "queue/rocks_spool.h"

namespace mxr {
namespace {

std::unique_ptr<queue::RocksSpool> OpenReadOnly(const Config& cfg) {
  queue::RocksSpoolOptions o;
  o.path = cfg.SpoolPath();
  o.read_only = true;
  auto s = queue::RocksSpool::Open(o, RealClock::Get());
  if (!s.ok()) {
    fmt::print(stderr, "mxrelay: cannot open spool {}: {}\n", o.path, s.status());
    return nullptr;
  }
  return std::move(*s);
}

std::string Age(int64_t us) {
  int64_t s = us / 1'000'000;
  if (s < 120) return Cat(s, "s");
  if (s < 7200) return Cat(s / 60, "m");
  if (s < 172800) return Cat(s / 3600, "h");
  return Cat(s / 86400, "d");
}

std::string Json(std::string_view in) {
  std::string out;
  AppendJsonString(&out, in);
  return out;
}

const char* RcptStateName(queue::RcptState s) {
  switch (s) {
    case queue::RcptState::kPending: return "pending";
    case queue::RcptState::kDelivered: return "delivered";
    case queue::RcptState::kBounced: return "bounced";
  }
  return "?";
}

// One rule, shared with the metrics (ScheduledQueue::Waiting) and the
// summary: deferred = waiting for a later attempt time (after a deferral, or
// a round held back because its destination was backed off); queued = due
// now (new, or its retry time has come: waiting for its turn or being tried).
const char* State(const queue::MessageMeta& m, int64_t now) {
  return m.next_attempt_us / 1'000'000 > now / 1'000'000 ? "deferred" : "queued";
}

std::string NextIn(const queue::MessageMeta& m, int64_t now) {
  if (m.next_attempt_us <= now) return "now";
  return Cat("in ", Age(m.next_attempt_us - now));
}

std::string LastReply(const queue::Recipient& r) {
  if (r.last_code == 0 && r.last_response.empty()) return "-";
  return Cat(r.last_code, " ", r.last_response);
}

std::string MetaJson(const queue::MessageMeta& m, int64_t now) {
  std::string rcpts;
  for (const auto& r : m.recipients) {
    if (!rcpts.empty()) rcpts += ",";
    rcpts += Cat("{\"address\":", Json(r.address), ",\"state\":\"", RcptStateName(r.state),
                 "\",\"attempts\":", r.attempts, ",\"last_code\":", r.last_code,
                 ",\"last_reply\":", Json(r.last_response), "}");
  }
  return Cat("{\"id\":\"", m.id.ToString(), "\",\"received\":\"", IsoTimeUtc(m.received_us),
             "\",\"age_seconds\":", (now - m.received_us) / 1'000'000, ",\"size\":", m.body_size,
             ",\"state\":\"", State(m, now), "\",\"attempts\":", m.attempts, ",\"next_attempt\":\"",
             IsoTimeUtc(m.next_attempt_us), "\",\"next_attempt_in_seconds\":",
             std::max<int64_t>(0, (m.next_attempt_us - now) / 1'000'000), ",\"sender\":", Json(m.sender),
             ",\"auth_user\":", Json(m.auth_user), ",\"client_ip\":", Json(m.client_ip),
             ",\"tenant\":", Json(m.tenant), ",\"campaign\":", Json(m.campaign), ",\"pool\":", Json(m.pool),
             ",\"pending_recipients\":", m.PendingRecipients(), ",\"recipients\":[", rcpts, "]}");
}

void PrintRecipient(const queue::Recipient& r) {
  fmt::print("    {:<40} {:<9} attempts={} last: {}\n", LogEscape(r.address), RcptStateName(r.state), r.attempts,
             LogEscape(LastReply(r)));
}

}  // namespace

int QueueList(const Config& cfg, size_t limit, bool json) {
  auto spool = OpenReadOnly(cfg);
  if (!spool) return 1;
  int64_t now = RealClock::Get().NowMicros();
  size_t n = 0;
  if (!json) {
    fmt::print("{:<24} {:>6} {:>9} {:<8} {:>8} {:>9} {}\n", "ID", "AGE", "SIZE", "STATE", "ATTEMPTS", "NEXT",
               "SENDER (then recipients: state, attempts, last reply)");
  }
  constexpr size_t kRcptsShown = 10;
  absl::Status st = spool->Scan([&](const queue::MessageMeta& m) {
    if (json) {
      fmt::print("{}\n", MetaJson(m, now));
    } else {
      fmt::print("{:<24} {:>6} {:>9} {:<8} {:>8} {:>9} <{}>\n", m.id.ToString(), Age(now - m.received_us),
                 m.body_size, State(m, now), m.attempts, NextIn(m, now), LogEscape(m.sender));
      size_t shown = 0;
      for (const auto& r : m.recipients) {
        if (r.state != queue::RcptState::kPending) continue;
        if (shown++ == kRcptsShown) break;
        PrintRecipient(r);
      }
      size_t pending = m.PendingRecipients();
      if (pending > kRcptsShown) {
        fmt::print("    ... {} more pending (mxrelay queue show {})\n", pending - kRcptsShown, m.id.ToString());
      }
      if (m.recipients.size() > pending) {
        fmt::print("    ({} of {} recipients done)\n", m.recipients.size() - pending, m.recipients.size());
      }
    }
    return ++n < limit;
  });
  if (!st.ok()) {
    fmt::print(stderr, "mxrelay: scanning spool: {}\n", st);
    return 1;
  }
  return 0;
}

int QueueSummary(const Config& cfg) {
  auto spool = OpenReadOnly(cfg);
  if (!spool) return 1;
  int64_t now = RealClock::Get().NowMicros();
  uint64_t count = 0, bytes = 0, rcpts = 0, deferred = 0, queued = 0;
  int64_t oldest = 0;
  absl::Status st = spool->Scan([&](const queue::MessageMeta& m) {
    if (count == 0) oldest = m.received_us;
    ++count;
    bytes += m.body_size;
    rcpts += m.PendingRecipients();
    (std::string_view(State(m, now)) == "deferred" ? deferred : queued)++;
    return true;
  });
  if (!st.ok()) {
    fmt::print(stderr, "mxrelay: scanning spool: {}\n", st);
    return 1;
  }
  fmt::print(
      "messages: {}\nqueued: {}\ndeferred: {}\nbytes: {}\npending_recipients: {}\noldest_age_seconds: {}\n",
      count, queued, deferred, bytes, rcpts, count ? (now - oldest) / 1'000'000 : 0);
  return 0;
}

int QueueShow(const Config& cfg, const std::string& id_text, bool json) {
  auto id = queue::QueueId::Parse(id_text);
  if (!id) {
    fmt::print(stderr, "mxrelay: '{}' is not a queue id (24 hex digits, as in \"queued as ...\")\n", id_text);
    return 2;
  }
  auto spool = OpenReadOnly(cfg);
  if (!spool) return 1;
  int64_t now = RealClock::Get().NowMicros();
  auto meta = spool->LoadMeta(*id);
  bool in_queue = meta.ok();
  if (!meta.ok() && meta.status().code() != absl::StatusCode::kNotFound) {
    fmt::print(stderr, "mxrelay: reading {}: {}\n", id_text, meta.status());
    return 1;
  }
  // The history: every attempt's record in the delivery event log.
  std::vector<std::string> history;
  std::string needle = Cat("\"queue_id\":\"", id->ToString(), "\"");
  if (!cfg.delivery.event_log.empty()) {
    std::ifstream in(cfg.delivery.event_log);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find(needle) != std::string::npos) history.push_back(line);
    }
  }
  if (json) {
    fmt::print("{{\"id\":\"{}\",\"in_queue\":{},\"message\":{},\"history\":[", id->ToString(),
               in_queue ? "true" : "false", in_queue ? MetaJson(*meta, now) : "null");
    for (size_t i = 0; i < history.size(); ++i) fmt::print("{}{}", i ? "," : "", history[i]);
    fmt::print("]}}\n");
    return in_queue || !history.empty() ? 0 : 1;
  }
  if (in_queue) {
    const auto& m = *meta;
    fmt::print("id:          {}\nstate:       {}\nreceived:    {} ({} ago)\nsize:        {}\n", m.id.ToString(),
               State(m, now), IsoTimeUtc(m.received_us), Age(now - m.received_us), m.body_size);
    fmt::print("sender:      <{}>\nauth_user:   {}\nclient:      {} (HELO {})\n", LogEscape(m.sender),
               m.auth_user.empty() ? "-" : LogEscape(m.auth_user), m.client_ip, LogEscape(m.helo));
    fmt::print("attempts:    {}\nnext:        {} ({})\nrecipients:  {} ({} pending)\n", m.attempts,
               IsoTimeUtc(m.next_attempt_us), NextIn(m, now), m.recipients.size(), m.PendingRecipients());
    for (const auto& r : m.recipients) PrintRecipient(r);
  } else {
    fmt::print("id:          {}\nstate:       not in the queue (delivered, bounced, deleted, or never queued "
               "here)\n", id->ToString());
  }
  if (cfg.delivery.event_log.empty()) {
    fmt::print("history:     no delivery.event_log configured; the relay's log has every step: grep {} in it\n",
               id->ToString());
  } else {
    fmt::print("history:     {} event(s) in {}\n", history.size(), cfg.delivery.event_log);
    for (const auto& h : history) fmt::print("  {}\n", h);
  }
  return in_queue || !history.empty() ? 0 : 1;
}

}  // namespace mxr
