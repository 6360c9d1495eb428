#include "relay/session.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "common/clock.h"
#include "common/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue/types.h"
#include "relay/headers.h"

namespace mxr::relay {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kHostname[] = "mx.test";
constexpr char kClientIp[] = "192.0.2.1";
constexpr char kGreeting[] = "220 mx.test ESMTP mxrelay ready\r\n";
constexpr char kEhlo[] = "EHLO client.example\r\n";
constexpr char k354[] = "354 End data with <CR><LF>.<CR><LF>\r\n";
constexpr char kSenderOk[] = "250 2.1.0 Sender OK\r\n";
constexpr char kRcptOk[] = "250 2.1.5 Recipient OK\r\n";
constexpr char kQuit[] = "221 2.0.0 mx.test closing connection\r\n";
constexpr char kNoopOk[] = "250 2.0.0 OK\r\n";
constexpr char kTlsVersion[] = "TLSv1.3";
constexpr char kTlsCipher[] = "TLS_AES_256_GCM_SHA384";

std::string B64(std::string_view s) { return absl::Base64Escape(absl::string_view(s.data(), s.size())); }

std::string PlainResponse(std::string_view user, std::string_view pass) {
  std::string raw;
  raw += '\0';
  raw += user;
  raw += '\0';
  raw += pass;
  return B64(raw);
}

size_t Count(std::string_view hay, std::string_view needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  for (size_t p = s->find(from); p != std::string::npos; p = s->find(from, p + to.size())) {
    s->replace(p, from.size(), to);
  }
}

std::vector<std::string> Lines(std::string_view out) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      lines.emplace_back(out.substr(pos));
      break;
    }
    lines.emplace_back(out.substr(pos, eol - pos));
    pos = eol + 2;
  }
  return lines;
}

// "ddd c.d.d text": a reply code, an enhanced status code (RFC 3463: 1-3
// digit subject and detail) of the same class, and some text.
bool HasEnhancedCode(std::string_view line) {
  auto digits = [&](size_t* pos, size_t min, size_t max) {
    size_t n = 0;
    while (*pos < line.size() && line[*pos] >= '0' && line[*pos] <= '9' && n < max) ++*pos, ++n;
    return n >= min;
  };
  size_t pos = 0;
  if (line.size() < 12 || (line[0] != '2' && line[0] != '4' && line[0] != '5')) return false;
  if (!digits(&pos, 3, 3) || line[pos++] != ' ') return false;
  if (line[pos++] != line[0] || line[pos++] != '.') return false;
  if (!digits(&pos, 1, 3) || pos >= line.size() || line[pos++] != '.') return false;
  if (!digits(&pos, 1, 3) || pos >= line.size() || line[pos++] != ' ') return false;
  return pos < line.size() && line[pos] != ' ';
}

TEST(HasEnhancedCodeTest, Recognises) {
  EXPECT_TRUE(HasEnhancedCode("250 2.0.0 OK"));
  EXPECT_TRUE(HasEnhancedCode("538 5.7.11 Encryption required"));
  EXPECT_TRUE(HasEnhancedCode("421 4.4.2 mx Timeout"));
  EXPECT_FALSE(HasEnhancedCode("250 OK"));
  EXPECT_FALSE(HasEnhancedCode("250 5.0.0 class mismatch"));
  EXPECT_FALSE(HasEnhancedCode("250-2.0.0 continuation"));
  EXPECT_FALSE(HasEnhancedCode("250 2.0.0"));
  EXPECT_FALSE(HasEnhancedCode("250 2.0000.0 x"));
  EXPECT_FALSE(HasEnhancedCode("354 End data"));
}

// RFC 2034: every 2xx/4xx/5xx reply carries an enhanced status code whose
// class matches the reply class. Exempt: the greeting, the EHLO response
// (its extension keywords), 334 challenges and the 354 go-ahead.
void ExpectWellFormedReplies(const std::string& out) {
  if (!out.empty()) {
    EXPECT_EQ(out.substr(out.size() - 2), "\r\n") << out;
  }
  EXPECT_EQ(Count(out, "\n"), Count(out, "\r\n")) << "bare LF in output: " << out;
  for (const std::string& line : Lines(out)) {
    if (line.rfind("250-", 0) == 0 || line == "250 HELP" || line.rfind("334 ", 0) == 0 ||
        line.rfind("354 ", 0) == 0 || line.rfind("220 mx.test ESMTP", 0) == 0) {
      continue;
    }
    EXPECT_TRUE(HasEnhancedCode(line)) << "reply without enhanced code: " << line;
  }
}

class FakeHost : public SessionHost {
 public:
  struct AuthCall {
    std::string user, password;
  };

  // None of these calls back into the session: the test does that later,
  // as the event loop would.
  void StartTls() override { ++start_tls; }
  void Close() override { ++closes; }
  void Authenticate(std::string user, std::string password) override {
    auths.push_back({std::move(user), std::move(password)});
  }
  void Submit(queue::NewMessage msg) override { submitted.push_back(std::move(msg)); }
  bool SpoolAccepting() override { return accepting; }

  int start_tls = 0;
  int closes = 0;
  std::vector<AuthCall> auths;
  std::vector<queue::NewMessage> submitted;
  bool accepting = true;
};

// The result of running one input script through a fresh session, with the
// (random) queue ids replaced by "<ID>" so that runs can be compared.
struct ScriptRun {
  std::string output;
  int closes = 0;
  int start_tls = 0;
  std::vector<queue::NewMessage> messages;
};

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() : config_(DefaultConfig()), ids_(clock_) {
    listener_.name = "test";
    listener_.mode = ListenerMode::kStartTls;
    env_.config = &config_;
    env_.listener = &listener_;
    env_.hostname = kHostname;
    env_.ids = &ids_;
    env_.clock = &clock_;
  }

  void TearDown() override { ExpectWellFormedReplies(transcript_); }

  // Starts the session under test and returns the greeting.
  std::string Open(bool trusted = false) {
    host_ = std::make_unique<FakeHost>();
    s_ = std::make_unique<Session>(env_, host_.get(), ConnInfo{kClientIp, trusted});
    s_->Start();
    return Take();
  }

  std::string Take() {
    std::string o = s_->TakeOutput();
    transcript_ += o;
    return o;
  }

  std::string Send(std::string_view in) {
    s_->Feed(in);
    return Take();
  }

  std::string Commit(const absl::Status& st = absl::OkStatus()) {
    s_->OnCommitted(st);
    return Take();
  }

  std::string AuthResult(bool ok) {
    s_->OnAuthResult(ok);
    return Take();
  }

  std::string EhloReply(bool starttls, bool auth) const {
    std::string s = "250-mx.test Hello client.example [192.0.2.1]\r\n"
                    "250-PIPELINING\r\n"
                    "250-SIZE " + std::to_string(config_.limits.max_message_size) + "\r\n"
                    "250-8BITMIME\r\n"
                    "250-SMTPUTF8\r\n"
                    "250-ENHANCEDSTATUSCODES\r\n"
                    "250-CHUNKING\r\n"
                    "250-DSN\r\n";
    if (starttls) s += "250-STARTTLS\r\n";
    if (auth) s += "250-AUTH PLAIN LOGIN\r\n";
    s += "250 HELP\r\n";
    return s;
  }

  // STARTTLS, handshake done, EHLO again.
  void StartTlsAndEhlo() {
    ASSERT_EQ(Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    ASSERT_EQ(host_->start_tls, 1);
    s_->OnTlsEstablished(kTlsVersion, kTlsCipher);
    ASSERT_EQ(Send(kEhlo), EhloReply(false, true));
  }

  // A fresh untrusted session on the STARTTLS listener, under TLS and
  // authenticated as `user`.
  void OpenAuthenticated(const std::string& user = "alice") {
    Open();
    ASSERT_EQ(Send(kEhlo), EhloReply(true, false));
    StartTlsAndEhlo();
    ASSERT_EQ(Send("AUTH PLAIN " + PlainResponse(user, "secret") + "\r\n"), "");
    ASSERT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
    ASSERT_EQ(s_->auth_user(), user);
  }

  // Runs `pieces` through a fresh session. With commit_each_feed the spool
  // answers right after the Feed that submitted; otherwise only at the end.
  ScriptRun RunPieces(const std::vector<std::string_view>& pieces, bool trusted,
                      bool commit_each_feed) {
    FakeHost host;
    Session s(env_, &host, ConnInfo{kClientIp, trusted});
    ScriptRun r;
    s.Start();
    r.output = s.TakeOutput();
    // At most one request is outstanding at a time; answer them in order
    // (AUTH: accepted; spool: committed) until the session waits no more.
    size_t committed = 0, authed = 0;
    auto commit_all = [&] {
      while (committed < host.submitted.size() || authed < host.auths.size()) {
        if (authed < host.auths.size()) {
          ++authed;
          s.OnAuthResult(true);
        } else {
          ++committed;
          s.OnCommitted(absl::OkStatus());
        }
        r.output += s.TakeOutput();
      }
    };
    for (std::string_view p : pieces) {
      s.Feed(p);
      r.output += s.TakeOutput();
      if (commit_each_feed) commit_all();
    }
    commit_all();
    for (auto& m : host.submitted) {
      std::string id = m.meta.id.ToString();
      ReplaceAll(&r.output, id, "<ID>");
      ReplaceAll(&m.header_prefix, id, "<ID>");
      m.meta.id = queue::QueueId{};
    }
    r.closes = host.closes;
    r.start_tls = host.start_tls;
    r.messages = std::move(host.submitted);
    transcript_ += r.output;
    return r;
  }

  // One Feed vs the same bytes split at every boundary and byte by byte,
  // with both commit timings: all must agree.
  ScriptRun ExpectSplitInvariant(std::string_view in, bool trusted) {
    ScriptRun whole = RunPieces({in}, trusted, true);
    auto same = [&](const ScriptRun& r, const std::string& what) {
      EXPECT_EQ(r.output, whole.output) << what;
      EXPECT_EQ(r.closes, whole.closes) << what;
      EXPECT_EQ(r.start_tls, whole.start_tls) << what;
      ASSERT_EQ(r.messages.size(), whole.messages.size()) << what;
      for (size_t i = 0; i < r.messages.size(); ++i) {
        EXPECT_EQ(r.messages[i].meta.sender, whole.messages[i].meta.sender) << what;
        ASSERT_EQ(r.messages[i].meta.recipients.size(), whole.messages[i].meta.recipients.size())
            << what;
        for (size_t k = 0; k < r.messages[i].meta.recipients.size(); ++k) {
          EXPECT_EQ(r.messages[i].meta.recipients[k].address,
                    whole.messages[i].meta.recipients[k].address)
              << what;
        }
        EXPECT_EQ(r.messages[i].header_prefix, whole.messages[i].header_prefix) << what;
        EXPECT_EQ(r.messages[i].body, whole.messages[i].body) << what;
        EXPECT_EQ(r.messages[i].meta.body_size, whole.messages[i].meta.body_size) << what;
        EXPECT_EQ(r.messages[i].meta.auth_user, whole.messages[i].meta.auth_user) << what;
      }
    };
    same(RunPieces({in}, trusted, false), "whole, commit at end");
    for (size_t i = 0; i <= in.size(); ++i) {
      std::vector<std::string_view> two = {in.substr(0, i), in.substr(i)};
      same(RunPieces(two, trusted, true), "split at " + std::to_string(i));
      same(RunPieces(two, trusted, false), "split at " + std::to_string(i) + ", commit at end");
      if (testing::Test::HasFailure()) break;  // one report is enough
    }
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
    same(RunPieces(bytes, trusted, true), "byte by byte");
    same(RunPieces(bytes, trusted, false), "byte by byte, commit at end");
    return whole;
  }

  Config config_;
  ListenerConfig listener_;
  ManualClock clock_;
  queue::QueueIdGenerator ids_;
  SessionEnv env_;
  std::unique_ptr<FakeHost> host_;
  std::unique_ptr<Session> s_;
  std::string transcript_;
};

