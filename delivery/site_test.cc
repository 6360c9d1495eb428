#include "delivery/site.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "delivery/message.h"
#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

// Messages of several senders and their one job each.
struct Fixture {
  std::vector<std::unique_ptr<ActiveMessage>> msgs;
  Job* Add(const std::string& sender) {
    auto m = std::make_unique<ActiveMessage>();
    m->meta.sender = sender;
    m->jobs.push_back(std::make_unique<Job>());
    Job* j = m->jobs.back().get();
    j->msg = m.get();
    msgs.push_back(std::move(m));
    return j;
  }
};

std::vector<std::string> Drain(ReadyQueue* q) {
  std::vector<std::string> order;
  while (Job* j = q->Pop()) order.push_back(j->msg->meta.sender);
  return order;
}

TEST(ReadyQueue, RoundRobinAcrossSendersSoACampaignCannotStarveOthers) {
  Fixture f;
  ReadyQueue q;
  for (int i = 0; i < 5; ++i) q.Push(f.Add("campaign@bulk.test"));
  q.Push(f.Add("alerts@app.test"));
  q.Push(f.Add("receipts@shop.test"));
  q.Push(f.Add("alerts@app.test"));
  EXPECT_EQ(q.size(), 8u);
  EXPECT_EQ(Drain(&q), (std::vector<std::string>{"campaign@bulk.test", "alerts@app.test", "receipts@shop.test",
                                                 "campaign@bulk.test", "alerts@app.test", "campaign@bulk.test",
                                                 "campaign@bulk.test", "campaign@bulk.test"}));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.Pop(), nullptr);
}

TEST(ReadyQueue, FifoWithinOneSenderAndFlagsTheJob) {
  Fixture f;
  ReadyQueue q;
  Job* a = f.Add("s@x.test");
  Job* b = f.Add("s@x.test");
  q.Push(a);
  q.Push(b);
  EXPECT_TRUE(a->queued);
  EXPECT_EQ(q.Pop(), a);
  EXPECT_FALSE(a->queued);
  q.Push(a);  // requeued after a connection closed: behind b
  EXPECT_EQ(q.Pop(), b);
  EXPECT_EQ(q.Pop(), a);
  for (auto& m : f.msgs) m->pending_jobs = 0;
}

TEST(ReadyQueue, ASenderThatComesBackJoinsTheEndOfTheTurn) {
  Fixture f;
  ReadyQueue q;
  q.Push(f.Add("a@x.test"));
  q.Push(f.Add("b@x.test"));
  EXPECT_EQ(q.Pop()->msg->meta.sender, "a@x.test");
  q.Push(f.Add("a@x.test"));
  EXPECT_EQ(Drain(&q), (std::vector<std::string>{"b@x.test", "a@x.test"}));
}

TEST(Site, IdleOnlyWithNothingQueuedOpenOrBackedOff) {
  Fixture f;
  Site s("id", "mx:a:25", "a", SiteSettings{});
  s.last_used_ms = 0;
  EXPECT_TRUE(s.Idle(1000, 500));
  EXPECT_FALSE(s.Idle(400, 500));  // used recently
  s.window.dead_until_ms = 2000;
  EXPECT_FALSE(s.Idle(1000, 500));  // its backoff must survive
  s.window.dead_until_ms = 0;
  Job* j = f.Add("x@y.test");
  s.ready.Push(j);
  EXPECT_FALSE(s.Idle(1000, 500));
  s.ready.Pop();
}

}  // namespace
}  // namespace mxr::delivery
