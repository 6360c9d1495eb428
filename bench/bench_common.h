// Helpers shared by the load tools (mxr-loadgen, mxr-sink): clocks, a
// fixed-size latency histogram, size / weighted-distribution parsing,
// host:port parsing and JSON string escaping. Header-only, no I/O.
//
//   LatencyHistogram h;               // 58 KB, no allocation after construction
//   h.Record(micros);                 // O(1)
//   h.Percentile(99.9);               // O(buckets), at report time only
//
//   auto d = ParseDistribution("1K:70,10K:25,100K:5", ParseSize);  // weights
//   Xorshift rng(seed);  d->Pick(rng);                             // O(#entries)
#pragma once

#include <time.h>

#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/strings.h"

namespace mxr::bench {

// The whole of `s` as an unsigned decimal number.
inline bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

inline int64_t MonoMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

// Wall clock (the X-Mxr-Submitted header is compared across processes).
inline int64_t UnixMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

// Log-linear histogram of non-negative integers (microseconds): exact below
// 128, then 128 sub-buckets per power of two (relative error < 0.8%).
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = 1u << kSubBits;
  static constexpr size_t kBuckets = kSub + (64 - kSubBits) * kSub;

  void Record(int64_t v) {
    uint64_t u = v < 0 ? 0 : static_cast<uint64_t>(v);
    counts_[Index(u)]++;
    count_++;
    sum_ += u;
    if (u > max_) max_ = u;
    if (count_ == 1 || u < min_) min_ = u;
  }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }

  // The value at percentile p (0..100]: the upper bound of the bucket holding
  // the rank, clamped to the maximum seen. 0 when empty.
  uint64_t Percentile(double p) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(count_) + 0.5);
    if (rank < 1) rank = 1;
    if (rank > count_) rank = count_;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        uint64_t hi = UpperBound(i);
        return hi < max_ ? hi : max_;
      }
    }
    return max_;
  }

 private:
  static size_t Index(uint64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    int e = 63 - std::countl_zero(v);  // >= kSubBits
    uint64_t sub = (v >> (e - kSubBits)) - kSub;
    return static_cast<size_t>(kSub + static_cast<uint64_t>(e - kSubBits) * kSub + sub);
  }
  static uint64_t UpperBound(size_t i) {
    if (i < kSub) return i;
    uint64_t e = (i - kSub) / kSub + kSubBits;
    uint64_t sub = (i - kSub) % kSub;
    uint64_t shift = e - kSubBits;
    return ((kSub + sub) << shift) + ((uint64_t{1} << shift) - 1);
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0, sum_ = 0, max_ = 0, min_ = 0;
};

// "1024", "1K", "10k", "1M" (binary multiples).
inline absl::StatusOr<uint64_t> ParseSize(std::string_view s) {
  uint64_t mult = 1;
  if (!s.empty()) {
    char c = s.back();
    if (c == 'K' || c == 'k') mult = 1024;
    if (c == 'M' || c == 'm') mult = 1024 * 1024;
    if (mult != 1) s.remove_suffix(1);
  }
  uint64_t v = 0;
  if (!ParseU64(s, &v)) {
    return absl::InvalidArgumentError(Cat("not a size: '", s, "' (e.g. 512, 1K, 2M)"));
  }
  return v * mult;
}

inline absl::StatusOr<uint64_t> ParseCount(std::string_view s) {
  uint64_t v = 0;
  if (!ParseU64(s, &v)) return absl::InvalidArgumentError(Cat("not a number: '", s, "'"));
  return v;
}

// xorshift64*: fast, good enough to pick sizes and recipients.
class Xorshift {
 public:
  explicit Xorshift(uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }

 private:
  uint64_t s_;
};

// A weighted choice among a few values: "V" or "V1:W1,V2:W2,...".
struct Distribution {
  struct Entry {
    uint64_t value;
    uint64_t weight;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;