// ------------------------------------------------------ greeting and EHLO

TEST_F(SessionTest, Greeting) {
  EXPECT_EQ(Open(), kGreeting);
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  EXPECT_EQ(host_->closes, 0);
}

TEST_F(SessionTest, EhloAdvertisesExtensionsWithoutAuthBeforeTls) {
  Open();
  EXPECT_EQ(Send(kEhlo), EhloReply(/*starttls=*/true, /*auth=*/false));
}

TEST_F(SessionTest, EhloUnderTlsOffersAuthAndNoStartTls) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_TRUE(s_->tls());
}

TEST_F(SessionTest, EhloWithControlCharactersIsRefusedNotEchoed) {
  Open();
  std::string reply = Send("EHLO foo\rbar\x1b[2J\r\n");
  EXPECT_EQ(reply, "500 5.5.2 Bare CR in command\r\n");  // a CR is refused before parsing
  reply = Send("EHLO foobar\x1b[2J\r\n");
  EXPECT_EQ(reply.substr(0, 10), "501 5.5.4 ");
  EXPECT_EQ(reply.find('\x1b'), std::string::npos);
  EXPECT_EQ(Send("EHLO a b\r\n").substr(0, 4), "501 ");
  EXPECT_EQ(Send(kEhlo), EhloReply(true, false));  // still usable
}

TEST_F(SessionTest, EhloStopsOfferingAuthOnceAuthenticated) {
  OpenAuthenticated();
  EXPECT_EQ(Send(kEhlo), EhloReply(false, false));
}

TEST_F(SessionTest, PlainListenerWithAuthWithoutTls) {
  listener_.mode = ListenerMode::kPlain;
  listener_.auth_without_tls = true;
  Open();
  EXPECT_EQ(Send(kEhlo), EhloReply(false, true));
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("bob", "pw") + "\r\n"), "");
  ASSERT_EQ(host_->auths.size(), 1u);
  EXPECT_EQ(host_->auths[0].user, "bob");
  EXPECT_EQ(host_->auths[0].password, "pw");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(Send("MAIL FROM:<bob@example.com>\r\n"), kSenderOk);
}

TEST_F(SessionTest, ImplicitTlsListener) {
  listener_.mode = ListenerMode::kImplicitTls;
  host_ = std::make_unique<FakeHost>();
  s_ = std::make_unique<Session>(env_, host_.get(), ConnInfo{kClientIp, false});
  s_->OnTlsEstablished(kTlsVersion, kTlsCipher);  // the handshake comes first on 465
  s_->Start();
  EXPECT_EQ(Take(), kGreeting);
  EXPECT_EQ(Send(kEhlo), EhloReply(false, true));
  EXPECT_EQ(Send("STARTTLS\r\n"), "502 5.5.1 STARTTLS not available on this port\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), "530 5.7.0 Authentication required: log in with AUTH before MAIL\r\n");
  Send("AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  Send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_THAT(host_->submitted[0].header_prefix, HasSubstr(" with ESMTPSA id "));
}

TEST_F(SessionTest, PlainListenerWithoutAuth) {
  listener_.mode = ListenerMode::kPlain;
  Open();
  EXPECT_EQ(Send(kEhlo), EhloReply(false, false));
  EXPECT_EQ(Send("STARTTLS\r\n"), "502 5.5.1 STARTTLS not available on this port\r\n");
  EXPECT_EQ(host_->start_tls, 0);
  EXPECT_THAT(Send("AUTH PLAIN " + PlainResponse("bob", "pw") + "\r\n"), StartsWith("538 5.7.11 "));
  EXPECT_TRUE(host_->auths.empty());
  EXPECT_EQ(Send("MAIL FROM:<bob@example.com>\r\n"), "530 5.7.0 Authentication required, and this port offers no AUTH without TLS; use port 2525 (STARTTLS) or 5465 (implicit TLS)\r\n");
}

TEST_F(SessionTest, Helo) {
  Open(/*trusted=*/true);
  EXPECT_EQ(Send("HELO client.example\r\n"), "250 2.0.0 mx.test Hello client.example\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), kRcptOk);
  EXPECT_EQ(Send("DATA\r\n"), k354);
  EXPECT_EQ(Send("x\r\n.\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_THAT(host_->submitted[0].header_prefix, HasSubstr(" with SMTP id "));
  EXPECT_EQ(host_->submitted[0].meta.helo, "client.example");
}

TEST_F(SessionTest, EhloSyntax) {
  Open();
  EXPECT_EQ(Send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(Send("EHLO a b\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(Send("HELO\r\n"), "501 5.5.4 Syntax: HELO hostname\r\n");
  std::string literal_reply = EhloReply(true, false);
  literal_reply.replace(literal_reply.find("client.example"), 14, "[192.0.2.1]");
  EXPECT_EQ(Send("ehlo [192.0.2.1]\r\n"), literal_reply);
}

// ------------------------------------------------------------ relay policy

TEST_F(SessionTest, MailRequiresHelo) {
  Open(/*trusted=*/true);
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), "503 5.5.1 Send EHLO/HELO first\r\n");
}

TEST_F(SessionTest, UntrustedClientNeedsAuth) {
  Open();
  Send(kEhlo);
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"),
            "530 5.7.0 Must issue a STARTTLS command first\r\n");
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  StartTlsAndEhlo();
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), "530 5.7.0 Authentication required: log in with AUTH before MAIL\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_TRUE(host_->submitted.empty());
}

TEST_F(SessionTest, Rfc3461ParametersAreStoredWithTheMessage) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_THAT(Send("MAIL FROM:<a@example.com> RET=BAD\r\n"), StartsWith("501 5.5.4 "));
  EXPECT_EQ(Send("MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B1\r\n"), kSenderOk);
  EXPECT_THAT(Send("RCPT TO:<b@example.org> NOTIFY=NEVER,DELAY\r\n"), StartsWith("501 5.5.4 "));
  EXPECT_EQ(Send("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\n"), kRcptOk);
  EXPECT_EQ(Send("RCPT TO:<c@example.org>\r\n"), kRcptOk);
  EXPECT_EQ(Send("DATA\r\n"), k354);
  EXPECT_EQ(Send("Subject: hi\r\n\r\nbody\r\n.\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  const auto& m = host_->submitted[0];
  EXPECT_EQ(m.meta.dsn_ret, queue::DsnRet::kHeaders);
  EXPECT_EQ(m.meta.envid, "QQ+2B1");
  ASSERT_EQ(m.meta.recipients.size(), 2u);
  EXPECT_EQ(m.meta.recipients[0].notify, queue::kNotifySuccess | queue::kNotifyFailure);
  EXPECT_EQ(m.meta.recipients[0].orcpt, "rfc822;b@example.org");
  EXPECT_EQ(m.meta.recipients[1].notify, 0);
  EXPECT_EQ(m.meta.recipients[1].orcpt, "");
}

TEST_F(SessionTest, TrustedClientRelaysWithoutAuth) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Send("MAIL FROM:<a@example.com> BODY=8BITMIME\r\n"), kSenderOk);
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), kRcptOk);
  EXPECT_EQ(Send("DATA\r\n"), k354);
  EXPECT_EQ(Send("Subject: hi\r\n\r\nbody\r\n.\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  const auto& m = host_->submitted[0];
  EXPECT_EQ(m.meta.sender, "a@example.com");
  ASSERT_EQ(m.meta.recipients.size(), 1u);
  EXPECT_EQ(m.meta.recipients[0].address, "b@example.org");
  EXPECT_EQ(m.meta.auth_user, "");
  EXPECT_TRUE(m.meta.body_8bit);
  EXPECT_FALSE(m.meta.smtputf8);
  EXPECT_EQ(m.body, "Subject: hi\r\n\r\nbody\r\n");
  // A single recipient is named in the trace header.
  EXPECT_THAT(m.header_prefix, HasSubstr("\r\n\tfor <b@example.org>;\r\n"));
  EXPECT_THAT(Commit(), MatchesRegex("250 2\\.0\\.0 Ok: queued as [0-9a-f]{24}\r\n"));
  EXPECT_EQ(s_->summary().messages, 1u);
  EXPECT_EQ(s_->summary().recipients, 1u);
}

TEST_F(SessionTest, SpoolNotAccepting) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  host_->accepting = false;
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"),
            "452 4.3.1 Insufficient system storage; try again later\r\n");
  host_->accepting = true;
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), kRcptOk);
  host_->accepting = false;
  EXPECT_THAT(Send("DATA\r\n"), StartsWith("452 4.3.1 "));
  // The transaction is gone.
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
}

