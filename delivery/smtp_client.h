// The outbound SMTP client as an I/O-free state machine (RFC 5321, 2920
// PIPELINING, 3207 STARTTLS, 4954 AUTH, 1870 SIZE, 6531 SMTPUTF8).
//
// The connection feeds it the server's bytes (plaintext, after TLS) and
// sends what TakeOutput() returns. It reports through ClientHost:
//   OnReady()           session usable: call Send() or Quit()
//   OnTransactionDone() per-recipient results of one message
//   OnFailed()          the session is unusable (connection-level problem)
// A failed transaction (MAIL/DATA rejected, no recipient accepted) is
// followed by RSET before the next OnReady(); a successful one is not.
//
//   SmtpClient c(opts, &host);
//   c.Feed(bytes); send(c.TakeOutput());
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace mxr::delivery {

struct Reply {
  int code = 0;
  std::string enhanced;  // "2.1.5" or "" if the server sent none
  std::string text;      // all lines' text joined with ' ' (without code/enhanced)
  std::vector<std::string> lines;  // raw text of each line (after "250-"/"250 ")
  std::string ToString() const;    // "550 5.1.1 text"
};

// Incremental multi-line reply parser. Lines longer than 4096 bytes or
// without a 3-digit code are protocol errors.
class ReplyParser {
 public:
  enum class Result { kReply, kNeedMore, kError };
  // Consumes from *buf.
  Result Next(std::string_view* buf, Reply* out);

 private:
  Reply cur_;
  bool in_progress_ = false;
};

struct OutboundMessage {
  std::string sender;                // "" = null sender
  std::vector<std::string> rcpts;
  bool smtputf8 = false;
  bool body_8bit = false;
  // RFC 3461 parameters, passed on only when the server offers DSN:
  // " RET=HDRS ENVID=x" for MAIL, one " NOTIFY=... ORCPT=..." per rcpt.
  std::string mail_dsn;
  std::vector<std::string> rcpt_dsn;  // empty, or one per rcpt
  const std::string* body = nullptr; // unstuffed, CRLF; owned by the caller until done
};

struct RcptResult {
  int code = 0;
  std::string enhanced;
  std::string text;
};

struct ClientOptions {
  std::string helo;
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::string auth_user, auth_password;  // AUTH PLAIN after TLS if set
  // AUTH over TLS whose certificate was not verified (tls = kRequired) only
  // when the route says so (auth_over_unverified_tls).
  bool auth_over_unverified_tls = false;
};

class ClientHost {
 public:
  virtual ~ClientHost() = default;
  // Begin a TLS handshake on the connection; answer with OnTlsDone().
  virtual void StartTls() = 0;
  virtual void OnReady() = 0;
  virtual void OnTransactionDone(std::vector<RcptResult> results) = 0;
  // code 4xx/5xx (synthetic if no reply), e.g. 421 4.4.2 "timeout".
  virtual void OnFailed(const Reply& why) = 0;
};

class SmtpClient {
 public:
  enum class Phase {
    kBanner, kEhlo, kHelo, kStartTls, kTlsHandshake, kAuth, kReady,
    kTransaction, kData, kDot, kRset, kQuit, kDone,
  };

  SmtpClient(ClientOptions opts, ClientHost* host) : opts_(std::move(opts)), host_(host) {}

  void Feed(std::string_view data);
  void OnTlsDone(bool ok, const std::string& detail);
  // What to send next. While the body is being sent, each call adds the
  // next kBodyChunk bytes of it (dot-stuffed) and, after the last, the
  // terminating dot: call again whenever the socket has room.
  std::string TakeOutput();
  bool has_output() const { return !out_.empty() || streaming_; }
  // The body is being sent (between the 354 and the terminating dot).
  bool streaming_body() const { return streaming_; }
  static constexpr size_t kBodyChunk = 128 * 1024;

  // Whether this session can carry `msg`; if not, *why is the permanent
  // result for every recipient (no SMTPUTF8: 553 5.6.7; over SIZE: 552 5.3.4).
  bool CanSend(const OutboundMessage& msg, RcptResult* why) const;
  // REQUIRES: phase() == kReady and CanSend(msg); *msg.body must stay alive
  // until OnTransactionDone (the client keeps a pointer to it, not to msg).
  // Sends one message (MAIL + RCPTs + DATA in one write when PIPELINING is
  // offered).
  void Send(const OutboundMessage& msg);
  void Quit();
  // The connection failed or timed out: report OnFailed / results.
  void Abort(const Reply& why);

  Phase phase() const { return phase_; }
  const char* PhaseName() const;
  bool tls_active() const { return tls_; }
  bool pipelining() const { return pipelining_; }
  bool dsn_offered() const { return dsn_; }
  // EHLO was answered without STARTTLS (and TLS is not up).
  bool starttls_missing() const { return ehlo_done_ && !starttls_offered_ && !tls_; }
  uint64_t max_size() const { return max_size_; }
  const std::string& banner() const { return banner_; }

 private:
  enum class Expect { kMail, kRcpt, kData };
  void HandleReply(const Reply& r);
  void AfterEhlo(const Reply& r);
  void Fail(const Reply& r);
  void Ready();
  void SendNextUnpipelined();
  void FinishTransaction();
  void AppendBody();

  ClientOptions opts_;
  ClientHost* host_;
  ReplyParser parser_;
  std::string in_;
  std::string out_;
  Phase phase_ = Phase::kBanner;
  std::string banner_;
  bool tls_ = false;
  bool pipelining_ = false, smtputf8_ = false, eightbit_ = false, starttls_offered_ = false;
  bool auth_plain_ = false;
  bool size_offered_ = false;
  bool dsn_ = false;  // RFC 3461
  bool ehlo_done_ = false;
  uint64_t max_size_ = 0;

  // Current transaction.
  bool in_tx_ = false;
  const std::string* body_ = nullptr;  // the message being sent; owned by the caller
  bool streaming_ = false;             // body chunks still to hand out (TakeOutput)
  size_t body_pos_ = 0;                // next body byte to stuff
  std::deque<Expect> expect_;
  std::vector<std::string> unsent_;  // commands not yet sent (no PIPELINING)
  size_t rcpt_index_ = 0;
  std::vector<RcptResult> results_;
  bool mail_ok_ = false;
  int accepted_ = 0;
  bool data_ok_ = false;
  RcptResult mail_fail_;
};

// Dot-stuffs `body` (CRLF lines) into `out` and appends the terminating
// "<CRLF>.<CRLF>" (adding a CRLF first if the body does not end with one).
void DotStuff(std::string_view body, std::string* out);
// The same in pieces: stuffs body[pos, pos + max_bytes) into `out` and
// returns the next position; DotStuffEnd() appends the terminator once the
// whole body is out. The pieces together equal DotStuff(body).
size_t DotStuffChunk(std::string_view body, size_t pos, size_t max_bytes, std::string* out);
void DotStuffEnd(std::string_view body, std::string* out);

}  // namespace mxr::delivery
