#include "common/thread_name.h"
#include "queue/rocks_spool.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "common/status.h"
#include "common/strings.h"
#include "queue/codec.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/transaction_log.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace mxr::queue {
namespace {

constexpr char kFormatKey[] = "mxrelay-spool-format";

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = Cat(what, ": ", s.ToString());
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace) {
    return absl::ResourceExhaustedError(msg);
  }
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIncomplete() || s.IsBusy() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

rocksdb::Slice KeySlice(const std::array<char, QueueId::kKeySize>& k) {
  return rocksdb::Slice(k.data(), k.size());
}

}  // namespace

RocksSpool::RocksSpool(const RocksSpoolOptions& opts, const Clock& clock)
    : opts_(opts), clock_(clock) {}

rocksdb::ColumnFamilyHandle* RocksSpool::Family(std::string_view name) const {
  for (size_t i = 0; i < extra_names_.size(); ++i) {
    if (extra_names_[i] == name) return handles_[4 + i];
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<RocksSpool>> RocksSpool::Open(const RocksSpoolOptions& opts,
                                                             const Clock& clock) {
  std::unique_ptr<RocksSpool> s(new RocksSpool(opts, clock));
  rocksdb::DBOptions dbo;
  dbo.create_if_missing = !opts.read_only;
  dbo.create_missing_column_families = !opts.read_only;
  dbo.max_total_wal_size = opts.max_total_wal_size;
  dbo.max_background_jobs = 2;
  dbo.keep_log_file_num = 3;
  dbo.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  dbo.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  dbo.avoid_unnecessary_blocking_io = true;

  rocksdb::ColumnFamilyOptions cfo;
  cfo.write_buffer_size = opts.write_buffer_size;
  cfo.max_write_buffer_number = opts.max_write_buffer_number;
  cfo.level_compaction_dynamic_level_bytes = true;
  rocksdb::BlockBasedTableOptions bbto;
  bbto.whole_key_filtering = true;
  cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(bbto));
  rocksdb::ColumnFamilyOptions body_cfo = cfo;
  body_cfo.compression = rocksdb::kNoCompression;  // mostly written and deleted before a flush

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, cfo},
      {"meta", cfo},
      {"body", body_cfo},
      {"schedule", cfo},
  };
  // The families the database has: a read-write open must name every one
  // (a spool another build added a family to still opens, with that family
  // kept as it is); a read-only open may only name existing ones.
  std::vector<std::string> present;
  rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(dbo, opts.path, &present);
  if (!ls.ok() && opts.read_only) return FromRocks(ls, Cat("listing the column families of ", opts.path));
  auto is_present = [&present](const std::string& n) {
    return std::find(present.begin(), present.end(), n) != present.end();
  };
  for (const auto& name : opts.extra_families) {
    if (opts.read_only && !is_present(name)) continue;
    cfs.emplace_back(name, cfo);
    s->extra_names_.push_back(name);
  }
  for (const auto& name : present) {
    bool known = false;
    for (const auto& d : cfs) known |= d.name == name;
    if (!known) {
      cfs.emplace_back(name, cfo);
      s->extra_names_.push_back(name);
    }
  }
  rocksdb::Status st;
  if (opts.read_only) {
    st = rocksdb::DB::OpenForReadOnly(dbo, opts.path, cfs, &s->handles_, &s->db_);
  } else {
    st = rocksdb::DB::Open(dbo, opts.path, cfs, &s->handles_, &s->db_);
  }
  if (!st.ok()) return FromRocks(st, Cat("opening spool ", opts.path));
  s->meta_ = s->handles_[1];
  s->body_ = s->handles_[2];
  s->schedule_ = s->handles_[3];

  std::string version;
  st = s->db_->Get(rocksdb::ReadOptions(), s->handles_[0], kFormatKey, &version);
  if (st.IsNotFound() && !opts.read_only) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    st = s->db_->Put(wo, s->handles_[0], kFormatKey, std::to_string(kFormatVersion));
    if (!st.ok()) return FromRocks(st, "writing spool format version");
  } else if (!st.ok()) {
    return FromRocks(st, "reading spool format version");
  } else if (version != std::to_string(kFormatVersion)) {
    // Version 1 spools hold records this build reads; the marker moves to
    // the version written from now on, so an older build refuses the spool
    // instead of misreading version-2 records.
    bool upgradable = false;
    for (int v = kOldestReadableVersion; v < kFormatVersion; ++v) {
      upgradable |= version == std::to_string(v);
    }
    if (!upgradable) {
      return absl::FailedPreconditionError(Cat(
          "spool ", opts.path, " has format version ", version, "; this build reads versions ",
          kOldestReadableVersion, " to ", kFormatVersion));
    }
    if (!opts.read_only) {
      rocksdb::WriteOptions wo;
      wo.sync = true;
      st = s->db_->Put(wo, s->handles_[0], kFormatKey, std::to_string(kFormatVersion));
      if (!st.ok()) return FromRocks(st, "writing spool format version");
      spdlog::info("event=spool_format_upgraded path={} from={} to={}", opts.path, version,
                   kFormatVersion);
    }
  }
  if (!opts.read_only) {
    // The iterator pins the state before the commit thread writes anything.
    std::unique_ptr<rocksdb::Iterator> it(s->db_->NewIterator(rocksdb::ReadOptions(), s->meta_));
    s->count_thread_ = std::thread([p = s.get(), it = std::move(it)]() mutable {
      SetThreadName("mxr-spool-count");
      p->CountExisting(std::move(it));
    });
    s->commit_thread_ = std::thread([p = s.get()] {
      SetThreadName("mxr-commit");
      p->CommitLoop();
    });
  }
  return s;
}