// ------------------------------------------------------------- pipelining

constexpr std::string_view kPipelined =
    "EHLO client.example\r\n"
    "MAIL FROM:<alice@example.com> SIZE=100\r\n"
    "RCPT TO:<bob@example.org>\r\n"
    "RCPT TO:<carol@example.net>\r\n"
    "DATA\r\n"
    "Subject: test\r\n"
    "\r\n"
    "Hello\r\n"
    "..leading dot\r\n"
    ".\r\n"
    "QUIT\r\n";

TEST_F(SessionTest, PipelinedTransactionInOneFeed) {
  Open(/*trusted=*/true);
  std::string out = Send(kPipelined);
  EXPECT_EQ(out, EhloReply(true, false) + kSenderOk + kRcptOk + kRcptOk + k354);
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(s_->mode(), Session::Mode::kWaitSpool);
  EXPECT_EQ(host_->closes, 0) << "QUIT must wait for the commit";

  const queue::NewMessage& m = host_->submitted[0];
  const std::string id = m.meta.id.ToString();
  EXPECT_THAT(id, MatchesRegex("[0-9a-f]{24}"));
  EXPECT_EQ(m.meta.sender, "alice@example.com");
  ASSERT_EQ(m.meta.recipients.size(), 2u);
  EXPECT_EQ(m.meta.recipients[0].address, "bob@example.org");
  EXPECT_EQ(m.meta.recipients[1].address, "carol@example.net");
  EXPECT_EQ(m.meta.recipients[0].state, queue::RcptState::kPending);
  EXPECT_EQ(m.meta.client_ip, kClientIp);
  EXPECT_EQ(m.meta.helo, "client.example");
  EXPECT_EQ(m.meta.received_us, clock_.NowMicros());
  EXPECT_EQ(m.meta.next_attempt_us, clock_.NowMicros());
  EXPECT_EQ(m.body, "Subject: test\r\n\r\nHello\r\n.leading dot\r\n");
  const std::string date = Rfc5322Date(clock_.NowMicros());
  EXPECT_EQ(m.header_prefix,
            "Received: from client.example ([192.0.2.1])\r\n"
            "\tby mx.test (mxrelay) with ESMTP id " + id + ";\r\n"
            "\t" + date + "\r\n"
            "Date: " + date + "\r\n"
            "Message-ID: <" + id + "@mx.test>\r\n");
  EXPECT_EQ(m.meta.body_size, m.header_prefix.size() + m.body.size());

  EXPECT_EQ(Commit(), "250 2.0.0 Ok: queued as " + id + "\r\n" + kQuit);
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->mode(), Session::Mode::kClosed);
  EXPECT_EQ(s_->close_reason(), "quit");
  EXPECT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(s_->summary().messages, 1u);
  EXPECT_EQ(s_->summary().recipients, 2u);
}

TEST_F(SessionTest, PipelinedTransactionSplitAtEveryBoundary) {
  ScriptRun whole = ExpectSplitInvariant(kPipelined, /*trusted=*/true);
  EXPECT_EQ(whole.output, kGreeting + EhloReply(true, false) + kSenderOk + kRcptOk + kRcptOk +
                              k354 + "250 2.0.0 Ok: queued as <ID>\r\n" + kQuit);
  EXPECT_EQ(whole.closes, 1);
  ASSERT_EQ(whole.messages.size(), 1u);
  EXPECT_EQ(whole.messages[0].body, "Subject: test\r\n\r\nHello\r\n.leading dot\r\n");
  EXPECT_THAT(whole.messages[0].header_prefix, StartsWith("Received: from client.example"));
}

TEST_F(SessionTest, InputAfterSubmitIsHeldUntilCommitted) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  std::string out = Send(
      "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\n"
      "MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.org>\r\n");
  EXPECT_EQ(out, std::string(kSenderOk) + kRcptOk + k354);
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(s_->mode(), Session::Mode::kWaitSpool);
  EXPECT_EQ(s_->TimeoutSeconds(), 0);
  EXPECT_GT(s_->input_buffered(), 0u);
  // More input while waiting: still nothing.
  EXPECT_EQ(Send("NOOP\r\n"), "");
  EXPECT_EQ(Send("DATA\r\ny\r\n"), "");
  EXPECT_EQ(host_->submitted.size(), 1u);

  const std::string id = host_->submitted[0].meta.id.ToString();
  EXPECT_EQ(Commit(), "250 2.0.0 Ok: queued as " + id + "\r\n" + kSenderOk + kRcptOk + kNoopOk +
                          k354);
  EXPECT_EQ(s_->mode(), Session::Mode::kData);
  EXPECT_EQ(Send(".\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 2u);
  EXPECT_EQ(host_->submitted[1].meta.sender, "c@example.com");
  EXPECT_EQ(host_->submitted[1].body, "y\r\n");
  EXPECT_NE(host_->submitted[1].meta.id, host_->submitted[0].meta.id);
  EXPECT_EQ(Commit(), "250 2.0.0 Ok: queued as " + host_->submitted[1].meta.id.ToString() + "\r\n");
  EXPECT_EQ(s_->input_buffered(), 0u);
}

TEST_F(SessionTest, CommitFailuresMapToTemporaryErrors) {
  struct Case {
    absl::Status status;
    std::string reply_prefix;
  };
  const Case cases[] = {
      {absl::ResourceExhaustedError("disk full"), "452 4.3.1 "},
      {absl::UnavailableError("spool unhealthy"), "451 4.3.0 "},
      {absl::DeadlineExceededError("slow"), "451 4.3.0 "},
      {absl::InternalError("?"), "451 4.3.0 "},
      // Refused in front of the spool (DKIM): its enhanced code and text.
      {absl::FailedPreconditionError("4.7.5 DKIM key unusable (d=x.test s=s1); try again later"),
       "451 4.7.5 DKIM key unusable (d=x.test s=s1); try again later\r\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status.ToString());
    Open(/*trusted=*/true);
    Send(kEhlo);
    Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n");
    ASSERT_EQ(host_->submitted.size(), 1u);
    std::string out = Commit(c.status);
    EXPECT_THAT(out, StartsWith(c.reply_prefix));
    EXPECT_EQ(Lines(out).size(), 2u);
    EXPECT_THAT(out, HasSubstr("\r\n250 2.0.0 OK\r\n")) << "pipelined NOOP answered after";
    EXPECT_THAT(out, Not(HasSubstr("queued as")));
    EXPECT_EQ(s_->summary().messages, 0u);
    // The transaction was reset; a new one works.
    EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
    EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  }
}

TEST_F(SessionTest, CommittedIgnoredWhenNotWaiting) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Commit(), "");
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
}

// ---------------------------------------------------------------- headers

TEST_F(SessionTest, DateAndMessageIdKeptWhenPresent) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"
       "DATA\r\n"
       "date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-ID: <x@y>\r\n\r\nbody\r\n.\r\n");
  ASSERT_EQ(host_->submitted.size(), 1u);
  const auto& m = host_->submitted[0];
  EXPECT_THAT(m.header_prefix, StartsWith("Received: from client.example ([192.0.2.1])"));
  EXPECT_THAT(m.header_prefix, Not(HasSubstr("\r\nDate:")));
  EXPECT_THAT(m.header_prefix, Not(HasSubstr("Message-ID:")));
  EXPECT_THAT(m.header_prefix, Not(HasSubstr("\tfor <"))) << "two recipients";
  EXPECT_EQ(m.body, "date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-ID: <x@y>\r\n\r\nbody\r\n");
}

