#include "suppression/store.h"

#include <mutex>

#include "absl/hash/hash.h"
#include "common/strings.h"
#include "common/thread_name.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "spdlog/spdlog.h"

namespace mxr::suppression {
namespace {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::UnavailableError(Cat(what, ": ", s.ToString()));
}

constexpr size_t kBatchSize = 10000;

}  // namespace

Store::Store(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const Clock& clock)
    : db_(db), cf_(cf), clock_(clock) {}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                   const Clock& clock, bool load_filter) {
  if (db == nullptr || cf == nullptr) {
    return absl::FailedPreconditionError("the spool has no \"suppression\" column family");
  }
  std::unique_ptr<Store> s(new Store(db, cf, clock));
  if (!load_filter) return s;
  // The iterator pins the state before any Add: the loader counts what was
  // there, Add counts what it adds.
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::shared_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cf));
  s->loader_ = std::thread([p = s.get(), it] {
    SetThreadName("mxr-suppr-load");
    p->LoadFilter(it.get());
  });
  return s;
}

Store::~Store() {
  closing_.store(true);
  if (loader_.joinable()) loader_.join();
}

uint64_t Store::HashKey(std::string_view key) { return absl::HashOf(key); }

void Store::FilterAdd(uint64_t h) {
  Shard& sh = shards_[h % kShards];
  std::unique_lock l(sh.mu);
  sh.hashes.insert(h);
}

bool Store::FilterMaybe(uint64_t h) const {
  const Shard& sh = shards_[h % kShards];
  std::shared_lock l(sh.mu);
  return sh.hashes.contains(h);
}

void Store::LoadFilter(rocksdb::Iterator* it) {
  auto t0 = clock_.NowMicros();
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid() && !closing_.load(std::memory_order_relaxed); it->Next()) {
    FilterAdd(HashKey(std::string_view(it->key().data(), it->key().size())));
    ++n;
  }
  if (closing_.load()) return;
  if (!it->status().ok()) {
    // Lookups keep reading RocksDB: correct, only slower.
    spdlog::warn("event=suppression_load_failed error=\"{}\" effect=\"every lookup reads the "
                 "spool\"", it->status().ToString());
    return;
  }
  entries_.fetch_add(n);
  loaded_.store(true, std::memory_order_release);
  spdlog::info("event=suppression_loaded entries={} ms={}", n, (clock_.NowMicros() - t0) / 1000);
}

void Store::WaitLoaded() {
  if (loader_.joinable()) loader_.join();
}

std::optional<Entry> Store::ReadEntry(const std::string& key) const {
  std::string value;
  store_reads_.fetch_add(1, std::memory_order_relaxed);
  rocksdb::Status st = db_->Get(rocksdb::ReadOptions(), cf_, key, &value);
  if (!st.ok()) return std::nullopt;  // NotFound, or an error: not suppressed
  Entry e;
  std::string_view scope, address;
  if (!SplitKey(key, &scope, &address) || !DecodeValue(value, &e)) return std::nullopt;
  e.scope = std::string(scope);
  e.address = std::string(address);
  return e;
}

bool Store::Exists(const std::string& key) const {
  if (loaded_.load(std::memory_order_acquire) && !FilterMaybe(HashKey(key))) return false;
  std::string value;
  return db_->Get(rocksdb::ReadOptions(), cf_, key, &value).ok();
}

std::optional<Entry> Store::Find(std::string_view tenant, std::string_view address) const {
  lookups_.fetch_add(1, std::memory_order_relaxed);
  auto norm = NormalizeAddress(address);
  if (!norm) return std::nullopt;
  const bool loaded = loaded_.load(std::memory_order_acquire);
  const int64_t now = clock_.NowMicros();
  std::string_view scopes[2] = {tenant, ""};
  for (int i = tenant.empty() ? 1 : 0; i < 2; ++i) {
    std::string key = Key(scopes[i], *norm);
    if (loaded && !FilterMaybe(HashKey(key))) continue;
    auto e = ReadEntry(key);
    if (e && !e->ExpiredAt(now)) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      return e;
    }
  }
  return std::nullopt;
}

absl::Status Store::PutBatch(rocksdb::WriteBatch* wb, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, wb), "writing the suppression list");
}

absl::Status Store::Add(Entry e, bool sync) {
  auto norm = NormalizeAddress(e.address);
  if (!norm) return absl::InvalidArgumentError(Cat("not an address: ", e.address));
  if (e.scope.find('\0') != std::string::npos) return absl::InvalidArgumentError("scope with NUL");
  e.address = *norm;
  if (e.created_us == 0) e.created_us = clock_.NowMicros();
  std::string key = Key(e.scope, e.address);
  bool existed = Exists(key);
  rocksdb::WriteBatch wb;
  wb.Put(cf_, key, EncodeValue(e));
  if (auto st = PutBatch(&wb, sync); !st.ok()) return st;
  FilterAdd(HashKey(key));
  if (!existed) entries_.fetch_add(1);
  return absl::OkStatus();
}

