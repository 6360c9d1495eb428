// EventLoop's cross-thread entry points (Post, Stop): the mailbox every
// component uses to hand work to a loop it does not own (the password
// checker answering an ingress loop, the commit thread waking the delivery
// engine, the exporter's health state). These tests start threads on
// purpose: scripts/test.sh runs them under TSan (EventLoopThreads.*).
#include "common/event_loop.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mxr {
namespace {

// Every test runs on both backends (io_uring, epoll).
class EventLoopThreads : public ::testing::TestWithParam<LoopBackend> {};

std::unique_ptr<EventLoop> NewLoop(LoopBackend b) {
  auto l = EventLoop::Create(256, b);
  EXPECT_TRUE(l.ok()) << l.status();
  return l.ok() ? std::move(*l) : nullptr;
}

// Four posters, 5,000 tasks each, while the loop runs: every task runs once,
// on the loop thread, and each poster's tasks in the order it posted them.
// The tasks touch loop-owned state without a lock: only the mailbox may
// carry them across (a race there is what TSan would report).
TEST_P(EventLoopThreads, PostFromManyThreadsRunsEveryTaskOnTheLoopInPosterOrder) {
  constexpr int kPosters = 4, kPerPoster = 5000;
  auto loop = NewLoop(GetParam());
  ASSERT_NE(loop, nullptr);
  int ran = 0;                                   // loop thread only
  std::vector<int> next(kPosters, 0);            // loop thread only
  int out_of_order = 0, off_loop = 0;            // loop thread only
  std::atomic<int> posters_done{0};
  std::vector<std::thread> posters;
  for (int p = 0; p < kPosters; ++p) {
    posters.emplace_back([&, p] {
      for (int i = 0; i < kPerPoster; ++i) {
        loop->Post([&, p, i] {
          off_loop += !loop->InLoopThread();
          out_of_order += next[p] != i;
          next[p] = i + 1;
          ++ran;
        });
        if (i % 512 == 0) std::this_thread::yield();  // interleave with the loop's swaps
      }
      posters_done++;
    });
  }
  bool all = loop->RunUntil([&] { return ran == kPosters * kPerPoster; }, 20'000);
  for (auto& t : posters) t.join();
  EXPECT_TRUE(all) << ran << " of " << kPosters * kPerPoster << " posted tasks ran within 20 s";
  EXPECT_EQ(posters_done.load(), kPosters);
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(off_loop, 0);
  // Nothing runs twice: one more batch finds the mailbox empty.
  loop->RunUntil([] { return false; }, 20);
  EXPECT_EQ(ran, kPosters * kPerPoster);
}

// Run() on its own thread ends when another thread calls Stop(), also while
// tasks are being posted, and runs what was posted before the Stop.
TEST_P(EventLoopThreads, StopFromAnotherThreadEndsRunAndRunsWhatWasPosted) {
  std::unique_ptr<EventLoop> loop;
  std::atomic<int> state{0};  // 1: created and about to Run(); -1: Create failed
  int ran = 0;                // loop thread only (read after join)
  std::thread runner([&] {
    auto l = EventLoop::Create(256, GetParam());  // created on the thread that runs it
    if (!l.ok()) {
      state = -1;
      return;
    }
    loop = std::move(*l);
    state = 1;
    loop->Run();
  });
  for (int i = 0; i < 5000 && state.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (state.load() != 1) {
    runner.join();
    FAIL() << "the loop was not created within 5 s";
  }
  std::thread poster([&] {
    for (int i = 0; i < 1000; ++i) loop->Post([&] { ++ran; });
  });
  poster.join();
  loop->Stop();
  runner.join();  // hangs (ctest timeout) if Stop() does not wake Run()
  EXPECT_EQ(ran, 1000);
}

INSTANTIATE_TEST_SUITE_P(Backend, EventLoopThreads, ::testing::Values(LoopBackend::kIoUring, LoopBackend::kEpoll),
                         [](const ::testing::TestParamInfo<LoopBackend>& p) { return std::string(LoopBackendName(p.param)); });

}  // namespace
}  // namespace mxr