TEST_F(SessionTest, HeadersInBodyDoNotCount) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
       "Subject: s\r\n\r\nDate: in body\r\nMessage-ID: <in@body>\r\n.\r\n");
  ASSERT_EQ(host_->submitted.size(), 1u);
  const auto& m = host_->submitted[0];
  EXPECT_THAT(m.header_prefix, HasSubstr("\r\nDate: "));
  EXPECT_THAT(m.header_prefix,
              HasSubstr("\r\nMessage-ID: <" + m.meta.id.ToString() + "@mx.test>\r\n"));
}

// Issue 15, mail loops: a message that already made limits.max_hops hops
// (Received: headers) is refused at the end of DATA and of BDAT LAST.
TEST_F(SessionTest, TooManyReceivedHeadersRefused554) {
  config_.limits.max_hops = 3;
  auto received = [](int n) {
    std::string h;
    for (int i = 0; i < n; ++i) h += "Received: from hop" + std::to_string(i) + "\r\n\tby x; date\r\n";
    return h;
  };
  Open(/*trusted=*/true);
  Send(kEhlo);
  // Two hops so far: ours makes three, the limit: accepted.
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" + received(2) +
       "Subject: s\r\n\r\nbody\r\n.\r\n");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(Commit().substr(0, 4), "250 ");
  // Three already: refused, nothing queued, the session goes on.
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" + received(3) +
                 "Subject: s\r\n\r\nbody\r\n.\r\n"),
            std::string(kSenderOk) + kRcptOk + k354 +
                "554 5.4.6 Too many hops (3 Received: headers); mail loop suspected\r\n");
  EXPECT_EQ(host_->submitted.size(), 1u);
  // Received: lines in the body do not count.
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: s\r\n\r\n" +
       received(5) + ".\r\n");
  EXPECT_EQ(host_->submitted.size(), 2u);
  EXPECT_EQ(Commit().substr(0, 4), "250 ");
  // BDAT too.
  std::string msg = received(4) + "Subject: s\r\n\r\nbody\r\n";
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT " +
                 std::to_string(msg.size()) + " LAST\r\n" + msg),
            std::string(kSenderOk) + kRcptOk +
                "554 5.4.6 Too many hops (4 Received: headers); mail loop suspected\r\n");
  EXPECT_EQ(host_->submitted.size(), 2u);
  EXPECT_EQ(Send("NOOP\r\n").substr(0, 4), "250 ");
}

// ------------------------------------------------------------------- AUTH

TEST_F(SessionTest, AuthPlainWithInitialResponse) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("alice", "s3cret") + "\r\n"), "");
  EXPECT_EQ(s_->mode(), Session::Mode::kWaitAuth);
  EXPECT_EQ(s_->TimeoutSeconds(), 0);
  ASSERT_EQ(host_->auths.size(), 1u);
  EXPECT_EQ(host_->auths[0].user, "alice");
  EXPECT_EQ(host_->auths[0].password, "s3cret");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(s_->auth_user(), "alice");

  // Authenticated: may relay; the trace header says so.
  EXPECT_EQ(Send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"),
            std::string(kSenderOk) + kRcptOk + k354);
  EXPECT_EQ(Send("Subject: x\r\n\r\nhi\r\n.\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  const auto& m = host_->submitted[0];
  EXPECT_EQ(m.meta.auth_user, "alice");
  EXPECT_THAT(m.header_prefix, HasSubstr(" with ESMTPSA id "));
  EXPECT_THAT(m.header_prefix, HasSubstr("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)"));
  EXPECT_THAT(m.header_prefix, HasSubstr("(authenticated user alice)"));
}

TEST_F(SessionTest, AuthPlainWithContinuation) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("auth plain\r\n"), "334 \r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kAuthPlain);
  EXPECT_EQ(Send(PlainResponse("alice", "pw") + "\r\n"), "");
  ASSERT_EQ(host_->auths.size(), 1u);
  EXPECT_EQ(host_->auths[0].user, "alice");
  EXPECT_EQ(host_->auths[0].password, "pw");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
}

TEST_F(SessionTest, AuthPlainWithMatchingAuthzid) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  std::string raw = std::string("alice") + '\0' + "alice" + '\0' + "pw";
  EXPECT_EQ(Send("AUTH PLAIN " + B64(raw) + "\r\n"), "");
  ASSERT_EQ(host_->auths.size(), 1u);
  EXPECT_EQ(host_->auths[0].user, "alice");
}

TEST_F(SessionTest, AuthPlainWithForeignAuthzidRefused) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  std::string raw = std::string("root") + '\0' + "alice" + '\0' + "pw";
  EXPECT_THAT(Send("AUTH PLAIN " + B64(raw) + "\r\n"), StartsWith("535 5.7.8 "));
  EXPECT_TRUE(host_->auths.empty());
  EXPECT_EQ(s_->auth_user(), "");
}

TEST_F(SessionTest, AuthLogin) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kAuthUser);
  EXPECT_EQ(Send(B64("alice@example.com") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kAuthPass);
  EXPECT_EQ(Send(B64("pass word") + "\r\n"), "");
  ASSERT_EQ(host_->auths.size(), 1u);
  EXPECT_EQ(host_->auths[0].user, "alice@example.com");
  EXPECT_EQ(host_->auths[0].password, "pass word");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(s_->auth_user(), "alice@example.com");
}

TEST_F(SessionTest, AuthLoginWithInitialUser) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH LOGIN " + B64("alice") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(Send(B64("pw") + "\r\n"), "");
  ASSERT_EQ(host_->auths.size(), 1u);
  EXPECT_EQ(host_->auths[0].user, "alice");
  EXPECT_EQ(host_->auths[0].password, "pw");
}

TEST_F(SessionTest, AuthFailure) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  Send("AUTH PLAIN " + PlainResponse("alice", "wrong") + "\r\n");
  EXPECT_EQ(AuthResult(false), "535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_EQ(s_->auth_user(), "");
  EXPECT_EQ(s_->summary().auth_failures, 1u);
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  EXPECT_EQ(Send(kEhlo), EhloReply(false, true)) << "AUTH still offered";
  EXPECT_EQ(Send("MAIL FROM:<alice@example.com>\r\n"), "530 5.7.0 Authentication required: log in with AUTH before MAIL\r\n");
  // A stray late result changes nothing.
  EXPECT_EQ(AuthResult(true), "");
  EXPECT_EQ(s_->auth_user(), "");
}

TEST_F(SessionTest, AuthFromABlockedAddressIsClosedWith421) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  Send("AUTH PLAIN " + PlainResponse("alice", "right") + "\r\n");
  s_->OnAuthBlocked();  // the host found the client's IP blocked: no password check
  EXPECT_EQ(Take(), "421 4.7.0 mx.test Too many failed authentications from your address; try again later\r\n");
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->close_reason(), "auth_ip_blocked");
  EXPECT_EQ(s_->auth_user(), "");
}

// Issue 21: the 421 says how long the block lasts, and the session takes
// the name the users file writes (a login with different capitals in the
// domain is logged and stored under the file's name).
TEST_F(SessionTest, BlockedAuthSaysForHowLong) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  Send("AUTH PLAIN " + PlainResponse("alice", "right") + "\r\n");
  s_->OnAuthBlocked(287);
  EXPECT_EQ(Take(), "421 4.7.0 mx.test Too many failed authentications from your address; try again in 287 "
                    "seconds\r\n");
}

TEST_F(SessionTest, AuthenticatedNameIsTheUsersFiles) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  Send("AUTH PLAIN " + PlainResponse("alice@EXAMPLE.com", "right") + "\r\n");
  s_->OnAuthResult(true, "alice@example.com");
  EXPECT_EQ(Take(), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(s_->auth_user(), "alice@example.com");
}

