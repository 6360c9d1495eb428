#include "relay/session.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/escaping.h"
#include "common/escape.h"
#include "common/strings.h"
#include "relay/headers.h"
#include "relay/pool_header.h"
#include "relay/smtp_parser.h"
#include "tenants/headers.h"
#include "spdlog/spdlog.h"

namespace mxr::relay {
namespace {

// RFC 4954 4: AUTH lines may be up to 12288 octets.
constexpr size_t kAuthLineLimit = 12288;

bool Base64Decode(std::string_view in, std::string* out) {
  if (in == "=") {  // RFC 4954: "=" is an empty initial response
    out->clear();
    return true;
  }
  if (in.empty() || in.size() % 4 != 0) return false;
  for (char c : in) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '+' || c == '/' || c == '=')) {
      return false;
    }
  }
  return absl::Base64Unescape(absl::string_view(in.data(), in.size()), out);
}

}  // namespace

Session::Session(const SessionEnv& env, SessionHost* host, ConnInfo info)
    : env_(env), host_(host), info_(std::move(info)) {}

void Session::TraceAttach() {
  if (env_.trace == nullptr || !env_.trace->active()) return;
  for (auto& s : env_.trace->Match(info_.client_ip, auth_user_)) {
    if (std::find(trace_.begin(), trace_.end(), s) == trace_.end()) trace_.push_back(std::move(s));
  }
  if (!trace_.empty() && trace_prefix_.empty()) {
    trace_prefix_ = Cat("s", env_.trace->NextSessionNumber(), " ", info_.client_ip, " ", env_.listener->name, ":",
                        env_.listener->port);
  }
}

void Session::Trace(char dir, std::string_view line) {
  auto now = std::chrono::system_clock::now();
  int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::string text = Cat(FormatUtc(us, "%H:%M:%S"), fmt::format(".{:03d}", (us / 1000) % 1000), " ",
                         trace_prefix_, " ", std::string_view(&dir, 1), " ", LogEscape(line.substr(0, 1000)));
  for (const auto& s : trace_) s->Push(text);
}

void Session::Start() {
  TraceAttach();
  if (tls_ && !trace_.empty()) Trace('*', Cat("TLS established: ", tls_version_, " ", tls_cipher_));  // implicit TLS
  cmd_ = ReplyCmd::kConnect;
  out_ += Cat("220 ", env_.hostname, " ESMTP mxrelay ready\r\n");
  CountReply(220);
}

std::string Session::TakeOutput() {
  std::string o;
  o.swap(out_);
  if (!trace_.empty()) {
    std::string_view rest(o);
    while (!rest.empty()) {
      size_t end = rest.find("\r\n");
      Trace('>', rest.substr(0, end));
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    }
  }
  return o;
}

void Session::Reply(int code, std::string_view enhanced, std::string_view text) {
  fmt::format_to(std::back_inserter(out_), "{} {} {}\r\n", code, enhanced, text);
  if (code >= 400) {
    summary_.rejected++;
    if (!quiet_rejection_) LogRejection(code, enhanced, text);
  }
  quiet_rejection_ = false;
  CountReply(code);
}

namespace {
// What a log line may show of a client's argument: escaped, at most this long.
constexpr size_t kMaxLoggedArg = 200;

std::string_view Clip(std::string_view s) { return s.substr(0, kMaxLoggedArg); }
}  // namespace

void Session::LogRejection(int code, std::string_view enhanced, std::string_view text) {
  if (summary_.rejected > kMaxLoggedRejections) return;
  // Never an AUTH payload: only the mechanism.
  std::string_view arg = cmd_ == ReplyCmd::kAuth ? std::string_view(auth_mech_) : cur_arg_;
  spdlog::info("event=rejected ip={} listener={} port={} user={} cmd={} arg=\"{}\" code={} enhanced={} reply=\"{}\"",
               info_.client_ip, env_.listener->name, env_.listener->port,
               auth_user_.empty() ? "-" : LogEscape(auth_user_), ReplyCmdName(cmd_), LogEscape(Clip(arg)), code,
               enhanced, LogEscape(text));
}

void Session::LogAuthFailed(std::string_view user, std::string_view reason) {
  spdlog::warn("event=auth_failed ip={} listener={} port={} tls={} mech={} user=\"{}\" reason={} failures={}",
               info_.client_ip, env_.listener->name, env_.listener->port, tls_ ? tls_version_ : "no",
               auth_mech_.empty() ? "-" : auth_mech_, LogEscape(Clip(user)), reason, auth_failures_);
}

std::string Session::TlsPortsHint() const {
  std::string starttls, implicit;
  for (const auto& l : env_.config->listeners) {
    if (l.mode == ListenerMode::kStartTls && starttls.empty()) starttls = Cat(l.port);
    if (l.mode == ListenerMode::kImplicitTls && implicit.empty()) implicit = Cat(l.port);
  }
  if (!starttls.empty() && !implicit.empty()) {
    return Cat("use port ", starttls, " (STARTTLS) or ", implicit, " (implicit TLS)");
  }
  if (!starttls.empty()) return Cat("use port ", starttls, " (STARTTLS)");
  if (!implicit.empty()) return Cat("use port ", implicit, " (implicit TLS)");
  return "ask the relay's operator for a TLS port";
}

