#include "delivery/dsn.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int64_t kNowUs = 1'700'000'000'000'000;  // Tue, 14 Nov 2023 22:13:20 UTC

const char kOriginal[] =
    "Received: from client.example ([192.0.2.7])\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob@remote.example\r\n"
    "Subject: quarterly numbers\r\n"
    "\r\n"
    "SECRET BODY LINE ONE\r\n"
    "\r\n"
    "SECRET BODY LINE TWO\r\n";

queue::MessageMeta Original(std::string sender = "alice@example.com") {
  queue::MessageMeta m;
  m.id = queue::QueueId{1'699'999'000'000'000, 7};
  m.received_us = 1'699'999'000'000'000;
  m.sender = std::move(sender);
  m.recipients = {queue::Recipient{"bob@remote.example"}, queue::Recipient{"carol@remote.example"}};
  return m;
}

std::vector<FailedRecipient> TwoFailures() {
  return {
      FailedRecipient{"bob@remote.example", 550, "5.1.1", "User unknown", "mx1.remote.example"},
      FailedRecipient{"carol@remote.example", 451, "4.4.7",
                      "Delivery time expired: connection refused", ""},
  };
}

struct Part {
  std::map<std::string, std::string> headers;  // lower-case name -> value
  std::string body;
};

// Splits "Name: value\r\n..." (folded lines joined) up to the blank line.
std::map<std::string, std::string> ParseHeaders(std::string_view h) {
  std::map<std::string, std::string> out;
  std::string last;
  size_t pos = 0;
  while (pos < h.size()) {
    size_t eol = h.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = h.size();
    std::string_view line = h.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') {
      out[last] += std::string(line);
      continue;
    }
    size_t colon = line.find(':');
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && v[0] == ' ') v.remove_prefix(1);
    out[name] = std::string(v);
    last = name;
  }
  return out;
}

struct Parsed {
  std::map<std::string, std::string> headers;
  std::string boundary;
  std::string preamble;
  std::vector<Part> parts;
  std::string epilogue_marker;  // text after the last part's delimiter
};

Parsed ParseDsn(const std::string& msg) {
  Parsed p;
  size_t hend = msg.find("\r\n\r\n");
  EXPECT_NE(hend, std::string::npos);
  p.headers = ParseHeaders(std::string_view(msg).substr(0, hend + 2));
  const std::string& ct = p.headers["content-type"];
  size_t b = ct.find("boundary=\"");
  EXPECT_NE(b, std::string::npos) << ct;
  if (b == std::string::npos) return p;
  b += 10;
  p.boundary = ct.substr(b, ct.find('"', b) - b);
  const std::string delim = "\r\n--" + p.boundary;
  std::string rest = msg.substr(hend + 2);  // keep the CRLF before the first delimiter
  size_t pos = rest.find(delim);
  EXPECT_NE(pos, std::string::npos);
  p.preamble = rest.substr(0, pos);
  for (;;) {
    pos += delim.size();
    if (rest.compare(pos, 2, "--") == 0) {
      p.epilogue_marker = rest.substr(pos);
      break;
    }
    EXPECT_EQ(rest.compare(pos, 2, "\r\n"), 0);
    pos += 2;
    size_t next = rest.find(delim, pos);
    EXPECT_NE(next, std::string::npos);
    if (next == std::string::npos) break;
    std::string part = rest.substr(pos, next - pos);
    Part pt;
    size_t ph = part.find("\r\n\r\n");
    EXPECT_NE(ph, std::string::npos);
    pt.headers = ParseHeaders(std::string_view(part).substr(0, ph + 2));
    pt.body = part.substr(ph + 4);
    p.parts.push_back(std::move(pt));
    pos = next;
  }
  return p;
}

// Field groups of a message/delivery-status body, split at blank lines.
std::vector<std::map<std::string, std::string>> StatusGroups(const std::string& body) {
  std::vector<std::map<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\r\n\r\n", pos);
    std::string group = body.substr(pos, end == std::string::npos ? std::string::npos
                                                                  : end + 2 - pos);
    if (!group.empty() && group != "\r\n") out.push_back(ParseHeaders(group));
    if (end == std::string::npos) break;
    pos = end + 4;
  }
  return out;
}

void ExpectOnlyCrlf(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n') {
      ASSERT_TRUE(i > 0 && s[i - 1] == '\r') << "bare LF at " << i;
    }
    if (s[i] == '\r') {
      ASSERT_TRUE(i + 1 < s.size() && s[i + 1] == '\n') << "bare CR at " << i;
    }
  }
}