// Issue 21 (live trace): a traced session copies its conversation, but
// never an AUTH payload (initial response or continuation) nor the message.
TEST_F(SessionTest, TraceShowsTheConversationRedacted) {
  TraceHub hub;
  auto sub = hub.Subscribe({.ip = "192.0.2.1"});
  auto other = hub.Subscribe({.ip = "198.51.100.1"});
  env_.trace = &hub;
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  std::string secret = PlainResponse("alice", "s3cr3t-pw");
  Send("AUTH PLAIN " + secret + "\r\n");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  Send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
  Send("Subject: private-subject\r\n\r\nprivate-body\r\n.\r\n");
  Commit();
  s_->TraceEvent("session end: quit");
  auto lines = sub->Wait(0);
  ASSERT_TRUE(lines.has_value());
  std::string all;
  for (const auto& l : *lines) all += l + "\n";
  for (const char* want : {" 192.0.2.1 test:2525 > 220 mx.test ESMTP", " < EHLO client.example", " < STARTTLS",
                           " * TLS established: TLSv1.3", " < AUTH PLAIN <redacted>", " > 235 2.7.0",
                           " * authenticated as alice", " < MAIL FROM:<alice@example.com>", " > 354 ",
                           " < <message content: ", " > 250 2.0.0 Ok: queued as ", " * session end: quit"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << " not in\n" << all;
  }
  for (const std::string& never : {secret, std::string("s3cr3t-pw"), std::string("private-subject"),
                                   std::string("private-body")}) {
    EXPECT_EQ(all.find(never), std::string::npos) << never << " leaked into the trace:\n" << all;
  }
  EXPECT_FALSE(other->Wait(0)->size()) << "a session from another address is not traced";
  // AUTH LOGIN: the user name and password lines are redacted too.
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  Send("AUTH LOGIN\r\n");
  Send(absl::Base64Escape("alice") + "\r\n");
  Send(absl::Base64Escape("s3cr3t-pw") + "\r\n");
  lines = sub->Wait(0);
  all.clear();
  for (const auto& l : *lines) all += l + "\n";
  EXPECT_NE(all.find(" < AUTH LOGIN"), std::string::npos) << all;
  EXPECT_EQ(all.find(absl::Base64Escape("s3cr3t-pw")), std::string::npos) << all;
  EXPECT_EQ(all.find(absl::Base64Escape("alice")), std::string::npos) << all;
}

// Issue 21: a client set up for implicit TLS ("SSL") on a STARTTLS or plain
// port sends a ClientHello as its first bytes; 500 replies would be garbage
// to it. The session closes without a reply and says why.
TEST_F(SessionTest, TlsClientHelloOnPlaintextPortClosesWithoutReply) {
  Open();
  Take();  // the greeting went out at connect
  s_->Feed(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(s_->mode(), Session::Mode::kClosed);
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->close_reason(), "tls_on_plain_port");
}

TEST_F(SessionTest, OnlyTheFirstBytesAreCheckedForAClientHello) {
  Open();
  Take();
  EXPECT_EQ(Send(kEhlo), EhloReply(true, false));
  // The same bytes later are an (unrecognised) command, answered as such.
  EXPECT_EQ(Send(std::string("\x16\x03xx\r\n", 6)), "500 5.5.1 Command unrecognized\r\n");
  EXPECT_EQ(host_->closes, 0);
}

// Issue 15: a password that was not checked (the client's checks in flight
// are at its limit, or the checker's queue is full) is a temporary 454, not
// a failure: it must not use up the session's max_failures.
TEST_F(SessionTest, AuthNotCheckedIs454AndNotAFailure) {
  config_.auth.max_failures = 1;
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  Send("AUTH PLAIN " + PlainResponse("alice", "right") + "\r\n");
  s_->OnAuthBusy();
  EXPECT_EQ(Take(), "454 4.7.0 Temporary authentication failure; try again later\r\n");
  EXPECT_EQ(host_->closes, 0);
  EXPECT_EQ(s_->summary().auth_failures, 0u);
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  // The client tries again and gets in.
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("alice", "right") + "\r\n"), "");
  EXPECT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  s_->OnAuthBusy();  // a stray late answer changes nothing
  EXPECT_EQ(Take(), "");
}

TEST_F(SessionTest, AuthMaxFailuresCloses) {
  config_.auth.max_failures = 3;
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  for (int i = 1; i <= 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(Send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    EXPECT_EQ(Send(B64("alice") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
    EXPECT_EQ(Send(B64("guess" + std::to_string(i)) + "\r\n"), "");
    std::string out = AuthResult(false);
    if (i < 3) {
      EXPECT_EQ(out, "535 5.7.8 Authentication credentials invalid\r\n");
      EXPECT_EQ(host_->closes, 0);
    } else {
      EXPECT_EQ(out, "421 4.7.0 mx.test Too many failed authentication attempts\r\n");
    }
  }
  EXPECT_EQ(host_->auths.size(), 3u);
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->mode(), Session::Mode::kClosed);
  EXPECT_EQ(s_->close_reason(), "auth_failures");
  EXPECT_EQ(Send("NOOP\r\n"), "");
}

TEST_F(SessionTest, AuthWithoutTlsRefused) {
  Open();
  Send(kEhlo);
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n"),
            "538 5.7.11 Encryption required for requested authentication mechanism; issue STARTTLS first\r\n");
  EXPECT_EQ(Send("AUTH LOGIN\r\n"),
            "538 5.7.11 Encryption required for requested authentication mechanism; issue STARTTLS first\r\n");
  EXPECT_TRUE(host_->auths.empty());
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
}

TEST_F(SessionTest, AuthCancel) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH PLAIN\r\n"), "334 \r\n");
  EXPECT_EQ(Send("*\r\n"), "501 5.7.0 Authentication cancelled\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  EXPECT_EQ(Send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(Send(B64("alice") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(Send("*\r\n"), "501 5.7.0 Authentication cancelled\r\n");
  EXPECT_TRUE(host_->auths.empty());
  EXPECT_EQ(Send("NOOP\r\n"), kNoopOk);
}

TEST_F(SessionTest, AuthBadBase64) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH PLAIN !!!!\r\n"), "501 5.5.2 Invalid base64 data\r\n");
  EXPECT_EQ(Send("AUTH PLAIN\r\n"), "334 \r\n");
  EXPECT_EQ(Send("abc\r\n"), "501 5.5.2 Invalid base64 data\r\n");
  EXPECT_EQ(Send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(Send("YW Jj\r\n"), "501 5.5.2 Invalid base64 data\r\n");
  // Valid base64 but not "authzid\0user\0pass".
  EXPECT_EQ(Send("AUTH PLAIN " + B64("alice") + "\r\n"),
            "501 5.5.2 Malformed AUTH PLAIN response\r\n");
  EXPECT_TRUE(host_->auths.empty());
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
}

TEST_F(SessionTest, AuthMiscErrors) {
  Open();
  EXPECT_EQ(Send("AUTH PLAIN\r\n"), "503 5.5.1 Send EHLO first\r\n");
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH CRAM-MD5\r\n"), "504 5.5.4 Unrecognized authentication type\r\n");
  Send("AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n");
  AuthResult(true);
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n"),
            "503 5.5.1 Already authenticated\r\n");
  EXPECT_EQ(host_->auths.size(), 1u);
}

TEST_F(SessionTest, AuthNotAllowedDuringTransaction) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n"),
            "503 5.5.1 AUTH not allowed during a mail transaction\r\n");
  EXPECT_TRUE(host_->auths.empty());
}

TEST_F(SessionTest, PipelinedCommandsWaitForAuthResult) {
  Open();
  Send(kEhlo);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("AUTH PLAIN " + PlainResponse("alice", "pw") +
                 "\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.org>\r\n"),
            "");
  EXPECT_GT(s_->input_buffered(), 0u);
  EXPECT_EQ(AuthResult(true),
            std::string("235 2.7.0 Authentication successful\r\n") + kSenderOk + kRcptOk);
}

TEST_F(SessionTest, AuthenticatedPipelineSplitAtEveryBoundary) {
  listener_.mode = ListenerMode::kPlain;
  listener_.auth_without_tls = true;
  const std::string in = "EHLO client.example\r\n"
                         "AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n"
                         "MAIL FROM:<alice@example.com>\r\n"
                         "RCPT TO:<b@example.org>\r\n"
                         "BDAT 8\r\nHi\r\n..\r\n"  // no unstuffing with BDAT
                         "AUTH LOGIN\r\n"           // refused: already authenticated
                         "BDAT 2 LAST\r\nok"
                         "QUIT\r\n";
  ScriptRun whole = ExpectSplitInvariant(in, /*trusted=*/false);
  EXPECT_EQ(whole.output, kGreeting + EhloReply(false, true) +
                              "235 2.7.0 Authentication successful\r\n" + kSenderOk + kRcptOk +
                              "250 2.0.0 8 octets received\r\n"
                              "503 5.5.1 Already authenticated\r\n"
                              "250 2.0.0 Ok: queued as <ID>\r\n" +
                              kQuit);
  ASSERT_EQ(whole.messages.size(), 1u);
  EXPECT_EQ(whole.messages[0].body, "Hi\r\n..\r\nok");
  EXPECT_EQ(whole.messages[0].meta.auth_user, "alice");
  EXPECT_THAT(whole.messages[0].header_prefix, HasSubstr(" with ESMTPA id "));
}

// ------------------------------------------------------------- STARTTLS

