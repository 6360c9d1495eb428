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

// ---------------------------------------------------------------------------
// A ClientHost that only records. It never calls back into the client; the
// tests call Send()/Quit() themselves after OnReady.
class FakeClientHost : public ClientHost {
 public:
  void StartTls() override { events.push_back("StartTls"); }
  void OnReady() override { events.push_back("OnReady"); }
  void OnTransactionDone(std::vector<RcptResult> results) override {
    events.push_back("OnTransactionDone");
    done.push_back(std::move(results));
  }
  void OnFailed(const Reply& why) override {
    events.push_back("OnFailed");
    failed.push_back(why);
  }

  int Count(std::string_view e) const {
    int n = 0;
    for (const auto& x : events) n += x == e;
    return n;
  }

  std::vector<std::string> events;
  std::vector<std::vector<RcptResult>> done;
  std::vector<Reply> failed;
};

std::string Codes(const std::vector<RcptResult>& rs) {
  std::string o;
  for (const auto& r : rs) {
    if (!o.empty()) o += ",";
    o += std::to_string(r.code);
  }
  return o;
}

constexpr char kBanner[] = "220 mx.remote.example ESMTP ready\r\n";
constexpr char kEhloPipelining[] =
    "250-mx.remote.example hello\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 10000\r\n"
    "250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";
constexpr char kEhloPlain[] =
    "250-mx.remote.example hello\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

ClientOptions Opts(TlsPolicy tls = TlsPolicy::kNone) {
  ClientOptions o;
  o.helo = "relay.test";
  o.tls = tls;
  return o;
}

class SmtpClientTest : public ::testing::Test {
 protected:
  // Banner + EHLO with `ehlo_reply`; expects the session to become ready.
  void Connect(const char* ehlo_reply, ClientOptions opts = Opts()) {
    client_ = std::make_unique<SmtpClient>(std::move(opts), &host_);
    EXPECT_EQ(client_->phase(), SmtpClient::Phase::kBanner);
    client_->Feed(kBanner);
    EXPECT_EQ(client_->TakeOutput(), "EHLO relay.test\r\n");
    EXPECT_EQ(client_->banner(), "mx.remote.example ESMTP ready");
    client_->Feed(ehlo_reply);
    ASSERT_EQ(host_.events, std::vector<std::string>{"OnReady"});
    ASSERT_EQ(client_->phase(), SmtpClient::Phase::kReady);
    EXPECT_EQ(client_->TakeOutput(), "");
    host_.events.clear();
  }

  OutboundMessage Msg(std::vector<std::string> rcpts) {
    OutboundMessage m;
    m.sender = "alice@sender.example";
    m.rcpts = std::move(rcpts);
    m.body = &body_;
    return m;
  }

  std::string body_ = "Subject: hi\r\n\r\n.leading dot\r\nline\r\n";
  std::string stuffed_ = "Subject: hi\r\n\r\n..leading dot\r\nline\r\n.\r\n";
  FakeClientHost host_;
  std::unique_ptr<SmtpClient> client_;
};

// ---------------------------------------------------------------------------
// Greeting and EHLO

TEST_F(SmtpClientTest, BannerThenEhloAndCapabilities) {
  Connect(kEhloPipelining);
  EXPECT_TRUE(client_->pipelining());
  EXPECT_EQ(client_->max_size(), 10000u);
  EXPECT_FALSE(client_->tls_active());
}

TEST_F(SmtpClientTest, CapabilitiesAreCaseInsensitive) {
  Connect("250-mx\r\n250-pipelining\r\n250 size 5000\r\n");
  EXPECT_TRUE(client_->pipelining());
  EXPECT_EQ(client_->max_size(), 5000u);
}

TEST_F(SmtpClientTest, BannerNot220Fails) {
  SmtpClient c(Opts(), &host_);
  c.Feed("554 5.7.1 go away\r\n");
  EXPECT_EQ(c.TakeOutput(), "");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].code, 554);
  EXPECT_EQ(host_.failed[0].enhanced, "5.7.1");
  EXPECT_EQ(c.phase(), SmtpClient::Phase::kDone);
}

TEST_F(SmtpClientTest, Ehlo5xxFallsBackToHelo) {
  SmtpClient c(Opts(), &host_);
  c.Feed(kBanner);
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\n");
  c.Feed("502 5.5.2 what is EHLO\r\n");
  EXPECT_EQ(c.TakeOutput(), "HELO relay.test\r\n");
  EXPECT_TRUE(host_.events.empty());
  c.Feed("250 mx hello\r\n");
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnReady"});
  EXPECT_FALSE(c.pipelining());
  EXPECT_EQ(c.max_size(), 0u);
  // HELO sessions: no ESMTP parameters, one command per reply.
  OutboundMessage m = Msg({"bob@x.example"});
  m.body_8bit = true;
  c.Send(m);
  EXPECT_EQ(c.TakeOutput(), "MAIL FROM:<alice@sender.example>\r\n");
}

TEST_F(SmtpClientTest, Ehlo4xxFails) {
  SmtpClient c(Opts(), &host_);
  c.Feed(kBanner);
  c.TakeOutput();
  c.Feed("450 4.3.2 busy\r\n");
  EXPECT_EQ(c.TakeOutput(), "");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].code, 450);
}

