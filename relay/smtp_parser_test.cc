#include "relay/smtp_parser.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------- NextLine

TEST(NextLineTest, CrlfLine) {
  size_t used = 99;
  std::string_view line;
  bool bare = true;
  EXPECT_EQ(NextLine("NOOP\r\nQUIT\r\n", 1000, &used, &line, &bare), LineStatus::kLine);
  EXPECT_EQ(line, "NOOP");
  EXPECT_EQ(used, 6u);
  EXPECT_FALSE(bare);
}

TEST(NextLineTest, BareLfIsFlagged) {
  size_t used = 0;
  std::string_view line;
  bool bare = false;
  EXPECT_EQ(NextLine("NOOP\nQUIT\r\n", 1000, &used, &line, &bare), LineStatus::kLine);
  EXPECT_EQ(line, "NOOP");
  EXPECT_EQ(used, 5u);
  EXPECT_TRUE(bare);
}

TEST(NextLineTest, EmptyLines) {
  size_t used = 0;
  std::string_view line = "x";
  bool bare = true;
  EXPECT_EQ(NextLine("\r\n", 1000, &used, &line, &bare), LineStatus::kLine);
  EXPECT_EQ(line, "");
  EXPECT_EQ(used, 2u);
  EXPECT_FALSE(bare);
  EXPECT_EQ(NextLine("\n", 1000, &used, &line, &bare), LineStatus::kLine);
  EXPECT_EQ(line, "");
  EXPECT_EQ(used, 1u);
  EXPECT_TRUE(bare);
}

TEST(NextLineTest, BareLfPointerIsOptional) {
  size_t used = 0;
  std::string_view line;
  EXPECT_EQ(NextLine("A\n", 10, &used, &line), LineStatus::kLine);
  EXPECT_EQ(line, "A");
}

TEST(NextLineTest, NeedMore) {
  size_t used = 0;
  std::string_view line;
  EXPECT_EQ(NextLine("", 10, &used, &line), LineStatus::kNeedMore);
  EXPECT_EQ(NextLine("NOOP", 10, &used, &line), LineStatus::kNeedMore);
  EXPECT_EQ(NextLine("NOOP\r", 10, &used, &line), LineStatus::kNeedMore);
  // 9 bytes, limit 10: could still end in time.
  EXPECT_EQ(NextLine("123456789", 10, &used, &line), LineStatus::kNeedMore);
}

TEST(NextLineTest, LimitCountsTheCrlf) {
  size_t used = 0;
  std::string_view line;
  // Exactly max_len bytes including CRLF: accepted.
  EXPECT_EQ(NextLine("12345678\r\n", 10, &used, &line), LineStatus::kLine);
  EXPECT_EQ(line, "12345678");
  EXPECT_EQ(used, 10u);
  // One more byte: the LF is at offset 10, outside the limit.
  EXPECT_EQ(NextLine("123456789\r\n", 10, &used, &line), LineStatus::kTooLong);
  // Exactly max_len bytes without any LF: too long (cannot end in time).
  EXPECT_EQ(NextLine("1234567890", 10, &used, &line), LineStatus::kTooLong);
  // Bare LF exactly at the limit still counts.
  bool bare = false;
  EXPECT_EQ(NextLine("123456789\n", 10, &used, &line, &bare), LineStatus::kLine);
  EXPECT_TRUE(bare);
  EXPECT_EQ(used, 10u);
}

TEST(NextLineTest, LaterLfBeyondLimitIsTooLong) {
  size_t used = 0;
  std::string_view line;
  std::string s(20, 'a');
  s += "\r\n";
  EXPECT_EQ(NextLine(s, 10, &used, &line), LineStatus::kTooLong);
}

// ----------------------------------------------------------- ParseCommand

struct VerbCase {
  const char* word;
  Verb verb;
};

