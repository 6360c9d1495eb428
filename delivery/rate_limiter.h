// A rate limiter for one egress path or source: GCRA (generic cell rate
// algorithm, the "virtual scheduling" form of a leaky bucket). One number of
// state, the theoretical arrival time (TAT); O(1) per decision; smooth: with
// burst = 1 the events are spaced period/quantity apart, with burst = B at
// most B may go back to back after an idle spell, never more.
//
//   auto spec = ParseRate("120/min");          // quantity 120, period 60 s
//   Gcra g(*spec, /*burst=*/5);
//   int64_t wait = g.Take(now_us);             // 0: go now (and counted); else µs to wait
//
// Pure (the caller passes the time). Delivery loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mxr::delivery {

struct RateSpec {
  int64_t quantity = 0;   // 0 = unlimited
  int64_t period_us = 0;  // per this long
  bool limited() const { return quantity > 0 && period_us > 0; }
  // Microseconds between two events at the steady rate.
  int64_t interval_us() const { return limited() ? period_us / quantity : 0; }
  std::string ToString() const;  // "120/min"
  bool operator==(const RateSpec&) const = default;
};

// "N/s", "N/sec", "N/second", "N/m", "N/min", "N/minute", "N/h", "N/hr",
// "N/hour", "N/d", "N/day" (N a positive integer). "" or "unlimited": no limit.
absl::StatusOr<RateSpec> ParseRate(std::string_view text);

// A duration: "90", "90s", "30m", "2h", "1d", "2 hours", "30 days" -> seconds.
absl::StatusOr<int64_t> ParseDurationSeconds(std::string_view text);

class Gcra {
 public:
  Gcra() = default;
  Gcra(RateSpec spec, int64_t burst) { Configure(spec, burst); }

  // Keeps the current TAT (a change of limits does not forgive or punish).
  void Configure(RateSpec spec, int64_t burst);
  bool limited() const { return interval_us_ > 0; }

  // 0 if an event may happen at now_us (and it is counted); otherwise how
  // many microseconds until it may (nothing counted).
  int64_t Take(int64_t now_us);
  // Like Take but counts nothing.
  int64_t WaitUs(int64_t now_us) const;
  int64_t tat_us() const { return tat_us_; }

 private:
  int64_t interval_us_ = 0;   // T
  int64_t tolerance_us_ = 0;  // tau = T * (burst - 1)
  int64_t tat_us_ = 0;
};

}  // namespace mxr::delivery
