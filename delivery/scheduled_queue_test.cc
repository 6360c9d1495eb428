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

}  // namespace
}  // namespace mxr::delivery
