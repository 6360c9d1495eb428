// Only the pure helpers of the resolver are unit-tested here; CaresResolver
// itself needs a DNS server (integration tests).
#include "delivery/resolver.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// ---------------------------------------------------------------------------
// OrderMx

TEST(OrderMxTest, SortsByPreference) {
  int calls = 0;
  auto rand = [&](size_t) -> size_t {
    ++calls;
    return 0;
  };
  EXPECT_THAT(OrderMx({{"c", 30}, {"a", 10}, {"d", 40}, {"b", 20}}, rand),
              ElementsAre("a", "b", "c", "d"));
  EXPECT_EQ(calls, 0) << "distinct preferences need no randomness";
  EXPECT_THAT(OrderMx({}, rand), ElementsAre());
  EXPECT_THAT(OrderMx({{"only", 0}}, rand), ElementsAre("only"));
  EXPECT_THAT(OrderMx({{"x", 65535}, {"y", 0}}, rand), ElementsAre("y", "x"));
  EXPECT_EQ(calls, 0);
}

// A scripted rand: yields seq[i] % n and checks it is only ever asked for a
// choice among at least two.
struct ScriptedRand {
  std::vector<size_t> seq;
  size_t i = 0;
  size_t operator()(size_t n) {
    EXPECT_GE(n, 2u);
    size_t v = seq.at(i++ % seq.size()) % n;
    return v;
  }
};

TEST(OrderMxTest, ShufflesOnlyWithinEqualPreference) {
  // Group {a,b,c} at 10 between "lo" (5) and "hi" (20).
  const std::vector<MxRecord> in = {{"a", 10}, {"hi", 20}, {"b", 10}, {"lo", 5}, {"c", 10}};
  std::map<std::vector<std::string>, int> seen;
  // Every combination of two choices in [0, 6): 6 is a multiple of both
  // sizes a 3-element Fisher-Yates asks for, so a uniform shuffle yields
  // every permutation equally often.
  for (size_t r1 = 0; r1 < 6; ++r1) {
    for (size_t r2 = 0; r2 < 6; ++r2) {
      ScriptedRand rand{{r1, r2}};
      std::vector<std::string> out = OrderMx(in, std::ref(rand));
      ASSERT_EQ(out.size(), 5u);
      EXPECT_EQ(out.front(), "lo");
      EXPECT_EQ(out.back(), "hi");
      std::vector<std::string> group(out.begin() + 1, out.end() - 1);
      EXPECT_THAT(group, UnorderedElementsAre("a", "b", "c"));
      seen[group]++;
      EXPECT_EQ(rand.i, 2u) << "a group of 3 needs exactly 2 choices";
    }
  }
  EXPECT_EQ(seen.size(), 6u) << "all 3! orders of the equal-preference group occur";
  for (const auto& [order, n] : seen) EXPECT_EQ(n, 6) << order[0] << order[1] << order[2];
}

TEST(OrderMxTest, SeveralGroupsNeverMix) {
  const std::vector<MxRecord> in = {{"y", 20}, {"a", 10}, {"x", 20}, {"b", 10},
                                    {"z", 20}, {"solo", 15}, {"w", 20}};
  std::mt19937 rng(12345);
  std::set<std::vector<std::string>> low_orders, high_orders;
  for (int trial = 0; trial < 3000; ++trial) {
    auto out = OrderMx(in, [&](size_t n) {
      EXPECT_GE(n, 2u);
      return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
    });
    ASSERT_EQ(out.size(), 7u);
    std::vector<std::string> low(out.begin(), out.begin() + 2);
    std::vector<std::string> high(out.begin() + 3, out.end());
    EXPECT_THAT(low, UnorderedElementsAre("a", "b"));
    EXPECT_EQ(out[2], "solo");
    EXPECT_THAT(high, UnorderedElementsAre("w", "x", "y", "z"));
    low_orders.insert(low);
    high_orders.insert(high);
  }
  EXPECT_EQ(low_orders.size(), 2u);
  EXPECT_EQ(high_orders.size(), 24u);  // all 4! orders
}

