#include "suppression/csv.h"

#include <stdlib.h>

#include <filesystem>
#include <sstream>

#include "gtest/gtest.h"
#include "queue/rocks_spool.h"
#include "spdlog/spdlog.h"

namespace mxr::suppression {
namespace {

TEST(CsvRecord, QuotesCommasAndLineBreaks) {
  std::istringstream in("a,\"b,c\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",x\nlast");
  std::vector<std::string> f;
  uint64_t line = 0;
  ASSERT_TRUE(ReadCsvRecord(in, &f, &line));
  EXPECT_EQ(f, (std::vector<std::string>{"a", "b,c", "say \"hi\""}));
  ASSERT_TRUE(ReadCsvRecord(in, &f, &line));
  EXPECT_EQ(f, (std::vector<std::string>{"multi\nline", "x"}));
  EXPECT_EQ(line, 3u);
  ASSERT_TRUE(ReadCsvRecord(in, &f, &line));
  EXPECT_EQ(f, (std::vector<std::string>{"last"}));
  EXPECT_FALSE(ReadCsvRecord(in, &f, &line));
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("q\"x"), "\"q\"\"x\"");
}

class CsvTest : public ::testing::Test {
 protected:
  // spdlog's registry is made on first use; made here, before the spool's
  // and the store's threads log at once (it lives in an uninstrumented
  // library, so TSan cannot see its own guard).
  static void SetUpTestSuite() { spdlog::default_logger(); }
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-suppression-csv-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    queue::RocksSpoolOptions o;
    o.path = dir_ + "/spool";
    o.write_buffer_size = 4 << 20;
    o.extra_families = {std::string(Store::kFamily)};
    auto s = queue::RocksSpool::Open(o, clock_);
    ASSERT_TRUE(s.ok());
    spool_ = std::move(*s);
    auto st = Store::Open(spool_->db(), spool_->Family(Store::kFamily), clock_);
    ASSERT_TRUE(st.ok());
    store_ = std::move(*st);
    store_->WaitLoaded();
  }
  void TearDown() override {
    store_.reset();
    spool_.reset();
    std::filesystem::remove_all(dir_);
  }
  ManualClock clock_;
  std::string dir_;
  std::unique_ptr<queue::RocksSpool> spool_;
  std::unique_ptr<Store> store_;
};

TEST_F(CsvTest, ImportWithHeaderSkipsBadLinesAndExportsBack) {
  std::istringstream in(
      "Address,Scope,Reason,Category,Source,Created,Expires\r\n"
      "bob@Example.com,acme,hard_bounce,invalid_recipient,\"550 5.1.1, no such user\",2026-12-01T10:00:00Z,\r\n"
      "all@example.com,,complaint,,,,2027-01-01T00:00:00Z\r\n"
      "not-an-address,acme,manual,,,,\r\n"
      "x@example.com,acme,bounced,,,,\r\n"
      "y@example.com,acme,manual,,,yesterday,\r\n"
      "\r\n"
      "plain@example.com,acme,,,,,\r\n");
  ImportDefaults d;
  d.reason = Reason::kUnsubscribe;
  d.source = "csv:test";
  auto r = ImportCsv(in, d, *store_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->lines, 6u);
  EXPECT_EQ(r->written, 3u);
  EXPECT_EQ(r->skipped, 3u);
  ASSERT_EQ(r->errors.size(), 3u);
  EXPECT_EQ(r->errors[0], "line 4: not an address: \"not-an-address\"");
  EXPECT_NE(r->errors[1].find("line 5: unknown reason \"bounced\""), std::string::npos);
  EXPECT_NE(r->errors[2].find("line 6: created/expires"), std::string::npos);

  auto bob = store_->Find("acme", "bob@example.com");
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->source, "550 5.1.1, no such user");
  EXPECT_EQ(bob->created_us, 1796119200000000);  // 2026-12-01T10:00:00Z
  auto all = store_->Find("acme", "all@example.com");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->reason, Reason::kComplaint);
  EXPECT_EQ(all->source, "csv:test");
  EXPECT_NE(all->expires_us, 0);
  auto plain = store_->Find("acme", "plain@example.com");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->reason, Reason::kUnsubscribe);

  std::ostringstream out;
  auto n = ExportCsv(*store_, nullptr, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  std::string csv = out.str();
  EXPECT_EQ(csv.substr(0, csv.find('\n') + 1), "address,scope,reason,category,source,created,expires\r\n");
  EXPECT_NE(csv.find("bob@example.com,acme,hard_bounce,invalid_recipient,\"550 5.1.1, no such user\","
                     "2026-12-01T10:00:00Z,\r\n"),
            std::string::npos)
      << csv;
  // What was exported imports again to the same entries.
  std::istringstream back(csv);
  auto again = ImportCsv(back, ImportDefaults{}, *store_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->written, 3u);
  EXPECT_EQ(again->skipped, 0u);
  EXPECT_EQ(store_->Stats().entries, 3u);
  std::string acme = "acme";
  std::ostringstream only;
  EXPECT_EQ(*ExportCsv(*store_, &acme, only), 2u);
}

TEST_F(CsvTest, BareAddressListUsesTheDefaults) {
  std::istringstream in("a@x.test\nb@x.test\n\nc@x.test");
  ImportDefaults d;
  d.scope = "tenant1";
  d.reason = Reason::kManual;
  auto r = ImportCsv(in, d, *store_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 3u);
  EXPECT_TRUE(store_->Find("tenant1", "a@x.test"));
  EXPECT_TRUE(store_->Find("tenant1", "c@x.test"));
  EXPECT_FALSE(store_->Find("other", "c@x.test"));
}

TEST_F(CsvTest, ImportsManyLinesInChunks) {
  std::ostringstream gen;
  gen << "address\n";
  for (int i = 0; i < 25000; ++i) gen << "user" << i << "@bulk.test\n";
  std::istringstream in(gen.str());
  auto r = ImportCsv(in, ImportDefaults{}, *store_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 25000u);
  EXPECT_EQ(store_->Stats().entries, 25000u);
  EXPECT_TRUE(store_->Find("", "user0@bulk.test"));
  EXPECT_TRUE(store_->Find("", "user24999@bulk.test"));
  EXPECT_FALSE(store_->Find("", "user25000@bulk.test"));
}

}  // namespace
}  // namespace mxr::suppression
