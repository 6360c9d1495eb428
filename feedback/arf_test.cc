#include "feedback/arf.h"

#include "gtest/gtest.h"

namespace mxr::feedback {
namespace {

// RFC 5965 Appendix B.2 (the example report), our relay's Received: added
// to the original so that its queue id is found.
constexpr char kRfc5965[] =
    "From: <abusedesk@example.com>\r\n"
    "Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n"
    "Subject: FW: Earn money\r\n"
    "To: <abuse@example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report;\r\n"
    "     boundary=\"part1_13d.2e68ed54_boundary\"\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "This is an email abuse report for an email message received from IP\r\n"
    "192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information\r\n"
    "about this format please see http://www.mipassoc.org/arf/.\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/feedback-report\r\n"
    "\r\n"
    "Feedback-Type: abuse\r\n"
    "User-Agent: SomeGenerator/1.0\r\n"
    "Version: 1\r\n"
    "Original-Mail-From: <somespammer@example.net>\r\n"
    "Original-Rcpt-To: <user@example.com>\r\n"
    "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
    "Reporting-MTA: dns; mail.example.com\r\n"
    "Source-IP: 192.0.2.1\r\n"
    "Authentication-Results: mail.example.com;\r\n"
    "               spf=fail smtp.mail=somespammer@example.com\r\n"
    "Reported-Domain: example.net\r\n"
    "Reported-Uri: http://example.net/earn_money.html\r\n"
    "Reported-Uri: mailto:user@example.com\r\n"
    "Removal-Recipient: user@example.com\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Disposition: inline\r\n"
    "\r\n"
    "Received: from mailserver.example.net\r\n"
    "        (mailserver.example.net [192.0.2.1])\r\n"
    "        by example.com with ESMTP id M63d4137594e46;\r\n"
    "        Thu, 08 Mar 2005 14:00:00 -0400\r\n"
    "Received: from app.example.net ([198.51.100.7])\r\n"
    "\tby Relay.Example.NET (mxrelay) with ESMTPSA id 0000018f2a3b4c5d6e7f8091;\r\n"
    "\tThu, 08 Mar 2005 13:59:58 +0000\r\n"
    "From: <somespammer@example.net>\r\n"
    "To: <Undisclosed Recipients>\r\n"
    "Subject: Earn money\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-type: text/plain\r\n"
    "Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net\r\n"
    "Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n"
    "\r\n"
    "Spam Spam Spam\r\n"
    "Spam Spam Spam\r\n"
    "--part1_13d.2e68ed54_boundary--\r\n";

TEST(Arf, Rfc5965Example) {
  auto r = ParseArf(kRfc5965, "relay.example.net");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->feedback_type, "abuse");
  EXPECT_EQ(r->user_agent, "SomeGenerator/1.0");
  EXPECT_EQ(r->version, "1");
  EXPECT_EQ(r->original_mail_from, "somespammer@example.net");
  EXPECT_EQ(r->original_rcpt_to, std::vector<std::string>{"user@example.com"});
  EXPECT_EQ(r->reporting_mta, "dns; mail.example.com");
  EXPECT_EQ(r->source_ip, "192.0.2.1");
  EXPECT_EQ(r->reported_domain, "example.net");
  ASSERT_TRUE(r->has_original);
  EXPECT_EQ(r->subject, "Earn money");
  EXPECT_EQ(r->original_from, "somespammer@example.net");
  // Our Received: (host name in another case, folded): its queue id.
  EXPECT_EQ(r->queue_ids, std::vector<std::string>{"0000018f2a3b4c5d6e7f8091"});
  EXPECT_EQ(r->Recipients(), std::vector<std::string>{"user@example.com"});
  // Another relay's host name: no queue id of ours.
  auto other = ParseArf(kRfc5965, "relay.other.test");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->queue_ids.empty());
}

// Built like Yahoo's complaint feedback loop reports (User-Agent
// "Yahoo!-Mail-Feedback/2.0", the original as message/rfc822 with its
// DKIM signature; the feedback part base64-encoded here to check decoding).
constexpr char kYahooLike[] =
    "From: staff@hotmail.com\r\n"
    "Subject: FW: Spring sale\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=\"Feedback-Report\"; boundary=\"----=_Part_1\"\r\n"
    "\r\n"
    "------=_Part_1\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "This is an email abuse report for an email message from news.customer.test.\r\n"
    "------=_Part_1\r\n"
    "Content-Type: message/feedback-report\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    // Feedback-Type: abuse / User-Agent: Yahoo!-Mail-Feedback/2.0 / Version: 0.1 /
    // Original-Mail-From: <bounce@news.customer.test> / Original-Rcpt-To: <alice@yahoo.test> /
    // Received-Date: Sun, 6 Dec 2026 07:00:00 +0000 / Source-IP: 192.0.2.25 / Reported-Domain: news.customer.test
    "RmVlZGJhY2stVHlwZTogYWJ1c2UNClVzZXItQWdlbnQ6IFlhaG9vIS1NYWlsLUZlZWRiYWNrLzIuMA0K\r\n"
    "VmVyc2lvbjogMC4xDQpPcmlnaW5hbC1NYWlsLUZyb206IDxib3VuY2VAbmV3cy5jdXN0b21lci50ZXN0\r\n"
    "Pg0KT3JpZ2luYWwtUmNwdC1UbzogPGFsaWNlQHlhaG9vLnRlc3Q+DQpSZWNlaXZlZC1EYXRlOiBTdW4s\r\n"
    "IDYgRGVjIDIwMjYgMDc6MDA6MDAgKzAwMDANClNvdXJjZS1JUDogMTkyLjAuMi4yNQ0KUmVwb3J0ZWQt\r\n"
    "RG9tYWluOiBuZXdzLmN1c3RvbWVyLnRlc3QNCg==\r\n"
    "------=_Part_1\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "DKIM-Signature: v=1; a=ed25519-sha256; d=customer.test; s=ed; h=from:to:subject; bh=x; b=y\r\n"
    "Received: from app ([127.0.0.1])\r\n"
    "\tby relay.test (mxrelay) with ESMTPS id 00060cb0d1a2b3c4d5e6f708\r\n"
    "\t(authenticated user acme-app);\r\n"
    "\tSun, 06 Dec 2026 06:59:59 +0000\r\n"
    "X-MxRelay-Tenant: acme\r\n"
    "From: \"Customer News\" <news@customer.test>\r\n"
    "To: alice@yahoo.test\r\n"
    "Subject: Spring sale\r\n"
    "Message-ID: <00060cb0d1a2b3c4d5e6f708@relay.test>\r\n"
    "\r\n"
    "Buy now.\r\n"
    "------=_Part_1--\r\n";

