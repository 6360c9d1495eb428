#include "relay/headers.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int64_t kNow = 1'700'000'000'123'456;  // Tue, 14 Nov 2023 22:13:20.123456 UTC

TEST(Rfc5322DateTest, FixedTimestamps) {
  EXPECT_EQ(Rfc5322Date(kNow), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(Rfc5322Date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(Rfc5322Date(1'709'251'199'999'999), "Thu, 29 Feb 2024 23:59:59 +0000");
}

TEST(ScanHeadersTest, FindsDateAndMessageIdCaseInsensitively) {
  HeaderPresence p = ScanHeaders("From: a@b\r\nDATE: x\r\nmessage-ID: <1@b>\r\n\r\nbody\r\n");
  EXPECT_TRUE(p.date);
  EXPECT_TRUE(p.message_id);
  p = ScanHeaders("date: x\r\n\r\n");
  EXPECT_TRUE(p.date);
  EXPECT_FALSE(p.message_id);
  p = ScanHeaders("Subject: x\r\nMessage-Id: <1@b>\r\n\r\n");
  EXPECT_FALSE(p.date);
  EXPECT_TRUE(p.message_id);
}

TEST(ScanHeadersTest, CountsReceivedFieldsInTheHeaderSectionOnly) {
  EXPECT_EQ(ScanHeaders("Received: a\r\n\tfolded\r\nRECEIVED: b\r\nreceived:c\r\nX-Received: no\r\n"
                        "Subject: Received: no\r\n\r\nReceived: body\r\n")
                .received,
            3);
  EXPECT_EQ(ScanHeaders("Subject: x\r\n\r\n").received, 0);
}

TEST(ScanHeadersTest, OnlyInTheHeaderSection) {
  HeaderPresence p = ScanHeaders("Subject: x\r\n\r\nDate: today\r\nMessage-ID: <1@b>\r\n");
  EXPECT_FALSE(p.date);
  EXPECT_FALSE(p.message_id);
  // A body with no header section at all.
  p = ScanHeaders("\r\nDate: today\r\n");
  EXPECT_FALSE(p.date);
  EXPECT_FALSE(p.message_id);
}

TEST(ScanHeadersTest, SimilarNamesDoNotCount) {
  HeaderPresence p = ScanHeaders(
      "X-Date: x\r\nResent-Date: x\r\nDated: x\r\nIn-Reply-To: <Message-ID:>\r\n"
      "X-Message-ID: <1@b>\r\nSubject: Date: x\r\n\r\n");
  EXPECT_FALSE(p.date);
  EXPECT_FALSE(p.message_id);
}

TEST(ScanHeadersTest, HeaderOnlyMessageAndNoFinalCrlf) {
  EXPECT_TRUE(ScanHeaders("Date: x").date);
  EXPECT_TRUE(ScanHeaders("Subject: y\r\nMessage-ID: <z@q>").message_id);
  HeaderPresence p = ScanHeaders("");
  EXPECT_FALSE(p.date);
  EXPECT_FALSE(p.message_id);
}

TraceInfo BaseInfo() {
  TraceInfo t;
  t.helo = "client.example";
  t.client_ip = "192.0.2.7";
  t.hostname = "mx.example";
  t.protocol = "ESMTP";
  t.queue_id = "0123456789abcdef01234567";
  t.now_us = kNow;
  return t;
}

TEST(TraceHeadersTest, ExactFormWithoutTlsOrAuth) {
  std::string h = TraceHeaders(BaseInfo(), HeaderPresence{});
  EXPECT_EQ(h,
            "Received: from client.example ([192.0.2.7])\r\n"
            "\tby mx.example (mxrelay) with ESMTP id 0123456789abcdef01234567;\r\n"
            "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            "Message-ID: <0123456789abcdef01234567@mx.example>\r\n");
}

TEST(TraceHeadersTest, AddsDateAndMessageIdOnlyWhenMissing) {
  TraceInfo t = BaseInfo();
  std::string h = TraceHeaders(t, HeaderPresence{.date = true, .message_id = false});
  EXPECT_THAT(h, Not(HasSubstr("\r\nDate:")));
  EXPECT_THAT(h, HasSubstr("\r\nMessage-ID: <0123456789abcdef01234567@mx.example>\r\n"));

  h = TraceHeaders(t, HeaderPresence{.date = false, .message_id = true});
  EXPECT_THAT(h, HasSubstr("\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
  EXPECT_THAT(h, Not(HasSubstr("Message-ID")));

  h = TraceHeaders(t, HeaderPresence{.date = true, .message_id = true});
  EXPECT_THAT(h, StartsWith("Received: "));
  EXPECT_THAT(h, Not(HasSubstr("Date:")));
  EXPECT_THAT(h, Not(HasSubstr("Message-ID")));
  // Just the Received header: one field, all continuation lines folded.
  EXPECT_EQ(h.find("\r\n", h.size() - 2), h.size() - 2);
  for (size_t pos = h.find("\r\n"); pos + 2 < h.size(); pos = h.find("\r\n", pos + 2)) {
    EXPECT_EQ(h[pos + 2], '\t') << h;
  }
}

TEST(TraceHeadersTest, TlsAuthAndSingleRecipient) {
  TraceInfo t = BaseInfo();
  t.protocol = "ESMTPSA";
  t.tls_version = "TLSv1.3";
  t.tls_cipher = "TLS_AES_256_GCM_SHA384";
  t.auth_user = "alice@example.com";
  t.single_rcpt = "bob@example.org";
  std::string h = TraceHeaders(t, HeaderPresence{.date = true, .message_id = true});
  EXPECT_EQ(h,
            "Received: from client.example ([192.0.2.7])\r\n"
            "\tby mx.example (mxrelay) with ESMTPSA id 0123456789abcdef01234567\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
            "\t(authenticated user alice@example.com)\r\n"
            "\tfor <bob@example.org>;\r\n"
            "\tTue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST(TraceHeadersTest, UnknownHeloAndClientControlledValuesSanitised) {
  TraceInfo t = BaseInfo();
  t.helo = "";
  std::string h = TraceHeaders(t, HeaderPresence{true, true});
  EXPECT_THAT(h, StartsWith("Received: from unknown ([192.0.2.7])\r\n"));

  t.helo = "evil\r\nX-Injected: 1 (x)";
  t.auth_user = "bob\r\nBcc: x";
  h = TraceHeaders(t, HeaderPresence{true, true});
  EXPECT_THAT(h, Not(HasSubstr("\r\nX-Injected")));
  EXPECT_THAT(h, Not(HasSubstr("\r\nBcc")));
  EXPECT_THAT(h, HasSubstr("from evil??X-Injected: 1 ?x? ([192.0.2.7])"));
  EXPECT_THAT(h, HasSubstr("(authenticated user bob??Bcc: x)"));
}

}  // namespace
}  // namespace mxr::relay