TEST(OrderMxTest, ConstantRandIsDeterministic) {
  const std::vector<MxRecord> in = {{"a", 10}, {"b", 10}, {"c", 10}};
  auto first = [](size_t) -> size_t { return 0; };
  auto out1 = OrderMx(in, first);
  auto out2 = OrderMx(in, first);
  EXPECT_EQ(out1, out2);
  // rand(n) = n-1 swaps every element with itself: the input order stays.
  EXPECT_THAT(OrderMx(in, [](size_t n) { return n - 1; }), ElementsAre("a", "b", "c"));
}

// ---------------------------------------------------------------------------
// MinAnswerTtl

void Put16(std::vector<uint8_t>* b, uint16_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}
void Put32(std::vector<uint8_t>* b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}
void PutName(std::vector<uint8_t>* b, const std::string& dotted) {
  size_t pos = 0;
  while (pos < dotted.size()) {
    size_t dot = dotted.find('.', pos);
    if (dot == std::string::npos) dot = dotted.size();
    b->push_back(static_cast<uint8_t>(dot - pos));
    b->insert(b->end(), dotted.begin() + pos, dotted.begin() + dot);
    pos = dot + 1;
  }
  b->push_back(0);
}

struct Answer {
  uint32_t ttl;
  std::string exchange;  // MX target, written uncompressed
  bool compressed_owner = true;
};

// A response to "example.com IN MX" with the given MX answers.
std::vector<uint8_t> MxResponse(const std::vector<Answer>& answers, int questions = 1) {
  std::vector<uint8_t> b;
  Put16(&b, 0x1234);   // id
  Put16(&b, 0x8180);   // QR, RD, RA, NOERROR
  Put16(&b, static_cast<uint16_t>(questions));
  Put16(&b, static_cast<uint16_t>(answers.size()));
  Put16(&b, 0);        // NS
  Put16(&b, 0);        // AR
  for (int q = 0; q < questions; ++q) {
    PutName(&b, "example.com");
    Put16(&b, 15);  // MX
    Put16(&b, 1);   // IN
  }
  for (const Answer& a : answers) {
    if (a.compressed_owner) {
      Put16(&b, 0xc00c);  // pointer to the question name
    } else {
      PutName(&b, "example.com");
    }
    Put16(&b, 15);
    Put16(&b, 1);
    Put32(&b, a.ttl);
    std::vector<uint8_t> rdata;
    Put16(&rdata, 10);  // preference
    PutName(&rdata, a.exchange);
    Put16(&b, static_cast<uint16_t>(rdata.size()));
    b.insert(b.end(), rdata.begin(), rdata.end());
  }
  return b;
}

int Ttl(const std::vector<uint8_t>& b) { return MinAnswerTtl(b.data(), static_cast<int>(b.size())); }

TEST(MinAnswerTtlTest, TwoMxAnswers) {
  EXPECT_EQ(Ttl(MxResponse({{300, "mx1.example.com"}, {60, "mx2.example.com"}})), 60);
  EXPECT_EQ(Ttl(MxResponse({{60, "mx1.example.com"}, {300, "mx2.example.com"}})), 60);
}

TEST(MinAnswerTtlTest, Table) {
  struct Row {
    const char* name;
    std::vector<Answer> answers;
    int questions;
    int want;
  } rows[] = {
      {"one answer", {{300, "mx.example.com"}}, 1, 300},
      {"no answers", {}, 1, -1},
      {"zero ttl", {{0, "mx.example.com"}, {5, "mx2.example.com"}}, 1, 0},
      {"uncompressed owner", {{3600, "a.example.com", false}, {7200, "b.example.com", false}}, 1,
       3600},
      {"no question section", {{42, "mx.example.com"}}, 0, 42},
      {"two questions", {{99, "mx.example.com"}, {100, "mx.example.com"}}, 2, 99},
      {"ttl with top bit set is clamped", {{0x80000000u, "mx.example.com"}}, 1, 0x7fffffff},
      {"huge and small", {{0xffffffffu, "a.example.com"}, {77, "b.example.com"}}, 1, 77},
      {"three answers", {{500, "a.example.com"}, {20, "b.example.com"}, {400, "c.example.com"}},
       1, 20},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(Ttl(MxResponse(r.answers, r.questions)), r.want) << r.name;
  }
}