// A TLS ClientHello as the first bytes on a port that speaks plaintext first
// (plain or STARTTLS): the client was set up for implicit TLS ("SSL"). An
// SMTP reply would only be garbage to it: log what to fix and close.
void Session::CloseTlsOnPlainPort() {
  std::string implicit;
  for (const auto& l : env_.config->listeners) {
    if (l.mode == ListenerMode::kImplicitTls) {
      implicit = Cat(l.port);
      break;
    }
  }
  spdlog::warn("event=tls_on_plain_port ip={} listener={} port={} hint=\"client uses implicit TLS (SSL); {}\"",
               info_.client_ip, env_.listener->name, env_.listener->port,
               implicit.empty() ? "switch it to STARTTLS"
                                : Cat("use port ", implicit, " or switch it to STARTTLS"));
  mode_ = Mode::kClosed;
  close_reason_ = "tls_on_plain_port";
  host_->Close();
}

void Session::ProtocolError(int code, std::string_view enhanced, std::string_view text) {
  Reply(code, enhanced, text);
  if (++errors_ >= env_.config->limits.max_errors) {
    CloseWith(421, "4.7.0", "Too many errors; closing connection", "too_many_errors");
  }
}

void Session::CloseWith(int code, std::string_view enhanced, std::string_view text,
                        std::string reason) {
  if (mode_ == Mode::kClosed) return;
  Reply(code, enhanced, Cat(env_.hostname, " ", text));
  mode_ = Mode::kClosed;
  close_reason_ = std::move(reason);
  host_->Close();
}

void Session::ResetTransaction() {
  tx_ = Transaction();
}

bool Session::AuthOffered() const {
  return tls_ || env_.listener->auth_without_tls;
}

std::string Session::TooBigText() const {
  uint64_t max = env_.config->limits.max_message_size;
  std::string human;
  if (max >= (1u << 20) && max % (1u << 20) == 0) {
    human = Cat(" (", max >> 20, " MiB)");
  } else if (max >= 1024 && max % 1024 == 0) {
    human = Cat(" (", max >> 10, " KiB)");
  }
  return Cat("Message size exceeds fixed maximum message size of ", max, " bytes", human);
}

size_t Session::LineLimit() const {
  return static_cast<size_t>(env_.config->limits.max_line_length);
}

int Session::TimeoutSeconds() const {
  const auto& t = env_.config->timeouts;
  switch (mode_) {
    case Mode::kData:
    case Mode::kBdat:
      return t.data;
    case Mode::kTlsSwitch:
      return t.tls_handshake;
    case Mode::kWaitAuth:
    case Mode::kWaitSpool:
    case Mode::kClosed:
      return 0;
    default:
      return has_helo_ ? t.command : t.greeting;
  }
}

const char* Session::ModeName() const {
  switch (mode_) {
    case Mode::kCommand: return "command";
    case Mode::kAuthPlain: return "auth_plain";
    case Mode::kAuthUser: return "auth_login_user";
    case Mode::kAuthPass: return "auth_login_pass";
    case Mode::kData: return "data";
    case Mode::kBdat: return "bdat";
    case Mode::kWaitAuth: return "wait_auth";
    case Mode::kWaitSpool: return "wait_spool";
    case Mode::kTlsSwitch: return "tls_switch";
    case Mode::kClosed: return "closed";
  }
  return "?";
}

void Session::Feed(std::string_view data) {
  if (mode_ == Mode::kClosed || mode_ == Mode::kTlsSwitch) return;  // discard
  if (!seen_input_ && !data.empty()) {
    seen_input_ = true;
    // 0x16 = TLS handshake record, 0x03 = the major version of every TLS
    // ClientHello; no SMTP command starts with either.
    if (!tls_ && data[0] == 0x16 && (data.size() < 2 || data[1] == 0x03)) return CloseTlsOnPlainPort();
  }
  if (in_.empty()) {
    size_t used = Process(data);
    if (mode_ != Mode::kClosed && mode_ != Mode::kTlsSwitch) in_.append(data.substr(used));
  } else {
    in_.append(data);
    size_t used = Process(in_);
    in_.erase(0, used);
  }
  if (mode_ == Mode::kClosed || mode_ == Mode::kTlsSwitch) {
    in_.clear();  // RFC 3207: anything pipelined after STARTTLS is discarded
    in_.shrink_to_fit();
  }
}

void Session::Buffer(std::string_view data) {
  if (mode_ == Mode::kClosed || mode_ == Mode::kTlsSwitch) return;  // discard, as Feed would
  in_.append(data);
}

