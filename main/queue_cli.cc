#include "main/queue_cli.h"

#include <cstdio>

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

std::string JsonEscape(std::string_view in) {
  std::string out;
  for (char c : in) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

// queued: never tried and due now; deferred: waiting for its next attempt;
// due: tried before and due now.
const char* State(const queue::MessageMeta& m, int64_t now) {
  if (m.next_attempt_us > now) return "deferred";
  return m.attempts == 0 ? "queued" : "due";
}

}  // namespace

int QueueList(const Config& cfg, size_t limit, bool json) {
  auto spool = OpenReadOnly(cfg);
  if (!spool) return 1;
  int64_t now = RealClock::Get().NowMicros();
  size_t n = 0;
  if (!json) {
    fmt::print("{:<24} {:>6} {:>9} {:<8} {:<30} {}\n", "ID", "AGE", "SIZE", "STATE", "SENDER",
               "RECIPIENTS (pending/total)");
  }
  absl::Status st = spool->Scan([&](const queue::MessageMeta& m) {
    if (json) {
      std::string rcpts;
      for (const auto& r : m.recipients) {
        if (!rcpts.empty()) rcpts += ",";
        rcpts += Cat("{\"address\":\"", JsonEscape(r.address), "\",\"state\":",
                     static_cast<int>(r.state), ",\"attempts\":", r.attempts,
                     ",\"last_code\":", r.last_code, "}");
      }
      fmt::print(
          "{{\"id\":\"{}\",\"age_seconds\":{},\"size\":{},\"state\":\"{}\",\"sender\":\"{}\","
          "\"auth_user\":\"{}\",\"client_ip\":\"{}\",\"attempts\":{},\"recipients\":[{}]}}\n",
          m.id.ToString(), (now - m.received_us) / 1'000'000, m.body_size, State(m, now),
          JsonEscape(m.sender), JsonEscape(m.auth_user), m.client_ip, m.attempts, rcpts);
    } else {
      std::string first = m.recipients.empty() ? "" : m.recipients[0].address;
      fmt::print("{:<24} {:>6} {:>9} {:<8} {:<30} {} ({}/{})\n", m.id.ToString(),
                 Age(now - m.received_us), m.body_size, State(m, now),
                 m.sender.empty() ? "<>" : m.sender, first, m.PendingRecipients(),
                 m.recipients.size());
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
  uint64_t count = 0, bytes = 0, rcpts = 0, deferred = 0;
  int64_t oldest = 0;
  absl::Status st = spool->Scan([&](const queue::MessageMeta& m) {
    if (count == 0) oldest = m.received_us;
    ++count;
    bytes += m.body_size;
    rcpts += m.PendingRecipients();
    deferred += m.attempts > 0;
    return true;
  });
  if (!st.ok()) {
    fmt::print(stderr, "mxrelay: scanning spool: {}\n", st);
    return 1;
  }
  fmt::print("messages: {}\nbytes: {}\npending_recipients: {}\ndeferred: {}\noldest_age_seconds: {}\n",
             count, bytes, rcpts, deferred, count ? (now - oldest) / 1'000'000 : 0);
  return 0;
}

}  // namespace mxr
