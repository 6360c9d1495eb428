#include "suppression/store.h"

#include <stdlib.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "queue/rocks_spool.h"
#include "spdlog/spdlog.h"

namespace mxr::suppression {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  // spdlog's registry is made on first use; made here, before the spool's
  // and the store's threads log at once (it lives in an uninstrumented
  // library, so TSan cannot see its own guard).
  static void SetUpTestSuite() { spdlog::default_logger(); }
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-suppression-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    spool_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen(bool read_only = false, bool with_family = true) {
    store_.reset();
    spool_.reset();
    queue::RocksSpoolOptions o;
    o.path = dir_ + "/spool";
    o.read_only = read_only;
    o.write_buffer_size = 4 << 20;
    if (with_family) o.extra_families = {std::string(Store::kFamily)};
    auto s = queue::RocksSpool::Open(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    spool_ = std::move(*s);
    if (!with_family) return;
    auto st = Store::Open(spool_->db(), spool_->Family(Store::kFamily), clock_);
    ASSERT_TRUE(st.ok()) << st.status();
    store_ = std::move(*st);
    store_->WaitLoaded();
  }
  Entry Make(std::string scope, std::string address, Reason r = Reason::kHardBounce) {
    Entry e;
    e.scope = std::move(scope);
    e.address = std::move(address);
    e.reason = r;
    e.category = "invalid_recipient";
    e.source = "test";
    return e;
  }

  ManualClock clock_;
  std::string dir_;
  std::unique_ptr<queue::RocksSpool> spool_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, TenantAndGlobalScopes) {
  ASSERT_TRUE(store_->Add(Make("acme", "Bob@Example.com"), true).ok());
  ASSERT_TRUE(store_->Add(Make("", "all@example.com", Reason::kComplaint), true).ok());
  // The tenant's entry: for acme only; the domain in any case.
  auto hit = store_->Find("acme", "<Bob@EXAMPLE.COM>");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->scope, "acme");
  EXPECT_EQ(hit->address, "Bob@example.com");
  EXPECT_EQ(hit->reason, Reason::kHardBounce);
  EXPECT_EQ(hit->category, "invalid_recipient");
  EXPECT_FALSE(store_->Find("other", "Bob@example.com"));
  EXPECT_FALSE(store_->Find("", "Bob@example.com"));
  // The local part is compared as written.
  EXPECT_FALSE(store_->Find("acme", "bob@example.com"));
  // The global entry: for everyone.
  for (const char* t : {"acme", "other", ""}) {
    auto g = store_->Find(t, "all@example.com");
    ASSERT_TRUE(g) << t;
    EXPECT_EQ(g->scope, "");
    EXPECT_EQ(g->reason, Reason::kComplaint);
  }
  EXPECT_FALSE(store_->Find("acme", "not-an-address"));
  EXPECT_EQ(store_->Add(Make("", "not-an-address"), true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Stats().entries, 2u);
}

TEST_F(StoreTest, ExpiredEntriesDoNotMatchAndArePurged) {
  Entry e = Make("", "later@x.test");
  e.expires_us = clock_.NowMicros() + 60'000'000;
  ASSERT_TRUE(store_->Add(e, false).ok());
  ASSERT_TRUE(store_->Add(Make("", "forever@x.test"), false).ok());
  EXPECT_TRUE(store_->Find("", "later@x.test"));
  clock_.AdvanceMicros(60'000'000);
  EXPECT_FALSE(store_->Find("", "later@x.test"));
  auto got = store_->Get("", "later@x.test");  // still stored until purged
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->has_value());
  auto n = store_->PurgeExpired(100);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_FALSE(store_->Get("", "later@x.test")->has_value());
  EXPECT_TRUE(store_->Find("", "forever@x.test"));
  EXPECT_EQ(store_->Stats().entries, 1u);
}

TEST_F(StoreTest, SurvivesReopenAndMissesDoNotReadTheStore) {
  ASSERT_TRUE(store_->Add(Make("acme", "a@x.test"), true).ok());
  ASSERT_TRUE(store_->Add(Make("", "b@x.test"), true).ok());
  Reopen();
  StoreStats st = store_->Stats();
  EXPECT_TRUE(st.filter_loaded);
  EXPECT_EQ(st.entries, 2u);
  EXPECT_TRUE(store_->Find("acme", "a@x.test"));
  EXPECT_TRUE(store_->Find("zeta", "b@x.test"));
  uint64_t reads = store_->Stats().store_reads;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_FALSE(store_->Find("acme", "user" + std::to_string(i) + "@x.test"));
  }
  // 1000 misses, two scopes each: answered by the in-memory filter alone
  // (a 64-bit hash collision among 2 keys is not going to happen here).
  EXPECT_EQ(store_->Stats().store_reads, reads);
  EXPECT_EQ(store_->Stats().lookups, 1002u);
  EXPECT_EQ(store_->Stats().hits, 2u);
}

