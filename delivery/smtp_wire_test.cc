#include "delivery/smtp_client.h"

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The SMTP wire formats of the client, without a session: reply parsing and
// dot-stuffing (whole and in pieces).

// ---------------------------------------------------------------------------
// ReplyParser

// Parses `s` completely as a client would: returns the replies, or an empty
// vector with *error set.
std::vector<Reply> ParseAll(ReplyParser& p, std::string* buffer, std::string_view more,
                            bool* error) {
  buffer->append(more);
  std::string_view v = *buffer;
  std::vector<Reply> out;
  for (;;) {
    Reply r;
    auto res = p.Next(&v, &r);
    if (res == ReplyParser::Result::kNeedMore) break;
    if (res == ReplyParser::Result::kError) {
      *error = true;
      break;
    }
    out.push_back(r);
  }
  buffer->erase(0, buffer->size() - v.size());
  return out;
}

TEST(ReplyParserTest, SingleLineWithEnhancedCode) {
  ReplyParser p;
  std::string_view in = "250 2.1.5 Recipient ok\r\n";
  Reply r;
  ASSERT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "2.1.5");
  EXPECT_EQ(r.text, "Recipient ok");
  EXPECT_THAT(r.lines, ElementsAre("2.1.5 Recipient ok"));
  EXPECT_EQ(r.ToString(), "250 2.1.5 Recipient ok");
}

TEST(ReplyParserTest, MultiLine) {
  ReplyParser p;
  std::string_view in =
      "250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 SMTPUTF8\r\nREST";
  Reply r;
  ASSERT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
  EXPECT_EQ(in, "REST");
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "");
  EXPECT_THAT(r.lines, ElementsAre("mx.example Hello", "PIPELINING", "SIZE 1000", "SMTPUTF8"));
  EXPECT_EQ(r.text, "mx.example Hello PIPELINING SIZE 1000 SMTPUTF8");
  EXPECT_EQ(r.ToString(), "250 mx.example Hello PIPELINING SIZE 1000 SMTPUTF8");
}

TEST(ReplyParserTest, MultiLineEnhancedCodes) {
  ReplyParser p;
  std::string_view in =
      "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
      "550 5.1.1 Please try again.\r\n";
  Reply r;
  ASSERT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
  EXPECT_EQ(r.code, 550);
  EXPECT_EQ(r.enhanced, "5.1.1");
  EXPECT_EQ(r.text, "The email account that you tried to reach does not exist. Please try again.");
  EXPECT_EQ(r.lines.size(), 2u);
}

TEST(ReplyParserTest, EnhancedCodeTable) {
  struct Row {
    const char* line;
    int code;
    const char* enhanced;
    const char* text;
  } rows[] = {
      {"250 2.0.0 Ok: queued\r\n", 250, "2.0.0", "Ok: queued"},
      {"250 2.0.0\r\n", 250, "2.0.0", ""},
      {"451 4.7.1 Greylisted\r\n", 451, "4.7.1", "Greylisted"},
      {"554 5.7.1 Rejected\n", 554, "5.7.1", "Rejected"},  // bare LF tolerated
      {"550 4.1.1 class mismatch\r\n", 550, "", "4.1.1 class mismatch"},
      {"250 ok 2.0.0\r\n", 250, "", "ok 2.0.0"},
      {"250 2.0 short\r\n", 250, "", "2.0 short"},
      {"250 2.0.0.1 four parts\r\n", 250, "", "2.0.0.1 four parts"},
      {"250 2.x.0 letters\r\n", 250, "", "2.x.0 letters"},
      {"250\r\n", 250, "", ""},
      {"250 \r\n", 250, "", ""},
      {"221 2.0.0 Bye\r\n", 221, "2.0.0", "Bye"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.line);
    ReplyParser p;
    std::string_view in = row.line;
    Reply r;
    ASSERT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
    EXPECT_EQ(r.code, row.code);
    EXPECT_EQ(r.enhanced, row.enhanced);
    EXPECT_EQ(r.text, row.text);
  }
}

TEST(ReplyParserTest, NeedMoreKeepsPartialLine) {
  ReplyParser p;
  std::string buf;
  bool err = false;
  EXPECT_TRUE(ParseAll(p, &buf, "250-first\r\n250 sec", &err).empty());
  EXPECT_FALSE(err);
  EXPECT_EQ(buf, "250 sec");  // the complete first line was consumed
  auto got = ParseAll(p, &buf, "ond\r\n", &err);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].lines, ElementsAre("first", "second"));
  EXPECT_TRUE(buf.empty());
}

