#include "queue/rocks_spool.h"

#include <stdlib.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "queue/codec.h"
#include "rocksdb/db.h"

namespace mxr::queue {
namespace {

class RocksSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-spool-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<RocksSpool> OpenSpool(bool read_only = false, int commit_delay_us = 0) {
    RocksSpoolOptions o;
    o.path = dir_ + "/spool";
    o.read_only = read_only;
    o.commit_delay_us = commit_delay_us;
    o.write_buffer_size = 4 << 20;
    auto s = RocksSpool::Open(o, clock_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  NewMessage Make(int i, int64_t next_attempt) {
    NewMessage m;
    m.meta.id = gen_.Next();
    m.meta.received_us = clock_.NowMicros();
    m.meta.next_attempt_us = next_attempt;
    m.meta.sender = "sender" + std::to_string(i) + "@example.com";
    m.meta.recipients = {{"rcpt" + std::to_string(i) + "@example.net"}};
    m.header_prefix = "Received: test\r\n";
    m.body = "Subject: " + std::to_string(i) + "\r\n\r\nbody\r\n";
    m.meta.body_size = m.header_prefix.size() + m.body.size();
    return m;
  }

  absl::Status CommitSync(Spool& s, NewMessage m) {
    std::promise<absl::Status> p;
    auto f = p.get_future();
    s.Commit(std::move(m), [&p](absl::Status st) { p.set_value(st); });
    return f.get();
  }

  // Commits messages 1 and 2 (due at `now`) and returns their records.
  void CommitTwo(Spool& s, int64_t now, MessageMeta* ma, MessageMeta* mb) {
    NewMessage a = Make(1, now), b = Make(2, now);
    *ma = a.meta;
    *mb = b.meta;
    ASSERT_TRUE(CommitSync(s, std::move(a)).ok());
    ASSERT_TRUE(CommitSync(s, std::move(b)).ok());
  }

  ManualClock clock_;
  QueueIdGenerator gen_{clock_};
  std::string dir_;
};

// Sets the spool's format marker behind its back and returns what it was.
std::string SetFormatMarker(const std::string& path, const std::string& value) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const char* n : {"default", "meta", "body", "schedule"}) {
    cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> h;
  rocksdb::DB* db = nullptr;
  EXPECT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), path, cfs, &h, &db).ok());
  std::string old;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), h[0], "mxrelay-spool-format", &old).ok());
  EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), h[0], "mxrelay-spool-format", value).ok());
  for (auto* c : h) EXPECT_TRUE(db->DestroyColumnFamilyHandle(c).ok());
  delete db;
  return old;
}

TEST_F(RocksSpoolTest, UpgradesAVersion1SpoolAndRefusesANewerOne) {
  QueueId id;
  {
    auto s = OpenSpool();
    NewMessage m = Make(1, clock_.NowMicros());
    id = m.meta.id;
    ASSERT_TRUE(CommitSync(*s, std::move(m)).ok());
  }
  EXPECT_EQ(SetFormatMarker(dir_ + "/spool", "1"), std::to_string(kFormatVersion));
  {
    auto s = OpenSpool();  // a version-1 spool opens and is marked as the current version
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->ReadBody(id).ok());
  }
  EXPECT_EQ(SetFormatMarker(dir_ + "/spool", "99"), std::to_string(kFormatVersion));
  RocksSpoolOptions o;
  o.path = dir_ + "/spool";
  auto s = RocksSpool::Open(o, clock_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("format version 99"), std::string::npos) << s.status();
}

