#include "dkim/signing_spool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Records commits; answers them at once (on the caller's thread).
class FakeSpool : public queue::Spool {
 public:
  void Commit(queue::NewMessage msg, queue::CommitCallback done) override {
    {
      std::lock_guard<std::mutex> l(mu);
      committed.push_back(std::move(msg));
    }
    std::move(done)(absl::OkStatus());
  }
  void SetCommitListener(CommitListener) override {}
  bool Healthy() const override { return true; }
  queue::SpoolHealth Health() const override { return {}; }
  queue::SpoolStats Stats() const override { return {}; }
  absl::StatusOr<std::vector<queue::MessageMeta>> LoadDue(int64_t, size_t) override { return absl::UnimplementedError(""); }
  absl::StatusOr<std::string> ReadBody(const queue::QueueId&) override { return std::string("the body"); }
  absl::StatusOr<queue::MessageMeta> LoadMeta(const queue::QueueId&) override { return absl::UnimplementedError(""); }
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

  std::mutex mu;
  std::vector<queue::NewMessage> committed;
};

// Waits (bounded) for `n` answers.
class Answers {
 public:
  queue::CommitCallback Callback() {
    return [this](absl::Status st) {
      std::lock_guard<std::mutex> l(mu_);
      got_.push_back(st);
      cv_.notify_all();
    };
  }
  std::vector<absl::Status> Wait(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(20), [&] { return got_.size() >= n; });
    return got_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<absl::Status> got_;
};

class SigningSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-dkim-spool-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto k = PrivateKey::Generate(Algorithm::kEd25519Sha256);
    key_ = dir_ + "/ed.pem";
    std::ofstream(key_) << (*k)->ToPem();
    chmod(key_.c_str(), 0600);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  DkimConfig Config() {
    DkimConfig c;
    DkimRuleConfig r;
    r.match = DkimMatch::kFromDomain;
    r.value = "customer.test";
    r.keys = {{"customer.test", "s1", "", key_}};
    c.rules.push_back(r);
    return c;
  }
  static queue::NewMessage Message(const std::string& from, uint32_t seq = 1) {
    queue::NewMessage m;
    m.meta.id = queue::QueueId{1'700'000'000'000'000, seq};
    m.meta.sender = "bounce@customer.test";
    m.meta.recipients = {queue::Recipient{"r@x.test"}};
    m.header_prefix = "Received: by relay.test\r\n";
    m.body = "From: " + from + "\r\nSubject: hi\r\n\r\nbody\r\n";
    m.meta.body_size = m.header_prefix.size() + m.body.size();
    return m;
  }
  std::string dir_, key_;
  ManualClock clock_;
};

TEST_F(SigningSpoolTest, SignsThenCommitsWithTheSizeAdjusted) {
  FakeSpool inner;
  DkimStats stats;
  {
    SigningService svc(*Policy::Build(Config(), Policy::Mode::kStrict), 2, &stats, clock_);
    SigningSpool spool(&inner, &svc, SigningSpool::Origin::kReceived);
    Answers a;
    for (uint32_t i = 0; i < 50; ++i) spool.Commit(Message("a@customer.test", i), a.Callback());
    auto got = a.Wait(50);
    ASSERT_EQ(got.size(), 50u);
    for (const auto& st : got) EXPECT_TRUE(st.ok()) << st;
  }
  ASSERT_EQ(inner.committed.size(), 50u);
  for (const auto& m : inner.committed) {
    EXPECT_THAT(m.header_prefix, StartsWith("DKIM-Signature: v=1; a=ed25519-sha256;"));
    EXPECT_THAT(m.header_prefix, HasSubstr("t=1700000000;"));
    EXPECT_EQ(m.meta.body_size, m.header_prefix.size() + m.body.size());
  }
  EXPECT_EQ(stats.results(Result::kSigned), 50u);
  auto sigs = stats.Signatures();
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_EQ(sigs[0].first, (std::pair<std::string, std::string>{"customer.test", "ed25519-sha256"}));
  EXPECT_EQ(sigs[0].second, 50u);
  EXPECT_EQ(stats.SigningTime().count, 50u);
}

TEST_F(SigningSpoolTest, AHeaderOnlyMessageGetsItsEmptyLine) {
  FakeSpool inner;
  DkimStats stats;
  {
    SigningService svc(*Policy::Build(Config(), Policy::Mode::kStrict), 1, &stats, clock_);
    SigningSpool spool(&inner, &svc, SigningSpool::Origin::kReceived);
    Answers a;
    queue::NewMessage m = Message("a@customer.test");
    m.body = "From: a@customer.test\r\nSubject: no body";  // BDAT: no CRLF at all
    m.meta.body_size = m.header_prefix.size() + m.body.size();
    spool.Commit(std::move(m), a.Callback());
    a.Wait(1);
  }
  ASSERT_EQ(inner.committed.size(), 1u);
  const auto& m = inner.committed[0];
  EXPECT_EQ(m.body, "From: a@customer.test\r\nSubject: no body\r\n\r\n");
  EXPECT_EQ(m.meta.body_size, m.header_prefix.size() + m.body.size());
}