size_t Session::Process(std::string_view in) {
  size_t total = 0;
  while (total < in.size() && out_.size() < kMaxOutput) {
    std::string_view rest = in.substr(total);
    size_t used = 0;
    switch (mode_) {
      case Mode::kCommand:
      case Mode::kAuthPlain:
      case Mode::kAuthUser:
      case Mode::kAuthPass:
        used = ProcessLine(rest);
        break;
      case Mode::kData: {
        used = tx_.data->Feed(rest);
        summary_.bytes += used;
        if (tx_.data->done()) FinishMessage();
        break;
      }
      case Mode::kBdat: {
        uint64_t n = std::min<uint64_t>(tx_.bdat_remaining, rest.size());
        std::string_view chunk = rest.substr(0, n);
        used = n;
        tx_.bdat_remaining -= n;
        summary_.bytes += n;
        if (!tx_.bdat_discard && !tx_.oversize) {
          if (tx_.body.size() + n > env_.config->limits.max_message_size) {
            tx_.oversize = true;
            tx_.body.clear();
            tx_.body.shrink_to_fit();
          } else {
            tx_.bdat_check.Feed(chunk);
            tx_.body.append(chunk);
          }
        }
        if (tx_.bdat_remaining == 0) FinishChunk();
        break;
      }
      case Mode::kWaitAuth:
      case Mode::kWaitSpool:
      case Mode::kTlsSwitch:
      case Mode::kClosed:
        return total;
    }
    if (mode_ == Mode::kTlsSwitch || mode_ == Mode::kClosed) return in.size();
    if (used == 0) break;  // need more input
    total += used;
  }
  return total;
}

size_t Session::ProcessLine(std::string_view in) {
  size_t limit = mode_ == Mode::kCommand ? LineLimit() : kAuthLineLimit;
  if (discarding_long_line_) {
    const void* lf = std::memchr(in.data(), '\n', in.size());
    if (lf == nullptr) return in.size();
    discarding_long_line_ = false;
    return static_cast<const char*>(lf) - in.data() + 1;
  }
  size_t used = 0;
  std::string_view line;
  switch (NextLine(in, limit, &used, &line)) {
    case LineStatus::kNeedMore:
      return 0;
    case LineStatus::kTooLong:
      cmd_ = mode_ == Mode::kCommand ? ReplyCmd::kUnknown : ReplyCmd::kAuth;
      discarding_long_line_ = true;
      if (mode_ != Mode::kCommand) mode_ = Mode::kCommand;
      ProtocolError(500, "5.5.2", "Line too long");
      return in.size() >= limit ? limit : in.size();
    case LineStatus::kLine:
      break;
  }
  if (mode_ == Mode::kCommand) {
    HandleCommand(line);
  } else {
    if (!trace_.empty()) Trace('<', "<AUTH response redacted>");
    HandleAuthLine(line);
  }
  return used;
}

namespace {
ReplyCmd CmdOf(Verb v) {
  switch (v) {
    case Verb::kEhlo: return ReplyCmd::kEhlo;
    case Verb::kHelo: return ReplyCmd::kHelo;
    case Verb::kMail: return ReplyCmd::kMail;
    case Verb::kRcpt: return ReplyCmd::kRcpt;
    case Verb::kData: return ReplyCmd::kData;
    case Verb::kBdat: return ReplyCmd::kBdat;
    case Verb::kAuth: return ReplyCmd::kAuth;
    case Verb::kStartTls: return ReplyCmd::kStartTls;
    case Verb::kRset: return ReplyCmd::kRset;
    case Verb::kNoop: return ReplyCmd::kNoop;
    case Verb::kQuit: return ReplyCmd::kQuit;
    case Verb::kVrfy: return ReplyCmd::kVrfy;
    case Verb::kHelp: return ReplyCmd::kHelp;
    case Verb::kExpn:
    case Verb::kUnknown: return ReplyCmd::kUnknown;
  }
  return ReplyCmd::kUnknown;
}
}  // namespace

