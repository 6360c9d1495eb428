#include "dkim/canon.h"

#include <random>
#include <string>

#include "dkim/canon_reference.h"
#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

// RFC 6376 3.4.5, the example of both algorithms.
TEST(CanonTest, Rfc6376Example) {
  std::string h1 = "A: X\r\n", h2 = "B : Y\t\r\n\tZ  \r\n";
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, h1), "a:X\r\n");
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, h2), "b:Y Z\r\n");
  EXPECT_EQ(CanonicalizeHeader(Canon::kSimple, h2), h2);
  std::string body = " C \r\nD \t E\r\n\r\n\r\n";
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, body), " C\r\nD E\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, body), " C \r\nD \t E\r\n");
}

TEST(CanonTest, EmptyBodies) {
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, ""), "\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, ""), "");
  // Only CRLFs: all trailing empty lines.
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, "\r\n\r\n\r\n"), "\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "\r\n\r\n\r\n"), "");
  // Lines of only whitespace are empty lines for relaxed, not for simple.
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, " \r\n\t\r\n  \t \r\n"), "");
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, " \r\n\t\r\n"), " \r\n\t\r\n");
}

TEST(CanonTest, EmptyLinesInsideAreKept) {
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "a\r\n\r\n \r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, "a\r\n\r\n \r\nb\r\n\r\n"), "a\r\n\r\n \r\nb\r\n");
  // More than the 8 CRLFs emitted at a time.
  std::string many = "a\r\n" + std::string(40, '\r') + "b";
  std::string crlfs;
  for (int i = 0; i < 20; ++i) crlfs += "\r\n";
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "a\r\n" + crlfs + "b\r\n"), "a\r\n" + crlfs + "b\r\n");
}

TEST(CanonTest, LastLineWithoutCrlfGetsOne) {
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, "abc"), "abc\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "abc"), "abc\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "abc  \t"), "abc\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "x\r\n  "), "x\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, "x\r\n  "), "x\r\n  \r\n");
}

TEST(CanonTest, WhitespaceRuns) {
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "a\t\tb  c \t d\r\n"), "a b c d\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "\ta\r\n"), " a\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "a b c\r\n"), "a b c\r\n");
  // Long runs crossing the 16-byte blocks of the vector scan.
  std::string line = std::string(5, 'x') + std::string(37, ' ') + "y" + std::string(20, '\t') + "\r\n";
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, line), "xxxxx y\r\n");
}

TEST(CanonTest, BareCrAndLfAreOrdinaryCharacters) {
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "a \rb\r\n"), "a \rb\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "a  \nb\r\n"), "a \nb\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kSimple, "\r\r\n"), "\r\r\n");
  EXPECT_EQ(CanonicalizeBody(Canon::kRelaxed, "x\r"), "x\r\r\n");
}

TEST(CanonTest, RelaxedHeaderForms) {
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, "SUBJECT:  a  \t b \r\n"), "subject:a b\r\n");
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, "Subject \t:x\r\n"), "subject:x\r\n");
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, "To: a,\r\n b,\r\n\tc\r\n"), "to:a, b, c\r\n");
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, "X-Empty:\r\n"), "x-empty:\r\n");
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, "X-Empty:   \r\n  \r\n"), "x-empty:\r\n");
  // 8-bit bytes (SMTPUTF8 headers) pass unchanged, in name case too.
  EXPECT_EQ(CanonicalizeHeader(Canon::kRelaxed, "Subject: \xc3\xa9t\xc3\xa9  \xe2\x82\xac\r\n"),
            "subject:\xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\n");
}

TEST(ParseMessageTest, FieldsAndBody) {
  ParsedMessage m = ParseMessage("Received: by us\r\n\tfolded\r\n",
                                 "From: a@b\r\nSubject : x\r\n  y\r\nno colon here\r\n\r\nbody\r\n");
  ASSERT_EQ(m.fields.size(), 4u);
  EXPECT_EQ(m.name(0), "Received");
  EXPECT_EQ(m.raw(0), "Received: by us\r\n\tfolded\r\n");
  EXPECT_EQ(m.name(1), "From");
  EXPECT_EQ(m.name(2), "Subject");
  EXPECT_EQ(m.raw(2), "Subject : x\r\n  y\r\n");
  EXPECT_EQ(m.name(3), "");
  EXPECT_EQ(m.body, "body\r\n");
}