TEST_F(SessionTest, StartTlsDiscardsPipelinedPlaintext) {
  Open(/*trusted=*/true);
  EXPECT_EQ(Send("EHLO client.example\r\nSTARTTLS\r\nMAIL FROM:<evil@example.com>\r\n"
                 "RCPT TO:<victim@example.org>\r\nNOOP\r\n"),
            EhloReply(true, false) + "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(host_->start_tls, 1);
  EXPECT_EQ(s_->mode(), Session::Mode::kTlsSwitch);
  EXPECT_EQ(s_->input_buffered(), 0u);
  // Plaintext arriving before the handshake completes is dropped as well.
  EXPECT_EQ(Send("NOOP\r\n"), "");
  EXPECT_EQ(s_->input_buffered(), 0u);

  s_->OnTlsEstablished(kTlsVersion, kTlsCipher);
  EXPECT_EQ(Take(), "") << "nothing from before TLS is executed";
  EXPECT_TRUE(s_->tls());
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  // The EHLO from before TLS is forgotten; there is no transaction.
  EXPECT_EQ(Send("RCPT TO:<victim@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), "503 5.5.1 Send EHLO/HELO first\r\n");
  EXPECT_EQ(Send(kEhlo), EhloReply(false, true));
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(host_->start_tls, 1);
}

TEST_F(SessionTest, StartTlsSplitInvariant) {
  ScriptRun whole = ExpectSplitInvariant(
      "EHLO client.example\r\nSTARTTLS\r\nMAIL FROM:<evil@example.com>\r\nNOOP\r\n",
      /*trusted=*/true);
  EXPECT_EQ(whole.output, kGreeting + EhloReply(true, false) + "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(whole.start_tls, 1);
}

TEST_F(SessionTest, StartTlsErrors) {
  Open();
  Send(kEhlo);
  EXPECT_EQ(Send("STARTTLS now\r\n"), "501 5.5.4 Syntax: STARTTLS\r\n");
  EXPECT_EQ(host_->start_tls, 0);
  StartTlsAndEhlo();
  EXPECT_EQ(Send("STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n");
  EXPECT_EQ(host_->start_tls, 1);
}

// RFC 3207 4.2: after the handshake the server MUST discard any knowledge
// obtained from the client that did not come from the TLS negotiation. An
// AUTH done in plaintext (auth_without_tls on a STARTTLS port) is such
// knowledge: otherwise a man in the middle can prepend his own AUTH.
TEST_F(SessionTest, StartTlsForgetsPlaintextAuthentication) {
  listener_.auth_without_tls = true;
  Open();
  EXPECT_EQ(Send(kEhlo), EhloReply(true, true));
  Send("AUTH PLAIN " + PlainResponse("mallory", "pw") + "\r\n");
  ASSERT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  ASSERT_EQ(s_->auth_user(), "mallory");
  EXPECT_EQ(Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  s_->OnTlsEstablished(kTlsVersion, kTlsCipher);
  EXPECT_EQ(s_->auth_user(), "");
  EXPECT_EQ(Send(kEhlo), EhloReply(false, true));
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), "530 5.7.0 Authentication required: log in with AUTH before MAIL\r\n");
}

// --------------------------------------------------------------- limits

TEST_F(SessionTest, LineTooLong) {
  config_.limits.max_line_length = 64;
  Open();
  // 64 bytes including CRLF is fine.
  std::string ok_line = "NOOP " + std::string(57, 'x') + "\r\n";
  ASSERT_EQ(ok_line.size(), 64u);
  EXPECT_EQ(Send(ok_line), kNoopOk);
  // 65 is not; the rest of the line is skipped, the next line works.
  std::string long_line = "NOOP " + std::string(58, 'x') + "\r\n";
  EXPECT_EQ(Send(long_line + "NOOP\r\n"), "500 5.5.2 Line too long\r\n" + std::string(kNoopOk));
  // Much longer than the limit, fed in pieces: still one error.
  EXPECT_EQ(Send("MAIL FROM:<" + std::string(100, 'a')), "500 5.5.2 Line too long\r\n");
  EXPECT_EQ(Send(std::string(300, 'b')), "");
  EXPECT_EQ(Send("@example.com>\r\nNOOP\r\n"), kNoopOk);
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  EXPECT_EQ(Send(kEhlo), EhloReply(true, false));
}

TEST_F(SessionTest, LineTooLongSplitInvariant) {
  config_.limits.max_line_length = 32;
  ScriptRun whole = ExpectSplitInvariant(
      // 85+2 bytes; 5; 33 (one over); 32 (exactly at the limit); 6.
      "NOOP " + std::string(80, 'x') + "\r\nNOOP\r\nHELP " + std::string(26, 'y') + "\r\n" +
          "NOOP " + std::string(25, 'z') + "\r\nQUIT\r\n",
      false);
  EXPECT_EQ(whole.output,
            std::string(kGreeting) + "500 5.5.2 Line too long\r\n" + kNoopOk +
                "500 5.5.2 Line too long\r\n" + kNoopOk + kQuit);
}

TEST_F(SessionTest, TooManyRecipients) {
  config_.limits.max_recipients = 2;
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
                 "RCPT TO:<c@example.org>\r\nRCPT TO:<d@example.org>\r\nDATA\r\nx\r\n.\r\n"),
            std::string(kSenderOk) + kRcptOk + kRcptOk + "452 4.5.3 Too many recipients\r\n" +
                k354);
  ASSERT_EQ(host_->submitted.size(), 1u);
  ASSERT_EQ(host_->submitted[0].meta.recipients.size(), 2u);
  EXPECT_EQ(host_->submitted[0].meta.recipients[1].address, "c@example.org");
}

TEST_F(SessionTest, DeclaredSizeTooBig) {
  config_.limits.max_message_size = 1000;
  Open(/*trusted=*/true);
  EXPECT_THAT(Send(kEhlo), HasSubstr("250-SIZE 1000\r\n"));
  EXPECT_EQ(Send("MAIL FROM:<a@example.com> SIZE=1001\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size of 1000 bytes\r\n");
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com> SIZE=1000\r\n"), kSenderOk);
}

TEST_F(SessionTest, BodyTooBig) {
  config_.limits.max_message_size = 1000;
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  std::string body;
  for (int i = 0; i < 30; ++i) body += std::string(48, 'x') + "\r\n";  // 1500 bytes
  EXPECT_EQ(Send(body + ".\r\nNOOP\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size of 1000 bytes\r\n" +
                std::string(kNoopOk));
  EXPECT_TRUE(host_->submitted.empty());
  // The transaction is gone; a new one goes through.
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  EXPECT_EQ(Send(std::string(998, 'y') + "\r\n.\r\n"), "");  // exactly 1000
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(host_->submitted[0].body.size(), 1000u);
}

TEST_F(SessionTest, BadSequence) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), "503 5.5.1 Nested MAIL command\r\n");
  // DATA with no accepted recipient: RFC 5321 3.3 allows 503 or 554; this
  // server answers 554 "No valid recipients" (as Postfix does).
  EXPECT_EQ(Send("DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  EXPECT_EQ(Send("DATA extra\r\n"), "501 5.5.4 Syntax: DATA\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Reset OK\r\n");
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_TRUE(host_->submitted.empty());
}

TEST_F(SessionTest, MaxErrorsCloses) {
  config_.limits.max_errors = 3;
  Open();
  EXPECT_EQ(Send("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n"),
            "500 5.5.1 Command unrecognized\r\n"
            "500 5.5.1 Command unrecognized\r\n"
            "500 5.5.1 Command unrecognized\r\n"
            "421 4.7.0 mx.test Too many errors; closing connection\r\n");
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->mode(), Session::Mode::kClosed);
  EXPECT_EQ(s_->close_reason(), "too_many_errors");
  EXPECT_EQ(Send("NOOP\r\n"), "");
  EXPECT_EQ(host_->closes, 1);
}

// ------------------------------------------------------------- smuggling

TEST_F(SessionTest, BareLfSmugglingRejectedWithoutSubmit) {
  std::string in =
      "EHLO client.example\r\n"
      "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@example.org>\r\n"
      "DATA\r\n"
      "Subject: one\r\n\r\nhello\n.\n"
      "MAIL FROM:<x@y>\r\n"
      "RCPT TO:<victim@example.net>\r\n"
      "DATA\r\n"
      "Subject: smuggled\r\n\r\nevil\r\n"
      ".\r\n"
      "QUIT\r\n";
  ScriptRun whole = ExpectSplitInvariant(in, /*trusted=*/true);
  EXPECT_TRUE(whole.messages.empty());
  EXPECT_EQ(Count(whole.output, "550 5.6.0 "), 1u);
  EXPECT_EQ(whole.output, kGreeting + EhloReply(true, false) + kSenderOk + kRcptOk + k354 +
                              "550 5.6.0 Message contains bare CR or LF line endings; only CRLF "
                              "is accepted (RFC 5321 2.3.8)\r\n" +
                              kQuit);
}

TEST_F(SessionTest, OtherSmugglingVariantsRejected) {
  for (std::string_view variant : {"\r.\r\n", "\n.\r\n", "\r\n.\rX", "\r\n.\n", "\r.\r"}) {
    SCOPED_TRACE(testing::PrintToString(std::string(variant)));
    Open(/*trusted=*/true);
    Send(kEhlo);
    Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
    std::string out = Send(std::string("hello") + std::string(variant) +
                           "MAIL FROM:<x@y>\r\nRCPT TO:<v@example.net>\r\nDATA\r\nevil\r\n");
    EXPECT_EQ(out, "") << "still inside the first message";
    EXPECT_EQ(s_->mode(), Session::Mode::kData);
    EXPECT_THAT(Send(".\r\nNOOP\r\n"), StartsWith("550 5.6.0 "));
    EXPECT_TRUE(host_->submitted.empty());
    EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  }
}

// ------------------------------------------------------------------ BDAT

TEST_F(SessionTest, BdatChunks) {
  std::string in =
      "EHLO client.example\r\n"
      "MAIL FROM:<a@example.com>\r\n"
      "RCPT TO:<b@example.org>\r\n"
      "BDAT 12\r\n"
      "Subject: x\r\n"
      "BDAT 8 LAST\r\n"
      "\r\nRSET\r\n"
      "QUIT\r\n";
  ScriptRun whole = ExpectSplitInvariant(in, /*trusted=*/true);
  EXPECT_EQ(whole.output, kGreeting + EhloReply(true, false) + kSenderOk + kRcptOk +
                              "250 2.0.0 12 octets received\r\n" +
                              "250 2.0.0 Ok: queued as <ID>\r\n" + kQuit);
  ASSERT_EQ(whole.messages.size(), 1u);
  EXPECT_EQ(whole.messages[0].body, "Subject: x\r\n\r\nRSET\r\n");
  EXPECT_EQ(whole.messages[0].meta.sender, "a@example.com");
  ASSERT_EQ(whole.messages[0].meta.recipients.size(), 1u);
  EXPECT_EQ(whole.messages[0].meta.recipients[0].address, "b@example.org");
  EXPECT_THAT(whole.messages[0].header_prefix, StartsWith("Received: from client.example"));
}

TEST_F(SessionTest, BdatZeroLast) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("BDAT 5\r\nabcde"), "250 2.0.0 5 octets received\r\n");
  EXPECT_EQ(Send("BDAT 0 LAST\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(host_->submitted[0].body, "abcde");
  EXPECT_THAT(Commit(), StartsWith("250 2.0.0 Ok: queued as "));

  // A message that is one empty LAST chunk.
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("BDAT 0 LAST\r\nNOOP\r\n"), "");
  ASSERT_EQ(host_->submitted.size(), 2u);
  EXPECT_EQ(host_->submitted[1].body, "");
  EXPECT_THAT(Commit(), MatchesRegex("250 2\\.0\\.0 Ok: queued as [0-9a-f]{24}\r\n"
                                     "250 2\\.0\\.0 OK\r\n"));
}

TEST_F(SessionTest, BdatWithoutMailConsumesTheChunk) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  // The chunk's bytes look like a command; they must not be executed.
  const std::string chunk = "MAIL FROM:<a@b.example>\r\n";
  EXPECT_EQ(Send("BDAT " + std::to_string(chunk.size()) + "\r\n" + chunk + "NOOP\r\n"),
            "503 5.5.1 Need MAIL command\r\n" + std::string(kNoopOk));
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(Send("BDAT 0 LAST\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
  // Without RCPT, likewise.
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(Send("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n"),
            "503 5.5.1 Need RCPT command\r\n" + std::string(kNoopOk));
  EXPECT_EQ(host_->closes, 0);
  EXPECT_TRUE(host_->submitted.empty());
}

TEST_F(SessionTest, BdatSyntax) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Send("BDAT\r\n"), "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
  EXPECT_EQ(Send("BDAT x LAST\r\n"), "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kCommand);
}

TEST_F(SessionTest, BdatOversize) {
  config_.limits.max_message_size = 1000;
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("BDAT 600\r\n" + std::string(600, 'x') + "BDAT 600 LAST\r\n" +
                 std::string(600, 'y') + "NOOP\r\n"),
            "250 2.0.0 600 octets received\r\n"
            "552 5.3.4 Message size exceeds fixed maximum message size of 1000 bytes\r\n" +
                std::string(kNoopOk));
  EXPECT_TRUE(host_->submitted.empty());
  // One chunk over the limit on its own, fed in pieces.
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("BDAT 1001 LAST\r\n" + std::string(500, 'z')), "");
  EXPECT_EQ(Send(std::string(501, 'z') + "NOOP\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size of 1000 bytes\r\n" +
                std::string(kNoopOk));
  EXPECT_TRUE(host_->submitted.empty());
  // Exactly at the limit is fine.
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("BDAT 1000 LAST\r\n" + std::string(1000, 'w')), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(host_->submitted[0].body.size(), 1000u);
}

TEST_F(SessionTest, BdatBareLineEndingsRejected) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  // The CR ends one chunk and the LF starts the next: that pair is fine.
  EXPECT_EQ(Send("BDAT 3\r\nab\r"), "250 2.0.0 3 octets received\r\n");
  EXPECT_EQ(Send("BDAT 3\r\n\nc\n"), "250 2.0.0 3 octets received\r\n");
  EXPECT_EQ(Send("BDAT 0 LAST\r\n"), "550 5.6.0 Message contains bare CR or LF line endings; "
                                      "only CRLF is accepted (RFC 5321 2.3.8)\r\n");
  EXPECT_TRUE(host_->submitted.empty());
  // A trailing CR at the very end is bare too.
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_THAT(Send("BDAT 3 LAST\r\nab\r"), StartsWith("550 5.6.0 "));
  EXPECT_TRUE(host_->submitted.empty());
}