TEST_F(RocksSpoolTest, ExtraFamiliesAreCreatedAndKeptByOpensThatDoNotNameThem) {
  RocksSpoolOptions o;
  o.path = dir_ + "/spool";
  o.extra_families = {"suppression"};
  {
    auto s = RocksSpool::Open(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_NE((*s)->Family("suppression"), nullptr);
    EXPECT_EQ((*s)->Family("other"), nullptr);
    ASSERT_TRUE((*s)->db()->Put(rocksdb::WriteOptions(), (*s)->Family("suppression"), "k", "v").ok());
  }
  // A build (or `mxrelay queue`) that does not know the family opens the spool.
  o.extra_families.clear();
  {
    auto s = RocksSpool::Open(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_NE((*s)->Family("suppression"), nullptr);
  }
  o.read_only = true;
  auto s = RocksSpool::Open(o, clock_);
  ASSERT_TRUE(s.ok()) << s.status();
  std::string v;
  ASSERT_TRUE((*s)->db()->Get(rocksdb::ReadOptions(), (*s)->Family("suppression"), "k", &v).ok());
  EXPECT_EQ(v, "v");
}

TEST_F(RocksSpoolTest, CommitRecoverDelete) {
  std::vector<QueueId> ids;
  {
    auto s = OpenSpool();
    for (int i = 0; i < 5; ++i) {
      NewMessage m = Make(i, clock_.NowMicros() + i);
      ids.push_back(m.meta.id);
      ASSERT_TRUE(CommitSync(*s, std::move(m)).ok());
      clock_.AdvanceMicros(10);
    }
    EXPECT_EQ(s->Stats().committed_messages, 5u);
  }
  auto s = OpenSpool();  // reopen: everything is still there
  std::vector<MessageMeta> seen;
  ASSERT_TRUE(s->Scan([&](const MessageMeta& m) {
                 seen.push_back(m);
                 return true;
               }).ok());
  ASSERT_EQ(seen.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(seen[i].id, ids[i]);  // oldest first
  auto body = s->ReadBody(ids[2]);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, "Received: test\r\nSubject: 2\r\n\r\nbody\r\n");
  ASSERT_TRUE(s->Delete(seen[2]).ok());
  EXPECT_EQ(s->ReadBody(ids[2]).status().code(), absl::StatusCode::kNotFound);
  int n = 0;
  ASSERT_TRUE(s->Scan([&](const MessageMeta&) { return ++n < 100; }).ok());
  EXPECT_EQ(n, 4);
}

TEST_F(RocksSpoolTest, OldestFromSkipsDeletedMessagesAndRespectsTheLowerBound) {
  auto s = OpenSpool();
  auto none = s->OldestFrom(QueueId{});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());  // empty spool
  std::vector<MessageMeta> metas;
  for (int i = 0; i < 5; ++i) {
    NewMessage m = Make(i, clock_.NowMicros());
    metas.push_back(m.meta);
    ASSERT_TRUE(CommitSync(*s, std::move(m)).ok());
    clock_.AdvanceMicros(10);
  }
  auto first = s->OldestFrom(QueueId{});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ(**first, metas[0].id);
  // The two oldest delivered: the answer moves past their tombstones.
  ASSERT_TRUE(s->Delete(metas[0]).ok());
  ASSERT_TRUE(s->Delete(metas[1]).ok());
  auto next = s->OldestFrom(metas[0].id);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ(**next, metas[2].id);
  // `from` is inclusive, and nothing before it is returned.
  auto at = s->OldestFrom(metas[3].id);
  ASSERT_TRUE(at.ok() && at->has_value());
  EXPECT_EQ(**at, metas[3].id);
  QueueId after{metas[4].id.time_us + 1, 0};
  auto past = s->OldestFrom(after);
  ASSERT_TRUE(past.ok());
  EXPECT_FALSE(past->has_value());
  // An asynchronous delete (the engine's) counts once written: here it rides
  // with the next commit, which has returned before we read.
  s->DeleteAsync(metas[2]);
  ASSERT_TRUE(CommitSync(*s, Make(9, clock_.NowMicros())).ok());
  auto moved = s->OldestFrom(metas[2].id);
  ASSERT_TRUE(moved.ok() && moved->has_value());
  EXPECT_EQ(**moved, metas[3].id);
}

TEST_F(RocksSpoolTest, LoadDueHonoursScheduleAndUpdateReschedules) {
  auto s = OpenSpool();
  int64_t now = clock_.NowMicros();
  ASSERT_TRUE(CommitSync(*s, Make(0, now - 10)).ok());
  ASSERT_TRUE(CommitSync(*s, Make(1, now + 1'000'000)).ok());
  auto due = s->LoadDue(now, 100);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  MessageMeta m = (*due)[0];
  EXPECT_EQ(m.sender, "sender0@example.com");

  int64_t old = m.next_attempt_us;
  m.next_attempt_us = now + 5'000'000;
  m.attempts = 1;
  m.recipients[0].last_code = 451;
  ASSERT_TRUE(s->Update(m, old).ok());
  EXPECT_TRUE(s->LoadDue(now, 100)->empty());
  due = s->LoadDue(now + 2'000'000, 100);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].sender, "sender1@example.com");
  due = s->LoadDue(now + 6'000'000, 1);  // limit honoured
  ASSERT_EQ(due->size(), 1u);
  due = s->LoadDue(now + 6'000'000, 100);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[1].attempts, 1u);
  EXPECT_EQ((*due)[1].recipients[0].last_code, 451u);
  ASSERT_TRUE(s->Delete((*due)[1]).ok());
  EXPECT_EQ(s->LoadDue(now + 6'000'000, 100)->size(), 1u);
}