TEST(BuildDsnTest, EnvelopeAndTopLevelHeaders) {
  queue::QueueId id{kNowUs, 42};
  queue::NewMessage m = BuildDsn(Original(), kOriginal, TwoFailures(), "relay.test", id, kNowUs);
  // Envelope: null sender (a DSN never causes another DSN), one recipient =
  // the original sender.
  EXPECT_EQ(m.meta.sender, "");
  ASSERT_EQ(m.meta.recipients.size(), 1u);
  EXPECT_EQ(m.meta.recipients[0].address, "alice@example.com");
  EXPECT_EQ(m.meta.recipients[0].state, queue::RcptState::kPending);
  EXPECT_EQ(m.meta.id, id);
  EXPECT_EQ(m.meta.received_us, kNowUs);
  EXPECT_EQ(m.meta.next_attempt_us, kNowUs);
  EXPECT_EQ(m.meta.body_size, m.body.size());
  EXPECT_FALSE(m.meta.smtputf8);
  EXPECT_FALSE(m.meta.body_8bit);

  Parsed p = ParseDsn(m.body);
  EXPECT_EQ(p.headers["from"], "Mail Delivery System <MAILER-DAEMON@relay.test>");
  EXPECT_EQ(p.headers["to"], "<alice@example.com>");
  EXPECT_EQ(p.headers["mime-version"], "1.0");
  EXPECT_EQ(p.headers["auto-submitted"], "auto-replied");
  EXPECT_EQ(p.headers["date"], "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(p.headers["message-id"], "<" + id.ToString() + "@relay.test>");
  EXPECT_FALSE(p.headers["subject"].empty());
  EXPECT_THAT(p.headers["content-type"],
              StartsWith("multipart/report; report-type=delivery-status;"));
  EXPECT_FALSE(p.boundary.empty());
  EXPECT_EQ(p.epilogue_marker, "--\r\n");
  ExpectOnlyCrlf(m.body);
}

TEST(BuildDsnTest, ThreeParts) {
  queue::NewMessage m = BuildDsn(Original(), kOriginal, TwoFailures(), "relay.test",
                                 queue::QueueId{kNowUs, 1}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  // 1: human-readable.
  EXPECT_THAT(p.parts[0].headers["content-type"], StartsWith("text/plain"));
  EXPECT_THAT(p.parts[0].body,
              HasSubstr("<bob@remote.example>: host mx1.remote.example said: 550 5.1.1 User unknown"));
  EXPECT_THAT(p.parts[0].body, HasSubstr("<carol@remote.example>: 451 4.4.7 Delivery time expired"));
  // 2: machine-readable.
  EXPECT_EQ(p.parts[1].headers["content-type"], "message/delivery-status");
  // 3: the original's headers only.
  EXPECT_EQ(p.parts[2].headers["content-type"], "text/rfc822-headers");
  EXPECT_EQ(p.parts[2].body,
            "Received: from client.example ([192.0.2.7])\r\n"
            "From: Alice <alice@example.com>\r\n"
            "To: bob@remote.example\r\n"
            "Subject: quarterly numbers\r\n");
  EXPECT_THAT(m.body, Not(HasSubstr("SECRET BODY")));
}

TEST(BuildDsnTest, DeliveryStatusFields) {
  queue::QueueId orig_id = Original().id;
  queue::NewMessage m = BuildDsn(Original(), kOriginal, TwoFailures(), "relay.test",
                                 queue::QueueId{kNowUs, 1}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u) << p.parts[1].body;
  EXPECT_EQ(groups[0]["reporting-mta"], "dns; relay.test");
  EXPECT_EQ(groups[0]["x-mxrelay-queue-id"], orig_id.ToString());
  EXPECT_FALSE(groups[0]["arrival-date"].empty());

  auto& bob = groups[1];
  EXPECT_EQ(bob["final-recipient"], "rfc822; bob@remote.example");
  EXPECT_EQ(bob["action"], "failed");
  EXPECT_EQ(bob["status"], "5.1.1");
  EXPECT_EQ(bob["remote-mta"], "dns; mx1.remote.example");
  EXPECT_EQ(bob["diagnostic-code"], "smtp; 550 5.1.1 User unknown");
  EXPECT_EQ(bob["last-attempt-date"], "Tue, 14 Nov 2023 22:13:20 +0000");

  auto& carol = groups[2];
  EXPECT_EQ(carol["final-recipient"], "rfc822; carol@remote.example");
  EXPECT_EQ(carol["action"], "failed");
  EXPECT_EQ(carol["status"], "4.4.7");
  EXPECT_EQ(carol.count("remote-mta"), 0u);
  EXPECT_EQ(carol["diagnostic-code"], "X-mxrelay; Delivery time expired: connection refused");
}

TEST(BuildDsnTest, StatusDefaultsWithoutEnhancedCode) {
  std::vector<FailedRecipient> f = {
      {"p@r.example", 550, "", "no", "mx.r.example"},
      {"t@r.example", 451, "", "later", "mx.r.example"},
  };
  queue::NewMessage m = BuildDsn(Original(), kOriginal, f, "relay.test", queue::QueueId{1, 1}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[1]["status"], "5.0.0");
  EXPECT_EQ(groups[2]["status"], "4.0.0");
}

TEST(BuildDsnTest, BounceCategoryPerRecipientAndInTheText) {
  std::vector<FailedRecipient> f = TwoFailures();
  f[0].category = "invalid_recipient";  // f[1]: not classified, no field
  queue::NewMessage m = BuildDsn(Original(), kOriginal, f, "relay.test", queue::QueueId{1, 1}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_NE(p.parts[0].body.find("(category: invalid_recipient)"), std::string::npos) << p.parts[0].body;
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[1]["x-mxrelay-bounce-category"], "invalid_recipient");
  EXPECT_EQ(groups[2].count("x-mxrelay-bounce-category"), 0u);
}

TEST(BuildDsnTest, MultiLineServerTextCannotBreakTheReport) {
  std::vector<FailedRecipient> f = {
      {"bob@remote.example", 550, "5.7.1", "line one\r\nInjected: header\nmore\r", "mx.example"},
  };
  queue::NewMessage m = BuildDsn(Original(), kOriginal, f, "relay.test", queue::QueueId{1, 1}, kNowUs);
  ExpectOnlyCrlf(m.body);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1].count("injected"), 0u);
  EXPECT_THAT(groups[1]["diagnostic-code"], HasSubstr("line one"));
  EXPECT_THAT(groups[1]["diagnostic-code"], HasSubstr("more"));
}

