// Time source seam: production code reads time only through a Clock so that
// logic (timeouts, backoff, ages) can be tested with a ManualClock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace mxr {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock microseconds since the Unix epoch. Thread-safe.
  virtual int64_t NowMicros() const = 0;
  // Monotonic milliseconds (arbitrary origin), for timeouts. Thread-safe.
  virtual int64_t MonoMillis() const = 0;
};

class RealClock final : public Clock {
 public:
  int64_t NowMicros() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t MonoMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static const RealClock& Get() {
    static const RealClock clock;
    return clock;
  }
};

// A clock tests move by hand. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_us = 1'700'000'000'000'000) : now_us_(now_us) {}
  int64_t NowMicros() const override { return now_us_.load(); }
  int64_t MonoMillis() const override { return now_us_.load() / 1000; }
  void AdvanceMicros(int64_t us) { now_us_ += us; }

 private:
  std::atomic<int64_t> now_us_;
};

}  // namespace mxr
