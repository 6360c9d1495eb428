// What DKIM signing publishes for the exporter (metrics/ includes only this
// header from dkim/). Written by the signing threads, read at scrape time.
// Label values come from the configuration (signing domains, algorithm
// names) or fixed sets; the per-domain family is bounded: the first
// `domain_labels` domains to sign keep their own label until restart (so
// every series only grows), the rest are summed as "other".
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/histogram.h"

namespace mxr::dkim {

// Why a message was not signed (or not by every key of its rule).
enum class Failure : uint8_t {
  kNoRule = 0,      // no rule matches the message
  kFromInvalid,     // no usable From: (none, several fields, several domains, no domain)
  kKeyUnusable,     // the rule's key could not be loaded (SIGHUP: missing, bad mode, unparsable)
  kSignError,       // the cryptographic operation failed
};
inline constexpr size_t kFailureCount = 4;
inline constexpr std::array<Failure, kFailureCount> kAllFailures = {Failure::kNoRule, Failure::kFromInvalid,
                                                                    Failure::kKeyUnusable, Failure::kSignError};
inline std::string_view FailureName(Failure f) {
  switch (f) {
    case Failure::kNoRule: return "no_rule";
    case Failure::kFromInvalid: return "from_invalid";
    case Failure::kKeyUnusable: return "key_unusable";
    case Failure::kSignError: return "sign_error";
  }
  return "?";
}

// What happened to a message that went through the signer.
enum class Result : uint8_t { kSigned = 0, kUnsigned, kDeferred };
inline constexpr size_t kResultCount = 3;
inline std::string_view ResultName(Result r) {
  switch (r) {
    case Result::kSigned: return "signed";
    case Result::kUnsigned: return "unsigned";
    case Result::kDeferred: return "deferred";
  }
  return "?";
}

// Signing time per message (all its signatures), in µs: 10 µs .. 1 s.
inline std::vector<uint64_t> SigningBucketsUs() {
  return {10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000, 250000, 1000000};
}

class DkimStats {
 public:
  explicit DkimStats(int domain_labels = 20) : cap_(domain_labels < 0 ? 0 : static_cast<size_t>(domain_labels)) {}

  void CountResult(Result r) { results_[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
  void CountFailure(Failure f) { failures_[static_cast<size_t>(f)].fetch_add(1, std::memory_order_relaxed); }
  // One signature made with a key of `domain` (d=) and `algorithm`. A mutex
  // and a map lookup: negligible next to the signature itself.
  void CountSignature(const std::string& domain, std::string_view algorithm) {
    std::lock_guard<std::mutex> l(mu_);
    bool own = labelled_.count(domain) > 0;
    if (!own && labelled_.size() < cap_) {
      labelled_.insert({domain, true});
      own = true;
    }
    ++signatures_[{own ? domain : std::string("other"), std::string(algorithm)}];
  }
  Histogram& signing_us() { return signing_us_; }

  uint64_t results(Result r) const { return results_[static_cast<size_t>(r)].load(std::memory_order_relaxed); }
  uint64_t failures(Failure f) const { return failures_[static_cast<size_t>(f)].load(std::memory_order_relaxed); }
  // ((domain label, algorithm), signatures), sorted.
  std::vector<std::pair<std::pair<std::string, std::string>, uint64_t>> Signatures() const {
    std::lock_guard<std::mutex> l(mu_);
    return {signatures_.begin(), signatures_.end()};
  }
  HistogramSnapshot SigningTime() const { return signing_us_.Snapshot(); }

 private:
  size_t cap_;
  std::array<std::atomic<uint64_t>, kResultCount> results_{};
  std::array<std::atomic<uint64_t>, kFailureCount> failures_{};
  Histogram signing_us_{SigningBucketsUs()};
  mutable std::mutex mu_;
  std::map<std::string, bool> labelled_;
  std::map<std::pair<std::string, std::string>, uint64_t> signatures_;
};

}  // namespace mxr::dkim
