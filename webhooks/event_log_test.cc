#include "webhooks/event_log.h"

#include <stdlib.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "queue/rocks_spool.h"

namespace mxr::webhooks {
namespace {

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-events-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    log_.reset();
    spool_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    log_.reset();
    spool_.reset();
    queue::RocksSpoolOptions o;
    o.path = dir_ + "/spool";
    o.write_buffer_size = 4 << 20;
    o.extra_families = {std::string(EventLog::kEventsFamily), std::string(EventLog::kCursorsFamily)};
    auto s = queue::RocksSpool::Open(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    spool_ = std::move(*s);
    auto l = EventLog::Open(spool_->db(), spool_->Family(EventLog::kEventsFamily),
                            spool_->Family(EventLog::kCursorsFamily));
    ASSERT_TRUE(l.ok()) << l.status();
    log_ = std::move(*l);
  }
  ManualClock clock_;
  std::string dir_;
  std::unique_ptr<queue::RocksSpool> spool_;
  std::unique_ptr<EventLog> log_;
};

TEST_F(EventLogTest, AppendsInOrderPerStreamWithIds) {
  EXPECT_EQ(*log_->Append("acme", R"({"type":"received"})"), 1u);
  EXPECT_EQ(*log_->Append("acme", R"({"type":"delivered"})"), 2u);
  EXPECT_EQ(*log_->Append("zeta", R"({"type":"received"})"), 1u);
  EXPECT_EQ(*log_->Append("acme", "{}"), 3u);
  auto r = log_->Read("acme", 0, 100, 1 << 20);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].json, R"({"id":"acme:1","type":"received"})");
  EXPECT_EQ((*r)[1].json, R"({"id":"acme:2","type":"delivered"})");
  EXPECT_EQ((*r)[2].json, R"({"id":"acme:3"})");
  auto after = log_->Read("acme", 1, 1, 1 << 20);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].seq, 2u);
  EXPECT_EQ(log_->Read("zeta", 0, 100, 1 << 20)->size(), 1u);
  EXPECT_EQ(log_->Read("nobody", 0, 100, 1 << 20)->size(), 0u);
  EXPECT_EQ(log_->Append("acme", "not json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log_->Append("", "{}").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EventLogTest, ByteLimitStillReturnsOneEvent) {
  std::string big = R"({"type":"x","pad":")" + std::string(5000, 'a') + "\"}";
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log_->Append("s", big).ok());
  EXPECT_EQ(log_->Read("s", 0, 100, 100)->size(), 1u);
  EXPECT_EQ(log_->Read("s", 0, 100, 12000)->size(), 2u);
}

TEST_F(EventLogTest, SequenceAndCursorsSurviveReopen) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(log_->Append("acme", "{}").ok());
  ASSERT_TRUE(log_->Append("b", "{}").ok());
  ASSERT_TRUE(log_->SetCursor("webhook:crm", 2).ok());
  Reopen();
  EXPECT_EQ(log_->LastSeq("acme"), 3u);
  EXPECT_EQ(log_->LastSeq("b"), 1u);
  EXPECT_EQ(log_->LastSeq("c"), 0u);
  EXPECT_EQ(*log_->Append("acme", "{}"), 4u);
  EXPECT_EQ(log_->Cursor("webhook:crm"), 2u);
  EXPECT_EQ(log_->Cursor("webhook:other"), 0u);
}

TEST_F(EventLogTest, TrimDropsOnlyTheStreamsOldEvents) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log_->Append("acme", "{}").ok());
  ASSERT_TRUE(log_->Append("acmf", "{}").ok());  // a stream whose name sorts right after
  EXPECT_EQ(*log_->Trim("acme", 3), 3u);
  auto r = log_->Read("acme", 0, 100, 1 << 20);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].seq, 4u);
  EXPECT_EQ(log_->Read("acmf", 0, 100, 1 << 20)->size(), 1u);
  EXPECT_EQ(*log_->Trim("acme", 3), 0u);
  Reopen();
  EXPECT_EQ(log_->LastSeq("acme"), 5u);  // numbering goes on after a trim
}

}  // namespace
}  // namespace mxr::webhooks