TEST_F(SessionTest, BdatThenDataOrRcptRefused) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("BDAT 2\r\nab"), "250 2.0.0 2 octets received\r\n");
  EXPECT_EQ(Send("RCPT TO:<c@example.org>\r\n"),
            "503 5.5.1 RCPT not allowed during BDAT transfer\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 DATA not allowed after BDAT\r\n");
  EXPECT_EQ(Send("BDAT 2 LAST\r\ncd"), "");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_EQ(host_->submitted[0].body, "abcd");
}

// ---------------------------------------------------- simple commands etc.

TEST_F(SessionTest, SimpleCommands) {
  Open();
  EXPECT_EQ(Send("NOOP\r\n"), kNoopOk);
  EXPECT_EQ(Send("noop ignored args\r\n"), kNoopOk);
  EXPECT_EQ(Send("VRFY bob\r\n"),
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
  EXPECT_THAT(Send("HELP\r\n"), StartsWith("214 2.0.0 "));
  EXPECT_EQ(Send("EXPN staff\r\n"), "502 5.5.1 EXPN not supported\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Reset OK\r\n");
  EXPECT_EQ(Send("QUIT\r\nNOOP\r\n"), kQuit);
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->mode(), Session::Mode::kClosed);
  EXPECT_EQ(s_->close_reason(), "quit");
  EXPECT_EQ(Send("NOOP\r\n"), "");
}

TEST_F(SessionTest, RsetAbortsTransaction) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Reset OK\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<>\r\n"), kSenderOk) << "null sender allowed";
}

TEST_F(SessionTest, NulInCommand) {
  Open();
  EXPECT_EQ(Send(std::string("NOOP\0x\r\n", 8)), "500 5.5.2 NUL character in command\r\n");
  EXPECT_EQ(Send(std::string("\0\r\n", 3)), "500 5.5.2 NUL character in command\r\n");
  EXPECT_EQ(Send("NOOP\r\n"), kNoopOk);
}

// Fuzz finding param-echo-cr: a bare CR inside a command line is refused
// before any part of it can be echoed into a reply.
TEST_F(SessionTest, BareCrInCommand) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Send("MAIL FROM:<a@example.com> X\r250 2.0.0 injected\r\n"), "500 5.5.2 Bare CR in command\r\n");
  EXPECT_EQ(Send("NOOP\rx\r\n"), "500 5.5.2 Bare CR in command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
}

TEST_F(SessionTest, ParserErrorsPassedThrough) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_THAT(Send("MAIL FROM:a@example.com\r\n"), StartsWith("501 5.5.4 "));
  EXPECT_THAT(Send("MAIL FROM:<a@example.com> FOO=1\r\n"), StartsWith("555 5.5.4 "));
  EXPECT_THAT(Send("MAIL FROM:<@r.example:a@example.com>\r\n"), StartsWith("501 5.1.3 "));
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_THAT(Send("RCPT TO:<>\r\n"), StartsWith("501 5.1.3 "));
  EXPECT_THAT(Send("RCPT TO:<b@example.org.>\r\n"), StartsWith("501 5.1.3 "));
  EXPECT_EQ(Send("RCPT TO:<postmaster@[IPv6:::1]>\r\n"), kRcptOk);
}

TEST_F(SessionTest, Smtputf8RequiresParameter) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  EXPECT_EQ(Send("MAIL FROM:<j\xc3\xb6rg@example.com>\r\n"),
            "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"), kSenderOk);
  EXPECT_EQ(Send("RCPT TO:<m\xc3\xbcller@example.org>\r\n"),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8 on MAIL FROM\r\n");
  Send("RSET\r\n");
  EXPECT_EQ(Send("MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8\r\n"), kSenderOk);
  EXPECT_EQ(Send("RCPT TO:<m\xc3\xbcller@b\xc3\xbc" "cher.example>\r\n"), kRcptOk);
  Send("DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(host_->submitted.size(), 1u);
  EXPECT_TRUE(host_->submitted[0].meta.smtputf8);
  EXPECT_EQ(host_->submitted[0].meta.sender, "j\xc3\xb6rg@example.com");
  EXPECT_EQ(host_->submitted[0].meta.recipients[0].address,
            "m\xc3\xbcller@b\xc3\xbc" "cher.example");
}

TEST_F(SessionTest, Timeout) {
  Open();
  s_->OnTimeout();
  EXPECT_EQ(Take(), "421 4.4.2 mx.test Timeout (command); closing connection\r\n");
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->close_reason(), "timeout");
  EXPECT_EQ(s_->mode(), Session::Mode::kClosed);
  // A second timer or more input does nothing.
  s_->OnTimeout();
  EXPECT_EQ(Send("NOOP\r\n"), "");
  EXPECT_EQ(host_->closes, 1);
}

