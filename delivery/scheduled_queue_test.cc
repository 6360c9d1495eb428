#include "delivery/scheduled_queue.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

queue::QueueId Id(uint64_t t, uint32_t s = 0) { return queue::QueueId{t, s}; }

TEST(ScheduledQueue, PopsDueEntriesEarliestFirstAndNothingEarly) {
  ScheduledQueue q;
  EXPECT_TRUE(q.Add(300, Id(3)));
  EXPECT_TRUE(q.Add(100, Id(1)));
  EXPECT_TRUE(q.Add(200, Id(2)));
  EXPECT_EQ(q.NextDue(), 100);
  EXPECT_FALSE(q.PopDue(99).has_value());
  EXPECT_EQ(q.PopDue(250), Id(1));
  EXPECT_EQ(q.PopDue(250), Id(2));
  EXPECT_FALSE(q.PopDue(250).has_value());
  EXPECT_EQ(q.size(), 1u);
  EXPECT_TRUE(q.Contains(Id(3)));
  EXPECT_EQ(q.PopDue(1000), Id(3));
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.NextDue().has_value());
}

TEST(ScheduledQueue, RemoveThenAddMovesAnEntry) {
  ScheduledQueue q;
  q.Add(5'000'000'000, Id(1));
  q.Add(6'000'000'000, Id(2));
  EXPECT_EQ(q.Waiting(1'000'000), 2u);
  EXPECT_TRUE(q.Remove(Id(1)));
  EXPECT_FALSE(q.Remove(Id(1)));
  EXPECT_EQ(q.Waiting(1'000'000), 1u);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_TRUE(q.Add(1'000'000, Id(1)));  // due now
  EXPECT_EQ(q.NextDue(), 1'000'000);
  EXPECT_EQ(q.PopDue(1'000'000), Id(1));
  EXPECT_FALSE(q.PopDue(5'500'000'000).has_value());  // its old entry is gone
  EXPECT_EQ(q.PopDue(6'000'000'000), Id(2));
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.NextDue().has_value());
}

TEST(ScheduledQueue, AnIdIsScheduledOnceUntilPopped) {
  ScheduledQueue q;
  EXPECT_TRUE(q.Add(100, Id(1, 7)));
  EXPECT_FALSE(q.Add(50, Id(1, 7)));  // already there: the first time stands
  EXPECT_EQ(q.size(), 1u);
  EXPECT_FALSE(q.PopDue(60).has_value());
  EXPECT_EQ(q.PopDue(100), Id(1, 7));
  EXPECT_FALSE(q.Contains(Id(1, 7)));
  EXPECT_TRUE(q.Add(50, Id(1, 7)));  // and again after it left
}

TEST(ScheduledQueue, EqualTimesComeOutInIdOrder) {
  ScheduledQueue q;
  for (uint32_t s : {5u, 1u, 3u}) q.Add(10, Id(1, s));
  EXPECT_EQ(q.PopDue(10), Id(1, 1));
  EXPECT_EQ(q.PopDue(10), Id(1, 3));
  EXPECT_EQ(q.PopDue(10), Id(1, 5));
}

// Issue 21: the deferred count (`mxrelay_queue_deferred_messages`) is the
// entries whose time is still ahead, the same rule as `queue summary`.
TEST(ScheduledQueue, WaitingCountsEntriesDueLaterToTheSecond) {
  constexpr int64_t kS = 1'000'000;
  ScheduledQueue q;
  int64_t now = 1000 * kS;
  q.Add(now - 5 * kS, Id(1));   // overdue: not waiting
  q.Add(now, Id(2));            // due now: not waiting
  q.Add(now + 30 * kS, Id(3));  // a retry in 30 s
  q.Add(now + 30 * kS + 1, Id(4));
  q.Add(now + 600 * kS, Id(5));
  EXPECT_EQ(q.Waiting(now), 3u);
  EXPECT_EQ(q.PopDue(now), Id(1));
  EXPECT_EQ(q.PopDue(now), Id(2));
  EXPECT_EQ(q.Waiting(now), 3u);
  EXPECT_EQ(q.Waiting(now + 31 * kS), 1u) << "the two retries at +30 s are due now";
  EXPECT_EQ(q.Waiting(now), 1u) << "time does not go back";
  q.Add(now + 31 * kS + 10, Id(6));  // within the second already passed: due
  q.Add(now + 40 * kS, Id(7));
  EXPECT_EQ(q.Waiting(now + 31 * kS), 2u);
  while (q.PopDue(now + 700 * kS)) {
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.Waiting(now + 700 * kS), 0u);
}

}  // namespace
}  // namespace mxr::delivery