void Session::HandleCommand(std::string_view line) {
  cmd_ = ReplyCmd::kOther;
  if (shutting_down_ && !tx_.active) {  // a transaction begun before the drain may finish
    CloseWith(421, "4.3.2", "Service shutting down; try again later", "shutdown");
    return;
  }
  if (line.find('\0') != std::string_view::npos) {
    ProtocolError(500, "5.5.2", "NUL character in command");
    return;
  }
  // A CR is only valid as part of the CRLF that ended the line; one inside a
  // command could be echoed (or smuggle a reply line) downstream.
  if (line.find('\r') != std::string_view::npos) {
    ProtocolError(500, "5.5.2", "Bare CR in command");
    return;
  }
  Command c = ParseCommand(line);
  cmd_ = CmdOf(c.verb);
  if (!trace_.empty()) {
    // AUTH's initial response is a password: only the mechanism is shown.
    if (c.verb == Verb::kAuth) {
      std::string_view mech = c.arg.substr(0, c.arg.find(' '));
      Trace('<', Cat(line.substr(0, 4), " ", mech, mech.size() < c.arg.size() ? " <redacted>" : ""));
    } else {
      Trace('<', line);
    }
  }
  // For event=rejected: the argument (the whole line for an unknown
  // command), never AUTH's (an initial response is a password).
  cur_arg_ = c.verb == Verb::kAuth ? std::string_view() : c.verb == Verb::kUnknown ? line : c.arg;
  struct ClearArg {
    std::string_view* a;
    ~ClearArg() { *a = {}; }
  } clear_arg{&cur_arg_};
  switch (c.verb) {
    case Verb::kEhlo: return CmdHelo(c.arg, true);
    case Verb::kHelo: return CmdHelo(c.arg, false);
    case Verb::kMail: return CmdMail(c.arg);
    case Verb::kRcpt: return CmdRcpt(c.arg);
    case Verb::kData: return CmdData(c.arg);
    case Verb::kBdat: return CmdBdat(c.arg);
    case Verb::kAuth: return CmdAuth(c.arg);
    case Verb::kStartTls: return CmdStartTls(c.arg);
    case Verb::kRset:
      ResetTransaction();
      return Reply(250, "2.0.0", "Reset OK");
    case Verb::kNoop:
      return Reply(250, "2.0.0", "OK");
    case Verb::kQuit:
      Reply(221, "2.0.0", Cat(env_.hostname, " closing connection"));
      mode_ = Mode::kClosed;
      close_reason_ = "quit";
      host_->Close();
      return;
    case Verb::kVrfy:
      return Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
    case Verb::kExpn:
      return Reply(502, "5.5.1", "EXPN not supported");
    case Verb::kHelp:
      return Reply(214, "2.0.0",
                   "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
    case Verb::kUnknown:
      return ProtocolError(500, "5.5.1", "Command unrecognized");
  }
}

void Session::CmdHelo(std::string_view arg, bool esmtp) {
  bool printable = true;
  for (char ch : arg) printable &= static_cast<unsigned char>(ch) > 32 && ch != 127;
  if (arg.empty() || arg.size() > 255 || !printable) {
    return ProtocolError(501, "5.5.4", esmtp ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
  }
  ResetTransaction();
  has_helo_ = true;
  esmtp_ = esmtp;
  helo_.assign(arg);
  if (!esmtp) {
    return Reply(250, "2.0.0", Cat(env_.hostname, " Hello ", helo_));
  }
  const auto& lim = env_.config->limits;
  out_ += Cat("250-", env_.hostname, " Hello ", helo_, " [", info_.client_ip, "]\r\n");
  out_ += "250-PIPELINING\r\n";
  out_ += Cat("250-SIZE ", lim.max_message_size, "\r\n");
  out_ += "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n";
  if (env_.listener->mode == ListenerMode::kStartTls && !tls_) out_ += "250-STARTTLS\r\n";
  if (AuthOffered() && auth_user_.empty()) out_ += "250-AUTH PLAIN LOGIN\r\n";
  out_ += "250 HELP\r\n";
  CountReply(250);
}

void Session::CmdMail(std::string_view arg) {
  if (!has_helo_) return ProtocolError(503, "5.5.1", "Send EHLO/HELO first");
  if (tx_.active) return ProtocolError(503, "5.5.1", "Nested MAIL command");
  if (auth_user_.empty() && !info_.trusted) {
    if (!AuthOffered() && env_.listener->mode == ListenerMode::kStartTls) {
      return Reply(530, "5.7.0", "Must issue a STARTTLS command first");
    }
    if (!AuthOffered()) {  // a plaintext port without AUTH
      return Reply(530, "5.7.0", Cat("Authentication required, and this port offers no AUTH without TLS; ",
                                     TlsPortsHint()));
    }
    return Reply(530, "5.7.0", "Authentication required: log in with AUTH before MAIL");
  }
  if (!host_->SpoolAccepting()) {
    return Reply(452, "4.3.1", "Insufficient system storage; try again later");
  }
  PathResult p = ParseMailFrom(arg);
  if (!p.ok) return ProtocolError(p.code, p.enhanced, p.text);
  if (p.size_given && p.size > env_.config->limits.max_message_size) {
    return Reply(552, "5.3.4", TooBigText());
  }
  if (p.has_utf8 && !p.smtputf8) {
    return Reply(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter");
  }
  if (env_.tenants != nullptr && !auth_user_.empty()) {
    tenants::Verdict v = env_.tenants->Mail(auth_user_, p.address);  // sender domains, rate
    if (!v.ok) return Reply(v.code, v.enhanced, v.text);
  }
  tx_.active = true;
  tx_.sender = std::move(p.address);
  tx_.smtputf8 = p.smtputf8;
  tx_.body_8bit = p.body_8bit;
  tx_.declared_size = p.size;
  tx_.dsn_ret = p.dsn_ret;
  tx_.envid = std::move(p.envid);
  Reply(250, "2.1.0", "Sender OK");
}

void Session::CmdRcpt(std::string_view arg) {
  if (!tx_.active) return ProtocolError(503, "5.5.1", "Need MAIL command");
  if (tx_.bdat) return ProtocolError(503, "5.5.1", "RCPT not allowed during BDAT transfer");
  if (auth_user_.empty() && !info_.trusted) {
    return Reply(554, "5.7.1", "Relay access denied");
  }
  if (tx_.rcpts.size() >= static_cast<size_t>(env_.config->limits.max_recipients)) {
    return Reply(452, "4.5.3", "Too many recipients");
  }
  PathResult p = ParseRcptTo(arg);
  if (!p.ok) return ProtocolError(p.code, p.enhanced, p.text);
  if (p.has_utf8 && !tx_.smtputf8) {
    return Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8 on MAIL FROM");
  }
  if (env_.tenants != nullptr && !auth_user_.empty()) {
    tenants::Verdict v = env_.tenants->Rcpt(auth_user_, tx_.rcpts.size());  // max recipients, daily quota
    if (!v.ok) return Reply(v.code, v.enhanced, v.text);
  }
  tx_.rcpts.push_back(std::move(p.address));
  tx_.rcpt_dsn.emplace_back(p.notify, std::move(p.orcpt));
  Reply(250, "2.1.5", "Recipient OK");
}

void Session::CmdData(std::string_view arg) {
  if (!arg.empty()) return ProtocolError(501, "5.5.4", "Syntax: DATA");
  if (!tx_.active) return ProtocolError(503, "5.5.1", "Need MAIL command");
  if (tx_.bdat) return ProtocolError(503, "5.5.1", "DATA not allowed after BDAT");
  if (tx_.rcpts.empty()) return ProtocolError(554, "5.5.1", "No valid recipients");
  if (!host_->SpoolAccepting()) {
    ResetTransaction();
    return Reply(452, "4.3.1", "Insufficient system storage; try again later");
  }
  tx_.body.reserve(std::min<uint64_t>(tx_.declared_size, 1 << 20));
  tx_.data.emplace(env_.config->limits.max_message_size, &tx_.body);
  mode_ = Mode::kData;
  out_ += "354 End data with <CR><LF>.<CR><LF>\r\n";
  CountReply(354);
}

void Session::CmdBdat(std::string_view arg) {
  BdatArgs b = ParseBdat(arg);
  if (!b.ok) return ProtocolError(501, "5.5.4", "Syntax: BDAT size [LAST]");
  // Whatever we answer, the chunk's bytes follow and must be consumed.
  tx_.bdat_remaining = b.size;
  tx_.bdat_last = b.last;
  tx_.bdat_discard = false;
  const char* err = nullptr;
  if (!tx_.active) {
    err = "Need MAIL command";
  } else if (tx_.rcpts.empty()) {
    err = "Need RCPT command";
  } else if (tx_.data.has_value()) {
    err = "BDAT not allowed after DATA";
  }
  if (err != nullptr) {
    tx_.bdat_discard = true;
    ProtocolError(503, "5.5.1", err);
    if (mode_ == Mode::kClosed) return;
  } else {
    tx_.bdat = true;
  }
  tx_.bdat_chunk_size = b.size;
  mode_ = Mode::kBdat;
  if (b.size == 0) FinishChunk();  // an empty chunk completes at once
}

void Session::FinishChunk() {
  mode_ = Mode::kCommand;
  cmd_ = tx_.bdat_last ? ReplyCmd::kDot : ReplyCmd::kBdat;
  if (tx_.bdat_discard) {
    tx_.bdat_discard = false;  // the BDAT command was already answered with an error
  } else if (tx_.oversize) {
    ResetTransaction();
    Reply(552, "5.3.4", TooBigText());
  } else if (tx_.bdat_last) {
    FinishMessage();
  } else {
    Reply(250, "2.0.0", Cat(tx_.bdat_chunk_size, " octets received"));
  }
}

void Session::CmdStartTls(std::string_view arg) {
  if (env_.listener->mode != ListenerMode::kStartTls) {
    return ProtocolError(502, "5.5.1", "STARTTLS not available on this port");
  }
  if (tls_) return ProtocolError(503, "5.5.1", "TLS already active");
  if (!arg.empty()) return ProtocolError(501, "5.5.4", "Syntax: STARTTLS");
  Reply(220, "2.0.0", "Ready to start TLS");
  mode_ = Mode::kTlsSwitch;
  host_->StartTls();
}

void Session::OnTlsEstablished(std::string version, std::string cipher) {
  if (!trace_.empty()) Trace('*', Cat("TLS established: ", version, " ", cipher));
  tls_ = true;
  tls_version_ = std::move(version);
  tls_cipher_ = std::move(cipher);
  // RFC 3207 4.2: forget everything learned before TLS.
  has_helo_ = false;
  esmtp_ = false;
  helo_.clear();
  auth_user_.clear();  // an AUTH done in clear could be a man in the middle's
  pending_auth_user_.clear();
  ResetTransaction();
  if (mode_ == Mode::kTlsSwitch) mode_ = Mode::kCommand;
}

void Session::CmdAuth(std::string_view arg) {
  if (!has_helo_) return ProtocolError(503, "5.5.1", "Send EHLO first");
  if (!auth_user_.empty()) return ProtocolError(503, "5.5.1", "Already authenticated");
  if (tx_.active) return ProtocolError(503, "5.5.1", "AUTH not allowed during a mail transaction");
  size_t sp = arg.find(' ');
  std::string_view mech = arg.substr(0, sp);
  auth_mech_.clear();
  for (char ch : mech.substr(0, 20)) auth_mech_.push_back(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
  if (!AuthOffered()) {
    LogAuthFailed("-", "tls_required");
    quiet_rejection_ = true;
    return Reply(538, "5.7.11",
                 env_.listener->mode == ListenerMode::kStartTls
                     ? "Encryption required for requested authentication mechanism; issue STARTTLS first"
                     : Cat("Encryption required for requested authentication mechanism; ", TlsPortsHint()));
  }
  std::string_view initial = sp == std::string_view::npos ? std::string_view() : arg.substr(sp + 1);
  if (AsciiIEquals(mech, "PLAIN")) {
    if (initial.empty()) {
      mode_ = Mode::kAuthPlain;
      out_ += "334 \r\n";
      CountReply(334);
      return;
    }
    mode_ = Mode::kAuthPlain;
    return HandleAuthLine(initial);
  }
  if (AsciiIEquals(mech, "LOGIN")) {
    if (initial.empty()) {
      mode_ = Mode::kAuthUser;
      out_ += "334 VXNlcm5hbWU6\r\n";  // "Username:"
      CountReply(334);
      return;
    }
    mode_ = Mode::kAuthUser;
    return HandleAuthLine(initial);
  }
  ProtocolError(504, "5.5.4", "Unrecognized authentication type");
}

void Session::HandleAuthLine(std::string_view line) {
  cmd_ = ReplyCmd::kAuth;
  Mode m = mode_;
  mode_ = Mode::kCommand;
  if (line == "*") return ProtocolError(501, "5.7.0", "Authentication cancelled");
  std::string decoded;
  if (!Base64Decode(line, &decoded)) return ProtocolError(501, "5.5.2", "Invalid base64 data");
  switch (m) {
    case Mode::kAuthPlain: {
      // authzid \0 authcid \0 password
      size_t a = decoded.find('\0');
      size_t b = a == std::string::npos ? a : decoded.find('\0', a + 1);
      if (b == std::string::npos) {
        WipeString(decoded);
        return ProtocolError(501, "5.5.2", "Malformed AUTH PLAIN response");
      }
      std::string authzid = decoded.substr(0, a);
      std::string user = decoded.substr(a + 1, b - a - 1);
      std::string pass = decoded.substr(b + 1);
      WipeString(decoded);
      if (!authzid.empty() && authzid != user) {
        WipeString(pass);
        LogAuthFailed(Cat(user, " as ", authzid), "authzid_mismatch");
        quiet_rejection_ = true;
        return Reply(535, "5.7.8", "Authorization identity differs from authentication identity");
      }
      return CheckAuth(std::move(user), std::move(pass));
    }
    case Mode::kAuthUser:
      pending_auth_user_ = std::move(decoded);
      mode_ = Mode::kAuthPass;
      out_ += "334 UGFzc3dvcmQ6\r\n";  // "Password:"
      CountReply(334);
      return;
    case Mode::kAuthPass:
      return CheckAuth(std::move(pending_auth_user_), std::move(decoded));
    default:
      return;
  }
}

// Takes the password by rvalue reference so that what the move leaves behind
// (a short password stays in the caller's inline buffer) is wiped here.
void Session::CheckAuth(std::string user, std::string&& password) {
  pending_auth_user_ = user;
  mode_ = Mode::kWaitAuth;
  std::string pw = std::move(password);
  WipeString(password);
  host_->Authenticate(std::move(user), std::move(pw));
  WipeString(pw);
}

void Session::OnAuthResult(bool ok, std::string user, AuthFailure why) {
  if (mode_ != Mode::kWaitAuth) return;
  mode_ = Mode::kCommand;
  cmd_ = ReplyCmd::kAuth;
  if (ok) {
    auth_user_ = user.empty() ? std::move(pending_auth_user_) : std::move(user);
    pending_auth_user_.clear();
    TraceAttach();  // a trace by user starts here
    if (!trace_.empty()) Trace('*', Cat("authenticated as ", auth_user_));
    Reply(235, "2.7.0", "Authentication successful");
  } else {
    summary_.auth_failures++;
    ++auth_failures_;
    LogAuthFailed(pending_auth_user_, why == AuthFailure::kUnknownUser ? "unknown_user" : "bad_password");
    pending_auth_user_.clear();
    quiet_rejection_ = true;
    if (auth_failures_ >= env_.config->auth.max_failures) {
      CloseWith(421, "4.7.0", "Too many failed authentication attempts", "auth_failures");
      return;
    }
    Reply(535, "5.7.8", "Authentication credentials invalid");
  }
  Feed(std::string_view());  // continue with pipelined input
}

void Session::OnAuthBlocked(int64_t seconds_left) {
  if (mode_ != Mode::kWaitAuth) return;
  mode_ = Mode::kCommand;
  cmd_ = ReplyCmd::kAuth;
  summary_.auth_failures++;
  LogAuthFailed(pending_auth_user_, "blocked");
  pending_auth_user_.clear();
  quiet_rejection_ = true;
  CloseWith(421, "4.7.0",
            seconds_left > 0
                ? Cat("Too many failed authentications from your address; try again in ", seconds_left, " seconds")
                : std::string("Too many failed authentications from your address; try again later"),
            "auth_ip_blocked");
}

void Session::OnAuthBusy() {
  if (mode_ != Mode::kWaitAuth) return;
  mode_ = Mode::kCommand;
  cmd_ = ReplyCmd::kAuth;
  pending_auth_user_.clear();
  Reply(454, "4.7.0", "Temporary authentication failure; try again later");
  Feed(std::string_view());  // continue with pipelined input
}

void Session::FinishMessage() {
  mode_ = Mode::kCommand;
  cmd_ = ReplyCmd::kDot;
  if (!trace_.empty()) {
    Trace('<', Cat("<message content: ", tx_.body.size(), " bytes, not shown>", tx_.bdat ? "" : " ."));
  }
  bool bare = tx_.bdat ? !tx_.bdat_check.ok_at_end() : tx_.data->bare_line_ending();
  bool oversize = tx_.bdat ? tx_.oversize : tx_.data->oversize();
  if (oversize) {
    ResetTransaction();
    return Reply(552, "5.3.4", TooBigText());
  }
  if (bare) {
    ResetTransaction();
    return Reply(550, "5.6.0",
                 "Message contains bare CR or LF line endings; only CRLF is accepted "
                 "(RFC 5321 2.3.8)");
  }
  // The egress-pool header never leaves: removed here, honoured only from
  // an authenticated or trusted client (relay/pool_header.h).
  std::string pool_header = TakeHeader(&tx_.body, env_.config->shaping.pool_header);
  HeaderPresence headers = ScanHeaders(tx_.body);
  if (headers.received >= env_.config->limits.max_hops) {
    // Our own Received: would make it one hop more than the limit: a loop
    // (RFC 5321 6.3). Refused before anything is queued.
    ResetTransaction();
    return Reply(554, "5.4.6", Cat("Too many hops (", headers.received,
                                   " Received: headers); mail loop suspected"));
  }
  // Tenants: the From: header against the sender domains; the campaign
  // header is taken off (stored in the record, not sent).
  std::optional<std::string> campaign = tenants::TakeHeader(&tx_.body, tenants::kCampaignHeader);
  if (campaign && !tenants::ValidCampaign(*campaign)) campaign.reset();
  tenants::Gate::Assignment assigned;
  if (env_.tenants != nullptr && !auth_user_.empty()) {
    tenants::Verdict v = env_.tenants->FromHeader(auth_user_, tenants::HeaderValue(tx_.body, "From").value_or(""));
    if (!v.ok) {
      ResetTransaction();
      return Reply(v.code, v.enhanced, v.text);
    }
    assigned = env_.tenants->AssignUser(auth_user_);
  }
  queue::NewMessage msg;
  auto& m = msg.meta;
  m.tenant = std::move(assigned.tenant);
  m.pool = std::move(assigned.pool);
  if (campaign) m.campaign = std::move(*campaign);
  m.id = env_.ids->Next();
  m.received_us = env_.clock->NowMicros();
  m.next_attempt_us = m.received_us;
  m.smtputf8 = tx_.smtputf8;
  m.body_8bit = tx_.body_8bit;
  m.sender = std::move(tx_.sender);
  m.auth_user = auth_user_;
  // Precedence: the pool header, then the user's pool ([[pool]] users),
  // then the tenant's; empty = decided at delivery (route, else default).
  if (std::string p = PoolAtReception(*env_.config, pool_header, auth_user_, info_.trusted); !p.empty()) {
    m.pool = std::move(p);
  }
  m.client_ip = info_.client_ip;
  m.helo = helo_;
  m.recipients.reserve(tx_.rcpts.size());
  for (size_t i = 0; i < tx_.rcpts.size(); ++i) {
    auto& r = m.recipients.emplace_back(queue::Recipient{std::move(tx_.rcpts[i])});
    r.notify = tx_.rcpt_dsn[i].first;  // RFC 3461
    r.orcpt = std::move(tx_.rcpt_dsn[i].second);
  }
  m.dsn_ret = static_cast<queue::DsnRet>(tx_.dsn_ret);
  m.envid = std::move(tx_.envid);

  TraceInfo t;
  t.helo = helo_;
  t.client_ip = info_.client_ip;
  t.hostname = env_.hostname;
  t.protocol = Cat(esmtp_ ? "ESMTP" : "SMTP", tls_ && esmtp_ ? "S" : "",
                   !auth_user_.empty() && esmtp_ ? "A" : "");
  t.tls_version = tls_version_;
  t.tls_cipher = tls_cipher_;
  t.auth_user = auth_user_;
  t.queue_id = m.id.ToString();
  if (m.recipients.size() == 1) t.single_rcpt = m.recipients[0].address;
  t.now_us = m.received_us;
  msg.header_prefix = TraceHeaders(t, headers);
  msg.body = std::move(tx_.body);
  m.body_size = msg.header_prefix.size() + msg.body.size();
  tx_.id = m.id;
  tx_.logged_sender = m.sender;
  tx_.tenant = m.tenant;
  tx_.campaign = m.campaign;
  tx_.logged_rcpts = m.recipients.size();
  tx_.logged_size = m.body_size;
  summary_.recipients += static_cast<uint32_t>(m.recipients.size());
  mode_ = Mode::kWaitSpool;
  host_->Submit(std::move(msg));
}

void Session::OnCommitted(const absl::Status& status) {
  if (mode_ != Mode::kWaitSpool) return;
  mode_ = Mode::kCommand;
  cmd_ = ReplyCmd::kDot;
  if (status.ok()) {
    summary_.messages++;
    std::string id = tx_.id.ToString();
    spdlog::info("event=queued id={} ip={} listener={} user={} sender=<{}> rcpts={} size={} tenant={} campaign={}", id,
                 info_.client_ip, env_.listener->name, auth_user_.empty() ? "-" : LogEscape(auth_user_),
                 LogEscape(Clip(tx_.logged_sender)), tx_.logged_rcpts, tx_.logged_size,
                 tx_.tenant.empty() ? "-" : LogEscape(tx_.tenant), tx_.campaign.empty() ? "-" : LogEscape(tx_.campaign));
    Reply(250, "2.0.0", Cat("Ok: queued as ", id));
  } else if (status.code() == absl::StatusCode::kResourceExhausted) {
    Reply(452, "4.3.1", "Insufficient system storage; message not accepted, try again later");
  } else if (status.code() == absl::StatusCode::kFailedPrecondition) {
    // Refused before the spool by a policy in front of it (DKIM signing);
    // the message is "<enhanced code> <text>" (queue/spool.h).
    std::string_view m(status.message().data(), status.message().size());
    size_t sp = m.find(' ');
    Reply(451, sp == std::string_view::npos ? "4.7.0" : m.substr(0, sp),
          sp == std::string_view::npos ? m : m.substr(sp + 1));
  } else {
    Reply(451, "4.3.0", "Temporary spool failure; message not accepted, try again later");
  }
  ResetTransaction();
  Feed(std::string_view());
}

void Session::OnTimeout() {
  cmd_ = ReplyCmd::kOther;
  CloseWith(421, "4.4.2", Cat("Timeout (", ModeName(), "); closing connection"), "timeout");
}

void Session::OnShutdown() {
  shutting_down_ = true;
  cmd_ = ReplyCmd::kOther;
  if (mode_ == Mode::kCommand && !tx_.active) {
    CloseWith(421, "4.3.2", "Service shutting down; try again later", "shutdown");
  }
}

}  // namespace mxr::relay

namespace mxr::relay {

const char* ReplyCmdName(ReplyCmd c) {
  switch (c) {
    case ReplyCmd::kConnect: return "connect";
    case ReplyCmd::kHelo: return "helo";
    case ReplyCmd::kEhlo: return "ehlo";
    case ReplyCmd::kMail: return "mail";
    case ReplyCmd::kRcpt: return "rcpt";
    case ReplyCmd::kData: return "data";
    case ReplyCmd::kDot: return "dot";
    case ReplyCmd::kBdat: return "bdat";
    case ReplyCmd::kRset: return "rset";
    case ReplyCmd::kNoop: return "noop";
    case ReplyCmd::kQuit: return "quit";
    case ReplyCmd::kVrfy: return "vrfy";
    case ReplyCmd::kHelp: return "help";
    case ReplyCmd::kAuth: return "auth";
    case ReplyCmd::kStartTls: return "starttls";
    case ReplyCmd::kUnknown: return "unknown";
    case ReplyCmd::kOther:
    case ReplyCmd::kCount: break;
  }
  return "other";
}

}  // namespace mxr::relay
