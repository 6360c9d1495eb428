// RocksDB implementation of Spool, with a group-commit thread.
//
// Threads: Commit() may be called from any thread; it appends to a pending
// list under a mutex and signals the commit thread. The commit thread takes
// everything pending, writes ONE WriteBatch with sync=true and runs every
// callback. Batching adapts to load with no timer: while one sync is in
// flight, the next batch accumulates.
//
// Failure handling: a write that meets a RocksDB stall (no_slowdown) is
// retried until `write_deadline_ms`; a failed write latches the spool
// unhealthy (Healthy() == false) and fails the batch; the commit thread then
// tries DB::Resume() every second and becomes healthy again when it works.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/clock.h"
#include "queue/spool.h"

namespace rocksdb {
class DB;
class WriteBatch;
class Status;
class ColumnFamilyHandle;
class Statistics;
class Iterator;
}  // namespace rocksdb

namespace mxr::queue {

struct RocksSpoolOptions {
  std::string path;
  uint64_t write_buffer_size = 128ull << 20;
  int max_write_buffer_number = 3;
  uint64_t max_total_wal_size = 1ull << 30;
  int write_deadline_ms = 10000;
  bool read_only = false;  // for `mxrelay queue` while the relay runs
  bool sync = true;        // false only in micro-benchmarks
  // Refuse new messages (ResourceExhausted) while the filesystem holding the
  // spool has less free space than this: RocksDB must never meet ENOSPC on
  // its WAL (Debian's build then aborts on an assertion at the next write).
  // Bookkeeping (updates, deletes) still goes through. 0 = no check.
  uint64_t min_free_bytes = 0;
  // Group-commit window (config spool.commit_delay_us): when fewer than
  // kCommitBatchTarget messages are waiting, the last batch held two or
  // more (concurrent senders) and messages have been arriving less than 4x
  // this many microseconds apart (moving average), the commit thread waits
  // up to this long for more before writing. 0 = never waits.
  int commit_delay_us = 0;
  static constexpr size_t kCommitBatchTarget = 8;
  // More column families in the same database, for components that keep
  // their own records next to the queue (suppression/: "suppression").
  // Created when missing (read-only opens skip the ones that do not exist).
  std::vector<std::string> extra_families;
};

class RocksSpool final : public Spool {
 public:
  static absl::StatusOr<std::unique_ptr<RocksSpool>> Open(const RocksSpoolOptions& opts,
                                                          const Clock& clock);
  ~RocksSpool() override;  // drains pending commits, then closes the DB

  void Commit(NewMessage msg, CommitCallback done) override;
  bool Healthy() const override;
  SpoolHealth Health() const override;
  SpoolStats Stats() const override;

  absl::StatusOr<std::vector<MessageMeta>> LoadDue(int64_t now_us, size_t limit) override;
  absl::StatusOr<std::string> ReadBody(const QueueId& id) override;
  absl::StatusOr<MessageMeta> LoadMeta(const QueueId& id) override;
  absl::Status ScanSchedule(
      const std::function<bool(int64_t, const QueueId&)>& visit) override;
  void SetCommitListener(CommitListener listener) override { listener_ = std::move(listener); }
  absl::Status Update(const MessageMeta& meta, int64_t old_next_attempt_us) override;
  absl::Status Delete(const MessageMeta& meta) override;
  void UpdateAsync(const MessageMeta& meta, int64_t old_next_attempt_us) override;
  void DeleteAsync(const MessageMeta& meta) override;
  void FlushAsync() override;
  absl::Status Scan(const std::function<bool(const MessageMeta&)>& visit) override;
  absl::StatusOr<std::optional<QueueId>> OldestFrom(const QueueId& from) override;

  // RocksDB's view of stalls ("rocksdb.is-write-stopped" etc.), for metrics.
  uint64_t IntProperty(const std::string& name) const;

  // The database and one of RocksSpoolOptions::extra_families (nullptr when
  // it was not asked for, or is missing in a read-only open). Valid until the
  // spool is destroyed; writes to it are the caller's (they do not go
  // through the group commit).
  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* Family(std::string_view name) const;

 private:
  struct Pending {
    NewMessage msg;
    CommitCallback done;
  };
  struct Op {
    bool is_delete = false;
    MessageMeta meta;
    int64_t old_next_attempt_us = 0;
  };
  RocksSpool(const RocksSpoolOptions& opts, const Clock& clock);
  void CommitLoop();
  // At a clean close: memtables to SST files, so the next open replays no WAL.
  void FlushForRestart();
  // Free bytes for us on the spool's filesystem (nullopt: statvfs failed).
  std::optional<uint64_t> FreeBytes() const;
  // Counts messages and bytes present at open (on its own thread: a big
  // spool must not delay the start), from an iterator made before any write.
  void CountExisting(std::unique_ptr<rocksdb::Iterator> it);
  void ApplyQueueDelta(const std::vector<Op>& ops);
  absl::Status WriteBatchOf(std::vector<Pending>& batch, std::vector<Op>& ops);
  rocksdb::Status AddOp(const Op& op, rocksdb::WriteBatch* wb);
  void Latch(const absl::Status& s);
  // True if the free space is below the reserve (latches "low space");
  // false once it is back (unlatches if the latch was for low space).
  bool LowOnSpace();
  void TryResume();
  absl::Status LatchedStatus() const;

  RocksSpoolOptions opts_;
  const Clock& clock_;
  rocksdb::DB* db_ = nullptr;
  // default, meta, body, schedule, then the extra families opened.
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<std::string> extra_names_;  // of handles_[4...]
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* body_ = nullptr;
  rocksdb::ColumnFamilyHandle* schedule_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<Op> ops_ ABSL_GUARDED_BY(mu_);
  // The operations the commit thread is writing now (LoadMeta looks here
  // and in ops_ before it reads RocksDB, so it never sees an older record).
  std::vector<Op> writing_ops_ ABSL_GUARDED_BY(mu_);
  bool flush_ops_ ABSL_GUARDED_BY(mu_) = false;  // FlushAsync() asked for a write
  // Moving average (1/8 weight) of the gap between two Commit() calls, and
  // the time of the last one (µs, monotonic): the group-commit window opens
  // only while messages come this close together.
  int64_t arrival_gap_us_ ABSL_GUARDED_BY(mu_) = 1'000'000;
  int64_t last_arrival_us_ ABSL_GUARDED_BY(mu_) = 0;
  bool window_open_ ABSL_GUARDED_BY(mu_) = false;
  // Messages in the last synced batch: one at a time (a lone sender, who
  // waits for each 250) never opens the window; concurrent senders do.
  size_t last_batch_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status latched_ ABSL_GUARDED_BY(mu_);  // why we are unhealthy
  std::atomic<bool> healthy_{true};
  bool low_space_ = false;  // commit thread: unhealthy because of the reserve, not an error
  SpoolStats stats_ ABSL_GUARDED_BY(mu_);  // histogram/queue fields live below
  Histogram batch_hist_{buckets::BatchMessages()};
  Histogram commit_hist_{buckets::LatencyUs()};
  // Queue size = what the open-time count found + what changed since.
  std::atomic<bool> queue_counted_{false};
  std::atomic<int64_t> base_messages_{0}, base_bytes_{0};
  std::atomic<int64_t> delta_messages_{0}, delta_bytes_{0};
  std::thread count_thread_;
  std::atomic<bool> closing_{false};
  std::thread commit_thread_;
  CommitListener listener_;
};

}  // namespace mxr::queue