TEST_F(SigningSpoolTest, DeferredMessagesAreAnsweredAndNeverCommitted) {
  FakeSpool inner;
  DkimStats stats;
  DkimConfig c = Config();
  c.on_no_rule = DkimFallback::kDefer;
  SigningService svc(*Policy::Build(c, Policy::Mode::kStrict), 1, &stats, clock_);
  SigningSpool received(&inner, &svc, SigningSpool::Origin::kReceived);
  SigningSpool generated(&inner, &svc, SigningSpool::Origin::kGenerated);
  Answers a;
  received.Commit(Message("a@other.test"), a.Callback());
  auto got = a.Wait(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(got[0].message()), StartsWith("4.7.0 no DKIM signing rule for From: domain other.test"));
  // The same message made by the relay (a DSN) goes out unsigned.
  generated.Commit(Message("a@other.test"), a.Callback());
  got = a.Wait(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[1].ok());
  std::lock_guard<std::mutex> l(inner.mu);
  ASSERT_EQ(inner.committed.size(), 1u);
  EXPECT_THAT(inner.committed[0].header_prefix, StartsWith("Received:"));
  EXPECT_EQ(stats.results(Result::kDeferred), 1u);
  EXPECT_EQ(stats.results(Result::kUnsigned), 1u);
  EXPECT_EQ(stats.failures(Failure::kNoRule), 2u);
}

TEST_F(SigningSpoolTest, WithoutRulesCommitsGoStraightThrough) {
  FakeSpool inner;
  DkimStats stats;
  SigningService svc(*Policy::Build(DkimConfig{}, Policy::Mode::kStrict), 1, &stats, clock_);
  SigningSpool spool(&inner, &svc, SigningSpool::Origin::kReceived);
  bool answered = false;
  spool.Commit(Message("a@customer.test"), [&](absl::Status st) { answered = st.ok(); });
  EXPECT_TRUE(answered);  // synchronously: no signing thread involved
  EXPECT_EQ(stats.results(Result::kUnsigned), 0u);
  EXPECT_EQ(*spool.ReadBody(queue::QueueId{}), "the body");  // the rest forwards
}

TEST_F(SigningSpoolTest, NewPolicyAppliesToLaterMessages) {
  FakeSpool inner;
  DkimStats stats;
  SigningService svc(*Policy::Build(Config(), Policy::Mode::kStrict), 1, &stats, clock_);
  SigningSpool spool(&inner, &svc, SigningSpool::Origin::kReceived);
  Answers a;
  spool.Commit(Message("a@customer.test", 1), a.Callback());
  a.Wait(1);
  DkimConfig c = Config();
  c.rules[0].keys[0].selector = "s2";
  svc.SetPolicy(*Policy::Build(c, Policy::Mode::kStrict));
  spool.Commit(Message("a@customer.test", 2), a.Callback());
  a.Wait(2);
  std::lock_guard<std::mutex> l(inner.mu);
  ASSERT_EQ(inner.committed.size(), 2u);
  EXPECT_THAT(inner.committed[0].header_prefix, HasSubstr("s=s1;"));
  EXPECT_THAT(inner.committed[1].header_prefix, HasSubstr("s=s2;"));
}

TEST(DkimStatsTest, DomainLabelsAreBoundedAndSticky) {
  DkimStats s(2);
  s.CountSignature("a.test", "rsa-sha256");
  s.CountSignature("b.test", "ed25519-sha256");
  s.CountSignature("c.test", "rsa-sha256");
  s.CountSignature("d.test", "rsa-sha256");
  s.CountSignature("a.test", "rsa-sha256");
  auto sigs = s.Signatures();
  ASSERT_EQ(sigs.size(), 3u);
  EXPECT_EQ(sigs[0].first.first, "a.test");
  EXPECT_EQ(sigs[0].second, 2u);
  EXPECT_EQ(sigs[1].first.first, "b.test");
  EXPECT_EQ(sigs[2].first, (std::pair<std::string, std::string>{"other", "rsa-sha256"}));
  EXPECT_EQ(sigs[2].second, 2u);
}

}  // namespace
}  // namespace mxr::dkim
