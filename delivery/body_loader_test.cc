#include "delivery/body_loader.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

// A spool that only serves bodies (everything else is unused here).
class BodySpool : public queue::Spool {
 public:
  std::mutex mu;
  std::map<uint32_t, std::string> bodies;  // by QueueId::seq
  int reads = 0;
  void Commit(queue::NewMessage, queue::CommitCallback done) override { std::move(done)(absl::OkStatus()); }
  void SetCommitListener(CommitListener) override {}
  bool Healthy() const override { return true; }
  queue::SpoolHealth Health() const override { return {}; }
  queue::SpoolStats Stats() const override { return {}; }
  absl::StatusOr<std::vector<queue::MessageMeta>> LoadDue(int64_t, size_t) override { return std::vector<queue::MessageMeta>{}; }
  absl::StatusOr<std::string> ReadBody(const queue::QueueId& id) override {
    std::lock_guard<std::mutex> l(mu);
    reads++;
    auto it = bodies.find(id.seq);
    if (it == bodies.end()) return absl::NotFoundError("no body");
    return it->second;
  }
  absl::StatusOr<queue::MessageMeta> LoadMeta(const queue::QueueId&) override { return absl::NotFoundError("-"); }
  absl::Status ScanSchedule(const std::function<bool(int64_t, const queue::QueueId&)>&) override {
    return absl::OkStatus();
  }
  absl::Status Update(const queue::MessageMeta&, int64_t) override { return absl::OkStatus(); }
  absl::Status Delete(const queue::MessageMeta&) override { return absl::OkStatus(); }
  void UpdateAsync(const queue::MessageMeta&, int64_t) override {}
  void DeleteAsync(const queue::MessageMeta&) override {}
  void FlushAsync() override {}
  absl::Status Scan(const std::function<bool(const queue::MessageMeta&)>&) override { return absl::OkStatus(); }
  absl::StatusOr<std::optional<queue::QueueId>> OldestFrom(const queue::QueueId&) override { return std::nullopt; }
};

class BodyLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = EventLoop::Create(64);
    ASSERT_TRUE(l.ok());
    loop_ = std::move(*l);
    io_ = std::make_unique<SpoolIo>();
  }
  ActiveMessage* Add(uint32_t seq, std::string body, uint64_t record_size = 0) {
    auto m = std::make_unique<ActiveMessage>();
    m->meta.id = queue::QueueId{1, seq};
    m->meta.body_size = record_size ? record_size : body.size();
    {
      std::lock_guard<std::mutex> l(spool_.mu);
      spool_.bodies[seq] = std::move(body);
    }
    msgs_[seq] = std::move(m);
    return msgs_[seq].get();
  }
  std::function<ActiveMessage*(const queue::QueueId&)> Find() {
    return [this](const queue::QueueId& id) -> ActiveMessage* {
      auto it = msgs_.find(id.seq);
      return it == msgs_.end() ? nullptr : it->second.get();
    };
  }
  void Run(const std::function<bool()>& done) { ASSERT_TRUE(loop_->RunUntil(done, 5000)); }

  BodySpool spool_;
  DeliveryStats stats_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<SpoolIo> io_;
  std::map<uint32_t, std::unique_ptr<ActiveMessage>> msgs_;
};

TEST_F(BodyLoaderTest, OneReadSharedByEveryTransactionAndFreedWithTheLast) {
  BodyLoader bl(&spool_, io_.get(), loop_.get(), &stats_, 1 << 20);
  ActiveMessage* m = Add(1, "body one");
  BodyRef a, b;
  bl.Get(m, [&](const absl::Status& st, BodyRef r) { ASSERT_TRUE(st.ok()); a = r; }, Find());
  bl.Get(m, [&](const absl::Status& st, BodyRef r) { ASSERT_TRUE(st.ok()); b = r; }, Find());
  Run([&] { return a && b; });
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(*a, "body one");
  EXPECT_EQ(spool_.reads, 1);
  EXPECT_EQ(bl.loaded_bytes(), 8);
  BodyRef c;
  bl.Get(m, [&](const absl::Status&, BodyRef r) { c = r; }, Find());  // in memory: at once
  EXPECT_EQ(c.get(), a.get());
  a.reset();
  b.reset();
  c.reset();
  EXPECT_EQ(bl.loaded_bytes(), 0);
  EXPECT_EQ(stats_.body_bytes_loaded.load(), 0);
}

