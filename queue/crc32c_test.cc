#include "queue/crc32c_hw.h"

#include <cstdint>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace mxr::queue {
namespace {

uint32_t Value(const std::string& s) { return Crc32cExtend(0, s.data(), s.size()); }

// RFC 3720 B.4 test vectors.
TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Value(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(Value(std::string(32, '\xff')), 0x62a8ab43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Value(up), 0x46dd794eu);
  EXPECT_EQ(Value(down), 0x113fdb5cu);
  EXPECT_EQ(Value("123456789"), 0xe3069283u);
  EXPECT_EQ(Value(""), 0u);
}

// Same results as RocksDB's own code for every length, alignment and split.
TEST(Crc32cTest, MatchesTheLibraryAtAnyLengthAlignmentAndSplit) {
  std::mt19937_64 rng(42);
  std::string buf(70000, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  for (size_t len : {0ul, 1ul, 7ul, 8ul, 9ul, 31ul, 32ul, 33ul, 100ul, 4095ul, 65537ul}) {
    for (size_t off = 0; off < 9; ++off) {
      uint32_t want = Crc32cExtendLibrary(0, buf.data() + off, len);
      ASSERT_EQ(Crc32cExtend(0, buf.data() + off, len), want) << len << " at " << off;
      size_t cut = len / 3;
      uint32_t part = Crc32cExtend(0, buf.data() + off, cut);
      ASSERT_EQ(Crc32cExtend(part, buf.data() + off + cut, len - cut), want) << len << " split";
      ASSERT_EQ(Crc32cExtend(0x12345678u, buf.data() + off, len),
                Crc32cExtendLibrary(0x12345678u, buf.data() + off, len));
    }
  }
}

// The wrap is in force: a WAL written through it is read back by RocksDB
// (whose reader checks every record's CRC through the same function), and
// the CPU here has SSE4.2 (every x86-64 this project targets does).
TEST(Crc32cTest, WalRoundTripsThroughTheWrappedFunction) {
#if defined(__x86_64__)
  EXPECT_TRUE(Crc32cHardware());
#endif
  std::string dir = ::testing::TempDir() + "/crc32c_wal_" + std::to_string(::getpid());
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir, &db).ok());
  std::string big(200000, 'x');
  rocksdb::WriteOptions wo;
  wo.sync = true;
  uint64_t calls = Crc32cWrappedCalls();
  ASSERT_TRUE(db->Put(wo, "k", big).ok());
  EXPECT_GT(Crc32cWrappedCalls(), calls);  // the WAL writer called ours
  delete db;  // not flushed: reopening replays the WAL and checks its CRCs
  o.paranoid_checks = true;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir, &db).ok());
  std::string v;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "k", &v).ok());
  EXPECT_EQ(v, big);
  delete db;
  rocksdb::DestroyDB(dir, o);
}

}  // namespace
}  // namespace mxr::queue
