// The delivery event log: one JSON object per line per recipient attempt
// outcome, appended to a file that sending platforms ingest (bounce and
// delivery tracking). Reopen() (SIGHUP) supports log rotation.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"

namespace mxr::delivery {

struct DeliveryEvent {
  int64_t time_us = 0;
  std::string queue_id;
  std::string sender;
  std::string recipient;
  std::string outcome;   // delivered | deferred | bounced | expired
  std::string site;
  std::string mx_host;
  std::string ip;
  std::string tls;       // "TLSv1.3" or "" (none)
  int code = 0;
  std::string enhanced;
  std::string response;
  std::string category;  // bounce category of a failed attempt (delivery/classify.h), "" when delivered
  std::string source;    // egress source (delivery/egress.h)
  uint32_t attempt = 0;
  double queue_seconds = 0;
  std::string tenant;    // "" = none (the field is left out)
  std::string campaign;  // "" = none (the field is left out)
};

std::string EventToJson(const DeliveryEvent& e);

class EventLog {
 public:
  // path "" = disabled.
  explicit EventLog(std::string path) : path_(std::move(path)) {}
  ~EventLog();
  absl::Status Open();
  absl::Status Reopen();  // thread-safe
  void Write(const DeliveryEvent& e);  // thread-safe; one write(2) per line

 private:
  std::string path_;
  std::mutex mu_;
  int fd_ = -1;
};

}  // namespace mxr::delivery