TEST_F(RocksSpoolTest, AsyncBookkeepingIsAppliedInOrderWithTheNextCommit) {
  auto s = OpenSpool();
  int64_t now = clock_.NowMicros();
  MessageMeta ma, mb;
  ASSERT_NO_FATAL_FAILURE(CommitTwo(*s, now, &ma, &mb));

  s->DeleteAsync(ma);
  MessageMeta updated = mb;
  updated.next_attempt_us = now + 60'000'000;
  updated.attempts = 1;
  updated.recipients[0].last_code = 451;
  s->UpdateAsync(updated, mb.next_attempt_us);
  // A commit queued after the operations is written with (or after) them.
  ASSERT_TRUE(CommitSync(*s, Make(3, now)).ok());

  EXPECT_EQ(s->ReadBody(ma.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->LoadMeta(ma.id).status().code(), absl::StatusCode::kNotFound);
  auto got = s->LoadMeta(mb.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->attempts, 1u);
  EXPECT_EQ(got->recipients[0].last_code, 451u);
  auto due = s->LoadDue(now, 100);  // only message 3 is due; b was moved a minute on
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].sender, "sender3@example.com");
  std::vector<std::pair<int64_t, QueueId>> sched;
  ASSERT_TRUE(s->ScanSchedule([&](int64_t t, const QueueId& id) {
                 sched.push_back({t, id});
                 return true;
               }).ok());
  ASSERT_EQ(sched.size(), 2u);  // a's entry deleted, b's moved (not duplicated)
  EXPECT_EQ(sched[1].first, now + 60'000'000);
  EXPECT_EQ(sched[1].second, mb.id);
}

TEST_F(RocksSpoolTest, AsyncBookkeepingAloneIsWrittenToo) {
  MessageMeta m;
  {
    auto s = OpenSpool();
    NewMessage a = Make(1, clock_.NowMicros());
    m = a.meta;
    ASSERT_TRUE(CommitSync(*s, std::move(a)).ok());
    s->DeleteAsync(m);
  }  // the destructor drains queued operations
  auto s = OpenSpool();
  EXPECT_EQ(s->LoadMeta(m.id).status().code(), absl::StatusCode::kNotFound);
}

