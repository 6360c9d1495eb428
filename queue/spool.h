// The spool: what the rest of the program may do with queued messages.
// queue/rocks_spool.h is the one implementation (RocksDB); see FORMAT.md.
//
// Ingress:
//   spool->Commit({meta, prefix, body}, [](absl::Status s) { ... });
//     `done` runs on the spool's commit thread once the message is durable
//     (WAL synced) or has failed; post it back to your own thread.
// Delivery:
//   LoadDue(now) -> ReadBody(id) -> Update(meta, old_next_attempt) | Delete(meta)
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/histogram.h"
#include "queue/types.h"

namespace mxr::queue {

// A message to store. `header_prefix` (our trace headers) and `body` (the
// client's unstuffed message) are stored back to back as the body value.
struct NewMessage {
  MessageMeta meta;
  std::string header_prefix;
  std::string body;
};

// Status codes Commit reports, which ingress maps to SMTP replies:
//   ResourceExhausted -> 452 4.3.1 (disk full / spool over its limits)
//   FailedPrecondition -> 451 with the message's "4.x.y text" (refused by a
//     policy in front of the spool: dkim/signing_spool.h)
//   Unavailable, DeadlineExceeded, other -> 451 4.3.0
using CommitCallback = absl::AnyInvocable<void(absl::Status) &&>;

struct SpoolHealth {
  bool healthy = true;
  std::string reason;  // empty when healthy
};

// Counters for metrics and `mxrelay queue`. Monotonic unless noted.
struct SpoolStats {
  uint64_t commits = 0;           // synced group-commit writes
  uint64_t committed_messages = 0;
  uint64_t committed_bytes = 0;
  uint64_t failed_messages = 0;
  uint64_t write_stalls = 0;      // writes that met a RocksDB stall
  uint64_t max_batch = 0;         // largest batch so far
  uint64_t commit_micros_total = 0;
  uint64_t background_errors = 0; // times the spool was latched unhealthy
  uint64_t window_waits = 0;      // commits that waited in the group-commit window
  HistogramSnapshot batch_messages;       // messages per synced commit
  HistogramSnapshot commit_micros;        // duration of each synced commit
  // Messages and body bytes held (committed and not yet deleted); gauges.
  // queue_known is false until the count of what was there at open is done.
  bool queue_known = false;
  int64_t queue_messages = 0;
  int64_t queue_bytes = 0;
  uint64_t disk_bytes = 0;        // SST + WAL files (gauge)
};

class Spool {
 public:
  virtual ~Spool() = default;

  // Queues `msg` for the next group commit. Never blocks on disk. `done` is
  // called exactly once, on the commit thread, after the batch holding the
  // message was synced (OkStatus) or failed. Thread-safe.
  virtual void Commit(NewMessage msg, CommitCallback done) = 0;

  // Called on the commit thread for every message of a batch that was
  // synced, before the batch's callbacks (the delivery engine's intake). The
  // spool is done with the message: the listener may move its meta, header
  // prefix and body out (sparing a copy and a later read). Set once, before
  // the first Commit().
  using CommitListener = std::function<void(NewMessage&)>;
  virtual void SetCommitListener(CommitListener listener) = 0;

  // Whether new messages can be accepted. Thread-safe, cheap (an atomic load
  // plus a lock only while unhealthy).
  virtual bool Healthy() const = 0;
  virtual SpoolHealth Health() const = 0;
  virtual SpoolStats Stats() const = 0;

  // --- delivery side: blocking RocksDB calls; never from an event loop. ---

  // Messages whose next attempt is at or before `now_us`, oldest schedule
  // first, at most `limit`.
  virtual absl::StatusOr<std::vector<MessageMeta>> LoadDue(int64_t now_us, size_t limit) = 0;
  virtual absl::StatusOr<std::string> ReadBody(const QueueId& id) = 0;
  // The record of one message (NotFound once deleted).
  virtual absl::StatusOr<MessageMeta> LoadMeta(const QueueId& id) = 0;
  // Visits every schedule entry (next attempt time, id) in time order,
  // reading keys only (cheap: used to rebuild the delivery schedule at start).
  virtual absl::Status ScanSchedule(
      const std::function<bool(int64_t next_attempt_us, const QueueId& id)>& visit) = 0;
  // Rewrites the record (recipient results, attempts) and moves its schedule
  // entry from `old_next_attempt_us` to meta.next_attempt_us. Unsynced.
  virtual absl::Status Update(const MessageMeta& meta, int64_t old_next_attempt_us) = 0;
  // Removes the message (record, body, schedule entry). Unsynced.
  virtual absl::Status Delete(const MessageMeta& meta) = 0;
  // Non-blocking forms of Update/Delete, safe to call from an event loop:
  // queued for the commit thread and written in the same WriteBatch as the
  // next group commit. They do not wake the commit thread (a wake-up and a
  // WAL write of their own per delivered message cost more than the rest of
  // the bookkeeping): call FlushAsync() some milliseconds later so that they
  // are written, alone and unsynced, if no commit took them meanwhile. Past
  // kMaxQueuedOps queued operations the commit thread is woken anyway.
  // LoadMeta() sees queued operations. Order among async operations is
  // kept. A failure is logged and latches the spool like a failed commit;
  // the worst outcome is a redelivery.
  virtual void UpdateAsync(const MessageMeta& meta, int64_t old_next_attempt_us) = 0;
  virtual void DeleteAsync(const MessageMeta& meta) = 0;
  // Wakes the commit thread if operations queued by UpdateAsync/DeleteAsync
  // are still waiting. Cheap when there are none. Thread-safe.
  virtual void FlushAsync() = 0;
  static constexpr size_t kMaxQueuedOps = 1024;
  // Visits every message oldest first; stop early by returning false.
  virtual absl::Status Scan(const std::function<bool(const MessageMeta&)>& visit) = 0;
  // The smallest message id >= `from` in the spool (ids sort oldest first),
  // or nullopt when there is none. One iterator seek on the meta records; the
  // cost grows with the deleted entries between `from` and the answer, so a caller that asks
  // repeatedly passes its previous answer (the oldest message can only get
  // younger, except for messages committed later with an older id: see
  // delivery's oldest-message gauge).
  virtual absl::StatusOr<std::optional<QueueId>> OldestFrom(const QueueId& from) = 0;
};

}  // namespace mxr::queue