TEST_F(SmtpClientTest, HeloRejectedFails) {
  SmtpClient c(Opts(), &host_);
  c.Feed(kBanner);
  c.Feed("500 no\r\n");
  c.Feed("550 no HELO either\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].code, 550);
}

TEST_F(SmtpClientTest, HeloFallbackWithRequiredTlsFails) {
  SmtpClient c(Opts(TlsPolicy::kRequired), &host_);
  c.Feed(kBanner);
  c.Feed("500 no\r\n");
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\nHELO relay.test\r\n");
  c.Feed("250 ok\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].code, 451);
  EXPECT_EQ(host_.failed[0].enhanced, "4.7.5");
}

// ---------------------------------------------------------------------------
// PIPELINING transactions

TEST_F(SmtpClientTest, PipelinedMailRcptDataInOneChunkWithSize) {
  Connect(kEhloPipelining);
  OutboundMessage m = Msg({"bob@x.example", "carol@x.example", "dave@x.example"});
  RcptResult why;
  ASSERT_TRUE(client_->CanSend(m, &why));
  client_->Send(m);
  EXPECT_EQ(client_->TakeOutput(),
            "MAIL FROM:<alice@sender.example> SIZE=" + std::to_string(body_.size()) + "\r\n"
            "RCPT TO:<bob@x.example>\r\n"
            "RCPT TO:<carol@x.example>\r\n"
            "RCPT TO:<dave@x.example>\r\n"
            "DATA\r\n");
  // All the replies at once: 250 / 550 / 451 mixed.
  client_->Feed(
      "250 2.1.0 sender ok\r\n"
      "250 2.1.5 bob ok\r\n"
      "550 5.1.1 carol unknown\r\n"
      "451 4.2.0 dave later\r\n"
      "354 go ahead\r\n");
  EXPECT_EQ(client_->TakeOutput(), stuffed_);
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kDot);
  EXPECT_TRUE(host_.events.empty());
  client_->Feed("250 2.0.0 queued as ABC\r\n");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnReady"}));
  const auto& r = host_.done[0];
  ASSERT_EQ(r.size(), 3u);
  // The dot reply goes only to the accepted recipient.
  EXPECT_EQ(r[0].code, 250);
  EXPECT_EQ(r[0].enhanced, "2.0.0");
  EXPECT_EQ(r[0].text, "queued as ABC");
  EXPECT_EQ(r[1].code, 550);
  EXPECT_EQ(r[1].enhanced, "5.1.1");
  EXPECT_EQ(r[1].text, "carol unknown");
  EXPECT_EQ(r[2].code, 451);
  EXPECT_EQ(r[2].enhanced, "4.2.0");
  // A successful transaction is not followed by RSET.
  EXPECT_EQ(client_->TakeOutput(), "");
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kReady);
}

TEST_F(SmtpClientTest, DotRejectionAppliesToAcceptedOnlyAndResets) {
  Connect(kEhloPipelining);
  OutboundMessage m = Msg({"bob@x.example", "carol@x.example"});
  client_->Send(m);
  client_->TakeOutput();
  client_->Feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
  EXPECT_EQ(client_->TakeOutput(), stuffed_);
  client_->Feed("554 5.7.1 spam\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "554,550");
  EXPECT_EQ(host_.done[0][0].enhanced, "5.7.1");
  EXPECT_EQ(host_.done[0][1].enhanced, "5.1.1");
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");
  client_->Feed("250 2.0.0 flushed\r\n");
  EXPECT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnReady"}));
}

TEST_F(SmtpClientTest, NoSizeParamWhenSizeNotOffered) {
  Connect("250-mx\r\n250 PIPELINING\r\n");
  client_->Send(Msg({"bob@x.example"}));
  EXPECT_EQ(client_->TakeOutput(),
            "MAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@x.example>\r\nDATA\r\n");
}

TEST_F(SmtpClientTest, SizeWithoutLimitStillSendsParam) {
  Connect("250-mx\r\n250-PIPELINING\r\n250 SIZE\r\n");
  EXPECT_EQ(client_->max_size(), 0u);
  std::string big(100000, 'x');
  OutboundMessage m = Msg({"bob@x.example"});
  m.body = &big;
  RcptResult why;
  EXPECT_TRUE(client_->CanSend(m, &why));
  client_->Send(m);
  EXPECT_THAT(client_->TakeOutput(), HasSubstr("MAIL FROM:<alice@sender.example> SIZE=100000\r\n"));
}

TEST_F(SmtpClientTest, NullSender) {
  Connect("250-mx\r\n250 PIPELINING\r\n");
  OutboundMessage m = Msg({"bob@x.example"});
  m.sender = "";
  client_->Send(m);
  EXPECT_THAT(client_->TakeOutput(), ::testing::StartsWith("MAIL FROM:<>\r\n"));
}

struct ParamRow {
  bool want_8bit, want_utf8;      // message needs
  bool offer_8bit, offer_utf8;    // server offers
  const char* params;             // expected MAIL FROM suffix
};

TEST_F(SmtpClientTest, BodyAndSmtpUtf8ParamsOnlyWhenRequestedAndOffered) {
  const ParamRow rows[] = {
      {false, false, true, true, ""},
      {true, false, true, true, " BODY=8BITMIME"},
      {false, true, true, true, " SMTPUTF8"},
      {true, true, true, true, " BODY=8BITMIME SMTPUTF8"},
      {true, true, false, true, " SMTPUTF8"},
      {true, false, false, false, ""},
      {false, false, false, false, ""},
  };
  for (const ParamRow& row : rows) {
    SCOPED_TRACE(testing::Message() << "need 8bit=" << row.want_8bit << " utf8=" << row.want_utf8
                                    << " offer 8bit=" << row.offer_8bit
                                    << " utf8=" << row.offer_utf8);
    host_ = FakeClientHost();
    std::string ehlo = "250-mx\r\n";
    if (row.offer_8bit) ehlo += "250-8BITMIME\r\n";
    if (row.offer_utf8) ehlo += "250-SMTPUTF8\r\n";
    ehlo += "250 PIPELINING\r\n";
    Connect(ehlo.c_str());
    OutboundMessage m = Msg({"bob@x.example"});
    m.body_8bit = row.want_8bit;
    m.smtputf8 = row.want_utf8;
    RcptResult why;
    if (row.want_utf8 && !row.offer_utf8) {
      EXPECT_FALSE(client_->CanSend(m, &why));
      continue;
    }
    client_->Send(m);
    EXPECT_EQ(client_->TakeOutput(), std::string("MAIL FROM:<alice@sender.example>") + row.params +
                                         "\r\nRCPT TO:<bob@x.example>\r\nDATA\r\n");
  }
}

TEST_F(SmtpClientTest, PipelinedMailRejectedGivesEveryoneMailReplyThenRset) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  client_->TakeOutput();
  client_->Feed(
      "550 5.7.1 sender blocked\r\n"
      "503 5.5.1 need MAIL\r\n"
      "503 5.5.1 need MAIL\r\n"
      "503 5.5.1 need MAIL\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  ASSERT_EQ(host_.done[0].size(), 2u);
  for (const auto& r : host_.done[0]) {
    EXPECT_EQ(r.code, 550);
    EXPECT_EQ(r.enhanced, "5.7.1");
    EXPECT_EQ(r.text, "sender blocked");
  }
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kRset);
  client_->Feed("250 2.0.0 ok\r\n");
  EXPECT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnReady"}));
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kReady);
}