RocksSpool::~RocksSpool() {
  closing_.store(true);
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
  if (count_thread_.joinable()) count_thread_.join();
  if (!opts_.read_only) {
    SpoolStats st = Stats();
    spdlog::info(
        "event=spool_closed commits={} messages={} bytes={} failed={} write_stalls={} "
        "max_batch={} avg_batch={:.1f} avg_commit_us={:.0f} window_waits={}",
        st.commits, st.committed_messages, st.committed_bytes, st.failed_messages,
        st.write_stalls, st.max_batch,
        st.commits ? static_cast<double>(st.committed_messages) / st.commits : 0.0,
        st.commits ? static_cast<double>(st.commit_micros_total) / st.commits : 0.0,
        st.window_waits);
  }
  if (db_ != nullptr) {
    if (!opts_.read_only) {
      rocksdb::Status st = db_->SyncWAL();
      if (!st.ok()) spdlog::warn("event=spool_close_sync_failed error=\"{}\"", st.ToString());
      // A clean shutdown writes the memtables out (every message is already
      // durable in the synced WAL): the next start then replays no WAL,
      // instead of everything written since the last flush (up to
      // max_total_wal_size, seconds of start-up). Skipped while unhealthy
      // (disk full, I/O errors): the WAL has it all anyway.
      if (st.ok() && healthy_.load()) FlushForRestart();
    }
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    rocksdb::Status st = db_->Close();
    if (!st.ok()) spdlog::warn("event=spool_close_failed error=\"{}\"", st.ToString());
    delete db_;
  }
}

void RocksSpool::FlushForRestart() {
  // The memtables become SST files of about their size: never at the cost of
  // the free-space reserve (the disk may have filled while no mail came, so
  // healthy_ alone does not tell).
  uint64_t memtables = 0;
  db_->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &memtables);
  std::optional<uint64_t> free_bytes = FreeBytes();
  if (free_bytes && *free_bytes < memtables + opts_.min_free_bytes) {
    spdlog::info("event=spool_flush_skipped free_bytes={} memtable_bytes={} reason=low_space "
                 "effect=\"the next start replays the WAL\"", *free_bytes, memtables);
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;  // nothing else writes any more
  rocksdb::Status st = db_->Flush(fo, handles_);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0).count();
  if (st.ok()) {
    spdlog::info("event=spool_flushed ms={} memtable_bytes={}", ms, memtables);
  } else {
    spdlog::warn("event=spool_flush_failed ms={} error=\"{}\" effect=\"the next start replays the WAL "
                 "(slower start, nothing lost)\"", ms, st.ToString());
  }
}

