// The spool I/O thread: runs the delivery side's blocking RocksDB calls
// (LoadMeta, ReadBody, OldestFrom) off the delivery loop, in submission
// order. Each task posts its result back to the loop itself.
//
// Submit() from the loop thread; the destructor runs what is queued, then
// joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/functional/any_invocable.h"

namespace mxr::delivery {

class SpoolIo {
 public:
  SpoolIo();
  ~SpoolIo();
  SpoolIo(const SpoolIo&) = delete;
  SpoolIo& operator=(const SpoolIo&) = delete;
  void Submit(absl::AnyInvocable<void() &&> fn);

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::AnyInvocable<void() &&>> q_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mxr::delivery