TEST(ParseMessageTest, NoBodyNoEmptyLineAndNoHeaders) {
  ParsedMessage m = ParseMessage("", "Subject: only headers\r\n");
  ASSERT_EQ(m.fields.size(), 1u);
  EXPECT_EQ(m.body, "");
  m = ParseMessage("", "Subject: no crlf at all");
  ASSERT_EQ(m.fields.size(), 1u);
  EXPECT_EQ(m.raw(0), "Subject: no crlf at all\r\n");
  m = ParseMessage("X: 1\r\n", "\r\nbody only\r\n");
  ASSERT_EQ(m.fields.size(), 1u);
  EXPECT_EQ(m.body, "body only\r\n");
  m = ParseMessage("", "");
  EXPECT_TRUE(m.fields.empty());
  EXPECT_EQ(m.body, "");
}

TEST(ParseMessageTest, MissingHeaderEnd) {
  auto missing = [](std::string_view prefix, std::string_view msg) {
    return std::string(MissingHeaderEnd(ParseMessage(prefix, msg), msg));
  };
  EXPECT_EQ(missing("R: 1\r\n", "A: 1\r\n\r\nbody"), "");
  EXPECT_EQ(missing("R: 1\r\n", "\r\nbody"), "");
  EXPECT_EQ(missing("R: 1\r\n", "A: 1\r\n"), "\r\n");
  EXPECT_EQ(missing("R: 1\r\n", "A: 1"), "\r\n\r\n");
  EXPECT_EQ(missing("R: 1\r\n", ""), "\r\n");
  EXPECT_EQ(missing("", ""), "");
}

TEST(ParseMessageTest, ViewsSurviveAMove) {
  ParsedMessage a = ParseMessage("", "A: 1\r\n\r\n");  // short: the small-string buffer
  ParsedMessage b = std::move(a);
  EXPECT_EQ(b.raw(0), "A: 1\r\n");
  EXPECT_EQ(b.name(0), "A");
}

// Differential against the line-by-line reference (canon_reference.h) on
// random bodies over an alphabet chosen to hit every case.
TEST(CanonTest, MatchesReferenceOnRandomBodies) {
  std::mt19937 rng(16);
  const char alphabet[] = {' ', '\t', '\r', '\n', 'a', 'b', '.', '\x80', ' ', '\r', '\n'};
  for (int iter = 0; iter < 20000; ++iter) {
    size_t len = rng() % 90;
    std::string body;
    for (size_t i = 0; i < len; ++i) {
      if (rng() % 3 == 0) {
        body += "\r\n";
      } else {
        body += alphabet[rng() % sizeof alphabet];
      }
    }
    ASSERT_EQ(CanonicalizeBody(Canon::kRelaxed, body), reference::RelaxedBody(body)) << "body: " << body;
    ASSERT_EQ(CanonicalizeBody(Canon::kSimple, body), reference::SimpleBody(body)) << "body: " << body;
  }
}

TEST(CanonTest, RelaxedHeaderMatchesReferenceOnRandomFields) {
  std::mt19937 rng(6376);
  const char alphabet[] = {' ', '\t', 'A', 'b', ':', '\xc3', 'z'};
  for (int iter = 0; iter < 20000; ++iter) {
    std::string raw = "X-Field";
    raw += rng() % 2 ? "" : " \t";
    raw += ":";
    size_t lines = 1 + rng() % 3;
    for (size_t l = 0; l < lines; ++l) {
      if (l > 0) raw += rng() % 2 ? " " : "\t";
      size_t len = rng() % 12;
      for (size_t i = 0; i < len; ++i) raw += alphabet[rng() % sizeof alphabet];
      raw += "\r\n";
    }
    ASSERT_EQ(CanonicalizeHeader(Canon::kRelaxed, raw), reference::RelaxedHeader(raw)) << "raw: " << raw;
  }
}

}  // namespace
}  // namespace mxr::dkim
