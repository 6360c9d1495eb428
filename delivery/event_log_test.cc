#include "delivery/event_log.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

DeliveryEvent Sample() {
  DeliveryEvent e;
  e.time_us = 1'700'000'000'123'456;  // 2023-11-14T22:13:20.123456Z
  e.queue_id = "0005f0a1b2c3d4e5f6000007";
  e.sender = "alice@example.com";
  e.recipient = "bob@remote.example";
  e.outcome = "delivered";
  e.site = "remote.example";
  e.mx_host = "mx1.remote.example";
  e.ip = "192.0.2.25";
  e.tls = "TLSv1.3";
  e.code = 250;
  e.enhanced = "2.0.0";
  e.response = "250 2.0.0 Ok: queued as 4F1";
  e.attempt = 3;
  e.queue_seconds = 12.3456;
  e.source = "default";
  return e;
}

TEST(EventToJsonTest, EveryFieldExactly) {
  EXPECT_EQ(EventToJson(Sample()),
            "{\"time\":\"2023-11-14T22:13:20.123456Z\","
            "\"queue_id\":\"0005f0a1b2c3d4e5f6000007\","
            "\"sender\":\"alice@example.com\","
            "\"recipient\":\"bob@remote.example\","
            "\"outcome\":\"delivered\","
            "\"site\":\"remote.example\","
            "\"mx_host\":\"mx1.remote.example\","
            "\"ip\":\"192.0.2.25\","
            "\"tls\":\"TLSv1.3\","
            "\"code\":250,"
            "\"enhanced\":\"2.0.0\","
            "\"response\":\"250 2.0.0 Ok: queued as 4F1\","
            "\"category\":\"\","
            "\"source\":\"default\","
            "\"attempt\":3,"
            "\"queue_seconds\":12.346}\n");
}

TEST(EventToJsonTest, EmptyFieldsStillPresent) {
  DeliveryEvent e;
  std::string j = EventToJson(e);
  for (const char* k : {"time", "queue_id", "sender", "recipient", "outcome", "site", "mx_host",
                        "ip", "tls", "code", "enhanced", "response", "category", "source", "attempt",
                        "queue_seconds"}) {
    EXPECT_THAT(j, HasSubstr(std::string("\"") + k + "\":")) << k;
  }
  EXPECT_THAT(j, HasSubstr("\"time\":\"1970-01-01T00:00:00.000000Z\""));
  EXPECT_THAT(j, HasSubstr("\"sender\":\"\""));
  EXPECT_THAT(j, StartsWith("{"));
  EXPECT_THAT(j, EndsWith("}\n"));
  // Exactly one newline: one event, one line.
  EXPECT_EQ(std::count(j.begin(), j.end(), '\n'), 1);
}

TEST(EventToJsonTest, EscapesQuotesBackslashesAndControls) {
  struct Row {
    std::string in;
    std::string want;  // JSON string literal content
  } rows[] = {
      {"say \"hi\"", "say \\\"hi\\\""},
      {"C:\\path\\x", "C:\\\\path\\\\x"},
      {"a\r\nb", "a\\u000d\\u000ab"},
      {"tab\there", "tab\\u0009here"},
      {std::string("nul\0x", 5), "nul\\u0000x"},
      {"\x01\x1f", "\\u0001\\u001f"},
      {"\x7f ok ~", "\x7f ok ~"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},  // UTF-8 passes through
      {"\\\"", "\\\\\\\""},
  };
  for (const auto& row : rows) {
    DeliveryEvent e = Sample();
    e.response = row.in;
    std::string j = EventToJson(e);
    EXPECT_THAT(j, HasSubstr("\"response\":\"" + row.want + "\",\"category\""))
        << testing::PrintToString(row.in);
    // A hostile value never adds a line.
    EXPECT_EQ(std::count(j.begin(), j.end(), '\n'), 1);
  }
  // Every string field is escaped, not only the response.
  DeliveryEvent e = Sample();
  e.sender = "\"evil\"\n@x";
  e.recipient = "r\\@x";
  e.mx_host = "mx\r";
  std::string j = EventToJson(e);
  EXPECT_THAT(j, HasSubstr("\"sender\":\"\\\"evil\\\"\\u000a@x\""));
  EXPECT_THAT(j, HasSubstr("\"recipient\":\"r\\\\@x\""));
  EXPECT_THAT(j, HasSubstr("\"mx_host\":\"mx\\u000d\""));
}

// ---------------------------------------------------------------------------
// EventLog on a real file

class EventLogFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay_event_log_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/events.jsonl";
  }
  void TearDown() override {
    for (const char* f : {"/events.jsonl", "/events.jsonl.1"}) unlink((dir_ + f).c_str());
    rmdir(dir_.c_str());
  }
  static std::vector<std::string> Lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_, path_;
};

TEST_F(EventLogFileTest, WritesOneLinePerEvent) {
  EventLog log(path_);
  ASSERT_TRUE(log.Open().ok());
  DeliveryEvent a = Sample(), b = Sample();
  b.recipient = "carol@remote.example";
  b.outcome = "bounced";
  log.Write(a);
  log.Write(b);
  EXPECT_EQ(Slurp(path_), EventToJson(a) + EventToJson(b));
  auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("\"outcome\":\"bounced\""));
}

TEST_F(EventLogFileTest, AppendsToExistingFile) {
  {
    EventLog log(path_);
    ASSERT_TRUE(log.Open().ok());
    log.Write(Sample());
  }
  EventLog log(path_);
  ASSERT_TRUE(log.Open().ok());
  log.Write(Sample());
  EXPECT_EQ(Lines(path_).size(), 2u);
}

TEST_F(EventLogFileTest, ReopenAfterRenameWritesToNewFile) {
  EventLog log(path_);
  ASSERT_TRUE(log.Open().ok());
  DeliveryEvent e = Sample();
  e.recipient = "before@x";
  log.Write(e);
  // logrotate: rename, then SIGHUP -> Reopen().
  ASSERT_EQ(rename(path_.c_str(), (path_ + ".1").c_str()), 0);
  e.recipient = "between@x";
  log.Write(e);  // still the old descriptor: lands in the rotated file
  ASSERT_TRUE(log.Reopen().ok());
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0) << "Reopen must create the file at the path";
  e.recipient = "after@x";
  log.Write(e);
  auto old_lines = Lines(path_ + ".1");
  auto new_lines = Lines(path_);
  ASSERT_EQ(old_lines.size(), 2u);
  EXPECT_THAT(old_lines[0], HasSubstr("before@x"));
  EXPECT_THAT(old_lines[1], HasSubstr("between@x"));
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_THAT(new_lines[0], HasSubstr("after@x"));
}

TEST_F(EventLogFileTest, ConcurrentWritersProduceWholeLines) {
  EventLog log(path_);
  ASSERT_TRUE(log.Open().ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < 200; ++i) {
        DeliveryEvent e = Sample();
        e.response = std::string(100 + t * 50, static_cast<char>('a' + t));
        log.Write(e);
        if (t == 0 && i % 50 == 0) (void)log.Reopen();
      }
    });
  }
  for (auto& th : threads) th.join();
  auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 800u);
  for (const auto& l : lines) {
    EXPECT_THAT(l, StartsWith("{\"time\":"));
    EXPECT_THAT(l, EndsWith("}"));
  }
}

TEST_F(EventLogFileTest, EmptyPathDisables) {
  // Run in the empty temp dir: a disabled log must create nothing anywhere.
  char old_cwd[4096];
  ASSERT_NE(getcwd(old_cwd, sizeof old_cwd), nullptr);
  ASSERT_EQ(chdir(dir_.c_str()), 0);
  EventLog log("");
  EXPECT_TRUE(log.Open().ok());
  EXPECT_TRUE(log.Reopen().ok());
  log.Write(Sample());  // no-op, no crash
  int entries = 0;
  if (DIR* d = opendir(".")) {
    while (dirent* de = readdir(d)) {
      std::string n = de->d_name;
      if (n != "." && n != "..") ++entries;
    }
    closedir(d);
  }
  ASSERT_EQ(chdir(old_cwd), 0);
  EXPECT_EQ(entries, 0);
}

TEST_F(EventLogFileTest, WriteBeforeOpenIsDropped) {
  EventLog log(path_);
  log.Write(Sample());
  struct stat st;
  EXPECT_NE(stat(path_.c_str(), &st), 0);
}

TEST_F(EventLogFileTest, OpenErrorNamesTheKeyAndPath) {
  EventLog log(dir_ + "/no/such/dir/events.jsonl");
  absl::Status st = log.Open();
  ASSERT_FALSE(st.ok());
  std::string msg(st.message());
  EXPECT_THAT(msg, HasSubstr("delivery.event_log"));
  EXPECT_THAT(msg, HasSubstr("/no/such/dir/events.jsonl"));
}

}  // namespace
}  // namespace mxr::delivery
