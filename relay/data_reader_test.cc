#include "relay/data_reader.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

// What one run of a DataReader over some input produced.
struct Outcome {
  std::string out;
  size_t consumed = 0;
  bool done = false;
  bool bare = false;
  bool oversize = false;
  uint64_t size = 0;

  bool operator==(const Outcome&) const = default;
};

void PrintTo(const Outcome& o, std::ostream* os) {
  *os << "{out=" << testing::PrintToString(o.out) << " consumed=" << o.consumed
      << " done=" << o.done << " bare=" << o.bare << " oversize=" << o.oversize
      << " size=" << o.size << "}";
}

// Feeds `pieces` in order, stopping (like the session does) once the reader
// is done; the unconsumed rest is the next command.
Outcome RunPieces(const std::vector<std::string_view>& pieces, uint64_t max = 1 << 20) {
  Outcome o;
  DataReader r(max, &o.out);
  for (std::string_view p : pieces) {
    if (r.done()) break;
    size_t used = r.Feed(p);
    EXPECT_LE(used, p.size());
    if (!r.done()) {
      EXPECT_EQ(used, p.size()) << "a reader that is not done consumes everything";
    }
    o.consumed += used;
  }
  o.done = r.done();
  o.bare = r.bare_line_ending();
  o.oversize = r.oversize();
  o.size = r.size();
  return o;
}

Outcome RunWhole(std::string_view in, uint64_t max = 1 << 20) { return RunPieces({in}, max); }

Outcome RunBytes(std::string_view in, uint64_t max = 1 << 20) {
  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < in.size(); ++i) pieces.push_back(in.substr(i, 1));
  return RunPieces(pieces, max);
}

// The same input split at every boundary (two pieces and three pieces) and
// byte by byte must give exactly what one Feed gives.
void ExpectSplitInvariant(std::string_view in, uint64_t max = 1 << 20) {
  SCOPED_TRACE(testing::PrintToString(std::string(in)));
  Outcome whole = RunWhole(in, max);
  for (size_t i = 0; i <= in.size(); ++i) {
    EXPECT_EQ(RunPieces({in.substr(0, i), in.substr(i)}, max), whole) << "split at " << i;
    for (size_t j = i; j <= in.size(); ++j) {
      EXPECT_EQ(RunPieces({in.substr(0, i), in.substr(i, j - i), in.substr(j)}, max), whole)
          << "split at " << i << "," << j;
    }
  }
  EXPECT_EQ(RunBytes(in, max), whole) << "byte by byte";
}

TEST(DataReaderTest, SimpleMessage) {
  Outcome o = RunWhole("Subject: hi\r\n\r\nbody\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.out, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(o.consumed, 24u);
  EXPECT_FALSE(o.bare);
  EXPECT_FALSE(o.oversize);
  EXPECT_EQ(o.size, o.out.size());
}

TEST(DataReaderTest, EmptyMessage) {
  Outcome o = RunWhole(".\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.consumed, 3u);
  EXPECT_EQ(o.size, 0u);
  EXPECT_FALSE(o.bare);
}

TEST(DataReaderTest, StopsAtEndMarkerAndLeavesTheRest) {
  std::string in = "a\r\n.\r\nQUIT\r\n";
  Outcome o = RunWhole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.out, "a\r\n");
  EXPECT_EQ(o.consumed, 6u);
  EXPECT_EQ(in.substr(o.consumed), "QUIT\r\n");

  // Once done, further input is not consumed.
  std::string out;
  DataReader r(100, &out);
  EXPECT_EQ(r.Feed(".\r\n"), 3u);
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.Feed("more"), 0u);
  EXPECT_EQ(out, "");
}