TEST(MinAnswerTtlTest, TooShortForAHeader) {
  const uint8_t b[11] = {};
  for (int len = 0; len <= 11; ++len) EXPECT_EQ(MinAnswerTtl(b, len), -1) << len;
}

// Places `n` bytes right before a PROT_NONE page, so any read past the end of
// the buffer faults instead of silently reading neighbouring memory.
class GuardedBuffer {
 public:
  GuardedBuffer() {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    mem_ = static_cast<uint8_t*>(
        mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    EXPECT_NE(mem_, MAP_FAILED);
    EXPECT_EQ(mprotect(mem_ + page_, page_, PROT_NONE), 0);
  }
  ~GuardedBuffer() { munmap(mem_, 2 * page_); }
  const uint8_t* Place(const uint8_t* data, size_t n) {
    uint8_t* dst = mem_ + page_ - n;
    memcpy(dst, data, n);
    return dst;
  }

 private:
  size_t page_ = 0;
  uint8_t* mem_ = nullptr;
};

TEST(MinAnswerTtlTest, TruncatedAtEveryLengthNeverReadsPastTheEnd) {
  std::vector<uint8_t> full = MxResponse({{300, "mx1.example.com"}, {60, "mx2.example.com"}});
  const size_t header_and_question = 12 + 13 + 4;  // "example.com" is 13 bytes encoded
  const size_t first_answer_fixed = header_and_question + 2 + 10;
  const size_t first_answer_end = first_answer_fixed + 2 + 17;  // pref + "mx1.example.com"
  ASSERT_GT(full.size(), first_answer_end + 12);
  GuardedBuffer guard;
  for (size_t len = 0; len <= full.size(); ++len) {
    const uint8_t* p = guard.Place(full.data(), len);
    int got = MinAnswerTtl(p, static_cast<int>(len));
    SCOPED_TRACE(len);
    if (len < first_answer_fixed) {
      EXPECT_EQ(got, -1);  // no complete answer record header yet
    } else if (len < first_answer_end + 12) {
      EXPECT_EQ(got, 300);  // only the first answer's TTL is readable
    } else {
      EXPECT_EQ(got, 60);
    }
  }
}

TEST(MinAnswerTtlTest, HostileCountsAndLabels) {
  GuardedBuffer guard;
  // Header claiming 65535 answers, nothing after it.
  std::vector<uint8_t> b = {0, 1, 0x81, 0x80, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
  EXPECT_EQ(MinAnswerTtl(guard.Place(b.data(), b.size()), static_cast<int>(b.size())), -1);
  // A question whose label length runs past the end.
  b = {0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 63, 'a', 'b'};
  EXPECT_EQ(MinAnswerTtl(guard.Place(b.data(), b.size()), static_cast<int>(b.size())), -1);
  // A lone compression-pointer byte at the very end.
  b = {0, 1, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0};
  EXPECT_EQ(MinAnswerTtl(guard.Place(b.data(), b.size()), static_cast<int>(b.size())), -1);
  // Random garbage after a valid header never faults.
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> junk(12 + rng() % 80);
    for (auto& c : junk) c = static_cast<uint8_t>(rng());
    int got = MinAnswerTtl(guard.Place(junk.data(), junk.size()), static_cast<int>(junk.size()));
    EXPECT_GE(got, -1);
  }
}

}  // namespace
}  // namespace mxr::delivery