void RocksSpool::Commit(NewMessage msg, CommitCallback done) {
  if (opts_.read_only) {
    std::move(done)(absl::FailedPreconditionError("spool opened read-only"));
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stopping_) {
      if (opts_.commit_delay_us > 0) {
        // Real time (not clock_): the window is a real wait on a condvar.
        int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
        int64_t gap = std::min<int64_t>(now - last_arrival_us_, 1'000'000);
        arrival_gap_us_ += (gap - arrival_gap_us_) / 8;
        last_arrival_us_ = now;
      }
      pending_.push_back(Pending{std::move(msg), std::move(done)});
      // While the commit thread holds a window open it only needs waking
      // once the batch is full.
      if (!window_open_ || pending_.size() >= RocksSpoolOptions::kCommitBatchTarget) cv_.notify_one();
      return;
    }
  }
  std::move(done)(absl::UnavailableError("spool is shutting down"));
}

void RocksSpool::CommitLoop() {
  std::vector<Pending> batch;
  // The bookkeeping being written: only this thread changes writing_ops_
  // (under mu_), so it reads it here without the lock.
  std::vector<Op>& ops = writing_ops_;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      // While unhealthy, wake every second to try to resume.
      // Bookkeeping alone waits for FlushAsync() (or a commit to ride with).
      cv_.wait_for(l, std::chrono::seconds(1), [&] {
        return stopping_ || !pending_.empty() || (flush_ops_ && !ops_.empty()) ||
               ops_.size() >= kMaxQueuedOps;
      });
      flush_ops_ = false;
      // (after the 1 s timeout, waiting bookkeeping is written as well)
      if (pending_.empty() && ops_.empty()) {
        if (stopping_) return;
        if (!healthy_.load()) {
          l.unlock();
          if (low_space_) {
            LowOnSpace();  // recovers by itself once space is back
          } else {
            TryResume();
          }
        }
        continue;
      }
      // Group-commit window: a small batch while messages arrive close
      // together waits briefly for more (one fsync for several messages).
      if (opts_.commit_delay_us > 0 && !stopping_ && !pending_.empty() &&
          pending_.size() < RocksSpoolOptions::kCommitBatchTarget && last_batch_ >= 2 &&
          arrival_gap_us_ < 4 * opts_.commit_delay_us) {
        window_open_ = true;
        stats_.window_waits++;
        cv_.wait_for(l, std::chrono::microseconds(opts_.commit_delay_us), [&] {
          return stopping_ || pending_.size() >= RocksSpoolOptions::kCommitBatchTarget;
        });
        window_open_ = false;
      }
      batch.swap(pending_);
      if (!batch.empty()) last_batch_ = batch.size();
      writing_ops_.swap(ops_);
    }
    auto t0 = std::chrono::steady_clock::now();
    absl::Status st;
    if (!batch.empty() && LowOnSpace()) {
      st = LatchedStatus();  // new mail waits for space; bookkeeping below still goes
      absl::Status bk;
      if (!ops.empty()) {
        std::vector<Pending> none;
        bk = WriteBatchOf(none, ops);
        if (!bk.ok()) spdlog::warn("event=spool_bookkeeping_failed error=\"{}\"", bk);
      }
      if (bk.ok()) ApplyQueueDelta(ops);
    } else {
      if (!healthy_.load() && !low_space_) TryResume();
      st = healthy_.load() ? WriteBatchOf(batch, ops) : LatchedStatus();
      if (st.ok()) ApplyQueueDelta(ops);
      if (!st.ok() && !ops.empty()) {
        spdlog::warn("event=spool_bookkeeping_lost ops={} error=\"{}\" effect=\"messages may be "
                     "delivered again\"", ops.size(), st);
      }
    }
    if (!ops.empty()) {
      std::lock_guard<std::mutex> l(mu_);
      writing_ops_.clear();
    }
    if (batch.empty()) continue;  // bookkeeping only
    uint64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
    if (st.ok()) {
      batch_hist_.Observe(batch.size());
      commit_hist_.Observe(us);
    }
    uint64_t bytes = 0;
    for (const auto& p : batch) bytes += p.msg.header_prefix.size() + p.msg.body.size();
    {
      std::lock_guard<std::mutex> l(mu_);
      if (st.ok()) {
        stats_.commits++;
        stats_.committed_messages += batch.size();
        stats_.committed_bytes += bytes;
        stats_.commit_micros_total += us;
        if (batch.size() > stats_.max_batch) stats_.max_batch = batch.size();
        uint64_t body_bytes = 0;
        for (const auto& p : batch) body_bytes += p.msg.meta.body_size;
        delta_messages_.fetch_add(static_cast<int64_t>(batch.size()));
        delta_bytes_.fetch_add(static_cast<int64_t>(body_bytes));
      } else {
        stats_.failed_messages += batch.size();
      }
    }
    if (st.ok() && listener_) {
      for (auto& p : batch) listener_(p.msg);  // may move the message out
    }
    for (auto& p : batch) std::move(p.done)(st);
    batch.clear();
  }
}