TEST(ParseCommandTest, AllVerbsCaseInsensitive) {
  const VerbCase cases[] = {
      {"HELO", Verb::kHelo}, {"EHLO", Verb::kEhlo}, {"MAIL", Verb::kMail},
      {"RCPT", Verb::kRcpt}, {"DATA", Verb::kData}, {"BDAT", Verb::kBdat},
      {"RSET", Verb::kRset}, {"NOOP", Verb::kNoop}, {"QUIT", Verb::kQuit},
      {"VRFY", Verb::kVrfy}, {"EXPN", Verb::kExpn}, {"HELP", Verb::kHelp},
      {"STARTTLS", Verb::kStartTls}, {"AUTH", Verb::kAuth},
  };
  for (const auto& c : cases) {
    std::string upper = c.word;
    std::string lower = upper;
    for (char& ch : lower) ch = static_cast<char>(ch - 'A' + 'a');
    std::string mixed = upper;
    for (size_t i = 0; i < mixed.size(); i += 2) mixed[i] = lower[i];
    for (const std::string& w : {upper, lower, mixed}) {
      Command cmd = ParseCommand(w);
      EXPECT_EQ(cmd.verb, c.verb) << w;
      EXPECT_EQ(cmd.arg, "") << w;
      const std::string with_arg = w + "   some arg  \t ";  // arg points into it
      cmd = ParseCommand(with_arg);
      EXPECT_EQ(cmd.verb, c.verb) << w;
      EXPECT_EQ(cmd.arg, "some arg") << w;
    }
    EXPECT_EQ(VerbName(c.verb), upper);
  }
}

TEST(ParseCommandTest, UnknownVerbs) {
  EXPECT_EQ(ParseCommand("").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("MAILX FROM:<a@b>").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("MAI").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand(" MAIL FROM:<a@b>").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("STARTTLSX").verb, Verb::kUnknown);
  EXPECT_EQ(VerbName(Verb::kUnknown), "UNKNOWN");
}

TEST(ParseCommandTest, ArgKeepsInnerSpacing) {
  Command c = ParseCommand("MAIL FROM:<a@b>  SIZE=10 ");
  EXPECT_EQ(c.verb, Verb::kMail);
  EXPECT_EQ(c.arg, "FROM:<a@b>  SIZE=10");
}

// ------------------------------------------------------------ MAIL / RCPT