TEST_F(SmtpClientTest, PipelinedNoRecipientAcceptedData554ThenRset) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  client_->TakeOutput();
  client_->Feed(
      "250 2.1.0 ok\r\n"
      "550 5.1.1 bob unknown\r\n"
      "450 4.2.1 carol busy\r\n"
      "554 5.5.1 no valid recipients\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "550,450");
  EXPECT_EQ(host_.done[0][0].text, "bob unknown");
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");
  client_->Feed("250 ok\r\n");
  EXPECT_EQ(host_.Count("OnReady"), 1);
}

TEST_F(SmtpClientTest, PipelinedNoRecipientButServerSends354) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example"}));
  client_->TakeOutput();
  client_->Feed("250 ok\r\n550 5.1.1 no\r\n354 go ahead anyway\r\n");
  // No body is sent: an empty message ends the DATA.
  EXPECT_EQ(client_->TakeOutput(), ".\r\n");
  client_->Feed("554 5.6.0 empty message\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "550");
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");
}

TEST_F(SmtpClientTest, DataRejectedAfterAcceptedRecipients) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  client_->TakeOutput();
  client_->Feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n451 4.3.0 try later\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "451,550");
  EXPECT_EQ(host_.done[0][0].enhanced, "4.3.0");
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");
}

// Fuzz finding client-result: a reply that is neither a success nor a
// failure where one was due must never leave a recipient counted as
// delivered (Classify() treats only 2xx as success).
bool AnyDelivered(const std::vector<RcptResult>& rs) {
  for (const auto& r : rs) {
    if (r.code >= 200 && r.code < 300) return true;
  }
  return false;
}

TEST_F(SmtpClientTest, DataAnswered2xxInsteadOf354IsNotADelivery) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  client_->TakeOutput();
  // One extra 2xx (MAIL answered twice): the DATA slot gets a 250.
  client_->Feed("250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 bogus\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "451,451");
  EXPECT_EQ(host_.done[0][0].enhanced, "4.5.0");
  EXPECT_THAT(host_.done[0][0].text, HasSubstr("Unexpected reply to DATA"));
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");  // the body was never sent
}

TEST_F(SmtpClientTest, ThreeHundredRepliesToMailRcptOrDotAreTransient) {
  struct Case {
    const char* replies;
    bool body_sent;   // whether the 354 may be answered with the body
    const char* dot;  // the reply to what follows the 354
  } cases[] = {
      {"354 mail?\r\n250 ok\r\n354 go\r\n", false, "250 ok\r\n"},  // MAIL 3xx
      {"250 ok\r\n334 rcpt?\r\n354 go\r\n", false, "250 ok\r\n"},  // RCPT 3xx: none accepted
      {"250 ok\r\n250 ok\r\n354 go\r\n", true, "354 dot?\r\n"},     // dot 3xx
  };
  for (const auto& c : cases) {
    host_ = FakeClientHost();
    Connect(kEhloPipelining);
    client_->Send(Msg({"bob@x.example"}));
    client_->TakeOutput();
    client_->Feed(c.replies);
    // The body goes out only after a 2xx MAIL and RCPT; else just the dot.
    EXPECT_EQ(client_->TakeOutput(), c.body_sent ? stuffed_ : std::string(".\r\n")) << c.replies;
    client_->Feed(c.dot);
    ASSERT_EQ(host_.done.size(), 1u) << c.replies;
    EXPECT_EQ(Codes(host_.done[0]), "451") << c.replies;
    EXPECT_EQ(host_.done[0][0].enhanced, "4.5.0") << c.replies;
    EXPECT_FALSE(AnyDelivered(host_.done[0])) << c.replies;
  }
}

TEST_F(SmtpClientTest, ThreeHundredRcptKeptThroughAFailedConnection) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  client_->TakeOutput();
  client_->Feed("250 ok\r\n250 ok\r\n");  // bob accepted, carol not answered yet
  Reply why;
  why.code = 421;
  why.enhanced = "4.4.2";
  why.text = "timeout";
  client_->Abort(why);
  ASSERT_EQ(host_.done.size(), 1u);
  EXPECT_EQ(Codes(host_.done[0]), "421,421");
  EXPECT_FALSE(AnyDelivered(host_.done[0]));
}

TEST_F(SmtpClientTest, TwoTransactionsOnOneSession) {
  Connect(kEhloPipelining);
  for (int i = 0; i < 2; ++i) {
    host_.events.clear();
    client_->Send(Msg({"bob@x.example"}));
    EXPECT_THAT(client_->TakeOutput(), ::testing::StartsWith("MAIL FROM:"));
    client_->Feed("250 ok\r\n250 ok\r\n354 go\r\n");
    EXPECT_EQ(client_->TakeOutput(), stuffed_);
    client_->Feed("250 queued\r\n");
    EXPECT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnReady"}));
    EXPECT_EQ(client_->TakeOutput(), "");
  }
  EXPECT_EQ(host_.done.size(), 2u);
  client_->Quit();
  EXPECT_EQ(client_->TakeOutput(), "QUIT\r\n");
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kQuit);
  client_->Feed("221 2.0.0 bye\r\n");
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kDone);
  EXPECT_EQ(host_.Count("OnFailed"), 0);
}