rocksdb::Status RocksSpool::AddOp(const Op& op, rocksdb::WriteBatch* wb) {
  auto key = op.meta.id.Key();
  if (op.is_delete) {
    rocksdb::Status st = wb->Delete(meta_, KeySlice(key));
    if (st.ok()) st = wb->SingleDelete(body_, KeySlice(key));
    if (st.ok()) st = wb->Delete(schedule_, ScheduleKey(op.meta.next_attempt_us, op.meta.id));
    return st;
  }
  rocksdb::Status st = wb->Put(meta_, KeySlice(key), EncodeMeta(op.meta));
  if (st.ok() && op.old_next_attempt_us != op.meta.next_attempt_us) {
    st = wb->Delete(schedule_, ScheduleKey(op.old_next_attempt_us, op.meta.id));
    if (st.ok()) st = wb->Put(schedule_, ScheduleKey(op.meta.next_attempt_us, op.meta.id), rocksdb::Slice());
  }
  return st;
}

void RocksSpool::ApplyQueueDelta(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (!op.is_delete) continue;
    delta_messages_.fetch_sub(1);
    delta_bytes_.fetch_sub(static_cast<int64_t>(op.meta.body_size));
  }
}

void RocksSpool::CountExisting(std::unique_ptr<rocksdb::Iterator> it) {
  int64_t n = 0, bytes = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (closing_.load(std::memory_order_relaxed)) return;
    auto m = DecodeMeta(std::string_view(it->key().data(), it->key().size()),
                        std::string_view(it->value().data(), it->value().size()));
    if (!m.ok()) continue;  // reported by whoever loads it
    n++;
    bytes += static_cast<int64_t>(m->body_size);
  }
  if (!it->status().ok()) {
    spdlog::warn("event=spool_count_failed error=\"{}\" effect=\"queue size metrics unknown\"",
                 it->status().ToString());
    return;
  }
  base_messages_.store(n);
  base_bytes_.store(bytes);
  queue_counted_.store(true);
  spdlog::info("event=spool_counted messages={} bytes={} ms={}", n, bytes,
               std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - t0).count());
}

void RocksSpool::UpdateAsync(const MessageMeta& meta, int64_t old_next_attempt_us) {
  std::lock_guard<std::mutex> l(mu_);
  ops_.push_back(Op{false, meta, old_next_attempt_us});
  if (ops_.size() >= kMaxQueuedOps) cv_.notify_one();
}

