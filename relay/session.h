// One SMTP server session as an explicit state machine (RFC 5321, 6409,
// 2920 PIPELINING, 3030 CHUNKING, 3207 STARTTLS, 4954 AUTH, 6531 SMTPUTF8).
// It does no I/O: the connection feeds it plaintext and drains its replies;
// everything that waits (TLS switch, password check, spool commit) goes
// through SessionHost and comes back through On*() calls.
//
// Threading: a session lives on one event-loop thread; every call happens
// there. Pipelining: Feed() processes as many complete commands as the input
// holds and answers each in order; while waiting for AUTH or the spool it
// buffers further input (bounded: see input_buffered()).
//
//   Session s(env, &host, info);
//   s.Start();                   // 220 greeting (after the TLS handshake on 465)
//   s.Feed(bytes); host.Send(s.TakeOutput());
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/config.h"
#include "queue/spool.h"
#include "relay/data_reader.h"
#include "relay/stats.h"
#include "relay/trace.h"
#include "tenants/tenants.h"

namespace mxr::relay {

// Shared, read-only context for all sessions of one listener.
struct SessionEnv {
  const Config* config = nullptr;
  const ListenerConfig* listener = nullptr;
  std::string hostname;
  queue::QueueIdGenerator* ids = nullptr;
  const Clock* clock = nullptr;
  IngressStats* stats = nullptr;  // replies by command and class; may be null
  TraceHub* trace = nullptr;      // live trace (`mxrelay trace`); may be null
  tenants::Gate* tenants = nullptr;  // tenant rules of AUTH users (tenants/); may be null
};

struct ConnInfo {
  std::string client_ip;
  bool trusted = false;  // client in trusted_networks: may relay without AUTH
};

class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // No method may call back into the Session before returning: results
  // arrive later, from the event loop.
  //
  // After the pending output (the 220 reply) is sent, start a TLS handshake;
  // call Session::OnTlsEstablished when it completes.
  virtual void StartTls() = 0;
  // Close the connection once the pending output is sent.
  virtual void Close() = 0;
  // Check a password off the event loop; answer with Session::OnAuthResult.
  virtual void Authenticate(std::string user, std::string password) = 0;
  // Commit a message; answer with Session::OnCommitted.
  virtual void Submit(queue::NewMessage msg) = 0;
  // Whether the spool currently accepts new mail.
  virtual bool SpoolAccepting() = 0;
};

class Session {
 public:
  enum class Mode {
    kCommand,     // reading command lines
    kAuthPlain,   // AUTH PLAIN: waiting for the initial response
    kAuthUser,    // AUTH LOGIN: waiting for the user name
    kAuthPass,    // AUTH LOGIN: waiting for the password
    kData,        // receiving DATA payload
    kBdat,        // receiving a BDAT chunk
    kWaitAuth,    // password check in progress
    kWaitSpool,   // message commit in progress
    kTlsSwitch,   // STARTTLS answered; waiting for the handshake
    kClosed,
  };

  Session(const SessionEnv& env, SessionHost* host, ConnInfo info);

  // The client is not the peer of the socket (a PROXY protocol header named
  // it): replaces the address and trust given at construction. Before Start().
  void SetClient(ConnInfo info) { info_ = std::move(info); }
  // Emits the 220 greeting.
  void Start();
  // Plaintext input from the client. Processing pauses (the rest stays
  // buffered) once kMaxOutput bytes of replies are pending: a client that
  // pipelines without reading cannot make us build unbounded output.
  // Feed({}) resumes after the output was taken.
  void Feed(std::string_view data);
  // Keeps input for later without processing it (the connection's output is
  // full); Feed({}) processes it.
  void Buffer(std::string_view data);
  static constexpr size_t kMaxOutput = 64 * 1024;
  // Replies produced so far; the caller sends them in order.
  std::string TakeOutput();
  // A line for the live trace of this session (if it is traced), e.g. how
  // the connection ended.
  void TraceEvent(std::string_view what) {
    if (!trace_.empty()) Trace('*', what);
  }
  bool has_output() const { return !out_.empty(); }
  size_t output_size() const { return out_.size(); }
  // Bytes held because the session is waiting (AUTH, spool): the connection
  // stops reading while this is large.
  size_t input_buffered() const { return in_.size(); }

  void OnTlsEstablished(std::string version, std::string cipher);
  // Why a password check failed (the relay's log says it; the client gets
  // the same 535 for both).
  enum class AuthFailure { kBadPassword, kUnknownUser };
  // `user`: the authenticated name as the users file writes it (empty: the
  // name the client gave).
  void OnAuthResult(bool ok, std::string user = {}, AuthFailure why = AuthFailure::kBadPassword);
  // The client's address is blocked after too many failures: 421 (saying
  // for how long) and close.
  void OnAuthBlocked(int64_t seconds_left = 0);
  // The password was not checked (the client's attempts in flight are at its
  // limit, or the checker is overloaded): 454 4.7.0, not counted as a failure.
  void OnAuthBusy();
  void OnCommitted(const absl::Status& status);
  // The connection's timer fired: 421 4.4.2 and close.
  void OnTimeout();
  // The server is shutting down: 421 4.3.2 at the next command boundary.
  void OnShutdown();

