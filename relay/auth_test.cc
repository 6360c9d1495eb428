#include "relay/auth.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

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
  // Distinct passwords: identical logins would share one job.
  for (size_t i = 0; i < Authenticator::kMaxQueuedJobs; ++i) {
    auth.Verify("alice", "pw" + std::to_string(i), [&](AuthAnswer) { answered++; });
  }
  EXPECT_EQ(answered.load(), 0);
  AuthResult got = AuthResult::kOk;
  bool called = false;
  auth.Verify("alice", "another", [&](AuthAnswer r) {
    got = r.result;
    called = true;
  });
  ASSERT_TRUE(called) << "a full queue must answer at once";
  EXPECT_EQ(got, AuthResult::kBusy);
}

// Logins identical to one queued or running join it: no second job (the
// full queue below has room for none), and JoinInFlight finds it; another
// password or user does not; after a users file reload nothing joins a
// check of the old file.
TEST(Authenticator, IdenticalLoginsShareTheCheckInFlight) {
  auto db = UserDb::Parse("alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n",
                          "users");
  ASSERT_TRUE(db.ok());
  Authenticator auth(*db, /*threads=*/0, RealClock::Get());  // nothing drains the queue
  auth.Verify("alice", "secret", [](AuthAnswer) {});
  for (size_t i = 1; i < Authenticator::kMaxQueuedJobs; ++i) {
    auth.Verify("bob", "pw" + std::to_string(i), [](AuthAnswer) {});
  }
  // The queue is full; the identical login still gets in, as a waiter.
  bool busy = false;
  auth.Verify("alice", "secret", [&](AuthAnswer a) { busy = a.result == AuthResult::kBusy; });
  EXPECT_FALSE(busy);
  std::string pw = "secret";
  EXPECT_TRUE(auth.JoinInFlight("alice", pw, [](AuthAnswer) {}));
  EXPECT_EQ(pw, std::string(pw.size(), '\0')) << "the password is wiped";
  pw = "Secret";
  EXPECT_FALSE(auth.JoinInFlight("alice", pw, [](AuthAnswer) {}));
  pw = "secret";
  EXPECT_FALSE(auth.JoinInFlight("alicia", pw, [](AuthAnswer) {}));
  auth.SetUsers(*db);
  pw = "secret";
  EXPECT_FALSE(auth.JoinInFlight("alice", pw, [](AuthAnswer) {})) << "a check of the old file";
}

// With a worker: every waiter gets the answer of the one check, a success
// as kOkCached, a failure as kBad; nobody is answered twice.
TEST(Authenticator, WaitersGetTheAnswerOfTheCheck) {
  auto db = UserDb::Parse("alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n",
                          "users");
  ASSERT_TRUE(db.ok());
  Authenticator auth(*db, /*threads=*/1, RealClock::Get());
  constexpr int kN = 40;
  std::atomic<int> ok{0}, bad{0}, other{0}, answered{0};
  for (int i = 0; i < kN; ++i) {
    const char* pw = i % 2 ? "secret" : "wrong";
    auth.Verify("alice", pw, [&, i](AuthAnswer a) {
      bool right = a.result == AuthResult::kOk || a.result == AuthResult::kOkCached;
      if (i % 2 && right) ok++;
      else if (!(i % 2) && a.result == AuthResult::kBad) bad++;
      else other++;
      answered++;
    });
  }
  for (int i = 0; i < 3000 && answered.load() < kN; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(answered.load(), kN);
  EXPECT_EQ(ok.load(), kN / 2);
  EXPECT_EQ(bad.load(), kN / 2);
  EXPECT_EQ(other.load(), 0);
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


// What the binary does from many threads at once: ingress loops call Verify
// and CachedOk, the checker threads answer, and SIGHUP swaps the users file
// (SetUsers) meanwhile. Every Verify is answered exactly once, with an answer
// that one of the two databases allows; after the last swap nothing from the
// old database is answered. Run under TSan by scripts/test.sh (stage 4).
TEST(Authenticator, ConcurrentVerifyCachedOkAndReloadAnswerEveryCallOnce) {
  auto a = UserDb::Parse("alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n",
                         "users-a");  // alice:secret
  auto b = UserDb::Parse("alice:$6$saltpepp$O563mnX5Q1mIrV/9m8DR7T8PNzBs6uiH65tehiL9tkS5hdrI0vPARlUNutdX8Wuh1ijwerQ.cFZwtnTp4mEso0\n",
                         "users-b");  // alice:other
  ASSERT_TRUE(a.ok() && b.ok());
  Authenticator auth(*a, /*threads=*/2, RealClock::Get());
  constexpr int kCallers = 4, kPerCaller = 40;
  std::atomic<int> answered{0}, impossible{0}, busy{0};
  std::atomic<bool> reloading{true};
  std::thread reloader([&] {
    for (int i = 0; i < 200 && reloading.load(); ++i) {
      auth.SetUsers(i % 2 ? *a : *b);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < kPerCaller; ++i) {
        const char* pw = (i + c) % 3 == 0 ? "secret" : (i + c) % 3 == 1 ? "other" : "wrong";
        (void)auth.CachedOk("alice", pw);
        std::string want = pw;
        auth.Verify("alice", pw, [&, want](AuthAnswer ans) {
          AuthResult r = ans.result;
          // "wrong" is in neither database: it can never be accepted.
          if (want == "wrong" && (r == AuthResult::kOk || r == AuthResult::kOkCached)) impossible++;
          busy += r == AuthResult::kBusy;
          answered++;
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < 3000 && answered.load() < kCallers * kPerCaller; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  reloading = false;
  reloader.join();
  EXPECT_EQ(answered.load(), kCallers * kPerCaller) << "callbacks lost or not run within 30 s";
  EXPECT_EQ(impossible.load(), 0);
  EXPECT_EQ(busy.load(), 0) << "160 jobs never fill a queue of " << Authenticator::kMaxQueuedJobs;
  // After the last swap only the new database answers, also from the cache.
  auth.SetUsers(*b);
  EXPECT_FALSE(auth.CachedOk("alice", "secret"));
  std::atomic<int> r{-1};
  auth.Verify("alice", "secret", [&](AuthAnswer x) { r = static_cast<int>(x.result); });
  for (int i = 0; i < 1000 && r.load() < 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(static_cast<AuthResult>(r.load()), AuthResult::kBad);
}

}  // namespace
}  // namespace mxr::relay