void RocksSpool::DeleteAsync(const MessageMeta& meta) {
  std::lock_guard<std::mutex> l(mu_);
  ops_.push_back(Op{true, meta, 0});
  if (ops_.size() >= kMaxQueuedOps) cv_.notify_one();
}

void RocksSpool::FlushAsync() {
  std::lock_guard<std::mutex> l(mu_);
  if (ops_.empty()) return;  // a commit took them already
  flush_ops_ = true;
  cv_.notify_one();
}

absl::Status RocksSpool::WriteBatchOf(std::vector<Pending>& batch, std::vector<Op>& ops) {
  // Reserved up front: growing the batch by doubling would copy every body
  // again (20 x 100 KB messages = 2 MB per batch).
  size_t reserve = 64 + ops.size() * 256;
  for (const auto& p : batch) {
    reserve += 256 + p.msg.header_prefix.size() + p.msg.body.size() +
               p.msg.meta.recipients.size() * 64 + p.msg.meta.sender.size();
  }
  rocksdb::WriteBatch wb(reserve);
  // Bookkeeping first: it may concern messages committed in earlier batches only.
  for (const Op& op : ops) {
    rocksdb::Status st = AddOp(op, &wb);
    if (!st.ok()) return FromRocks(st, "building bookkeeping batch");
  }
  for (auto& p : batch) {
    const MessageMeta& m = p.msg.meta;
    auto key = m.id.Key();
    std::string meta = EncodeMeta(m);
    rocksdb::Status st = wb.Put(meta_, KeySlice(key), meta);
    if (st.ok()) {
      rocksdb::Slice parts[2] = {p.msg.header_prefix, p.msg.body};
      rocksdb::Slice k = KeySlice(key);
      st = wb.Put(body_, rocksdb::SliceParts(&k, 1), rocksdb::SliceParts(parts, 2));
    }
    if (st.ok()) st = wb.Put(schedule_, ScheduleKey(m.next_attempt_us, m.id), rocksdb::Slice());
    if (!st.ok()) return FromRocks(st, "building commit batch");
  }
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync && !batch.empty();  // bookkeeping alone needs no sync
  wo.no_slowdown = true;
  int64_t deadline = clock_.MonoMillis() + opts_.write_deadline_ms;
  bool stalled = false;
  for (int backoff_ms = 1;; backoff_ms = std::min(backoff_ms * 2, 100)) {
    rocksdb::Status st = db_->Write(wo, &wb);
    if (st.ok()) return absl::OkStatus();
    if (st.IsIncomplete()) {  // write stall; no_slowdown made it return at once
      if (!stalled) {
        stalled = true;
        std::lock_guard<std::mutex> l(mu_);
        stats_.write_stalls++;
      }
      if (clock_.MonoMillis() >= deadline) {
        spdlog::warn("event=spool_write_stall_timeout deadline_ms={} batch={}",
                     opts_.write_deadline_ms, batch.size());
        return absl::DeadlineExceededError("spool write stalled past its deadline");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      continue;
    }
    absl::Status as = FromRocks(st, "spool write");
    Latch(as);
    return as;
  }
}

void RocksSpool::Latch(const absl::Status& s) {
  {
    std::lock_guard<std::mutex> l(mu_);
    latched_ = s;
  }
  if (healthy_.exchange(false)) {
    {
      std::lock_guard<std::mutex> l(mu_);
      stats_.background_errors++;
    }
    spdlog::error("event=spool_unhealthy error=\"{}\" action=\"new mail refused with 4xx until "
                  "the spool recovers\"",
                  s.message());
  }
}

std::optional<uint64_t> RocksSpool::FreeBytes() const {
  struct statvfs sv;
  if (statvfs(opts_.path.c_str(), &sv) != 0) return std::nullopt;
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

bool RocksSpool::LowOnSpace() {
  if (opts_.min_free_bytes == 0) return false;
  std::optional<uint64_t> free = FreeBytes();
  if (!free) return false;  // cannot tell: let RocksDB decide
  uint64_t free_bytes = *free;
  if (free_bytes < opts_.min_free_bytes) {
    if (!low_space_) {
      low_space_ = true;
      Latch(absl::ResourceExhaustedError(
          Cat("spool disk almost full: ", free_bytes, " bytes free in ", opts_.path,
              ", below spool.min_free_space (", opts_.min_free_bytes, ")")));
    }
    return true;
  }
  if (low_space_) {
    low_space_ = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      latched_ = absl::OkStatus();
    }
    healthy_.store(true);
    spdlog::info("event=spool_recovered free_bytes={}", free_bytes);
  }
  return false;
}

void RocksSpool::TryResume() {
  rocksdb::Status st = db_->Resume();
  if (st.ok()) {
    // Prove the WAL is writable again before accepting.
    rocksdb::WriteOptions wo;
    wo.sync = opts_.sync;
    st = db_->Put(wo, handles_[0], kFormatKey, std::to_string(kFormatVersion));
  }
  if (st.ok()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      latched_ = absl::OkStatus();
    }
    healthy_.store(true);
    spdlog::info("event=spool_recovered");
  } else {
    absl::Status as = FromRocks(st, "spool still failing");
    std::lock_guard<std::mutex> l(mu_);
    latched_ = as;
  }
}

