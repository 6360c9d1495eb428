#include "delivery/oldest_tracker.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

queue::QueueId Id(uint64_t t) { return queue::QueueId{t, 0}; }

TEST(OldestTrackerTest, EmptySpoolReportsNothingAndKeepsItsStart) {
  OldestTracker t;
  EXPECT_EQ(t.Begin(), queue::QueueId{});
  EXPECT_TRUE(t.in_flight());
  EXPECT_FALSE(t.OnAnswer(std::nullopt).has_value());
  EXPECT_FALSE(t.in_flight());
  EXPECT_EQ(t.Begin(), queue::QueueId{});
}

TEST(OldestTrackerTest, NextQueryStartsAtTheAnswer) {
  OldestTracker t;
  t.Begin();
  EXPECT_EQ(t.OnAnswer(Id(100)), Id(100));
  EXPECT_EQ(t.Begin(), Id(100));
  EXPECT_EQ(t.OnAnswer(Id(250)), Id(250));  // the old one was delivered
  EXPECT_EQ(t.Begin(), Id(250));
}

TEST(OldestTrackerTest, YoungerCommitsDoNotMoveTheStart) {
  OldestTracker t;
  t.Begin();
  t.OnAnswer(Id(100));
  t.Committed(Id(500));  // the usual case: a new message is the youngest
  EXPECT_EQ(t.Begin(), Id(100));
}

TEST(OldestTrackerTest, OlderIdCommittedAfterAnAnswerLowersTheNextStart) {
  OldestTracker t;
  t.Begin();
  t.OnAnswer(Id(100));
  t.Committed(Id(90));  // its id was taken before 100's, its commit came later
  EXPECT_EQ(t.Begin(), Id(90));
  // The spool now answers 90 (it is there); without the lowered start a
  // query from 100 would never have seen it.
  EXPECT_EQ(t.OnAnswer(Id(90)), Id(90));
}

TEST(OldestTrackerTest, OlderIdCommittedDuringTheQueryCountsInItsAnswer) {
  OldestTracker t;
  t.Begin();
  t.OnAnswer(Id(100));
  EXPECT_EQ(t.Begin(), Id(100));
  t.Committed(Id(95));  // below the start: the iterator cannot find it
  EXPECT_EQ(t.OnAnswer(Id(120)), Id(95));
  EXPECT_EQ(t.Begin(), Id(95));
}

TEST(OldestTrackerTest, CommitDuringTheQueryAboveItsStartButMissedByTheIterator) {
  OldestTracker t;
  t.Begin();
  t.OnAnswer(Id(100));
  t.Begin();                 // from 100
  t.Committed(Id(110));      // after the iterator's snapshot
  EXPECT_EQ(t.OnAnswer(Id(130)), Id(110));  // 100 delivered meanwhile; 110 is older than 130
  EXPECT_EQ(t.Begin(), Id(110));
}

TEST(OldestTrackerTest, CommitDuringAQueryThatFoundNothing) {
  OldestTracker t;
  t.Begin();
  t.Committed(Id(40));
  EXPECT_EQ(t.OnAnswer(std::nullopt), Id(40));
  EXPECT_EQ(t.Begin(), Id(40));
}

TEST(OldestTrackerTest, YoungerCommitDuringTheQueryDoesNotHideTheAnswer) {
  OldestTracker t;
  t.Begin();
  t.Committed(Id(900));
  EXPECT_EQ(t.OnAnswer(Id(100)), Id(100));
  EXPECT_EQ(t.Begin(), Id(100));
}

TEST(OldestTrackerTest, FailedQueryKeepsTheStartAndLowersItForOlderCommits) {
  OldestTracker t;
  t.Begin();
  t.OnAnswer(Id(100));
  t.Begin();
  t.Committed(Id(80));
  t.OnFailure();
  EXPECT_FALSE(t.in_flight());
  EXPECT_EQ(t.Begin(), Id(80));
  t.OnFailure();
  EXPECT_EQ(t.Begin(), Id(80));
}

}  // namespace
}  // namespace mxr::delivery