  Mode mode() const { return mode_; }
  // Seconds of client inactivity allowed in the current mode (0: none,
  // e.g. while we wait for the spool).
  int TimeoutSeconds() const;
  const char* ModeName() const;

  // Outcome counters for the session log line.
  struct Summary {
    uint32_t messages = 0;
    uint32_t recipients = 0;
    uint64_t bytes = 0;
    uint32_t rejected = 0;  // 4xx/5xx replies
    uint32_t auth_failures = 0;
  };
  // Rejections logged one per line (event=rejected) per session; beyond
  // this only session_end's rejected= counts them (a client looping on a
  // refused command cannot flood the log).
  static constexpr uint32_t kMaxLoggedRejections = 20;
  const Summary& summary() const { return summary_; }
  const std::string& auth_user() const { return auth_user_; }
  bool tls() const { return tls_; }
  const std::string& close_reason() const { return close_reason_; }

 private:
  struct Transaction {
    bool active = false;
    std::string sender;
    std::vector<std::string> rcpts;
    std::vector<std::pair<uint8_t, std::string>> rcpt_dsn;  // RFC 3461 NOTIFY, ORCPT per rcpt
    uint8_t dsn_ret = 0;                                     // RFC 3461 RET (queue::DsnRet)
    std::string envid;                                       // RFC 3461 ENVID
    bool smtputf8 = false;
    bool body_8bit = false;
    uint64_t declared_size = 0;
    bool bdat = false;           // CHUNKING in use for this transaction
    std::string body;
    std::optional<DataReader> data;
    LineEndingCheck bdat_check;
    uint64_t bdat_remaining = 0;
    uint64_t bdat_chunk_size = 0;
    bool bdat_last = false;
    bool bdat_discard = false;   // chunk rejected: read and drop it
    bool oversize = false;
    queue::QueueId id;
    std::string logged_sender;  // for event=queued, once the sender went to the spool
    std::string tenant, campaign;  // for event=queued
    size_t logged_rcpts = 0;
    uint64_t logged_size = 0;
  };

  size_t Process(std::string_view in);
  size_t ProcessLine(std::string_view in);
  void HandleCommand(std::string_view line);
  void HandleAuthLine(std::string_view line);
  void CmdHelo(std::string_view arg, bool esmtp);
  void CmdMail(std::string_view arg);
  void CmdRcpt(std::string_view arg);
  void CmdData(std::string_view arg);
  void CmdBdat(std::string_view arg);
  void CmdAuth(std::string_view arg);
  void CmdStartTls(std::string_view arg);
  void FinishMessage();
  void FinishChunk();
  void CheckAuth(std::string user, std::string&& password);
  void Reply(int code, std::string_view enhanced, std::string_view text);
  void CountReply(int code) {
    if (env_.stats != nullptr) env_.stats->CountReply(cmd_, code);
  }
  void ProtocolError(int code, std::string_view enhanced, std::string_view text);
  void CloseWith(int code, std::string_view enhanced, std::string_view text, std::string reason);
  void ResetTransaction();
  // Live trace: join the subscribers that match (at the start: by address;
  // after AUTH: by user too), and copy one line to them ('<' from the
  // client, '>' to it, '*' an event). Redaction happens at the call sites.
  void TraceAttach();
  void Trace(char dir, std::string_view line);
  // The relay's log: one line per refused command (event=rejected), per
  // failed login (event=auth_failed), per wrong-port client.
  void LogRejection(int code, std::string_view enhanced, std::string_view text);
  void LogAuthFailed(std::string_view user, std::string_view reason);
  void CloseTlsOnPlainPort();
  // "use port 587 (STARTTLS) or 465 (implicit TLS)", from the configured listeners.
  std::string TlsPortsHint() const;
  bool AuthOffered() const;
  size_t LineLimit() const;
  // The 552 text, stating the limit (RFC 1870 6.1).
  std::string TooBigText() const;

  const SessionEnv& env_;
  SessionHost* host_;
  ConnInfo info_;
  Mode mode_ = Mode::kCommand;
  ReplyCmd cmd_ = ReplyCmd::kConnect;  // what the next reply answers (metrics)
  std::string in_;
  std::string out_;
  bool discarding_long_line_ = false;
  bool has_helo_ = false;
  bool esmtp_ = false;
  std::string helo_;
  bool tls_ = false;
  std::string tls_version_, tls_cipher_;
  std::string auth_user_;
  std::string pending_auth_user_;
  std::string auth_mech_;            // PLAIN or LOGIN, for the log
  std::string_view cur_arg_;         // the argument of the command being answered (logs only)
  bool seen_input_ = false;          // any byte received (wrong-port detection)
  bool quiet_rejection_ = false;     // the next reply is logged by its own event
  std::vector<TraceHub::Sub> trace_;  // live trace subscribers of this session (usually none)
  std::string trace_prefix_;
  int auth_failures_ = 0;
  int errors_ = 0;
  bool shutting_down_ = false;
  Transaction tx_;
  Summary summary_;
  std::string close_reason_;
};

}  // namespace mxr::relay
