#include "delivery/event_log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/escape.h"
#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {
namespace {

// Remote reply text can hold anything: quotes, CR/LF, bytes that are not
// UTF-8. Every line stays one valid JSON object (common/escape.h).
void Quote(std::string* out, std::string_view s) { AppendJsonString(out, s); }

}  // namespace

std::string EventToJson(const DeliveryEvent& e) {
  time_t t = static_cast<time_t>(e.time_us / 1'000'000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char ts[64];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(e.time_us % 1'000'000));
  std::string o = "{\"time\":";
  Quote(&o, ts);
  auto field = [&](const char* k, std::string_view v) {
    o += ",\"";
    o += k;
    o += "\":";
    Quote(&o, v);
  };
  field("queue_id", e.queue_id);
  field("sender", e.sender);
  field("recipient", e.recipient);
  field("outcome", e.outcome);
  field("site", e.site);
  field("mx_host", e.mx_host);
  field("ip", e.ip);
  field("tls", e.tls);
  o += fmt::format(",\"code\":{}", e.code);
  field("enhanced", e.enhanced);
  field("response", e.response);
  field("category", e.category);
  field("source", e.source);
  if (!e.tenant.empty()) field("tenant", e.tenant);
  if (!e.campaign.empty()) field("campaign", e.campaign);
  o += fmt::format(",\"attempt\":{},\"queue_seconds\":{:.3f}}}\n", e.attempt, e.queue_seconds);
  return o;
}

EventLog::~EventLog() {
  if (fd_ >= 0) close(fd_);
}

absl::Status EventLog::Open() {
  if (path_.empty()) return absl::OkStatus();
  int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return absl::InternalError(Cat("delivery.event_log ", path_, ": ", strerror(errno)));
  std::lock_guard<std::mutex> l(mu_);
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  return absl::OkStatus();
}

absl::Status EventLog::Reopen() { return Open(); }

void EventLog::Write(const DeliveryEvent& e) {
  if (path_.empty()) return;
  std::string line = EventToJson(e);
  std::lock_guard<std::mutex> l(mu_);
  if (fd_ < 0) return;
  ssize_t n = write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    spdlog::error("event=event_log_write_failed path={} error=\"{}\"", path_, strerror(errno));
  }
}

}  // namespace mxr::delivery