TEST_F(SessionTest, TimeoutInData) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\npartial");
  s_->OnTimeout();
  EXPECT_EQ(Take(), "421 4.4.2 mx.test Timeout (data); closing connection\r\n");
  EXPECT_EQ(host_->closes, 1);
  EXPECT_TRUE(host_->submitted.empty());
}

TEST_F(SessionTest, TimeoutSecondsPerMode) {
  config_.timeouts.greeting = 11;
  config_.timeouts.command = 12;
  config_.timeouts.data = 13;
  config_.timeouts.tls_handshake = 14;
  Open(/*trusted=*/true);
  EXPECT_EQ(s_->TimeoutSeconds(), 11);
  Send(kEhlo);
  EXPECT_EQ(s_->TimeoutSeconds(), 12);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kData);
  EXPECT_EQ(s_->TimeoutSeconds(), 13);
  Send(".\r\n");
  EXPECT_EQ(s_->TimeoutSeconds(), 0);
  Commit();
  Send("BDAT 10\r\nabc");
  EXPECT_EQ(s_->mode(), Session::Mode::kBdat);
  EXPECT_EQ(s_->TimeoutSeconds(), 13);
  Send("defghij");
  Send("STARTTLS\r\n");
  EXPECT_EQ(s_->mode(), Session::Mode::kTlsSwitch);
  EXPECT_EQ(s_->TimeoutSeconds(), 14);
  s_->OnTlsEstablished(kTlsVersion, kTlsCipher);
  EXPECT_EQ(s_->TimeoutSeconds(), 11) << "EHLO is required again";
}

TEST_F(SessionTest, ShutdownWhenIdleClosesAtOnce) {
  Open();
  s_->OnShutdown();
  EXPECT_EQ(Take(), "421 4.3.2 mx.test Service shutting down; try again later\r\n");
  EXPECT_EQ(host_->closes, 1);
  EXPECT_EQ(s_->close_reason(), "shutdown");
}

TEST_F(SessionTest, ShutdownDuringTransactionLetsItFinish) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\n");
  s_->OnShutdown();
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(host_->closes, 0);
  // The transaction begun before the drain runs to its end...
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\n"), "250 2.1.5 Recipient OK\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  Send("Subject: x\r\n\r\nbody\r\n.\r\n");
  EXPECT_EQ(Commit().substr(0, 4), "250 ");
  EXPECT_EQ(host_->closes, 0);
  // ...and the next command, outside a transaction, is refused.
  EXPECT_EQ(Send("MAIL FROM:<a@example.com>\r\n"),
            "421 4.3.2 mx.test Service shutting down; try again later\r\n");
  EXPECT_EQ(host_->closes, 1);
}

TEST_F(SessionTest, ShutdownAfterRsetRefusesTheNextCommand) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\n");
  s_->OnShutdown();
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Reset OK\r\n");
  EXPECT_EQ(Send("NOOP\r\n"), "421 4.3.2 mx.test Service shutting down; try again later\r\n");
}

TEST_F(SessionTest, RepliesAreCountedByCommandAndClass) {
  IngressStats stats(1);
  env_.stats = &stats;
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<bad>\r\nDATA\r\nx\r\n.\r\n");
  Commit();
  Send("FOO\r\n");
  auto n = [&](ReplyCmd c, int cls) { return stats.replies[static_cast<size_t>(c)][cls].load(); };
  EXPECT_EQ(n(ReplyCmd::kConnect, 0), 1u);
  EXPECT_EQ(n(ReplyCmd::kEhlo, 0), 1u);   // one multi-line reply counts once
  EXPECT_EQ(n(ReplyCmd::kMail, 0), 1u);
  EXPECT_EQ(n(ReplyCmd::kRcpt, 0), 1u);
  EXPECT_EQ(n(ReplyCmd::kRcpt, 3), 1u);   // 501/553 for <bad>
  EXPECT_EQ(n(ReplyCmd::kData, 1), 1u);   // 354
  EXPECT_EQ(n(ReplyCmd::kDot, 0), 1u);    // 250 queued
  EXPECT_EQ(n(ReplyCmd::kUnknown, 3), 1u);
  env_.stats = nullptr;
}

TEST_F(SessionTest, PipelinedFloodPausesAtTheOutputLimitAndResumes) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  std::string flood;
  for (int i = 0; i < 20000; ++i) flood += "NOOP\r\n";  // 20,000 replies = ~320 KB
  s_->Feed(flood);
  size_t first = s_->output_size();
  EXPECT_GE(first, Session::kMaxOutput);
  EXPECT_LT(first, Session::kMaxOutput + 100);  // stopped at the limit (one reply over at most)
  EXPECT_GT(s_->input_buffered(), 0u);          // the rest waits, unprocessed
  size_t replies = 0;
  for (int round = 0; round < 100 && (s_->has_output() || s_->input_buffered() > 0); ++round) {
    std::string out = s_->TakeOutput();
    for (size_t p = out.find("250 2.0.0 OK\r\n"); p != std::string::npos; p = out.find("250 2.0.0 OK\r\n", p + 1)) {
      replies++;
    }
    s_->Feed(std::string_view());  // the output was sent: go on
  }
  EXPECT_EQ(replies, 20000u);  // every command answered, in order, none lost
  EXPECT_EQ(s_->input_buffered(), 0u);
}

TEST_F(SessionTest, BufferedInputIsProcessedOnTheNextFeed) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  s_->Buffer("NOOP\r\nNO");
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(Send("OP\r\n"), "250 2.0.0 OK\r\n250 2.0.0 OK\r\n");
}

TEST_F(SessionTest, SummaryCountsRejections) {
  Open(/*trusted=*/true);
  Send(kEhlo);
  Send("FOO\r\nRCPT TO:<b@example.org>\r\nNOOP\r\n");
  EXPECT_EQ(s_->summary().rejected, 2u);
  Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n0123456789\r\n.\r\n");
  Commit();
  EXPECT_EQ(s_->summary().messages, 1u);
  EXPECT_EQ(s_->summary().recipients, 1u);
  EXPECT_EQ(s_->summary().bytes, 15u);  // DATA payload including the end marker
  EXPECT_EQ(s_->summary().rejected, 2u);
}

}  // namespace
}  // namespace mxr::relay

namespace mxr::relay {
namespace {

// Tenants (issue 18): sender domains at MAIL and on From:, a quota at RCPT,
// tenant, pool and campaign into the record, the campaign header removed.
TEST_F(SessionTest, TenantRulesAndRecord) {
  auto dir = tenants::Directory::Parse(
      "[[tenant]]\nname = \"acme\"\nusers = [\"alice\"]\nsender_domains = [\"acme.test\"]\n"
      "daily_quota = 2\npool = \"p1\"\n", "t.toml");
  ASSERT_TRUE(dir.ok()) << dir.status();
  tenants::Gate gate(&clock_);
  gate.SetDirectory(*dir);
  env_.tenants = &gate;
  listener_.mode = ListenerMode::kImplicitTls;
  host_ = std::make_unique<FakeHost>();
  s_ = std::make_unique<Session>(env_, host_.get(), ConnInfo{kClientIp, false});
  s_->OnTlsEstablished(kTlsVersion, kTlsCipher);
  s_->Start();
  Take();
  Send(kEhlo);
  Send("AUTH PLAIN " + PlainResponse("alice", "pw") + "\r\n");
  ASSERT_EQ(AuthResult(true), "235 2.7.0 Authentication successful\r\n");
  EXPECT_THAT(Send("MAIL FROM:<x@evil.test>\r\n"), testing::StartsWith("550 5.7.1 Sender <x@evil.test> not allowed"));
  EXPECT_EQ(Send("MAIL FROM:<a@acme.test>\r\n"), "250 2.1.0 Sender OK\r\n");
  EXPECT_EQ(Send("RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"),
            "250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n");
  EXPECT_THAT(Send("RCPT TO:<d@example.org>\r\n"), testing::StartsWith("452 4.5.3 Daily quota of tenant \"acme\""));
  EXPECT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_THAT(Send("From: x@evil.test\r\n\r\nx\r\n.\r\n"), testing::StartsWith("550 5.7.1 From: header domain evil.test"));
  EXPECT_TRUE(host_->submitted.empty());
  gate.SetDirectory(*tenants::Directory::Parse(
      "[[tenant]]\nname = \"acme\"\nusers = [\"alice\"]\nsender_domains = [\"acme.test\"]\npool = \"p1\"\n", "t.toml"));
  Send("MAIL FROM:<a@acme.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  Send("From: A <a@acme.test>\r\nX-MxRelay-Campaign: spring\r\nSubject: s\r\n\r\nx\r\n.\r\n");
  ASSERT_EQ(host_->submitted.size(), 1u);
  const auto& m = host_->submitted[0];
  EXPECT_EQ(m.meta.tenant, "acme");
  EXPECT_EQ(m.meta.pool, "p1");
  EXPECT_EQ(m.meta.campaign, "spring");
  EXPECT_EQ(m.body, "From: A <a@acme.test>\r\nSubject: s\r\n\r\nx\r\n");
  Commit();
}

}  // namespace
}  // namespace mxr::relay
