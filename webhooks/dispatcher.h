// Sends the event log to HTTP(S) endpoints in signed JSON batches (issue 22).
//
//   Dispatcher d(log, endpoints, clock, {});
//   d.Start();            // its own thread: libcurl's multi interface
//   ... log.Append(...); d.Poke();
//   d.Stop();
//
// Per endpoint: read at most `batch_max` events after its position, POST
//   {"schema_version":1,"endpoint":"<name>","events":[<event>,...]}
// with Content-Type: application/json and X-MxRelay-Signature
// (webhooks/signature.h); a 2xx moves the position past the batch (synced),
// anything else (status, timeout, refused connection) keeps it and retries
// after a backoff doubling from `retry_initial_ms` to `retry_max_ms`
// (jittered). At-least-once: a batch whose 2xx was lost is sent again. Memory
// is bounded by one batch per endpoint whatever the backlog: the events wait
// on disk. Endpoints are independent: one down does not hold the others.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "webhooks/event_log.h"

namespace mxr::webhooks {

struct Endpoint {
  std::string name;                // unique; its position is kept as "webhook:<name>"
  std::string stream;              // the tenant whose events it receives, or "*" for all
  std::string url;                 // http:// or https://
  std::string secret;              // HMAC key
  std::vector<std::string> types;  // event types sent; empty = all
  size_t batch_max = 100;
  int timeout_ms = 10000;
  std::string ca_file;  // trust this CA bundle instead of the system's ("" = system)
};

struct DispatcherOptions {
  int64_t retry_initial_ms = 1000;
  int64_t retry_max_ms = 300000;
  size_t batch_max_bytes = 1 << 20;
  // An endpoint with nothing to send looks again after this long, or at
  // once on Poke().
  int64_t idle_poll_ms = 1000;
};

struct EndpointStats {
  std::string name;
  uint64_t position = 0;    // last acknowledged sequence number
  uint64_t last_seq = 0;    // newest event of its stream
  uint64_t events_sent = 0;  // acknowledged
  uint64_t events_skipped = 0;  // not of its types (acknowledged without a request)
  uint64_t batches_sent = 0;
  uint64_t failures = 0;
  int64_t backoff_until_ms = 0;  // monotonic; 0 = not backing off
  std::string last_error;
  uint64_t Lag() const { return last_seq > position ? last_seq - position : 0; }
};

class Dispatcher {
 public:
  Dispatcher(EventLog& log, std::vector<Endpoint> endpoints, const Clock& clock,
             DispatcherOptions opts);
  ~Dispatcher();  // Stop()
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Start();
  // Requests in flight are abandoned (their batches are sent again later).
  void Stop();
  // New events were appended: look now instead of at the next tick.
  void Poke();
  std::vector<EndpointStats> Stats() const;

  // The request body for a batch (exposed for tests and docs).
  static std::string Body(const std::string& endpoint, const std::vector<StoredEvent>& events);
  // Whether `event_json` (as EventLog stores it) has a "type" among `types`.
  static bool TypeMatches(std::string_view event_json, const std::vector<std::string>& types);

 private:
  struct State;
  void Run();

  EventLog& log_;
  const Clock& clock_;
  DispatcherOptions opts_;
  std::vector<std::unique_ptr<State>> states_;
  mutable std::mutex mu_;  // stats
  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;      // multi_ against its cleanup
  void* multi_ = nullptr;  // CURLM*, guarded by wake_mu_
  std::thread thread_;
};

}  // namespace mxr::webhooks
