// A fixed-bucket histogram for hot paths: Observe() is a few relaxed atomic
// adds, no lock, no allocation. Values are integers in the histogram's unit
// (microseconds, bytes, messages); the exporter scales them (e.g. 1e-6 for
// seconds). Snapshots are not atomic across buckets (a scrape may see an
// observation in `count` but not yet in its bucket); Prometheus tolerates that.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace mxr {

struct HistogramSnapshot {
  std::vector<uint64_t> bounds;      // upper bounds, ascending (in the unit)
  std::vector<uint64_t> cumulative;  // observations <= bounds[i]
  uint64_t count = 0;
  uint64_t sum = 0;                  // in the unit
};

class Histogram {
 public:
  explicit Histogram(std::vector<uint64_t> bounds)
      : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
    for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
  }
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(uint64_t v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;  // few buckets: linear beats binary
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }

  HistogramSnapshot Snapshot() const {
    HistogramSnapshot s;
    s.bounds = bounds_;
    s.cumulative.resize(bounds_.size());
    uint64_t acc = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      acc += buckets_[i].load(std::memory_order_relaxed);
      s.cumulative[i] = acc;
    }
    acc += buckets_[bounds_.size()].load(std::memory_order_relaxed);
    s.count = acc;  // from the buckets, so +Inf == count exactly
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::vector<uint64_t> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
};

// Bucket sets shared by the components (one place to tune them).
namespace buckets {
// Latencies in microseconds, 100 µs .. 10 s (time to 250, commits, DNS).
inline std::vector<uint64_t> LatencyUs() {
  return {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
          1000000, 2500000, 10000000};
}
// Queue-to-delivery in microseconds, 10 ms .. 5 days (retries included).
inline std::vector<uint64_t> QueueLatencyUs() {
  return {10000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000,
          60000000, 300000000, 900000000, 3600000000, 14400000000, 86400000000, 432000000000};
}
// Message sizes in bytes, 1 KiB .. 64 MiB.
inline std::vector<uint64_t> SizeBytes() {
  return {1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};
}
// Messages per group commit.
inline std::vector<uint64_t> BatchMessages() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}; }
}  // namespace buckets

}  // namespace mxr
