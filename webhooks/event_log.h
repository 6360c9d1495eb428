// The durable event log webhooks are sent from (issue 22).
//
//   EventLog log(spool->db(), spool->Family("events"), spool->Family("event_cursors"));
//   log.Append("acme", R"({"type":"delivered","queue_id":"...",...})");
//   auto batch = log.Read("acme", cursor, 100, 1 << 20);
//
// Events are kept per stream (a tenant name, or "*" for endpoints that
// receive every tenant's events) in RocksDB, in the order they were
// appended, under a sequence number per stream; a consumer (an endpoint)
// keeps its position (the last sequence number it acknowledged) in the same
// database, so a restart or an outage resumes where it stopped
// (at-least-once: the receiver deduplicates by the event's "id").
//
// Durability: Append writes without sync, in the same WAL as the spool's
// bookkeeping. The delivery engine appends an outcome's event BEFORE it
// writes the bookkeeping of that outcome, so a crash that loses the event
// also loses the bookkeeping, and the attempt (and its event) happens again.
//
// Threads: any. Appends to one stream are serialized (a mutex per log).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace mxr::webhooks {

struct StoredEvent {
  uint64_t seq = 0;
  std::string json;  // one JSON object, "id" first
};

class EventLog {
 public:
  static constexpr std::string_view kEventsFamily = "events";
  static constexpr std::string_view kCursorsFamily = "event_cursors";

  // Families from RocksSpoolOptions::extra_families; all outlive the log.
  // Reads the last sequence number of every stream.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(rocksdb::DB* db,
                                                        rocksdb::ColumnFamilyHandle* events,
                                                        rocksdb::ColumnFamilyHandle* cursors);

  // Appends `json_object` (a JSON object text, "{...}") to `stream` and
  // returns its sequence number. The stored text gets an "id" member first:
  // "<stream>:<seq>" (unique per relay spool). InvalidArgument when the text
  // does not start with '{' or the stream name is empty or holds NUL.
  absl::StatusOr<uint64_t> Append(std::string_view stream, std::string_view json_object);

  // Events of `stream` after `after_seq`, oldest first, at most `max_events`
  // and about `max_bytes` (at least one event when there is one).
  absl::StatusOr<std::vector<StoredEvent>> Read(std::string_view stream, uint64_t after_seq,
                                                size_t max_events, size_t max_bytes) const;
  // The last sequence number of `stream` (0: none yet).
  uint64_t LastSeq(std::string_view stream) const;

  // A consumer's position: the last sequence number it acknowledged (0: none).
  uint64_t Cursor(std::string_view consumer) const;
  // Synced: an acknowledged batch is never sent again after a restart.
  absl::Status SetCursor(std::string_view consumer, uint64_t seq);

  // Deletes the events of `stream` up to and including `seq` (every consumer
  // of the stream is past them). Returns how many.
  absl::StatusOr<uint64_t> Trim(std::string_view stream, uint64_t seq);

 private:
  EventLog(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events, rocksdb::ColumnFamilyHandle* cursors)
      : db_(db), events_(events), cursors_(cursors) {}

  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* events_;
  rocksdb::ColumnFamilyHandle* cursors_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint64_t> last_seq_;  // guarded by mu_
};

// Key of an event: stream, NUL, 8-byte big-endian sequence number.
std::string EventKey(std::string_view stream, uint64_t seq);

}  // namespace mxr::webhooks