TEST_F(BodyLoaderTest, ReadsBeyondTheBudgetWaitAndStartInOrder) {
  BodyLoader bl(&spool_, io_.get(), loop_.get(), &stats_, 100);
  ActiveMessage* first = Add(1, std::string(80, 'a'));
  ActiveMessage* big = Add(2, std::string(90, 'b'));
  ActiveMessage* small = Add(3, std::string(10, 'c'));  // would fit beside `first`, but comes after `big`
  std::vector<int> order;
  BodyRef r1, r2, r3;
  bl.Get(first, [&](const absl::Status&, BodyRef r) { order.push_back(1); r1 = r; }, Find());
  Run([&] { return r1 != nullptr; });
  bl.Get(big, [&](const absl::Status&, BodyRef r) { order.push_back(2); r2 = r; }, Find());
  bl.Get(small, [&](const absl::Status&, BodyRef r) { order.push_back(3); r3 = r; }, Find());
  loop_->RunUntil([] { return false; }, 200);
  EXPECT_EQ(order, std::vector<int>{1}) << "nothing starts past the budget, nor ahead of a waiting read";
  EXPECT_EQ(bl.waiting(), 2u);
  EXPECT_EQ(stats_.body_waits.load(), 2u);
  r1.reset();  // the budget comes back: big goes (alone, it fits), then small
  Run([&] { return r2 != nullptr; });
  r2.reset();
  Run([&] { return r3 != nullptr; });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST_F(BodyLoaderTest, ABodyLargerThanTheBudgetStillGoesAlone) {
  BodyLoader bl(&spool_, io_.get(), loop_.get(), &stats_, 10);
  ActiveMessage* m = Add(1, std::string(1000, 'x'));
  BodyRef r;
  bl.Get(m, [&](const absl::Status& st, BodyRef b) { EXPECT_TRUE(st.ok()); r = b; }, Find());
  Run([&] { return r != nullptr; });
  EXPECT_EQ(r->size(), 1000u);
}

TEST_F(BodyLoaderTest, MissingOrShortBodiesAreErrorsNeverEmptyBodies) {
  BodyLoader bl(&spool_, io_.get(), loop_.get(), &stats_, 1 << 20);
  ActiveMessage* shorter = Add(1, "12345", /*record_size=*/9);
  ActiveMessage* missing = Add(2, "x");
  {
    std::lock_guard<std::mutex> l(spool_.mu);
    spool_.bodies.erase(2);
  }
  absl::Status s1, s2;
  bool got1 = false, got2 = false;
  BodyRef b1, b2;
  bl.Get(shorter, [&](const absl::Status& st, BodyRef b) { s1 = st; b1 = b; got1 = true; }, Find());
  bl.Get(missing, [&](const absl::Status& st, BodyRef b) { s2 = st; b2 = b; got2 = true; }, Find());
  Run([&] { return got1 && got2; });
  EXPECT_EQ(s1.code(), absl::StatusCode::kDataLoss) << s1;
  EXPECT_EQ(s2.code(), absl::StatusCode::kNotFound) << s2;
  EXPECT_EQ(b1, nullptr);
  EXPECT_EQ(b2, nullptr);
  EXPECT_EQ(stats_.body_read_failures.load(), 2u);
  EXPECT_EQ(bl.loaded_bytes(), 0);
}

}  // namespace
}  // namespace mxr::delivery