// The group-commit window: never for a lone sender (who waits for each
// commit), used while several commit at once; every message still commits.
TEST_F(RocksSpoolTest, CommitWindowOnlyForConcurrentSenders) {
  auto s = OpenSpool(false, /*commit_delay_us=*/2000);
  int64_t now = clock_.NowMicros();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(CommitSync(*s, Make(i, now)).ok());
  EXPECT_EQ(s->Stats().window_waits, 0u);
  EXPECT_EQ(s->Stats().max_batch, 1u);

  std::vector<std::thread> senders;
  std::atomic<int> ok{0};
  std::vector<NewMessage> msgs;
  for (int i = 0; i < 200; ++i) msgs.push_back(Make(100 + i, now));
  for (int t = 0; t < 8; ++t) {
    senders.emplace_back([&, t] {
      for (int i = t; i < 200; i += 8) ok += CommitSync(*s, std::move(msgs[i])).ok();
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(ok.load(), 200);
  SpoolStats st = s->Stats();
  EXPECT_EQ(st.committed_messages, 220u);
  EXPECT_GT(st.window_waits, 0u);  // 8 concurrent senders open the window
  EXPECT_GE(st.max_batch, 2u);
  size_t due = s->LoadDue(now, 1000)->size();
  EXPECT_EQ(due, 220u);
}

TEST_F(RocksSpoolTest, CommitListenerSeesEveryCommittedMessage) {
  auto s = OpenSpool();
  std::vector<std::string> seen;
  std::mutex mu;
  s->SetCommitListener([&](const NewMessage& m) {
    std::lock_guard<std::mutex> l(mu);
    seen.push_back(m.meta.sender + "|" + m.body.substr(0, 10));
  });
  ASSERT_TRUE(CommitSync(*s, Make(4, 0)).ok());
  std::lock_guard<std::mutex> l(mu);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "sender4@example.com|Subject: 4");
}

TEST_F(RocksSpoolTest, GroupCommitBatchesConcurrentWriters) {
  auto s = OpenSpool();
  constexpr int kThreads = 8, kPer = 50;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        std::promise<absl::Status> p;
        auto f = p.get_future();
        // Fire a few at once per thread to let batches form.
        s->Commit(Make(t * 1000 + i, 0), [&p](absl::Status st) { p.set_value(st); });
        if (f.get().ok()) ok++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), kThreads * kPer);
  SpoolStats st = s->Stats();
  EXPECT_EQ(st.committed_messages, static_cast<uint64_t>(kThreads * kPer));
  EXPECT_LE(st.commits, st.committed_messages);
  EXPECT_GE(st.max_batch, 1u);
}