TEST(ReplyParserTest, SplitAtEveryByteBoundaryGivesTheSameReplies) {
  const std::string stream =
      "220 mx ESMTP\r\n"
      "250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
      "550-5.1.1 no such\r\n550 5.1.1 user\r\n"
      "354 go\r\n";
  ReplyParser ref;
  std::string rb;
  bool err = false;
  std::vector<Reply> want = ParseAll(ref, &rb, stream, &err);
  ASSERT_FALSE(err);
  ASSERT_EQ(want.size(), 4u);
  for (size_t i = 0; i <= stream.size(); ++i) {
    for (size_t j = i; j <= stream.size(); ++j) {
      ReplyParser p;
      std::string buf;
      std::vector<Reply> got;
      for (auto part : {std::string_view(stream).substr(0, i),
                        std::string_view(stream).substr(i, j - i),
                        std::string_view(stream).substr(j)}) {
        auto r = ParseAll(p, &buf, part, &err);
        got.insert(got.end(), r.begin(), r.end());
      }
      ASSERT_FALSE(err) << i << "," << j;
      ASSERT_EQ(got.size(), want.size()) << i << "," << j;
      for (size_t k = 0; k < want.size(); ++k) {
        EXPECT_EQ(got[k].code, want[k].code);
        EXPECT_EQ(got[k].enhanced, want[k].enhanced);
        EXPECT_EQ(got[k].text, want[k].text);
        EXPECT_EQ(got[k].lines, want[k].lines);
      }
      EXPECT_TRUE(buf.empty());
    }
  }
}

TEST(ReplyParserTest, MalformedLinesAreErrors) {
  const char* bad[] = {
      "25 ok\r\n",    "2x0 ok\r\n",  "abc ok\r\n", "250xok\r\n", "\r\n",
      " 250 ok\r\n",  "250_ok\r\n",  "25\r\n",     "+OK POP3\r\n",
      "HTTP/1.1 200 OK\r\n",
  };
  for (const char* line : bad) {
    ReplyParser p;
    std::string_view in = line;
    Reply r;
    EXPECT_EQ(p.Next(&in, &r), ReplyParser::Result::kError) << line;
  }
}

TEST(ReplyParserTest, MixedCodesInMultiLineReplyAreAnError) {
  ReplyParser p;
  std::string_view in = "250-mx\r\n251 other\r\n";
  Reply r;
  EXPECT_EQ(p.Next(&in, &r), ReplyParser::Result::kError);
  // A following well-formed reply starts afresh.
  in = "250 ok\r\n";
  ASSERT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
  EXPECT_EQ(r.code, 250);
  EXPECT_THAT(r.lines, ElementsAre("ok"));
}

TEST(ReplyParserTest, LineLengthLimit) {
  {
    ReplyParser p;
    std::string line = "250 " + std::string(4092, 'a') + "\r\n";  // 4096 + CRLF
    std::string_view in = line;
    Reply r;
    EXPECT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
  }
  {
    ReplyParser p;
    std::string line = "250 " + std::string(4093, 'a') + "\r\n";
    std::string_view in = line;
    Reply r;
    EXPECT_EQ(p.Next(&in, &r), ReplyParser::Result::kError);
  }
  {
    // No newline yet but already too long: an error, not an unbounded wait.
    ReplyParser p;
    std::string line = "250 " + std::string(5000, 'a');
    std::string_view in = line;
    Reply r;
    EXPECT_EQ(p.Next(&in, &r), ReplyParser::Result::kError);
  }
}

TEST(ReplyParserTest, LongestLineAcceptedWhateverTheSplit) {
  // A 4096-byte line is legal; it must not depend on whether its LF arrives
  // in the same read as its CR.
  const std::string line = "250 " + std::string(4092, 'a') + "\r\n";
  for (size_t cut : {line.size() - 2, line.size() - 1, line.size()}) {
    ReplyParser p;
    std::string buf;
    bool err = false;
    auto got = ParseAll(p, &buf, std::string_view(line).substr(0, cut), &err);
    EXPECT_FALSE(err) << "cut at " << cut;
    auto more = ParseAll(p, &buf, std::string_view(line).substr(cut), &err);
    got.insert(got.end(), more.begin(), more.end());
    EXPECT_FALSE(err) << "cut at " << cut;
    ASSERT_EQ(got.size(), 1u) << "cut at " << cut;
    EXPECT_EQ(got[0].text.size(), 4092u);
  }
}