TEST(BuildDsnTest, Utf8AddressSwitchesToGlobalDeliveryStatus) {
  std::vector<FailedRecipient> f = {
      {"用户@例子.广告", 550, "5.1.1", "unknown", "mx.example"},
      {"bob@remote.example", 550, "5.1.1", "unknown", "mx.example"},
  };
  queue::NewMessage m = BuildDsn(Original(), kOriginal, f, "relay.test", queue::QueueId{1, 1}, kNowUs);
  EXPECT_TRUE(m.meta.smtputf8);
  EXPECT_TRUE(m.meta.body_8bit);
  Parsed p = ParseDsn(m.body);
  EXPECT_THAT(p.headers["content-type"],
              StartsWith("multipart/report; report-type=global-delivery-status;"));
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[1].headers["content-type"], "message/global-delivery-status");
  EXPECT_EQ(p.parts[2].headers["content-type"], "message/global-headers");
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[1]["final-recipient"], "utf-8; 用户@例子.广告");
  EXPECT_EQ(groups[2]["final-recipient"], "rfc822; bob@remote.example");
  ExpectOnlyCrlf(m.body);
}

TEST(BuildDsnTest, Utf8SenderAlsoSwitches) {
  queue::NewMessage m = BuildDsn(Original("élise@exemple.fr"), kOriginal, TwoFailures(),
                                 "relay.test", queue::QueueId{1, 1}, kNowUs);
  EXPECT_TRUE(m.meta.smtputf8);
  ASSERT_EQ(m.meta.recipients.size(), 1u);
  EXPECT_EQ(m.meta.recipients[0].address, "élise@exemple.fr");
  Parsed p = ParseDsn(m.body);
  EXPECT_THAT(p.headers["content-type"], HasSubstr("report-type=global-delivery-status"));
  EXPECT_EQ(p.headers["to"], "<élise@exemple.fr>");
}