TEST_F(RocksSpoolTest, ManyCallbacksInOneBatch) {
  auto s = OpenSpool();
  std::atomic<int> done{0};
  for (int i = 0; i < 500; ++i) {
    s->Commit(Make(i, 0), [&](absl::Status st) {
      EXPECT_TRUE(st.ok());
      done++;
    });
  }
  for (int i = 0; i < 1000 && done.load() < 500; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(done.load(), 500);
  EXPECT_LT(s->Stats().commits, 500u);  // at least some were grouped
}

TEST_F(RocksSpoolTest, ReadOnlyOpenSeesCommittedMessagesWhileWriterRuns) {
  auto w = OpenSpool();
  ASSERT_TRUE(CommitSync(*w, Make(7, 0)).ok());
  auto r = OpenSpool(/*read_only=*/true);
  ASSERT_NE(r, nullptr);
  int n = 0;
  ASSERT_TRUE(r->Scan([&](const MessageMeta& m) {
                 EXPECT_EQ(m.sender, "sender7@example.com");
                 ++n;
                 return true;
               }).ok());
  EXPECT_EQ(n, 1);
  bool called = false;
  r->Commit(Make(8, 0), [&](absl::Status st) {
    called = true;
    EXPECT_FALSE(st.ok());
  });
  EXPECT_TRUE(called);
}

TEST_F(RocksSpoolTest, DestructorDrainsPendingCommits) {
  std::atomic<int> ok{0};
  {
    auto s = OpenSpool();
    for (int i = 0; i < 100; ++i) {
      s->Commit(Make(i, 0), [&](absl::Status st) { ok += st.ok(); });
    }
  }
  EXPECT_EQ(ok.load(), 100);
  auto s = OpenSpool();
  int n = 0;
  ASSERT_TRUE(s->Scan([&](const MessageMeta&) { return ++n > 0; }).ok());
  EXPECT_EQ(n, 100);
}

// Waits (bounded) for the open-time count of the background thread.
SpoolStats CountedStats(const RocksSpool& s) {
  for (int i = 0; i < 500; ++i) {
    SpoolStats st = s.Stats();
    if (st.queue_known) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the spool never finished counting what it holds";
  return s.Stats();
}

// Bookkeeping waits for a commit or FlushAsync(); LoadMeta sees it at once.
TEST_F(RocksSpoolTest, AsyncBookkeepingVisibleAtOnceAndWrittenOnFlush) {
  auto s = OpenSpool();
  int64_t now = clock_.NowMicros();
  MessageMeta ma, mb;
  ASSERT_NO_FATAL_FAILURE(CommitTwo(*s, now, &ma, &mb));
  int64_t before = CountedStats(*s).queue_messages;

  s->DeleteAsync(ma);
  MessageMeta updated = mb;
  updated.next_attempt_us = now + 60'000'000;
  updated.attempts = 3;
  s->UpdateAsync(updated, mb.next_attempt_us);
  // Queued or being written: LoadMeta must never return the older record.
  EXPECT_EQ(s->LoadMeta(ma.id).status().code(), absl::StatusCode::kNotFound);
  auto got = s->LoadMeta(mb.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->attempts, 3u);

  s->FlushAsync();
  // Written alone, without a commit: the queue gauge counts the delete once
  // the write is done (the gauge is updated after it, so reading RocksDB
  // afterwards does not race the writer), and the schedule, read from
  // RocksDB only, no longer offers either message.
  bool written = false;
  for (int i = 0; i < 500 && !written; ++i) {  // at most 5 s
    written = s->Stats().queue_messages == before - 1;
    if (!written) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(written);
  auto due = s->LoadDue(now, 100);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
  got = s->LoadMeta(mb.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->attempts, 3u);
  EXPECT_EQ(s->LoadMeta(ma.id).status().code(), absl::StatusCode::kNotFound);
  s->FlushAsync();  // nothing waiting: a no-op
}

// A clean close writes the memtables out: the WAL the next open would
// replay is (nearly) empty, and every message is still there.
TEST_F(RocksSpoolTest, CleanCloseLeavesNoWalToReplay) {
  auto wal_bytes = [&] {
    uint64_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/spool")) {
      if (e.path().extension() == ".log") n += e.file_size();
    }
    return n;
  };
  std::vector<QueueId> ids;
  {
    auto s = OpenSpool();
    for (int i = 0; i < 200; ++i) {
      NewMessage m = Make(i, clock_.NowMicros());
      m.body.append(8192, 'x');
      m.meta.body_size = m.header_prefix.size() + m.body.size();
      ids.push_back(m.meta.id);
      ASSERT_TRUE(CommitSync(*s, std::move(m)).ok());
    }
    ASSERT_GT(wal_bytes(), 200u * 8192);  // all of it in the WAL so far
  }
  EXPECT_LT(wal_bytes(), 64u * 1024) << "the WAL was not made obsolete by a flush at close";
  auto s = OpenSpool();
  int n = 0;
  ASSERT_TRUE(s->Scan([&](const MessageMeta& m) {
                 EXPECT_EQ(m.id, ids[n]);
                 ++n;
                 return true;
               }).ok());
  EXPECT_EQ(n, 200);
  auto body = s->ReadBody(ids[199]);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->size(), std::string("Received: test\r\nSubject: 199\r\n\r\nbody\r\n").size() + 8192);
}

TEST_F(RocksSpoolTest, QueueGaugesFollowCommitsAndDeletesAcrossReopen) {
  uint64_t size = 0;
  std::vector<MessageMeta> metas;
  {
    auto s = OpenSpool();
    SpoolStats st = CountedStats(*s);
    EXPECT_EQ(st.queue_messages, 0);
    for (int i = 0; i < 4; ++i) {
      NewMessage m = Make(i, clock_.NowMicros());
      size = m.meta.body_size;
      metas.push_back(m.meta);
      ASSERT_TRUE(CommitSync(*s, std::move(m)).ok());
    }
    st = s->Stats();
    EXPECT_EQ(st.queue_messages, 4);
    EXPECT_EQ(st.queue_bytes, static_cast<int64_t>(4 * size));
    EXPECT_EQ(st.batch_messages.count, st.commits);  // one observation per synced commit
    EXPECT_EQ(st.commit_micros.count, st.commits);
    ASSERT_TRUE(s->Delete(metas[0]).ok());
    s->DeleteAsync(metas[1]);
  }  // the destructor writes the queued delete
  auto s = OpenSpool();
  SpoolStats st = CountedStats(*s);  // counted from disk at open
  EXPECT_EQ(st.queue_messages, 2);
  EXPECT_EQ(st.queue_bytes, static_cast<int64_t>(2 * size));
  EXPECT_GT(st.disk_bytes, 0u);
  NewMessage m = Make(9, clock_.NowMicros());
  ASSERT_TRUE(CommitSync(*s, std::move(m)).ok());
  EXPECT_EQ(s->Stats().queue_messages, 3);
}

}  // namespace
}  // namespace mxr::queue
