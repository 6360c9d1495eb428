#include "relay/auth.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

// Issue 15: when the checker's queue is full the answer is kBusy (454 4.7.0
// upstream, not counted as a failure), given at once: before, the same
// situation answered "wrong password", which failed real users' logins during
// a flood and then blocked their address.
TEST(Authenticator, FullQueueAnswersBusyNotBad) {
  Authenticator auth(nullptr, /*threads=*/0, RealClock::Get());  // nothing drains the queue
  std::atomic<int> answered{0};
  for (size_t i = 0; i < Authenticator::kMaxQueuedJobs; ++i) {
    auth.Verify("alice", "pw", [&](AuthAnswer) { answered++; });
  }
  EXPECT_EQ(answered.load(), 0);
  AuthResult got = AuthResult::kOk;
  bool called = false;
  auth.Verify("alice", "pw", [&](AuthAnswer r) {
    got = r.result;
    called = true;
  });
  ASSERT_TRUE(called) << "a full queue must answer at once";
  EXPECT_EQ(got, AuthResult::kBusy);
}

TEST(Authenticator, SuccessIsCachedAndFailureIsNot) {
  auto db = UserDb::Parse("alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n",
                          "users");
  ASSERT_TRUE(db.ok()) << db.status();
  Authenticator auth(*db, 1, RealClock::Get());
  auto verify = [&](const char* pw) {
    std::atomic<int> r{-1};
    auth.Verify("alice", pw, [&](AuthAnswer x) { r = static_cast<int>(x.result); });
    for (int i = 0; i < 500 && r.load() < 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return static_cast<AuthResult>(r.load());
  };
  EXPECT_FALSE(auth.CachedOk("alice", "secret"));
  EXPECT_EQ(verify("wrong"), AuthResult::kBad);
  EXPECT_FALSE(auth.CachedOk("alice", "wrong"));
  EXPECT_EQ(verify("secret"), AuthResult::kOk);
  EXPECT_TRUE(auth.CachedOk("alice", "secret"));
  EXPECT_FALSE(auth.CachedOk("alice", "secreT"));
  EXPECT_EQ(verify("secret"), AuthResult::kOkCached);
}

}  // namespace
}  // namespace mxr::relay