TEST(BuildDsnTest, BoundaryDependsOnIdAndDoesNotOccurInContent) {
  queue::NewMessage a = BuildDsn(Original(), kOriginal, TwoFailures(), "relay.test",
                                 queue::QueueId{kNowUs, 1}, kNowUs);
  queue::NewMessage b = BuildDsn(Original(), kOriginal, TwoFailures(), "relay.test",
                                 queue::QueueId{kNowUs, 2}, kNowUs);
  Parsed pa = ParseDsn(a.body), pb = ParseDsn(b.body);
  EXPECT_NE(pa.boundary, pb.boundary);
  for (const Part& part : pa.parts) EXPECT_THAT(part.body, Not(HasSubstr(pa.boundary)));
}

TEST(BuildDsnTest, OriginalWithoutBody) {
  const char original[] = "From: a@example.com\r\nSubject: s\r\n";
  queue::NewMessage m = BuildDsn(Original(), original, TwoFailures(), "relay.test",
                                 queue::QueueId{1, 1}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].body, original);
  ExpectOnlyCrlf(m.body);
}

TEST(HeaderSectionTest, Table) {
  struct Row {
    const char* message;
    const char* want;
  } rows[] = {
      {"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n"},
      {"A: 1\r\n\r\n", "A: 1\r\n"},
      {"A: 1\r\n\r\nbody\r\n\r\nmore\r\n", "A: 1\r\n"},   // first blank line only
      {"A: 1\r\n folded\r\n\r\nb", "A: 1\r\n folded\r\n"},
      {"A: 1\r\nB: 2\r\n", "A: 1\r\nB: 2\r\n"},           // no body: everything
      {"", ""},
      {"\r\nbody only\r\n", ""},                           // empty header section
      {"\r\n\r\nbody\r\n", ""},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(HeaderSection(row.message), row.want)
        << testing::PrintToString(std::string(row.message));
  }
}

// A message without a blank line is all header section: the DSN returned it
// whole (a 1 MiB message gave a 1 MiB DSN). It is capped now, cut at a line end.
TEST(DsnTest, HeaderSectionWithoutSeparatorIsCapped) {
  std::string original = "Subject: no separator\r\n";
  while (original.size() < (1u << 20)) original += "X-Filler: 0123456789012345678901234567890123456789\r\n";
  queue::NewMessage m = BuildDsn(Original(), original, TwoFailures(), "relay.test",
                                 queue::QueueId{1, 1}, kNowUs);
  EXPECT_LT(m.body.size(), kDsnMaxHeaderBytes + 8 * 1024);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_LE(p.parts[2].body.size(), kDsnMaxHeaderBytes + 2);
  EXPECT_THAT(p.parts[2].body, StartsWith("Subject: no separator\r\n"));
  EXPECT_THAT(p.parts[0].body, HasSubstr("cut at"));
  ExpectOnlyCrlf(m.body);
}

TEST(DsnTest, OneHugeHeaderLineIsCutAndEnded) {
  std::string original = "Subject: " + std::string(200000, 'a') + "\r\n\r\nbody\r\n";
  queue::NewMessage m = BuildDsn(Original(), original, TwoFailures(), "relay.test",
                                 queue::QueueId{1, 1}, kNowUs);
  EXPECT_LT(m.body.size(), kDsnMaxHeaderBytes + 8 * 1024);
  ExpectOnlyCrlf(m.body);
}

TEST(DsnTest, UnreadableOriginalSaysSo) {
  queue::NewMessage m = BuildDsn(Original(), "", TwoFailures(), "relay.test", queue::QueueId{1, 1}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_THAT(p.parts[0].body, HasSubstr("could not be read"));
  EXPECT_EQ(p.parts[2].body, "");
}

TEST(BoundedHeaderSectionTest, Table) {
  bool cut = false;
  EXPECT_EQ(BoundedHeaderSection("A: 1\r\nB: 2\r\n\r\nb", 100, &cut), "A: 1\r\nB: 2\r\n");
  EXPECT_FALSE(cut);
  EXPECT_EQ(BoundedHeaderSection("A: 1\r\nB: 2\r\n\r\nb", 10, &cut), "A: 1\r\n");
  EXPECT_TRUE(cut);
  EXPECT_EQ(BoundedHeaderSection("AAAAAAAAAAAAAAAA\r\n", 5, &cut), "AAAAA");
  EXPECT_TRUE(cut);
}

// ------------------------------------------------------------ RFC 3461

FailedRecipient Notice(const char* addr, const char* action, const char* orcpt = "") {
  FailedRecipient f{addr, 250, "2.0.0", "Ok queued", "mx1.remote.example"};
  f.action = action;
  f.orcpt = orcpt;
  return f;
}

TEST(BuildDsnTest, RelayedNoticeWithEnvidAndOriginalRecipient) {
  queue::MessageMeta o = Original();
  o.envid = "QQ314159+2Bx";
  o.dsn_ret = queue::DsnRet::kFull;  // not for a success DSN: headers only
  queue::NewMessage m = BuildDsn(o, kOriginal, {Notice("bob@remote.example", "relayed", "rfc822;Bob+40remote.example")},
                                 "relay.test", queue::QueueId{kNowUs, 2}, kNowUs);
  Parsed p = ParseDsn(m.body);
  EXPECT_EQ(p.headers["subject"], "Successful Mail Delivery Report");
  ASSERT_EQ(p.parts.size(), 3u);
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0]["original-envelope-id"], "QQ314159+x");  // decoded xtext
  EXPECT_EQ(groups[1]["action"], "relayed");
  EXPECT_EQ(groups[1]["status"], "2.0.0");
  EXPECT_EQ(groups[1]["original-recipient"], "rfc822;Bob@remote.example");
  EXPECT_EQ(groups[1]["final-recipient"], "rfc822; bob@remote.example");
  EXPECT_EQ(p.parts[2].headers["content-type"], "text/rfc822-headers");
  EXPECT_THAT(p.parts[2].body, Not(HasSubstr("SECRET BODY")));
  ExpectOnlyCrlf(m.body);
}