TEST(DataReaderTest, DotUnstuffing) {
  Outcome o = RunWhole("..x\r\n..\r\n...\r\nx.y\r\n .\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.out, ".x\r\n.\r\n..\r\nx.y\r\n .\r\n");
  EXPECT_FALSE(o.bare);
  // A stuffed dot on the very first line.
  o = RunWhole("..\r\n.\r\n");
  EXPECT_EQ(o.out, ".\r\n");
  EXPECT_TRUE(o.done);
  // RFC 5321 4.5.2: a leading dot is removed even when not doubled.
  o = RunWhole(".x\r\n.\r\n");
  EXPECT_EQ(o.out, "x\r\n");
  EXPECT_EQ(o.size, 3u);
}

TEST(DataReaderTest, EndMarkerOnlyAtCrlfDotCrlf) {
  for (std::string_view in : {"a\r\n.x\r\n", "a\r\n .\r\n", "a.\r\n", "a\r\n..\r\n",
                              "a\r\n.\r", "a\r\n."}) {
    Outcome o = RunWhole(in);
    EXPECT_FALSE(o.done) << testing::PrintToString(std::string(in));
    EXPECT_EQ(o.consumed, in.size());
    EXPECT_FALSE(o.bare) << testing::PrintToString(std::string(in));
  }
}

// Every variant of a bogus end marker: none may end the data, all must be
// flagged so that the session rejects the message.
TEST(DataReaderTest, SmugglingVariantsDoNotEndData) {
  const std::string variants[] = {
      "a\n.\nMAIL FROM:<x@y>\n",      // LF . LF
      "a\r.\r\nMAIL FROM:<x@y>\r\n",  // CR . CRLF
      "a\n.\r\nMAIL FROM:<x@y>\r\n",  // LF . CRLF
      "a\r\n.\rMAIL FROM:<x@y>\r\n",  // CRLF . CR + non-LF
      "a\r\n.\nMAIL FROM:<x@y>\r\n",  // CRLF . LF
      "a\r\r\n.\rX\r\n",              // CR CR LF . CR X
      "a\r.\rMAIL FROM:<x@y>\r\n",    // CR . CR
      "a\n\r\n.\nX\r\n",              // LF CRLF . LF
  };
  for (const std::string& v : variants) {
    SCOPED_TRACE(testing::PrintToString(v));
    Outcome o = RunWhole(v);
    EXPECT_FALSE(o.done);
    EXPECT_EQ(o.consumed, v.size());
    EXPECT_TRUE(o.bare);
    // Only a real end marker finishes it, and the flag stays.
    std::string full = v + "\r\n.\r\nRSET\r\n";
    o = RunWhole(full);
    EXPECT_TRUE(o.done);
    EXPECT_EQ(o.consumed, full.size() - 6);
    EXPECT_TRUE(o.bare);
    ExpectSplitInvariant(full);
  }
}

TEST(DataReaderTest, BareCrLfInBodyFlagged) {
  Outcome o = RunWhole("a\rb\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.bare);
  EXPECT_EQ(o.out, "a\rb\r\n");
  o = RunWhole("a\nb\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.bare);
  EXPECT_EQ(o.out, "a\nb\r\n");
  o = RunWhole("ab\r\n.\r\n");
  EXPECT_FALSE(o.bare);
}

TEST(DataReaderTest, SizeLimit) {
  // Exactly at the limit: fine.
  Outcome o = RunWhole("01234567\r\n.\r\n", 10);
  EXPECT_TRUE(o.done);
  EXPECT_FALSE(o.oversize);
  EXPECT_EQ(o.out, "01234567\r\n");
  EXPECT_EQ(o.size, 10u);
  // One over: flagged, content dropped, counting goes on to the end.
  o = RunWhole("012345678\r\nmore text\r\n.\r\n", 10);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.oversize);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.size, 22u);
  EXPECT_EQ(o.consumed, 25u);
  // Stuffing dots are not counted.
  o = RunWhole("..ab\r\n.\r\n", 5);
  EXPECT_FALSE(o.oversize);
  EXPECT_EQ(o.size, 5u);
  EXPECT_EQ(o.out, ".ab\r\n");
}

TEST(DataReaderTest, OversizeDoesNotHideEndMarker) {
  std::string big(5000, 'x');
  std::string in = big + "\r\n.\r\nQUIT\r\n";
  Outcome o = RunWhole(in, 100);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.oversize);
  EXPECT_EQ(o.consumed, in.size() - 6);
  EXPECT_EQ(o.size, 5002u);
}

