#include "delivery/spool_io.h"

#include "common/thread_name.h"

namespace mxr::delivery {

SpoolIo::SpoolIo()
    : thread_([this] {
        SetThreadName("mxr-spool-io");
        Run();
      }) {}

SpoolIo::~SpoolIo() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SpoolIo::Submit(absl::AnyInvocable<void() &&> fn) {
  std::lock_guard<std::mutex> l(mu_);
  q_.push_back(std::move(fn));
  cv_.notify_one();
}

void SpoolIo::Run() {
  for (;;) {
    absl::AnyInvocable<void() &&> fn;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;
      fn = std::move(q_.front());
      q_.pop_front();
    }
    std::move(fn)();
  }
}

}  // namespace mxr::delivery