  uint64_t Pick(Xorshift& rng) const { return entries[PickIndex(rng)].value; }
  size_t PickIndex(Xorshift& rng) const {
    if (entries.size() == 1) return 0;
    uint64_t r = rng.Next() % total;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (r < entries[i].weight) return i;
      r -= entries[i].weight;
    }
    return entries.size() - 1;
  }
  uint64_t MaxValue() const {
    uint64_t m = 0;
    for (const Entry& e : entries) m = e.value > m ? e.value : m;
    return m;
  }
  std::string ToString(bool as_size) const {
    std::string out;
    for (const Entry& e : entries) {
      if (!out.empty()) out += ",";
      if (as_size && e.value % (1024 * 1024) == 0 && e.value > 0) {
        out += Cat(e.value / (1024 * 1024), "M");
      } else if (as_size && e.value % 1024 == 0 && e.value > 0) {
        out += Cat(e.value / 1024, "K");
      } else {
        out += Cat(e.value);
      }
      if (entries.size() > 1) out += Cat(":", e.weight);
    }
    return out;
  }
};

template <typename ParseValue>
absl::StatusOr<Distribution> ParseDistribution(std::string_view spec, ParseValue parse) {
  Distribution d;
  std::string_view rest = spec;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (part.empty()) continue;
    size_t colon = part.find(':');
    auto v = parse(part.substr(0, colon));
    if (!v.ok()) return v.status();
    uint64_t w = 1;
    if (colon != std::string_view::npos && !ParseU64(part.substr(colon + 1), &w)) {
      return absl::InvalidArgumentError(
          Cat("not a weight: '", part.substr(colon + 1), "' in '", spec, "'"));
    }
    if (w == 0) continue;
    d.entries.push_back({*v, w});
    d.total += w;
  }
  if (d.entries.empty()) {
    return absl::InvalidArgumentError(Cat("empty distribution: '", spec, "'"));
  }
  return d;
}

struct HostPort {
  std::string host;
  std::string port;
};

// "127.0.0.1:2525", "[::1]:2525", "localhost:2525".
inline absl::StatusOr<HostPort> ParseHostPort(std::string_view s) {
  HostPort hp;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return absl::InvalidArgumentError(Cat("expected [v6-address]:port, got '", s, "'"));
    }
    hp.host = std::string(s.substr(1, close - 1));
    hp.port = std::string(s.substr(close + 2));
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon) {
      return absl::InvalidArgumentError(Cat("expected host:port, got '", s, "'"));
    }
    hp.host = std::string(s.substr(0, colon));
    hp.port = std::string(s.substr(colon + 1));
  }
  uint64_t p = 0;
  if (hp.host.empty() || !ParseU64(hp.port, &p) || p > 65535) {
    return absl::InvalidArgumentError(Cat("expected host:port, got '", s, "'"));
  }
  return hp;
}

inline std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

inline std::string JsonDouble(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// The percentile block both tools print: "p50 1.2 ms  p90 ...".
inline std::string FormatMicros(uint64_t us) {
  char buf[32];
  if (us < 1000) {
    std::snprintf(buf, sizeof buf, "%llu us", static_cast<unsigned long long>(us));
  } else if (us < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.2f ms", static_cast<double>(us) / 1000.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(us) / 1e6);
  }
  return buf;
}

inline std::string PercentileLine(const LatencyHistogram& h) {
  return Cat("p50 ", FormatMicros(h.Percentile(50)), "  p90 ", FormatMicros(h.Percentile(90)),
                      "  p99 ", FormatMicros(h.Percentile(99)), "  p99.9 ",
                      FormatMicros(h.Percentile(99.9)), "  max ", FormatMicros(h.max()), "  (n=",
                      h.count(), ")");
}

inline std::string PercentileJson(const LatencyHistogram& h) {
  return Cat("{\"count\":", h.count(), ",\"p50\":", h.Percentile(50), ",\"p90\":",
                      h.Percentile(90), ",\"p99\":", h.Percentile(99), ",\"p999\":",
                      h.Percentile(99.9), ",\"max\":", h.max(), ",\"mean\":",
                      JsonDouble(h.mean(), 1), "}");
}

}  // namespace mxr::bench
