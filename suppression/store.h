// The suppression lists: per tenant and global, in the spool's RocksDB
// (column family "suppression", RocksSpoolOptions::extra_families).
//
//   auto store = Store::Open(spool->db(), spool->Family("suppression"), clock);
//   if (auto hit = (*store)->Find("acme", "bob@example.com")) { ... 550 5.7.1 ... }
//
// Find() is what RCPT TO pays for every recipient: the address is hashed
// and looked up in an in-memory set of the hashes of every stored key (8
// bytes an entry, loaded from RocksDB by a background thread at Open);
// RocksDB is read only when the set says "maybe" (a stored address, or a
// 64-bit hash collision, or an entry removed since the start). Until the
// set is loaded, Find() reads RocksDB. Expired entries never match.
//
// Threads: every method may be called from any thread. Writes go straight
// to RocksDB (not through the spool's group commit): Add/Remove sync the WAL
// when asked (operator actions), bounces feed it unsynced (a crash may lose
// the newest ones; the next bounce of the address adds it again).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "suppression/entry.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Iterator;
class WriteBatch;
}  // namespace rocksdb

namespace mxr::suppression {

struct StoreStats {
  uint64_t entries = 0;      // stored, expired ones included until purged
  bool filter_loaded = false;
  uint64_t lookups = 0;      // Find() calls
  uint64_t store_reads = 0;  // of them, how many read RocksDB
  uint64_t hits = 0;         // found (not expired)
};

class Store {
 public:
  static constexpr std::string_view kFamily = "suppression";

  // `db` and `cf` outlive the store. Starts loading the in-memory filter
  // (`load_filter` false: never, every lookup reads RocksDB; benchmarks).
  static absl::StatusOr<std::unique_ptr<Store>> Open(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                                     const Clock& clock, bool load_filter = true);
  ~Store();  // waits for the filter loader
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The entry suppressing `address` for mail of `tenant`: the tenant's own
  // list first, then the global list; expired entries do not count.
  // `address` as the client wrote it (normalized here); nullopt for no match
  // or an address that cannot be normalized (the caller refuses those anyway).
  std::optional<Entry> Find(std::string_view tenant, std::string_view address) const;

  // Inserts or replaces (scope, address); e.address is normalized here.
  // InvalidArgument for an address that is not one, or a scope with NUL.
  absl::Status Add(Entry e, bool sync);
  // true when something was removed.
  absl::StatusOr<bool> Remove(std::string_view scope, std::string_view address, bool sync);
  // Exactly (scope, address), expired or not.
  absl::StatusOr<std::optional<Entry>> Get(std::string_view scope, std::string_view address) const;

  // Entries after `after` (a normalized address; "" = from the start), in
  // key order, at most `limit`: of one scope, or of every scope (nullopt),
  // where `after_scope` + `after` is the position.
  absl::StatusOr<std::vector<Entry>> List(std::optional<std::string_view> scope,
                                          std::string_view after_scope, std::string_view after,
                                          size_t limit) const;
  // Visits every entry in key order until `visit` returns false.
  absl::Status ForEach(const std::function<bool(const Entry&)>& visit) const;

  // Bulk load: entries are written in batches of `batch_size` without sync,
  // the WAL synced once at the end. Returns how many were written (replacing
  // existing entries counts).
  absl::StatusOr<uint64_t> AddMany(const std::vector<Entry>& entries);

  // Deletes up to `max` expired entries; returns how many.
  absl::StatusOr<size_t> PurgeExpired(size_t max);

  StoreStats Stats() const;
  // Blocks until the filter is loaded (tests, benchmarks).
  void WaitLoaded();

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    mutable std::shared_mutex mu;
    absl::flat_hash_set<uint64_t> hashes;
  };

  Store(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const Clock& clock);
  void LoadFilter(rocksdb::Iterator* it);
  static uint64_t HashKey(std::string_view key);
  void FilterAdd(uint64_t h);
  bool FilterMaybe(uint64_t h) const;
  std::optional<Entry> ReadEntry(const std::string& key) const;
  // Whether the key is stored (filter first).
  bool Exists(const std::string& key) const;
  absl::Status PutBatch(rocksdb::WriteBatch* wb, bool sync);

  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* cf_;
  const Clock& clock_;
  Shard shards_[kShards];
  std::atomic<bool> loaded_{false};
  std::atomic<bool> closing_{false};
  std::atomic<uint64_t> entries_{0};
  mutable std::atomic<uint64_t> lookups_{0}, store_reads_{0}, hits_{0};
  std::thread loader_;
};

}  // namespace mxr::suppression