absl::Status RocksSpool::LatchedStatus() const {
  std::lock_guard<std::mutex> l(mu_);
  return latched_.ok() ? absl::UnavailableError("spool unhealthy") : latched_;
}

bool RocksSpool::Healthy() const { return healthy_.load(std::memory_order_relaxed); }

SpoolHealth RocksSpool::Health() const {
  if (healthy_.load()) return {};
  std::lock_guard<std::mutex> l(mu_);
  return SpoolHealth{false, std::string(latched_.message())};
}

SpoolStats RocksSpool::Stats() const {
  SpoolStats s;
  {
    std::lock_guard<std::mutex> l(mu_);
    s = stats_;
  }
  s.batch_messages = batch_hist_.Snapshot();
  s.commit_micros = commit_hist_.Snapshot();
  s.queue_known = queue_counted_.load();
  s.queue_messages = base_messages_.load() + delta_messages_.load();
  s.queue_bytes = base_bytes_.load() + delta_bytes_.load();
  if (db_ != nullptr && !opts_.read_only) {
    s.disk_bytes = IntProperty("rocksdb.total-sst-files-size");
    rocksdb::VectorLogPtr wals;
    if (db_->GetSortedWalFiles(wals).ok()) {
      for (const auto& w : wals) s.disk_bytes += w->SizeFileBytes();
    }
  }
  return s;
}

uint64_t RocksSpool::IntProperty(const std::string& name) const {
  uint64_t v = 0;
  db_->GetAggregatedIntProperty(name, &v);
  return v;
}

absl::StatusOr<std::vector<MessageMeta>> RocksSpool::LoadDue(int64_t now_us, size_t limit) {
  std::vector<MessageMeta> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), schedule_));
  for (it->SeekToFirst(); it->Valid() && out.size() < limit; it->Next()) {
    int64_t when;
    QueueId id;
    if (!ParseScheduleKey(std::string_view(it->key().data(), it->key().size()), &when, &id)) {
      spdlog::error("event=spool_bad_schedule_key size={}", it->key().size());
      continue;
    }
    if (when > now_us) break;
    auto key = id.Key();
    std::string value;
    rocksdb::Status st = db_->Get(rocksdb::ReadOptions(), meta_, KeySlice(key), &value);
    if (st.IsNotFound()) continue;  // deleted meanwhile
    if (!st.ok()) return FromRocks(st, "reading message record");
    auto m = DecodeMeta(std::string_view(key.data(), key.size()), value);
    if (!m.ok()) {
      spdlog::error("event=spool_corrupt_record id={} error=\"{}\"", id.ToString(),
                    m.status().message());
      continue;
    }
    out.push_back(std::move(*m));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scanning schedule");
  return out;
}