TEST(Arf, YahooLikeWithBase64FieldsAndRelayFields) {
  auto r = ParseArf(kYahooLike, "relay.test");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->feedback_type, "abuse");
  EXPECT_EQ(r->user_agent, "Yahoo!-Mail-Feedback/2.0");
  EXPECT_EQ(r->original_mail_from, "bounce@news.customer.test");
  EXPECT_EQ(r->Recipients(), std::vector<std::string>{"alice@yahoo.test"});
  EXPECT_EQ(r->arrival_date, "Sun, 6 Dec 2026 07:00:00 +0000");
  EXPECT_EQ(r->message_id, "00060cb0d1a2b3c4d5e6f708@relay.test");
  EXPECT_EQ(r->queue_ids, std::vector<std::string>{"00060cb0d1a2b3c4d5e6f708"});
  ASSERT_EQ(r->relay_fields.size(), 1u);
  EXPECT_EQ(r->relay_fields[0].first, "x-mxrelay-tenant");
  EXPECT_EQ(r->relay_fields[0].second, "acme");
  EXPECT_EQ(r->original_from, "news@customer.test");
}

// Built like Microsoft's JMRP reports: no Original-Rcpt-To, the complaining
// address in X-HmXmrOriginalRecipient of the original; To: redacted.
constexpr char kJmrpLike[] =
    "From: staff@hotmail.com\r\n"
    "Subject: complaint about message from 192.0.2.25\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "This is an email abuse report.\r\n"
    "--b1\r\n"
    "Content-Type: message/feedback-report\r\n"
    "\r\n"
    "Feedback-Type: abuse\r\n"
    "User-Agent: Hotmail FBL\r\n"
    "Version: 1\r\n"
    "Source-IP: 192.0.2.25\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "X-HmXmrOriginalRecipient: <bob@outlook.test>\r\n"
    "Received: from app ([127.0.0.1]) by relay.test (mxrelay) with ESMTP id 00060CB0D1A2B3C4D5E6F709;\r\n"
    " Sun, 06 Dec 2026 06:59:59 +0000\r\n"
    "From: news@customer.test\r\n"
    "To: redacted@outlook.test\r\n"
    "Subject: Spring sale\r\n"
    "\r\n"
    "--b1--\r\n";

TEST(Arf, JmrpLikeHeadersOnlyWithProviderRecipient) {
  auto r = ParseArf(kJmrpLike, "relay.test");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->original_rcpt_to.empty());
  EXPECT_EQ(r->provider_recipients, std::vector<std::string>{"bob@outlook.test"});
  EXPECT_EQ(r->Recipients(), std::vector<std::string>{"bob@outlook.test"});
  EXPECT_EQ(r->queue_ids, std::vector<std::string>{"00060cb0d1a2b3c4d5e6f709"});
  EXPECT_EQ(r->original_to, std::vector<std::string>{"redacted@outlook.test"});
}

TEST(Arf, RefusesWhatIsNotAFeedbackReport) {
  auto plain = ParseArf("From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n", "relay.test");
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plain.status().message().find("multipart/report"), std::string::npos);

  std::string dsn = kJmrpLike;
  dsn.replace(dsn.find("report-type=feedback-report"), 27, "report-type=delivery-status");
  EXPECT_EQ(ParseArf(dsn, "relay.test").status().code(), absl::StatusCode::kInvalidArgument);

  std::string no_type = kJmrpLike;
  no_type.erase(no_type.find("Feedback-Type: abuse\r\n"), 22);
  auto nt = ParseArf(no_type, "relay.test");
  EXPECT_EQ(nt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(nt.status().message().find("Feedback-Type"), std::string::npos);

  std::string no_part = kJmrpLike;
  no_part.replace(no_part.find("message/feedback-report"), 23, "text/plain");
  EXPECT_NE(ParseArf(no_part, "relay.test").status().message().find("no message/feedback-report"),
            std::string::npos);
  EXPECT_FALSE(ParseArf("", "relay.test").ok());
}

TEST(Arf, AddressesWithControlCharactersAreDropped) {
  // Found by arf_fuzz: a recipient field holding CR or other control bytes
  // must not become an address to suppress.
  std::string bad = kJmrpLike;
  bad.replace(bad.find("<bob@outlook.test>"), 18, "<bob@outlook.te\rst>, <x@y\x01z>");
  auto r = ParseArf(bad, "relay.test");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->provider_recipients.empty());
  for (const auto& a : r->Recipients()) {
    for (char c : a) EXPECT_GT(static_cast<unsigned char>(c), 0x20) << a;
  }
}

}  // namespace
}  // namespace mxr::feedback