TEST(DataReaderTest, SplitInvariance) {
  const std::string inputs[] = {
      ".\r\n",
      ".\r\nQUIT\r\n",
      "Subject: x\r\n\r\n..x\r\nline\r\n.\r\nMAIL FROM:<a@b>\r\n",
      "..\r\n...\r\n.a\r\n \r\n\r\n.\r\n",
      "a\r\rb\r\n.\r\n",
      "a\rb\nc\r\n.\r\n",
      "x\r\n.\r\r\n.\r\n",
      "\r\n\r\n\r\n.\r\n",
      "\r\r\r\n\n\n.\r\n",
      "abc",
      "abc\r",
      "abc\r\n.",
      "abc\r\n.\r",
  };
  for (const std::string& in : inputs) ExpectSplitInvariant(in);
}

TEST(DataReaderTest, SplitInvarianceWithSizeLimit) {
  for (uint64_t max : {0, 1, 5, 9, 10, 11, 12}) {
    SCOPED_TRACE(max);
    ExpectSplitInvariant("0123\r\n..67\r\n.\r\nNEXT", max);
  }
}

TEST(DataReaderTest, ByteByByteMatchesWholeOnLongerMessage) {
  std::string in;
  for (int i = 0; i < 50; ++i) {
    in += "Line " + std::to_string(i) + "\r\n";
    if (i % 7 == 0) in += "..stuffed\r\n";
    if (i % 11 == 0) in += ".\rnot-end\r\n";
  }
  in += ".\r\nQUIT\r\n";
  Outcome whole = RunWhole(in);
  EXPECT_TRUE(whole.done);
  EXPECT_TRUE(whole.bare);
  EXPECT_EQ(in.substr(whole.consumed), "QUIT\r\n");
  EXPECT_EQ(RunBytes(in), whole);
  for (size_t i = 0; i <= in.size(); ++i) {
    ASSERT_EQ(RunPieces({in.substr(0, i), in.substr(i)}), whole) << "split at " << i;
  }
}

// ------------------------------------------------------- LineEndingCheck

bool CheckOk(const std::vector<std::string_view>& pieces) {
  LineEndingCheck c;
  for (auto p : pieces) c.Feed(p);
  return c.ok_at_end();
}

// A byte-at-a-time reader written from RFC 5321 4.1.1.4 / 4.5.2, to check
// the bulk path (16-byte blocks) against: ends at the first <CRLF>.<CRLF>
// (the CRLF before DATA's payload counts), drops the first dot of a line,
// flags any CR not followed by LF and any LF not preceded by CR.
Outcome Reference(std::string_view in) {
  Outcome o;
  bool line_start = true;
  for (size_t i = 0; i < in.size();) {
    if (line_start && in.substr(i, 3) == ".\r\n") {
      o.done = true;
      o.consumed = i + 3;
      break;
    }
    if (line_start && in[i] == '.') ++i;  // dot-unstuffing
    line_start = false;
    if (i >= in.size()) break;
    char c = in[i];
    if (c == '\r' && (i + 1 >= in.size() || in[i + 1] != '\n')) {
      // A CR at the very end might be completed by more input: only the
      // generator below never ends the input with one.
      o.bare = true;
    }
    if (c == '\n' && (i == 0 || in[i - 1] != '\r')) o.bare = true;
    if (c == '\n' && i > 0 && in[i - 1] == '\r') line_start = true;
    o.out.push_back(c);
    ++i;
  }
  if (!o.done) o.consumed = in.size();
  o.size = o.out.size();
  return o;
}