absl::StatusOr<std::string> RocksSpool::ReadBody(const QueueId& id) {
  auto key = id.Key();
  std::string value;
  rocksdb::Status st = db_->Get(rocksdb::ReadOptions(), body_, KeySlice(key), &value);
  if (!st.ok()) return FromRocks(st, Cat("reading body of ", id.ToString()));
  return value;
}

absl::StatusOr<MessageMeta> RocksSpool::LoadMeta(const QueueId& id) {
  {
    // Bookkeeping not yet in RocksDB is the newest state (the last one wins).
    std::lock_guard<std::mutex> l(mu_);
    for (const std::vector<Op>* v : {&ops_, &writing_ops_}) {
      for (auto it = v->rbegin(); it != v->rend(); ++it) {
        if (!(it->meta.id == id)) continue;
        if (it->is_delete) return absl::NotFoundError(Cat("record of ", id.ToString(), " deleted"));
        return it->meta;
      }
    }
  }
  auto key = id.Key();
  std::string value;
  rocksdb::Status st = db_->Get(rocksdb::ReadOptions(), meta_, KeySlice(key), &value);
  if (!st.ok()) return FromRocks(st, Cat("reading record of ", id.ToString()));
  return DecodeMeta(std::string_view(key.data(), key.size()), value);
}

absl::Status RocksSpool::ScanSchedule(const std::function<bool(int64_t, const QueueId&)>& visit) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), schedule_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    int64_t when;
    QueueId id;
    if (!ParseScheduleKey(std::string_view(it->key().data(), it->key().size()), &when, &id)) {
      continue;
    }
    if (!visit(when, id)) break;
  }
  return FromRocks(it->status(), "scanning schedule");
}

absl::Status RocksSpool::Update(const MessageMeta& meta, int64_t old_next_attempt_us) {
  rocksdb::WriteBatch wb;
  rocksdb::Status st = AddOp(Op{false, meta, old_next_attempt_us}, &wb);
  if (st.ok()) st = db_->Write(rocksdb::WriteOptions(), &wb);
  return FromRocks(st, Cat("updating ", meta.id.ToString()));
}

absl::Status RocksSpool::Delete(const MessageMeta& meta) {
  rocksdb::WriteBatch wb;
  Op op{true, meta, 0};
  rocksdb::Status st = AddOp(op, &wb);
  if (st.ok()) st = db_->Write(rocksdb::WriteOptions(), &wb);
  if (st.ok()) ApplyQueueDelta({op});
  return FromRocks(st, Cat("deleting ", meta.id.ToString()));
}

absl::Status RocksSpool::Scan(const std::function<bool(const MessageMeta&)>& visit) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto m = DecodeMeta(std::string_view(it->key().data(), it->key().size()),
                        std::string_view(it->value().data(), it->value().size()));
    if (!m.ok()) return m.status();
    if (!visit(*m)) break;
  }
  return FromRocks(it->status(), "scanning spool");
}

absl::StatusOr<std::optional<QueueId>> RocksSpool::OldestFrom(const QueueId& from) {
  auto lower = from.Key();
  rocksdb::Slice lower_slice = KeySlice(lower);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_));
  // The seek skips every entry (and tombstone) before `from`.
  for (it->Seek(lower_slice); it->Valid(); it->Next()) {
    auto id = QueueId::FromKey(std::string_view(it->key().data(), it->key().size()));
    if (id) return std::optional<QueueId>(*id);
    // Not one of ours (we never write such a key): skipped, said once.
    static std::atomic<bool> said{false};
    if (!said.exchange(true)) {
      spdlog::warn("event=spool_bad_key cf=meta size={} effect=\"ignored by the oldest-message "
                   "gauge\"", it->key().size());
    }
  }
  MXR_RETURN_IF_ERROR(FromRocks(it->status(), "finding the oldest message"));
  return std::optional<QueueId>();
}

}  // namespace mxr::queue
