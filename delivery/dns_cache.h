// The resolver's two pieces of bookkeeping, kept apart from c-ares so they
// can be unit-tested and benchmarked:
//
//   TtlCache<V>  answers by name until they expire, bounded in entries;
//                when full the least recently used entry goes (a campaign to
//                many cold domains cannot push out the hot ones, and the
//                cache never empties all at once).
//   Inflight<A>  lookups on the wire, by name: the first asker starts the
//                query, later askers wait for the same answer (a burst of
//                10,000 messages to a domain not yet cached sends one MX
//                query, not 10,000).
//
// Neither is thread-safe: the resolver uses them on its loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mxr::delivery {

// Entries kept per cache (MX answers; host addresses) unless configured:
// ~100k domains is more than most senders reach between two TTL expiries,
// and ~300 bytes each keeps a full cache near 30 MB.
inline constexpr size_t kDnsCacheEntries = 100000;

template <class V>
class TtlCache {
 public:
  // REQUIRES: capacity >= 1.
  explicit TtlCache(size_t capacity = kDnsCacheEntries) : capacity_(capacity < 1 ? 1 : capacity) {}
  TtlCache(const TtlCache&) = delete;
  TtlCache& operator=(const TtlCache&) = delete;

  // The value cached for `key` if it has not expired at `now_ms` (an entry
  // expires when now_ms >= its expiry); an expired entry is dropped. A hit
  // makes the entry the most recently used. The pointer is valid until the
  // next Put or Find.
  const V* Find(const std::string& key, int64_t now_ms) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    if (now_ms >= it->second.expires_ms) {
      lru_.erase(it->second.pos);
      map_.erase(it);
      ++expired_;
      return nullptr;
    }
    lru_.splice(lru_.end(), lru_, it->second.pos);
    return &it->second.value;
  }

  // Caches `value` for `key` until `expires_ms`, replacing what was there.
  // When the cache is full the least recently used entry is dropped.
  void Put(const std::string& key, V value, int64_t expires_ms) {
    auto it = map_.find(key);
    if (it != map_.end()) {
      it->second.value = std::move(value);
      it->second.expires_ms = expires_ms;
      lru_.splice(lru_.end(), lru_, it->second.pos);
      return;
    }
    while (map_.size() >= capacity_) {
      auto victim = map_.find(*lru_.front());  // not erase(key): the key lives in the node
      lru_.pop_front();
      map_.erase(victim);
      ++evicted_;
    }
    auto [ins, _] = map_.emplace(key, Entry{std::move(value), expires_ms, {}});
    ins->second.pos = lru_.insert(lru_.end(), &ins->first);
  }

  size_t size() const { return map_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t evicted() const { return evicted_; }  // dropped to make room
  uint64_t expired() const { return expired_; }  // dropped by Find after their TTL

 private:
  struct Entry {
    V value;
    int64_t expires_ms;
    std::list<const std::string*>::iterator pos;  // in lru_
  };
  size_t capacity_;
  // Keys of map_ (stable: unordered_map nodes do not move), least recently
  // used first.
  std::list<const std::string*> lru_;
  std::unordered_map<std::string, Entry> map_;
  uint64_t evicted_ = 0, expired_ = 0;
};

template <class A>
class Inflight {
 public:
  using Done = std::function<void(const A&)>;

  // Adds `done` to the waiters for `key`. Returns true when no lookup for
  // `key` was in flight: the caller must start one and later call Take.
  bool Join(const std::string& key, Done done) {
    auto [it, first] = waiting_.try_emplace(key);
    it->second.push_back(std::move(done));
    return first;
  }

  // Ends the lookup for `key` and hands over its waiters in the order they
  // joined (empty if none). Call before running them: a waiter that asks
  // for `key` again then starts a new lookup instead of joining the ended one.
  std::vector<Done> Take(const std::string& key) {
    auto it = waiting_.find(key);
    if (it == waiting_.end()) return {};
    std::vector<Done> out = std::move(it->second);
    waiting_.erase(it);
    return out;
  }

  size_t size() const { return waiting_.size(); }  // lookups in flight

 private:
  std::unordered_map<std::string, std::vector<Done>> waiting_;
};

}  // namespace mxr::delivery