TEST(ReplyParserTest, LineCountLimit) {
  auto make = [](int lines) {
    std::string s;
    for (int i = 0; i < lines - 1; ++i) s += "250-x\r\n";
    return s + "250 end\r\n";
  };
  {
    ReplyParser p;
    std::string s = make(200);
    std::string_view in = s;
    Reply r;
    ASSERT_EQ(p.Next(&in, &r), ReplyParser::Result::kReply);
    EXPECT_EQ(r.lines.size(), 200u);
  }
  {
    ReplyParser p;
    std::string s = make(201);
    std::string_view in = s;
    Reply r;
    EXPECT_EQ(p.Next(&in, &r), ReplyParser::Result::kError);
  }
}

// ---------------------------------------------------------------------------
// DotStuff

TEST(DotStuffTest, Table) {
  struct Row {
    const char* body;
    const char* want;
  } rows[] = {
      {"", "\r\n.\r\n"},
      {"\r\n", "\r\n.\r\n"},
      {"a\r\n", "a\r\n.\r\n"},
      {"a", "a\r\n.\r\n"},                           // no trailing CRLF
      {"a\r\nb", "a\r\nb\r\n.\r\n"},
      {".", "..\r\n.\r\n"},                          // leading dot
      {".a\r\n", "..a\r\n.\r\n"},
      {"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},          // dot after CRLF
      {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},  // a lone dot line
      {"a\r\n..\r\n", "a\r\n...\r\n.\r\n"},
      {".\r\n.\r\n", "..\r\n..\r\n.\r\n"},
      {"a\r\n.", "a\r\n..\r\n.\r\n"},                // ends in a dot, no CRLF
      {"a.b\r\n.c.\r\n", "a.b\r\n..c.\r\n.\r\n"},    // inner dots untouched
      {"\r\n\r\n.\r\n", "\r\n\r\n..\r\n.\r\n"},
  };
  for (const auto& row : rows) {
    std::string out;
    DotStuff(row.body, &out);
    EXPECT_EQ(out, row.want) << "body: " << testing::PrintToString(std::string(row.body));
  }
}

TEST(DotStuffTest, AppendsToExistingOutput) {
  std::string out = "DATA\r\n";
  DotStuff(".x", &out);
  EXPECT_EQ(out, "DATA\r\n..x\r\n.\r\n");
}

TEST(DotStuffTest, LargeBodyRoundTrips) {
  std::string body;
  for (int i = 0; i < 1000; ++i) body += (i % 3 == 0 ? "." : "") + std::to_string(i) + "\r\n";
  std::string out;
  DotStuff(body, &out);
  // Un-stuff and compare.
  ASSERT_TRUE(out.size() >= 3 && out.substr(out.size() - 3) == ".\r\n");
  std::string data = out.substr(0, out.size() - 3);
  std::string back;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t eol = data.find("\r\n", pos);
    std::string line = data.substr(pos, eol + 2 - pos);
    if (line[0] == '.') line.erase(0, 1);
    back += line;
    pos = eol + 2;
  }
  EXPECT_EQ(back, body);
}

// ---------------------------------------------------------------------------
// Dot-stuffing in pieces (the body streams to the socket as it drains).

TEST(DotStuffChunkTest, PiecesOfAnySizeEqualTheWhole) {
  std::string body = ".lead\r\nline\r\n..two\r\n.\r\nx\r\n.";
  for (int i = 0; i < 300; ++i) body += (i % 7 == 0) ? ".dot line\r\n" : "plain line of text\r\n";
  std::string whole;
  DotStuff(body, &whole);
  for (size_t piece : {1u, 2u, 3u, 5u, 16u, 17u, 100u, 4096u}) {
    std::string out;
    size_t pos = 0;
    for (int guard = 0; pos < body.size() && guard < 100000; ++guard) pos = DotStuffChunk(body, pos, piece, &out);
    DotStuffEnd(body, &out);
    EXPECT_EQ(out, whole) << "piece " << piece;
  }
}

}  // namespace
}  // namespace mxr::delivery