// Long messages (so the 16-byte bulk path runs) with every kind of line:
// plain, empty, dot-stuffed, bare CR/LF at every offset, lines whose CRLF
// straddles a 16-byte block, the end marker; fed whole and in random pieces.
TEST(DataReaderTest, BulkPathMatchesByteAtATimeReference) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string msg;
    int lines = 1 + static_cast<int>(rng() % 40);
    for (int l = 0; l < lines; ++l) {
      int kind = static_cast<int>(rng() % 20);
      size_t len = rng() % 70;
      std::string line(len, 'a' + static_cast<char>(rng() % 26));
      if (kind == 0) line.insert(0, ".");                       // stuffed dot
      if (kind == 1) line.insert(0, "..");
      if (kind == 2 && !line.empty()) line[rng() % line.size()] = '\r';  // bare CR
      if (kind == 3 && !line.empty()) line[rng() % line.size()] = '\n';  // bare LF
      if (kind == 4) line.clear();
      msg += line;
      msg += (kind == 5) ? "\n" : (kind == 6 ? "\r" : "\r\n");  // bare endings too
    }
    if (!msg.empty() && msg.back() == '\r') msg += "x\r\n";
    if (rng() % 4 != 0) msg += ".\r\nMAIL FROM:<next@example.com>\r\n";
    Outcome want = Reference(msg);
    ASSERT_EQ(RunPieces({msg}), want) << testing::PrintToString(msg);
    std::vector<std::string_view> pieces;
    for (size_t at = 0; at < msg.size();) {
      size_t n = std::min<size_t>(msg.size() - at, 1 + rng() % 40);
      pieces.push_back(std::string_view(msg).substr(at, n));
      at += n;
    }
    Outcome got = RunPieces(pieces);
    // Pieces after the end are not fed: count what was consumed across them.
    ASSERT_EQ(got.out, want.out) << testing::PrintToString(msg);
    ASSERT_EQ(got.done, want.done);
    ASSERT_EQ(got.bare, want.bare) << testing::PrintToString(msg);
    ASSERT_EQ(got.size, want.size);
  }
}

TEST(LineEndingCheckTest, CrlfOnly) {
  EXPECT_TRUE(CheckOk({}));
  EXPECT_TRUE(CheckOk({"a\r\nb\r\n"}));
  EXPECT_TRUE(CheckOk({"a\r", "\nb"}));
  EXPECT_TRUE(CheckOk({"a\r", "", "\n"}));
  EXPECT_FALSE(CheckOk({"a\nb"}));
  EXPECT_FALSE(CheckOk({"a\rb"}));
  EXPECT_FALSE(CheckOk({"a\r", "b"}));
  EXPECT_FALSE(CheckOk({"a\r", "\r\n"}));
  EXPECT_FALSE(CheckOk({"a", "\n"}));
  EXPECT_FALSE(CheckOk({"\n"}));
}

TEST(LineEndingCheckTest, TrailingCrIsBareOnlyAtEnd) {
  LineEndingCheck c;
  c.Feed("abc\r");
  EXPECT_FALSE(c.bare());
  EXPECT_FALSE(c.ok_at_end());
  c.Feed("\n");
  EXPECT_FALSE(c.bare());
  EXPECT_TRUE(c.ok_at_end());
}

TEST(LineEndingCheckTest, SplitInvariance) {
  for (std::string_view in : {"a\r\nb\r\n", "a\r\r\n", "a\rb", "\r\n\r\n", "a\n", "\r",
                              "x\r\n\r", "\r\r\n\n"}) {
    bool whole = CheckOk({in});
    for (size_t i = 0; i <= in.size(); ++i) {
      EXPECT_EQ(CheckOk({in.substr(0, i), in.substr(i)}), whole)
          << testing::PrintToString(std::string(in)) << " split at " << i;
    }
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
    EXPECT_EQ(CheckOk(bytes), whole);
  }
}

}  // namespace
}  // namespace mxr::relay