// ---------------------------------------------------------------------------
// Without PIPELINING: one command per reply

TEST_F(SmtpClientTest, UnpipelinedOneCommandPerReply) {
  Connect(kEhloPlain);
  EXPECT_FALSE(client_->pipelining());
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  EXPECT_EQ(client_->TakeOutput(), "MAIL FROM:<alice@sender.example>\r\n");
  client_->Feed("250 2.1.0 ok\r\n");
  EXPECT_EQ(client_->TakeOutput(), "RCPT TO:<bob@x.example>\r\n");
  client_->Feed("550 5.1.1 bob unknown\r\n");
  EXPECT_EQ(client_->TakeOutput(), "RCPT TO:<carol@x.example>\r\n");
  client_->Feed("250 2.1.5 ok\r\n");
  EXPECT_EQ(client_->TakeOutput(), "DATA\r\n");
  client_->Feed("354 go\r\n");
  EXPECT_EQ(client_->TakeOutput(), stuffed_);
  client_->Feed("250 2.0.0 queued\r\n");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnReady"}));
  EXPECT_EQ(Codes(host_.done[0]), "550,250");
  EXPECT_EQ(host_.done[0][1].text, "queued");
  EXPECT_EQ(client_->TakeOutput(), "");
}

TEST_F(SmtpClientTest, UnpipelinedMailRejectedSendsNoRcpt) {
  Connect(kEhloPlain);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  EXPECT_EQ(client_->TakeOutput(), "MAIL FROM:<alice@sender.example>\r\n");
  client_->Feed("451 4.7.1 greylisted\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "451,451");
  EXPECT_EQ(host_.done[0][1].enhanced, "4.7.1");
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");
  client_->Feed("250 ok\r\n");
  EXPECT_EQ(host_.events.back(), "OnReady");
}

TEST_F(SmtpClientTest, UnpipelinedNoRecipientAcceptedSkipsData) {
  Connect(kEhloPlain);
  client_->Send(Msg({"bob@x.example", "carol@x.example"}));
  client_->TakeOutput();
  client_->Feed("250 ok\r\n");
  EXPECT_EQ(client_->TakeOutput(), "RCPT TO:<bob@x.example>\r\n");
  client_->Feed("550 5.1.1 no\r\n");
  EXPECT_EQ(client_->TakeOutput(), "RCPT TO:<carol@x.example>\r\n");
  client_->Feed("550 5.1.1 no either\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnTransactionDone"});
  EXPECT_EQ(Codes(host_.done[0]), "550,550");
  EXPECT_EQ(client_->TakeOutput(), "RSET\r\n");  // no DATA
}

// ---------------------------------------------------------------------------
// STARTTLS and AUTH

constexpr char kEhloTls[] =
    "250-mx.remote.example\r\n"
    "250-STARTTLS\r\n"
    "250 PIPELINING\r\n";

TEST_F(SmtpClientTest, StartTlsOpportunistic) {
  SmtpClient c(Opts(TlsPolicy::kOpportunistic), &host_);
  c.Feed(kBanner);
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\n");
  c.Feed(kEhloTls);
  EXPECT_EQ(c.TakeOutput(), "STARTTLS\r\n");
  EXPECT_TRUE(host_.events.empty());
  // A plaintext reply injected after the 220 (CVE-2011-0411 style) must be
  // discarded, not taken as the answer to the EHLO sent after the handshake.
  c.Feed("220 2.0.0 go ahead\r\n250 injected\r\n");
  EXPECT_EQ(host_.events, std::vector<std::string>{"StartTls"});
  EXPECT_EQ(c.phase(), SmtpClient::Phase::kTlsHandshake);
  EXPECT_EQ(c.TakeOutput(), "");
  c.OnTlsDone(true, "");
  EXPECT_TRUE(c.tls_active());
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\n");
  EXPECT_EQ(host_.events, std::vector<std::string>{"StartTls"});
  c.Feed("250-mx.remote.example\r\n250-STARTTLS\r\n250-SIZE 777\r\n250 PIPELINING\r\n");
  EXPECT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnReady"}));
  EXPECT_EQ(c.TakeOutput(), "");  // no second STARTTLS
  EXPECT_TRUE(c.pipelining());
  EXPECT_EQ(c.max_size(), 777u);
}

TEST_F(SmtpClientTest, InjectionInSeparateReadAfter220IsAlsoNotAReply) {
  // Same as above but the handshake result arrives before any more data:
  // the only data the client interprets is the post-TLS EHLO reply.
  SmtpClient c(Opts(TlsPolicy::kOpportunistic), &host_);
  c.Feed(kBanner);
  c.Feed(kEhloTls);
  // A partial multi-line reply after the 220: had it been parsed, the real
  // EHLO reply below would continue it with a different code (an error).
  c.Feed("220 ready\r\n354-injected\r\n");
  c.OnTlsDone(true, "");
  c.TakeOutput();
  c.Feed("250-mx\r\n250 PIPELINING\r\n");
  EXPECT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnReady"}));
  EXPECT_EQ(host_.Count("OnFailed"), 0);
}

TEST_F(SmtpClientTest, TlsHandshakeFailure) {
  SmtpClient c(Opts(TlsPolicy::kOpportunistic), &host_);
  c.Feed(kBanner);
  c.Feed(kEhloTls);
  c.Feed("220 go\r\n");
  c.OnTlsDone(false, "bad record mac");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnFailed"}));
  EXPECT_EQ(host_.failed[0].code, 421);
  EXPECT_THAT(host_.failed[0].text, HasSubstr("bad record mac"));
  EXPECT_EQ(c.phase(), SmtpClient::Phase::kDone);
}