TEST(ParseMailFromTest, SimpleAndKeywordCaseInsensitive) {
  auto r = ParseMailFrom("FROM:<alice@example.com>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "alice@example.com");
  EXPECT_FALSE(r.has_utf8);
  EXPECT_FALSE(r.size_given);
  EXPECT_FALSE(r.body_8bit);
  EXPECT_FALSE(r.smtputf8);

  r = ParseMailFrom("from:<Alice@Example.COM>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "Alice@Example.COM");  // case preserved
}

TEST(ParseMailFromTest, ToleratesSpaceAfterColon) {
  auto r = ParseMailFrom("FROM: <a@b.c>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "a@b.c");
}

TEST(ParseMailFromTest, NullSenderOnlyForMail) {
  auto r = ParseMailFrom("FROM:<>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "");

  auto t = ParseRcptTo("TO:<>");
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.code, 501);
  EXPECT_EQ(t.enhanced, "5.1.3");
}

TEST(ParseMailFromTest, Parameters) {
  auto r = ParseMailFrom("FROM:<a@b.c> SIZE=12345 BODY=8BITMIME SMTPUTF8 AUTH=<>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_TRUE(r.size_given);
  EXPECT_EQ(r.size, 12345u);
  EXPECT_TRUE(r.body_8bit);
  EXPECT_TRUE(r.smtputf8);

  r = ParseMailFrom("FROM:<a@b.c> size=0 body=7bit smtputf8");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_TRUE(r.size_given);
  EXPECT_EQ(r.size, 0u);
  EXPECT_FALSE(r.body_8bit);
  EXPECT_TRUE(r.smtputf8);

  r = ParseMailFrom("FROM:<a@b.c>    SIZE=18446744073709551615");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.size, 18446744073709551615ull);
}

TEST(ParseMailFromTest, BadParameterValues) {
  for (const char* arg : {"FROM:<a@b.c> SIZE=", "FROM:<a@b.c> SIZE=abc", "FROM:<a@b.c> SIZE=-1",
                          "FROM:<a@b.c> SIZE=18446744073709551616", "FROM:<a@b.c> SIZE",
                          "FROM:<a@b.c> BODY=BINARYMIME", "FROM:<a@b.c> SMTPUTF8=yes",
                          "FROM:<a@b.c>SIZE=10", "FROM:<a@b.c> =x"}) {
    auto r = ParseMailFrom(arg);
    EXPECT_FALSE(r.ok) << arg;
    EXPECT_EQ(r.code, 501) << arg;
    EXPECT_EQ(r.enhanced, "5.5.4") << arg;
  }
}

TEST(ParseMailFromTest, UnknownParameterIs555) {
  auto r = ParseMailFrom("FROM:<a@b.c> FOO=bar");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 555);
  EXPECT_EQ(r.enhanced, "5.5.4");
  EXPECT_THAT(r.text, HasSubstr("FOO"));

  r = ParseMailFrom("FROM:<a@b.c> NOTIFY=NEVER");  // RFC 3461: a RCPT parameter
  EXPECT_EQ(r.code, 555);
}

// Fuzz finding param-echo-cr: an unknown keyword was echoed verbatim, so a
// CR (or any control byte) in it reached the reply ("555 ... X\r250 ...").
TEST(ParseMailFromTest, ParameterSyntaxCheckedBeforeEcho) {
  for (std::string arg : {std::string("FROM:<a@b.c> X\r250"), std::string("FROM:<a@b.c> X\r250=1"),
                          std::string("FROM:<a@b.c> FOO=a\rb"), std::string("FROM:<a@b.c> -X=1"),
                          std::string("FROM:<a@b.c> X_Y=1"), std::string("FROM:<a@b.c> X\x01"),
                          std::string("FROM:<a@b.c> FOO="), std::string("FROM:<a@b.c> FOO=a\tb"),
                          std::string("FROM:<a@b.c> ") + std::string(65, 'K'),
                          std::string("FROM:<a@b.c> X=\x7f")}) {
    auto r = ParseMailFrom(arg);
    EXPECT_FALSE(r.ok) << arg;
    EXPECT_EQ(r.code, 501) << arg;
    EXPECT_EQ(r.enhanced, "5.5.4") << arg;
    EXPECT_EQ(r.text.find_first_of("\r\n\x01\x7f"), std::string::npos) << arg;
  }
  // Valid keywords with hyphens, and UTF-8 values (RFC 6531), still reach the
  // known/unknown check; an unknown one is echoed.
  auto r = ParseMailFrom("FROM:<a@b.c> X-FOO-1=v");
  EXPECT_EQ(r.code, 555);
  EXPECT_THAT(r.text, HasSubstr("X-FOO-1"));
  r = ParseMailFrom("FROM:<a@b.c> AUTH=<j\xc3\xb6rg@b.c>");
  EXPECT_TRUE(r.ok) << r.text;
}

TEST(ParseRcptToTest, MailParametersAreUnknownOnRcpt) {
  for (const char* arg : {"TO:<a@b.c> SIZE=10", "TO:<a@b.c> BODY=8BITMIME", "TO:<a@b.c> SMTPUTF8",
                          "TO:<a@b.c> RET=HDRS", "TO:<a@b.c> ENVID=x"}) {
    auto r = ParseRcptTo(arg);
    EXPECT_FALSE(r.ok) << arg;
    EXPECT_EQ(r.code, 555) << arg;
    EXPECT_EQ(r.enhanced, "5.5.4") << arg;
  }
}

TEST(ParseRcptToTest, Simple) {
  auto r = ParseRcptTo("TO:<bob@example.org>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "bob@example.org");
  r = ParseRcptTo("to:<bob@example.org>   ");  // trailing spaces (not trimmed by caller)
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "bob@example.org");
}

TEST(ParsePathTest, MissingAngleBrackets) {
  for (const char* arg : {"FROM:a@b.c", "FROM:<a@b.c", "FROM:", "FROM:a@b.c>"}) {
    auto r = ParseMailFrom(arg);
    EXPECT_FALSE(r.ok) << arg;
    EXPECT_EQ(r.code, 501) << arg;
  }
  auto r = ParseRcptTo("TO:bob@example.org");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
}

TEST(ParsePathTest, WrongKeyword) {
  auto r = ParseMailFrom("TO:<a@b.c>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
  EXPECT_EQ(r.enhanced, "5.5.4");
  r = ParseRcptTo("FROM:<a@b.c>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
  r = ParseMailFrom("FROM <a@b.c>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
}

TEST(ParsePathTest, SourceRouteRefused) {
  auto r = ParseRcptTo("TO:<@a.example,@b.example:u@c.example>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
  EXPECT_THAT(r.text, HasSubstr("Source route"));
  r = ParseMailFrom("FROM:<@a,@b:u@c>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
  EXPECT_THAT(r.text, HasSubstr("Source route"));
}

TEST(ParsePathTest, QuotedLocalParts) {
  auto r = ParseRcptTo(R"(TO:<"john doe"@example.com>)");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, R"("john doe"@example.com)");

  // '>' inside the quotes does not end the path.
  r = ParseRcptTo(R"(TO:<"a>b"@example.com>)");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, R"("a>b"@example.com)");

  // '@' inside the quotes is not the domain separator.
  r = ParseRcptTo(R"(TO:<"x@y"@example.com>)");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, R"("x@y"@example.com)");

  // Quoted pairs, including an escaped quote and an escaped '>'.
  r = ParseMailFrom(R"(FROM:<"a\"b\>c"@example.com> SIZE=1)");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, R"("a\"b\>c"@example.com)");
  EXPECT_TRUE(r.size_given);

  // Unterminated or malformed quoting.
  EXPECT_FALSE(ParseRcptTo(R"(TO:<"abc@example.com>)").ok);
  EXPECT_FALSE(ParseRcptTo(R"(TO:<"a"b"@example.com>)").ok);
  EXPECT_FALSE(ParseRcptTo(R"(TO:<"ab\"@example.com>)").ok);
}

TEST(ParsePathTest, DotAtomRules) {
  EXPECT_TRUE(ParseRcptTo("TO:<first.last+tag@example.com>").ok);
  EXPECT_TRUE(ParseRcptTo("TO:<!#$%&'*+-/=?^_`{|}~@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<.a@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a.@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a..b@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a b@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a(b)@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<noatsign>").ok);
  auto r = ParseRcptTo("TO:<a@>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
  EXPECT_EQ(r.enhanced, "5.1.3");
  r = ParseMailFrom("FROM:<a@>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.enhanced, "5.1.7");
}

TEST(ParsePathTest, DomainRules) {
  EXPECT_TRUE(ParseRcptTo("TO:<a@localhost>").ok);
  EXPECT_TRUE(ParseRcptTo("TO:<a@sub-domain.example-1.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@example.com.>").ok);  // trailing dot
  EXPECT_FALSE(ParseRcptTo("TO:<a@.example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@exa..mple.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@-example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@example-.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@example.com->").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@exa_mple.com>").ok);
  EXPECT_TRUE(ParseRcptTo("TO:<a@" + std::string(63, 'x') + ".com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@" + std::string(64, 'x') + ".com>").ok);

  bool utf8 = false;
  EXPECT_THAT(CheckMailbox("a@example.com.", &utf8), HasSubstr("dot"));
  EXPECT_EQ(CheckMailbox("a@example.com", &utf8), "");
}

TEST(ParsePathTest, AddressLiterals) {
  auto r = ParseRcptTo("TO:<postmaster@[127.0.0.1]>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "postmaster@[127.0.0.1]");
  r = ParseRcptTo("TO:<postmaster@[IPv6:::1]>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.address, "postmaster@[IPv6:::1]");
  EXPECT_TRUE(ParseRcptTo("TO:<a@[IPv6:2001:db8::1]>").ok);

  EXPECT_FALSE(ParseRcptTo("TO:<a@[::1]>").ok);              // v6 needs the tag
  EXPECT_FALSE(ParseRcptTo("TO:<a@[IPv6:127.0.0.1]>").ok);   // v4 with v6 tag
  EXPECT_FALSE(ParseRcptTo("TO:<a@[256.0.0.1]>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@[127.0.0.1>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@[example.com]>").ok);
  // Fuzz finding ip-nul: brackets inside the literal and a NUL were accepted.
  EXPECT_FALSE(ParseRcptTo("TO:<a@[[127.0.0.1]]>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<a@[IPv6:[::1]]>").ok);
  EXPECT_FALSE(ParseRcptTo(std::string("TO:<a@[127.0.0.1\0\x01]>", 20)).ok);
  bool utf8 = false;
  EXPECT_NE(CheckMailbox(std::string_view("a@[127.0.0.1\0]", 14), &utf8), "");
}

TEST(ParsePathTest, LocalPartLimit) {
  std::string lp64(64, 'a');
  auto r = ParseRcptTo("TO:<" + lp64 + "@example.com>");
  ASSERT_TRUE(r.ok) << r.text;
  r = ParseRcptTo("TO:<" + lp64 + "a@example.com>");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
  EXPECT_THAT(r.text, HasSubstr("64"));
  // The limit counts octets, not characters: 32 two-byte characters = 64 octets.
  std::string u32;
  for (int i = 0; i < 32; ++i) u32 += "\xc3\xa9";
  EXPECT_TRUE(ParseRcptTo("TO:<" + u32 + "@example.com>").ok);
  EXPECT_FALSE(ParseRcptTo("TO:<" + u32 + "e@example.com>").ok);
}

TEST(ParsePathTest, OverlongPathRejected) {
  std::string domain;
  while (domain.size() < 250) domain += "abcdefghi.";
  domain += "com";
  auto r = ParseRcptTo("TO:<a@" + domain + ">");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.code, 501);
}

TEST(ParsePathTest, Utf8Mailbox) {
  auto r = ParseMailFrom("FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_TRUE(r.has_utf8);
  EXPECT_TRUE(r.smtputf8);
  // The parser reports has_utf8 even without the parameter; the session decides.
  r = ParseRcptTo("TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8>");
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_TRUE(r.has_utf8);
  r = ParseRcptTo("TO:<\xf0\x9f\x98\x80@example.com>");  // 4-byte sequence
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_TRUE(r.has_utf8);
  r = ParseRcptTo("TO:<\"\xc3\xa9 x\"@example.com>");  // inside quotes
  ASSERT_TRUE(r.ok) << r.text;
  EXPECT_TRUE(r.has_utf8);
  r = ParseRcptTo("TO:<plain@example.com>");
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.has_utf8);
}

TEST(ParsePathTest, InvalidUtf8Rejected) {
  const char* bad[] = {
      "TO:<\xc3@example.com>",              // truncated
      "TO:<\xc3(@example.com>",             // bad continuation
      "TO:<\xc0\xaf@example.com>",          // overlong 2-byte
      "TO:<\xe0\x80\xaf@example.com>",      // overlong 3-byte
      "TO:<\xed\xa0\x80@example.com>",      // surrogate
      "TO:<\xf4\x90\x80\x80@example.com>",  // > U+10FFFF
      "TO:<\xf0\x80\x80\xaf@example.com>",  // overlong 4-byte
      "TO:<\xff@example.com>",
      "TO:<\x80@example.com>",              // lone continuation
      "TO:<a@ex\xc3mple.com>",              // in the domain
      "TO:<\"\xc3\"@example.com>",          // in quotes, truncated by the quote
  };
  for (const char* arg : bad) {
    auto r = ParseRcptTo(arg);
    EXPECT_FALSE(r.ok) << testing::PrintToString(std::string(arg));
    EXPECT_EQ(r.code, 501);
  }
}

TEST(ParsePathTest, ControlCharactersRejected) {
  EXPECT_FALSE(ParseRcptTo(std::string("TO:<a\x01" "b@example.com>")).ok);
  EXPECT_FALSE(ParseRcptTo(std::string("TO:<\"a\x7f\"@example.com>")).ok);
  EXPECT_FALSE(ParseRcptTo(std::string("TO:<a@exa") + '\0' + "mple.com>").ok);
}

// ------------------------------------------------------------------ BDAT

TEST(ParseBdatTest, Valid) {
  auto b = ParseBdat("100");
  EXPECT_TRUE(b.ok);
  EXPECT_EQ(b.size, 100u);
  EXPECT_FALSE(b.last);
  b = ParseBdat("0 LAST");
  EXPECT_TRUE(b.ok);
  EXPECT_EQ(b.size, 0u);
  EXPECT_TRUE(b.last);
  b = ParseBdat("42   last");
  EXPECT_TRUE(b.ok);
  EXPECT_EQ(b.size, 42u);
  EXPECT_TRUE(b.last);
}

TEST(ParseBdatTest, Invalid) {
  for (const char* arg : {"", "LAST", "abc", "-1", "+1", "10 FIRST", "10 LAST x", "1x",
                          "99999999999999999999999"}) {
    EXPECT_FALSE(ParseBdat(arg).ok) << arg;
  }
}

}  // namespace
}  // namespace mxr::relay