TEST_F(StoreTest, RemoveAndCounts) {
  ASSERT_TRUE(store_->Add(Make("acme", "a@x.test"), true).ok());
  ASSERT_TRUE(store_->Add(Make("acme", "a@X.TEST", Reason::kManual), true).ok());  // replaces
  EXPECT_EQ(store_->Stats().entries, 1u);
  EXPECT_EQ(store_->Find("acme", "a@x.test")->reason, Reason::kManual);
  auto r = store_->Remove("acme", "a@x.test", true);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_FALSE(store_->Find("acme", "a@x.test"));
  EXPECT_FALSE(*store_->Remove("acme", "a@x.test", true));
  EXPECT_EQ(store_->Stats().entries, 0u);
  Reopen();
  EXPECT_FALSE(store_->Find("acme", "a@x.test"));
  EXPECT_EQ(store_->Stats().entries, 0u);
}

TEST_F(StoreTest, ListPagesInKeyOrder) {
  std::vector<Entry> all;
  for (int i = 0; i < 25; ++i) all.push_back(Make("acme", "u" + std::to_string(100 + i) + "@x.test"));
  for (int i = 0; i < 5; ++i) all.push_back(Make("", "g" + std::to_string(i) + "@x.test"));
  all.push_back(Make("zeta", "z@x.test"));
  auto n = store_->AddMany(all);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 31u);
  EXPECT_EQ(store_->Stats().entries, 31u);
  // One scope, 10 at a time.
  std::vector<std::string> seen;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    auto p = store_->List(std::string_view("acme"), "", after, 10);
    ASSERT_TRUE(p.ok());
    if (p->empty()) break;
    for (const auto& e : *p) seen.push_back(e.address);
    after = p->back().address;
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "u100@x.test");
  EXPECT_EQ(seen.back(), "u124@x.test");
  // Every scope: global first, then acme, then zeta.
  auto every = store_->List(std::nullopt, "", "", 100);
  ASSERT_TRUE(every.ok());
  ASSERT_EQ(every->size(), 31u);
  EXPECT_EQ((*every)[0].scope, "");
  EXPECT_EQ((*every)[5].scope, "acme");
  EXPECT_EQ((*every)[30].scope, "zeta");
  // Resuming after (acme, u110@x.test) across scopes.
  auto rest = store_->List(std::nullopt, "acme", "u110@x.test", 100);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 15u);
  EXPECT_EQ((*rest)[0].address, "u111@x.test");
}

TEST_F(StoreTest, AddManyCountsDuplicatesOnce) {
  ASSERT_TRUE(store_->Add(Make("", "old@x.test"), true).ok());
  std::vector<Entry> batch = {Make("", "old@x.test"), Make("", "new@x.test"), Make("", "NEW@X.test")};
  // "NEW@X.test" differs from "new@x.test" in the local part: a third entry.
  batch.push_back(Make("", "new@X.TEST"));  // the same as new@x.test
  auto n = store_->AddMany(batch);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);                      // written (replacements included)
  EXPECT_EQ(store_->Stats().entries, 3u);  // old, new, NEW
  EXPECT_EQ(store_->AddMany({Make("", "x")}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, ReadOnlySpoolWithAndWithoutTheFamily) {
  ASSERT_TRUE(store_->Add(Make("", "a@x.test"), true).ok());
  Reopen(/*read_only=*/true);
  EXPECT_TRUE(store_->Find("", "a@x.test"));
  // A spool opened without asking for the family (an older build, `mxrelay
  // queue`) still opens; the family is there, untouched.
  Reopen(/*read_only=*/false, /*with_family=*/false);
  Reopen();
  EXPECT_TRUE(store_->Find("", "a@x.test"));
}

TEST_F(StoreTest, ReadOnlyOpenOfASpoolThatNeverHadTheFamily) {
  store_.reset();
  spool_.reset();
  std::filesystem::remove_all(dir_ + "/spool");
  {
    queue::RocksSpoolOptions o;
    o.path = dir_ + "/spool";
    auto s = queue::RocksSpool::Open(o, clock_);  // an older spool: the four families only
    ASSERT_TRUE(s.ok());
  }
  queue::RocksSpoolOptions o;
  o.path = dir_ + "/spool";
  o.read_only = true;
  o.extra_families = {std::string(Store::kFamily)};
  auto s = queue::RocksSpool::Open(o, clock_);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->Family(Store::kFamily), nullptr);
  EXPECT_EQ(Store::Open((*s)->db(), nullptr, clock_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace mxr::suppression