TEST(BuildDsnTest, RetFullReturnsTheWholeMessageInAFailureDsnWithinTheBound) {
  queue::MessageMeta o = Original();
  o.dsn_ret = queue::DsnRet::kFull;
  queue::NewMessage m = BuildDsn(o, kOriginal, TwoFailures(), "relay.test", queue::QueueId{kNowUs, 3}, kNowUs);
  Parsed p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].headers["content-type"], "message/rfc822");
  EXPECT_EQ(p.parts[2].body, kOriginal);
  // Over the bound: headers only.
  std::string big = std::string(kOriginal) + std::string(kDsnMaxFullBytes, 'x') + "\r\n";
  m = BuildDsn(o, big, TwoFailures(), "relay.test", queue::QueueId{kNowUs, 4}, kNowUs);
  p = ParseDsn(m.body);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].headers["content-type"], "text/rfc822-headers");
  EXPECT_LT(m.body.size(), 8192u);
  // RET=HDRS: headers only.
  o.dsn_ret = queue::DsnRet::kHeaders;
  m = BuildDsn(o, kOriginal, TwoFailures(), "relay.test", queue::QueueId{kNowUs, 5}, kNowUs);
  EXPECT_THAT(m.body, Not(HasSubstr("SECRET BODY")));
}

TEST(BuildDsnTest, DelayedNoticeAndUnprintableXtextStaysEncoded) {
  queue::MessageMeta o = Original();
  o.envid = "a+0D+0AInjected:+20x";
  FailedRecipient f{"carol@remote.example", 451, "4.2.0", "busy", "mx1.remote.example"};
  f.action = "delayed";
  queue::NewMessage m = BuildDsn(o, kOriginal, {f}, "relay.test", queue::QueueId{kNowUs, 6}, kNowUs);
  Parsed p = ParseDsn(m.body);
  EXPECT_EQ(p.headers["subject"], "Delayed Mail (still being retried)");
  auto groups = StatusGroups(p.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0]["original-envelope-id"], "a+0D+0AInjected:+20x");
  EXPECT_EQ(groups[1]["action"], "delayed");
  EXPECT_EQ(groups[1]["status"], "4.2.0");
  EXPECT_EQ(groups[0].count("injected"), 0u);
}

TEST(DsnParamsOut, MailAndRcptParameters) {
  queue::MessageMeta o = Original();
  EXPECT_EQ(MailDsnParams(o), "");
  o.dsn_ret = queue::DsnRet::kHeaders;
  o.envid = "E+2B1";
  EXPECT_EQ(MailDsnParams(o), " RET=HDRS ENVID=E+2B1");
  queue::Recipient r{"bob@remote.example"};
  EXPECT_EQ(RcptDsnParams(r), "");
  r.notify = queue::kNotifySuccess | queue::kNotifyDelay;
  r.orcpt = "rfc822;bob@remote.example";
  EXPECT_EQ(RcptDsnParams(r), " NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@remote.example");
  r.notify = queue::kNotifyNever;
  r.orcpt.clear();
  EXPECT_EQ(RcptDsnParams(r), " NOTIFY=NEVER");
}

}  // namespace
}  // namespace mxr::delivery