absl::StatusOr<bool> Store::Remove(std::string_view scope, std::string_view address, bool sync) {
  auto norm = NormalizeAddress(address);
  if (!norm) return absl::InvalidArgumentError(Cat("not an address: ", address));
  std::string key = Key(scope, *norm);
  if (!Exists(key)) return false;
  rocksdb::WriteBatch wb;
  wb.Delete(cf_, key);
  if (auto st = PutBatch(&wb, sync); !st.ok()) return st;
  // The hash stays in the filter (another key may share it): a later lookup
  // of this address reads RocksDB once and finds nothing.
  entries_.fetch_sub(1);
  return true;
}

absl::StatusOr<std::optional<Entry>> Store::Get(std::string_view scope,
                                                std::string_view address) const {
  auto norm = NormalizeAddress(address);
  if (!norm) return absl::InvalidArgumentError(Cat("not an address: ", address));
  return ReadEntry(Key(scope, *norm));
}

absl::StatusOr<std::vector<Entry>> Store::List(std::optional<std::string_view> scope,
                                               std::string_view after_scope, std::string_view after,
                                               size_t limit) const {
  std::vector<Entry> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_));
  std::string start = scope ? Key(*scope, after) : Key(after_scope, after);
  const bool skip_start = !after.empty();
  for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
    std::string_view k(it->key().data(), it->key().size());
    if (skip_start && k == start) continue;
    std::string_view s, a;
    if (!SplitKey(k, &s, &a)) continue;
    if (scope && s != *scope) break;
    Entry e;
    if (!DecodeValue(std::string_view(it->value().data(), it->value().size()), &e)) continue;
    e.scope = std::string(s);
    e.address = std::string(a);
    out.push_back(std::move(e));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "listing the suppression list");
  return out;
}

absl::Status Store::ForEach(const std::function<bool(const Entry&)>& visit) const {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view s, a;
    std::string_view k(it->key().data(), it->key().size());
    Entry e;
    if (!SplitKey(k, &s, &a) ||
        !DecodeValue(std::string_view(it->value().data(), it->value().size()), &e)) {
      continue;
    }
    e.scope = std::string(s);
    e.address = std::string(a);
    if (!visit(e)) break;
  }
  return FromRocks(it->status(), "reading the suppression list");
}

absl::StatusOr<uint64_t> Store::AddMany(const std::vector<Entry>& entries) {
  rocksdb::WriteBatch wb;
  absl::flat_hash_set<uint64_t> hashes;  // of this batch (a duplicate inside it counts once)
  hashes.reserve(std::min(entries.size(), kBatchSize));
  uint64_t written = 0, added = 0;
  const int64_t now = clock_.NowMicros();
  auto flush = [&]() -> absl::Status {
    if (wb.Count() == 0) return absl::OkStatus();
    if (auto st = PutBatch(&wb, false); !st.ok()) return st;
    for (uint64_t h : hashes) FilterAdd(h);
    entries_.fetch_add(added);
    written += wb.Count();
    wb.Clear();
    hashes.clear();
    added = 0;
    return absl::OkStatus();
  };
  for (const Entry& in : entries) {
    auto norm = NormalizeAddress(in.address);
    if (!norm || in.scope.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(Cat("not an address: ", in.address));
    }
    Entry e = in;
    e.address = *norm;
    if (e.created_us == 0) e.created_us = now;
    std::string key = Key(e.scope, e.address);
    uint64_t h = HashKey(key);
    if (hashes.insert(h).second && !Exists(key)) ++added;
    wb.Put(cf_, key, EncodeValue(e));
    if (wb.Count() >= kBatchSize) {
      if (auto st = flush(); !st.ok()) return st;
    }
  }
  if (auto st = flush(); !st.ok()) return st;
  if (auto st = FromRocks(db_->SyncWAL(), "syncing the suppression list"); !st.ok()) return st;
  return written;
}

absl::StatusOr<size_t> Store::PurgeExpired(size_t max) {
  const int64_t now = clock_.NowMicros();
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_));
  rocksdb::WriteBatch wb;
  for (it->SeekToFirst(); it->Valid() && wb.Count() < max; it->Next()) {
    Entry e;
    if (DecodeValue(std::string_view(it->value().data(), it->value().size()), &e) &&
        e.ExpiredAt(now)) {
      wb.Delete(cf_, it->key());
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading the suppression list");
  size_t n = wb.Count();
  if (n == 0) return size_t{0};
  if (auto st = PutBatch(&wb, false); !st.ok()) return st;
  entries_.fetch_sub(n);
  return n;
}

StoreStats Store::Stats() const {
  StoreStats s;
  s.entries = entries_.load();
  s.filter_loaded = loaded_.load();
  s.lookups = lookups_.load();
  s.store_reads = store_reads_.load();
  s.hits = hits_.load();
  return s;
}

}  // namespace mxr::suppression