TEST_F(SmtpClientTest, StartTlsRefusedOpportunisticContinuesInPlaintext) {
  SmtpClient c(Opts(TlsPolicy::kOpportunistic), &host_);
  c.Feed(kBanner);
  c.Feed(kEhloTls);
  c.TakeOutput();
  c.Feed("454 4.7.0 TLS not available\r\n");
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnReady"});
  EXPECT_FALSE(c.tls_active());
  EXPECT_EQ(c.TakeOutput(), "");
}

TEST_F(SmtpClientTest, StartTlsRefusedRequiredFails) {
  SmtpClient c(Opts(TlsPolicy::kRequired), &host_);
  c.Feed(kBanner);
  c.Feed(kEhloTls);
  c.Feed("454 4.7.0 TLS not available\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].code, 454);
}

TEST_F(SmtpClientTest, TlsRequiredButNotOffered) {
  for (TlsPolicy p : {TlsPolicy::kRequired, TlsPolicy::kRequiredVerify}) {
    FakeClientHost host;
    SmtpClient c(Opts(p), &host);
    c.Feed(kBanner);
    c.Feed(kEhloPipelining);
    EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\n");
    ASSERT_EQ(host.events, std::vector<std::string>{"OnFailed"});
    EXPECT_EQ(host.failed[0].code, 451);
    EXPECT_EQ(host.failed[0].enhanced, "4.7.5");
    EXPECT_EQ(c.phase(), SmtpClient::Phase::kDone);
  }
}

TEST_F(SmtpClientTest, TlsNoneNeverSendsStartTls) {
  SmtpClient c(Opts(TlsPolicy::kNone), &host_);
  c.Feed(kBanner);
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\n");
  c.Feed(kEhloTls);
  EXPECT_EQ(c.TakeOutput(), "");
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnReady"});
  EXPECT_FALSE(c.tls_active());
}

TEST_F(SmtpClientTest, NoStartTlsOfferedOpportunisticGoesPlain) {
  SmtpClient c(Opts(TlsPolicy::kOpportunistic), &host_);
  c.Feed(kBanner);
  c.TakeOutput();
  c.Feed(kEhloPipelining);
  EXPECT_EQ(c.TakeOutput(), "");
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnReady"});
}

ClientOptions AuthOpts() {
  ClientOptions o = Opts(TlsPolicy::kRequired);
  o.auth_user = "user";
  o.auth_password = "pass";
  o.auth_over_unverified_tls = true;  // the route opted in (the fake TLS verifies nothing)
  return o;
}

// Drives a session to the post-TLS EHLO and feeds `ehlo2`.
void ToPostTlsEhlo(SmtpClient& c, const char* ehlo2) {
  c.Feed(kBanner);
  c.Feed(kEhloTls);
  c.Feed("220 go\r\n");
  c.OnTlsDone(true, "");
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\nSTARTTLS\r\nEHLO relay.test\r\n");
  c.Feed(ehlo2);
}

TEST_F(SmtpClientTest, AuthPlainAfterTls) {
  SmtpClient c(AuthOpts(), &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n");
  // base64("\0user\0pass")
  EXPECT_EQ(c.TakeOutput(), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
  EXPECT_EQ(c.phase(), SmtpClient::Phase::kAuth);
  EXPECT_EQ(host_.events, std::vector<std::string>{"StartTls"});
  c.Feed("235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnReady"}));
}

TEST_F(SmtpClientTest, AuthPlainOldStyleEqualsSyntax) {
  SmtpClient c(AuthOpts(), &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250 AUTH=PLAIN\r\n");
  EXPECT_EQ(c.TakeOutput(), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
}

TEST_F(SmtpClientTest, AuthRejectedFails) {
  SmtpClient c(AuthOpts(), &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250 AUTH PLAIN\r\n");
  c.TakeOutput();
  c.Feed("535 5.7.8 bad credentials\r\n");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnFailed"}));
  EXPECT_EQ(host_.failed[0].code, 535);
  EXPECT_EQ(host_.failed[0].enhanced, "5.7.8");
}

TEST_F(SmtpClientTest, AuthWithoutPlainOfferedFails) {
  SmtpClient c(AuthOpts(), &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250 AUTH LOGIN CRAM-MD5\r\n");
  EXPECT_EQ(c.TakeOutput(), "");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnFailed"}));
  EXPECT_EQ(host_.failed[0].enhanced, "4.7.0");
}

// Issue 15, item 4: TLS negotiated opportunistically verified nothing: the
// credentials are not sent over it (before, AUTH PLAIN followed the handshake).
TEST_F(SmtpClientTest, NeverAuthOverOpportunisticTls) {
  ClientOptions o = AuthOpts();
  o.tls = TlsPolicy::kOpportunistic;
  SmtpClient c(o, &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(c.TakeOutput(), "");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnFailed"}));
  EXPECT_EQ(host_.failed[0].code, 451);
  EXPECT_EQ(host_.failed[0].enhanced, "4.7.0");
}

// A route with tls = "required" that did not opt in (config refuses it; the
// client refuses it too, in case a route reaches it some other way).
TEST_F(SmtpClientTest, NoAuthOverUnverifiedTlsWithoutTheRoutesConsent) {
  ClientOptions o = AuthOpts();
  o.auth_over_unverified_tls = false;
  SmtpClient c(o, &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(c.TakeOutput(), "");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnFailed"}));
  EXPECT_EQ(host_.failed[0].enhanced, "4.7.0");
  EXPECT_NE(host_.failed[0].text.find("unverified"), std::string::npos);
  o.tls = TlsPolicy::kRequiredVerify;  // verified: fine without the key
  FakeClientHost h2;
  SmtpClient c2(o, &h2);
  ToPostTlsEhlo(c2, "250-mx\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(c2.TakeOutput(), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
}

TEST_F(SmtpClientTest, NeverAuthInPlaintext) {
  ClientOptions o = AuthOpts();
  o.tls = TlsPolicy::kOpportunistic;
  SmtpClient c(o, &host_);
  c.Feed(kBanner);
  c.Feed("250-mx\r\n250 AUTH PLAIN\r\n");  // no STARTTLS
  EXPECT_EQ(c.TakeOutput(), "EHLO relay.test\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].enhanced, "4.7.0");
}


// ---------------------------------------------------------------------------
// 421 at any phase

struct Phase421Row {
  const char* name;
  TlsPolicy tls;
  std::vector<std::string> script;  // replies before the 421
  bool send;                        // Send() once ready
  bool quit;                        // Quit() once ready (after any Send)
  std::vector<std::string> events;  // all host events, in order
  const char* rcpt_codes;           // OnTransactionDone results, "" if none
};

TEST_F(SmtpClientTest, Reply421AtAnyPhase) {
  const Phase421Row rows[] = {
      {"banner", TlsPolicy::kNone, {}, false, false, {"OnFailed"}, ""},
      {"ehlo", TlsPolicy::kNone, {kBanner}, false, false, {"OnFailed"}, ""},
      {"helo", TlsPolicy::kNone, {kBanner, "500 no\r\n"}, false, false, {"OnFailed"}, ""},
      {"starttls", TlsPolicy::kOpportunistic, {kBanner, kEhloTls}, false, false, {"OnFailed"}, ""},
      {"ready", TlsPolicy::kNone, {kBanner, kEhloPipelining}, false, false,
       {"OnReady", "OnFailed"}, ""},
      {"mail", TlsPolicy::kNone, {kBanner, kEhloPipelining}, true, false,
       {"OnReady", "OnTransactionDone", "OnFailed"}, "421,421"},
      {"rcpt", TlsPolicy::kNone, {kBanner, kEhloPipelining, "250 ok\r\n"}, true, false,
       {"OnReady", "OnTransactionDone", "OnFailed"}, "421,421"},
      {"second rcpt", TlsPolicy::kNone,
       {kBanner, kEhloPipelining, "250 ok\r\n550 5.1.1 no\r\n"}, true, false,
       {"OnReady", "OnTransactionDone", "OnFailed"}, "550,421"},
      {"data", TlsPolicy::kNone, {kBanner, kEhloPipelining, "250 ok\r\n250 ok\r\n250 ok\r\n"},
       true, false, {"OnReady", "OnTransactionDone", "OnFailed"}, "421,421"},
      {"dot", TlsPolicy::kNone,
       {kBanner, kEhloPipelining, "250 ok\r\n250 ok\r\n451 4.2.0 later\r\n354 go\r\n"}, true,
       false, {"OnReady", "OnTransactionDone", "OnFailed"}, "421,451"},
      {"rset", TlsPolicy::kNone,
       {kBanner, kEhloPipelining, "550 5.7.1 no\r\n503 no\r\n503 no\r\n503 no\r\n"}, true, false,
       {"OnReady", "OnTransactionDone", "OnFailed"}, "550,550"},
      {"unpipelined rcpt", TlsPolicy::kNone, {kBanner, kEhloPlain, "250 ok\r\n"}, true, false,
       {"OnReady", "OnTransactionDone", "OnFailed"}, "421,421"},
  };
  for (const Phase421Row& row : rows) {
    SCOPED_TRACE(row.name);
    FakeClientHost host;
    SmtpClient c(Opts(row.tls), &host);
    OutboundMessage m = Msg({"bob@x.example", "carol@x.example"});
    bool sent = false;
    for (const auto& chunk : row.script) {
      c.Feed(chunk);
      if (row.send && !sent && c.phase() == SmtpClient::Phase::kReady) {
        c.Send(m);
        sent = true;
      }
    }
    ASSERT_EQ(sent, row.send);
    ASSERT_NE(c.phase(), SmtpClient::Phase::kDone);
    c.Feed("421 4.3.2 Service shutting down\r\n");
    EXPECT_EQ(host.events, row.events);
    ASSERT_EQ(host.Count("OnFailed"), 1);
    EXPECT_EQ(host.failed[0].code, 421);
    EXPECT_EQ(host.failed[0].enhanced, "4.3.2");
    EXPECT_EQ(host.failed[0].text, "Service shutting down");
    EXPECT_EQ(c.phase(), SmtpClient::Phase::kDone);
    if (*row.rcpt_codes) {
      ASSERT_EQ(host.done.size(), 1u);
      EXPECT_EQ(Codes(host.done[0]), row.rcpt_codes);
    }
    // Nothing more happens once failed.
    c.Feed("250 ok\r\n");
    c.Abort(Reply{421, "4.4.2", "timeout", {}});
    EXPECT_EQ(host.events, row.events);
  }
}

TEST_F(SmtpClientTest, Reply421DuringAuth) {
  SmtpClient c(AuthOpts(), &host_);
  ToPostTlsEhlo(c, "250-mx\r\n250 AUTH PLAIN\r\n");
  ASSERT_EQ(c.phase(), SmtpClient::Phase::kAuth);
  c.Feed("421 4.7.0 too many\r\n");
  EXPECT_EQ(host_.events, (std::vector<std::string>{"StartTls", "OnFailed"}));
}

TEST_F(SmtpClientTest, Reply421AfterQuitIsNotAFailure) {
  Connect(kEhloPipelining);
  client_->Quit();
  EXPECT_EQ(client_->TakeOutput(), "QUIT\r\n");
  client_->Feed("421 4.3.2 bye anyway\r\n");
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kDone);
  EXPECT_TRUE(host_.events.empty());
}

// ---------------------------------------------------------------------------
// Abort

TEST_F(SmtpClientTest, AbortBeforeAnyReplyReportsEveryRecipientTransient) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example", "dave@x.example"}));
  client_->TakeOutput();
  client_->Abort(Reply{421, "4.4.2", "Timeout waiting for MAIL reply", {}});
  ASSERT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnFailed"}));
  ASSERT_EQ(host_.done[0].size(), 3u);
  for (const auto& r : host_.done[0]) {
    EXPECT_EQ(r.code, 421);
    EXPECT_EQ(r.enhanced, "4.4.2");
    EXPECT_EQ(r.text, "Timeout waiting for MAIL reply");
  }
  EXPECT_EQ(host_.failed[0].code, 421);
  EXPECT_EQ(client_->phase(), SmtpClient::Phase::kDone);
}

TEST_F(SmtpClientTest, AbortAfterDotTurnsAcceptedIntoTransient) {
  // A connection lost after the dot may or may not have delivered: the
  // accepted recipients are retried (possible duplicate, never a loss).
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example", "carol@x.example", "dave@x.example"}));
  client_->TakeOutput();
  client_->Feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n451 4.2.0 later\r\n354 go\r\n");
  ASSERT_EQ(client_->TakeOutput(), stuffed_);
  client_->Abort(Reply{421, "4.4.2", "Timeout after end of data", {}});
  ASSERT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnFailed"}));
  // bob had only a RCPT 250: now transient. carol's final 550 is kept.
  EXPECT_EQ(Codes(host_.done[0]), "421,550,451");
}

TEST_F(SmtpClientTest, AbortOutsideTransaction) {
  Connect(kEhloPipelining);
  client_->Abort(Reply{421, "4.4.2", "idle", {}});
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  client_->Abort(Reply{421, "4.4.2", "again", {}});
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
}

TEST_F(SmtpClientTest, AbortDuringConnectSetup) {
  SmtpClient c(Opts(), &host_);
  c.Abort(Reply{421, "4.4.1", "connect timeout", {}});
  EXPECT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].enhanced, "4.4.1");
}

// ---------------------------------------------------------------------------
// Protocol errors

TEST_F(SmtpClientTest, MalformedReplyFails) {
  Connect(kEhloPipelining);
  client_->Send(Msg({"bob@x.example"}));
  client_->Feed("250 ok\r\nHTTP/1.1 400 Bad Request\r\n");
  ASSERT_EQ(host_.events, (std::vector<std::string>{"OnTransactionDone", "OnFailed"}));
  EXPECT_EQ(host_.failed[0].code, 421);
  EXPECT_EQ(host_.failed[0].enhanced, "4.5.0");
  EXPECT_EQ(Codes(host_.done[0]), "421");
}

TEST_F(SmtpClientTest, UnsolicitedReplyWhenReadyFails) {
  Connect(kEhloPipelining);
  client_->Feed("250 surprise\r\n");
  ASSERT_EQ(host_.events, std::vector<std::string>{"OnFailed"});
  EXPECT_EQ(host_.failed[0].code, 421);
  EXPECT_THAT(host_.failed[0].text, HasSubstr("ready"));
}

// ---------------------------------------------------------------------------
// Splitting the server's bytes anywhere changes nothing.

struct Transcript {
  std::vector<std::string> events;
  std::string output;
  std::string results;
};

Transcript RunSession(const std::vector<std::string>& chunks, const std::string& body) {
  FakeClientHost host;
  ClientOptions o = Opts();
  SmtpClient c(o, &host);
  OutboundMessage m;
  m.sender = "a@b.example";
  m.rcpts = {"x@y.example", "z@y.example"};
  m.body = &body;
  Transcript t;
  bool sent = false;
  for (const auto& ch : chunks) {
    c.Feed(ch);
    while (c.has_output()) t.output += c.TakeOutput();  // the body streams in pieces
    if (!sent && c.phase() == SmtpClient::Phase::kReady) {
      c.Send(m);
      sent = true;
      while (c.has_output()) t.output += c.TakeOutput();
    }
  }
  t.events = host.events;
  for (const auto& d : host.done) t.results += Codes(d) + ";";
  return t;
}

TEST_F(SmtpClientTest, ByteAtATimeFeedMatchesWholeFeed) {
  const std::string server = std::string(kBanner) + kEhloPipelining +
                             "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n"
                             "354 go\r\n250 2.0.0 queued\r\n";
  // One chunk per server turn vs. one byte per read (the final reply comes
  // after the body was sent, as a server gives it).
  const std::string rest = server.substr(strlen(kBanner) + strlen(kEhloPipelining));
  size_t dot = rest.find("250 2.0.0 queued");
  Transcript whole = RunSession({kBanner, kEhloPipelining, rest.substr(0, dot), rest.substr(dot)}, body_);
  std::vector<std::string> bytes;
  for (char ch : server) bytes.emplace_back(1, ch);
  Transcript split = RunSession(bytes, body_);
  EXPECT_EQ(whole.events,
            (std::vector<std::string>{"OnReady", "OnTransactionDone", "OnReady"}));
  EXPECT_EQ(whole.results, "250,550;");
  EXPECT_EQ(split.events, whole.events);
  EXPECT_EQ(split.results, whole.results);
  EXPECT_EQ(split.output, whole.output);
  EXPECT_THAT(whole.output, HasSubstr(stuffed_));
}

// ---------------------------------------------------------------------------
// The body streams in pieces (no whole stuffed copy per transaction).

// A pipelining session that has just been told 354 for a one-recipient
// message with `body`.
void StartBody(SmtpClient* c, OutboundMessage* m, const std::string* body) {
  c->Feed(std::string(kBanner) + kEhloPipelining);
  c->TakeOutput();
  m->sender = "a@b.example";
  m->rcpts = {"x@y.example"};
  m->body = body;
  c->Send(*m);
  c->TakeOutput();
  c->Feed("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
}

TEST_F(SmtpClientTest, BodyIsHandedOutInChunksAsTheSocketAsks) {
  std::string body;
  while (body.size() < 3 * SmtpClient::kBodyChunk) body += ".a line that starts with a dot\r\n";
  FakeClientHost host;
  SmtpClient c(Opts(), &host);
  OutboundMessage m;
  StartBody(&c, &m, &body);
  EXPECT_TRUE(c.streaming_body());
  std::string sent;
  int calls = 0;
  while (c.has_output() && calls < 100) {
    std::string o = c.TakeOutput();
    EXPECT_LE(o.size(), SmtpClient::kBodyChunk * 2 + 8);  // one piece (stuffing at most doubles it)
    sent += o;
    ++calls;
  }
  EXPECT_GE(calls, 3);
  std::string want;
  DotStuff(body, &want);
  EXPECT_EQ(sent, want);
  c.Feed("250 2.0.0 queued\r\n");
  ASSERT_EQ(host.done.size(), 1u);
  EXPECT_EQ(host.done[0][0].code, 250);
}

// A final reply before we handed out the whole body cannot be a delivery.
TEST_F(SmtpClientTest, ReplyBeforeTheEndOfTheBodyIsNoDelivery) {
  std::string body(3 * SmtpClient::kBodyChunk, 'x');
  FakeClientHost host;
  SmtpClient c(Opts(), &host);
  OutboundMessage m;
  StartBody(&c, &m, &body);
  c.TakeOutput();  // one piece only
  c.Feed("250 2.0.0 queued\r\n");
  ASSERT_EQ(host.done.size(), 1u);
  EXPECT_NE(host.done[0][0].code, 250);
  EXPECT_EQ(c.phase(), SmtpClient::Phase::kDone);
}

// ---------------------------------------------------------------------------
// CanSend

TEST_F(SmtpClientTest, CanSendSmtpUtf8Required) {
  Connect("250-mx\r\n250-8BITMIME\r\n250 PIPELINING\r\n");
  OutboundMessage m = Msg({"bob@x.example"});
  m.smtputf8 = true;
  RcptResult why;
  EXPECT_FALSE(client_->CanSend(m, &why));
  EXPECT_EQ(why.code, 553);
  EXPECT_EQ(why.enhanced, "5.6.7");
  m.smtputf8 = false;
  why = RcptResult{};
  EXPECT_TRUE(client_->CanSend(m, &why));
  EXPECT_EQ(why.code, 0);
}

TEST_F(SmtpClientTest, CanSendSizeLimit) {
  Connect("250-mx\r\n250-SMTPUTF8\r\n250 SIZE 100\r\n");
  OutboundMessage m = Msg({"bob@x.example"});
  std::string body(100, 'x');
  m.body = &body;
  RcptResult why;
  EXPECT_TRUE(client_->CanSend(m, &why));  // exactly the limit
  body.push_back('x');
  EXPECT_FALSE(client_->CanSend(m, &why));
  EXPECT_EQ(why.code, 552);
  EXPECT_EQ(why.enhanced, "5.3.4");
  EXPECT_THAT(why.text, HasSubstr("101"));
  // SMTPUTF8 is offered here, so a UTF-8 message of fine size passes.
  body.resize(50);
  m.smtputf8 = true;
  EXPECT_TRUE(client_->CanSend(m, &why));
}

TEST_F(SmtpClientTest, CanSendNoSizeLimitAdvertised) {
  Connect(kEhloPlain);
  OutboundMessage m = Msg({"bob@x.example"});
  std::string body(1 << 20, 'x');
  m.body = &body;
  RcptResult why;
  EXPECT_TRUE(client_->CanSend(m, &why));
}

// ---------------------------------------------------------------------------
// RFC 3461: DSN parameters go on only to a server that offers DSN.

TEST_F(SmtpClientTest, DsnParametersOnlyWhenOffered) {
  for (bool offered : {true, false}) {
    host_ = FakeClientHost();
    Connect(offered ? "250-mx\r\n250-PIPELINING\r\n250 DSN\r\n" : "250-mx\r\n250 PIPELINING\r\n");
    EXPECT_EQ(client_->dsn_offered(), offered);
    OutboundMessage m = Msg({"bob@x.example", "carol@x.example"});
    m.mail_dsn = " RET=HDRS ENVID=E1";
    m.rcpt_dsn = {" NOTIFY=SUCCESS ORCPT=rfc822;bob@x.example", ""};
    client_->Send(m);
    if (offered) {
      EXPECT_EQ(client_->TakeOutput(),
                "MAIL FROM:<alice@sender.example> RET=HDRS ENVID=E1\r\n"
                "RCPT TO:<bob@x.example> NOTIFY=SUCCESS ORCPT=rfc822;bob@x.example\r\n"
                "RCPT TO:<carol@x.example>\r\nDATA\r\n");
    } else {
      EXPECT_EQ(client_->TakeOutput(),
                "MAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@x.example>\r\n"
                "RCPT TO:<carol@x.example>\r\nDATA\r\n");
    }
  }
}

TEST_F(SmtpClientTest, DsnParametersWithoutPipelining) {
  Connect("250-mx\r\n250 DSN\r\n");
  OutboundMessage m = Msg({"bob@x.example"});
  m.rcpt_dsn = {" NOTIFY=NEVER"};
  client_->Send(m);
  EXPECT_EQ(client_->TakeOutput(), "MAIL FROM:<alice@sender.example>\r\n");
  client_->Feed("250 ok\r\n");
  EXPECT_EQ(client_->TakeOutput(), "RCPT TO:<bob@x.example> NOTIFY=NEVER\r\n");
}

}  // namespace
}  // namespace mxr::delivery
