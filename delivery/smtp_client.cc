#include "delivery/smtp_client.h"

#include <algorithm>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/escaping.h"
#include "common/strings.h"

namespace mxr::delivery {
namespace {

constexpr size_t kMaxReplyLine = 4096;
constexpr size_t kMaxReplyLines = 200;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// "5.1.1 text" -> enhanced "5.1.1", rest "text" (when the first token looks
// like class.subject.detail with the class matching the reply code).
void SplitEnhanced(int code, std::string_view line, std::string* enhanced, std::string_view* rest) {
  size_t sp = line.find(' ');
  std::string_view tok = line.substr(0, sp);
  int dots = 0;
  bool ok = tok.size() >= 5 && tok[0] == '0' + code / 100 && tok[1] == '.';
  for (char c : tok) {
    if (c == '.') {
      ++dots;
    } else if (!IsDigit(c)) {
      ok = false;
    }
  }
  if (ok && dots == 2) {
    enhanced->assign(tok);
    *rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  } else {
    *rest = line;
  }
}

std::string Upper(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'a' && c <= 'z') c -= 32;
  }
  return o;
}

Reply Synthetic(int code, const char* enhanced, std::string text) {
  Reply r;
  r.code = code;
  r.enhanced = enhanced;
  r.text = std::move(text);
  return r;
}

// A result for a reply that is neither a success nor a failure where one of
// those was due (a 3xx to MAIL, RCPT or the dot, a 2xx instead of 354): the
// dialogue is out of step, so the recipient is retried, never counted.
RcptResult UnexpectedReply(const Reply& r, const char* to) {
  return RcptResult{451, "4.5.0", Cat("Unexpected reply to ", to, ": ", r.ToString())};
}

bool Is2xx(int code) { return code >= 200 && code < 300; }
bool IsFailure(int code) { return code >= 400 && code < 600; }

// What a reply to `to` means for a recipient: 2xx and 4xx/5xx as they are,
// anything else turned into a transient protocol error.
RcptResult ResultOf(const Reply& r, const char* to) {
  if (Is2xx(r.code) || IsFailure(r.code)) return RcptResult{r.code, r.enhanced, r.text};
  return UnexpectedReply(r, to);
}

}  // namespace

std::string Reply::ToString() const {
  if (enhanced.empty()) return Cat(code, " ", text);
  return Cat(code, " ", enhanced, " ", text);
}

ReplyParser::Result ReplyParser::Next(std::string_view* buf, Reply* out) {
  for (;;) {
    size_t lf = buf->find('\n');
    if (lf == std::string_view::npos) {
      // A longest legal line may wait here with its CR but not yet its LF.
      return buf->size() > kMaxReplyLine + 1 ? Result::kError : Result::kNeedMore;
    }
    std::string_view line = buf->substr(0, lf);
    buf->remove_prefix(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() < 3 || line.size() > kMaxReplyLine || !IsDigit(line[0]) ||
        !IsDigit(line[1]) || !IsDigit(line[2]) || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
      in_progress_ = false;
      return Result::kError;
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    bool last = line.size() == 3 || line[3] == ' ';
    std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
    if (!in_progress_) {
      cur_ = Reply();
      cur_.code = code;
      in_progress_ = true;
    } else if (code != cur_.code || cur_.lines.size() >= kMaxReplyLines) {
      in_progress_ = false;
      return Result::kError;
    }
    cur_.lines.emplace_back(text);
    std::string enh;
    std::string_view rest;
    SplitEnhanced(code, text, &enh, &rest);
    if (cur_.enhanced.empty()) cur_.enhanced = enh;
    if (!cur_.text.empty()) cur_.text += ' ';
    cur_.text.append(rest);
    if (last) {
      in_progress_ = false;
      *out = std::move(cur_);
      return Result::kReply;
    }
  }
}

namespace {
// The position of the next "\r\n." at or after `from`, or npos. Lines that
// begin with a dot are rare: 16 bytes per step look for an LF followed by
// a dot, then check the CR before it.
size_t FindCrLfDot(std::string_view s, size_t from) {
  size_t n = s.size(), i = from;
#if defined(__SSE2__)
  const __m128i vlf = _mm_set1_epi8('\n'), vdot = _mm_set1_epi8('.');
  for (; i + 17 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i + 1));
    unsigned hits = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(v, vlf), _mm_cmpeq_epi8(next, vdot))));
    while (hits != 0) {
      size_t lf = i + static_cast<size_t>(__builtin_ctz(hits));
      if (lf > from && s[lf - 1] == '\r') return lf - 1;
      hits &= hits - 1;
    }
  }
  if (i > from) --i;  // a CR at the end of the last block may start the match
#endif
  return s.find("\r\n.", i);
}
}  // namespace

size_t DotStuffChunk(std::string_view body, size_t pos, size_t max_bytes, std::string* out) {
  size_t end = std::min(body.size(), pos + max_bytes);
  std::string_view upto = body.substr(0, end);
  // A dot that begins a line right at the chunk's start (the search below
  // only sees dots after a CRLF inside the chunk).
  if (pos < end && body[pos] == '.' && (pos == 0 || (pos >= 2 && body[pos - 2] == '\r' && body[pos - 1] == '\n'))) {
    out->push_back('.');
  }
  // Searching from pos - 1 also finds a CRLF split by the chunk boundary
  // (CR in the previous chunk, LF and dot in this one).
  for (size_t from = pos > 0 ? pos - 1 : 0;; from = pos) {
    size_t hit = FindCrLfDot(upto, from);
    if (hit == std::string_view::npos) break;
    out->append(body.substr(pos, hit + 2 - pos));
    out->push_back('.');  // the line's leading dot gets doubled
    pos = hit + 2;
  }
  out->append(body.substr(pos, end - pos));
  return end;
}

void DotStuffEnd(std::string_view body, std::string* out) {
  if (body.size() < 2 || body.substr(body.size() - 2) != "\r\n") out->append("\r\n");
  out->append(".\r\n");
}

void DotStuff(std::string_view body, std::string* out) {
  out->reserve(out->size() + body.size() + body.size() / 512 + 8);
  DotStuffChunk(body, 0, body.size(), out);
  DotStuffEnd(body, out);
}

const char* SmtpClient::PhaseName() const {
  switch (phase_) {
    case Phase::kBanner: return "banner";
    case Phase::kEhlo: return "ehlo";
    case Phase::kHelo: return "helo";
    case Phase::kStartTls: return "starttls";
    case Phase::kTlsHandshake: return "tls_handshake";
    case Phase::kAuth: return "auth";
    case Phase::kReady: return "ready";
    case Phase::kTransaction: return "mail_rcpt";
    case Phase::kData: return "data";
    case Phase::kDot: return "dot";
    case Phase::kRset: return "rset";
    case Phase::kQuit: return "quit";
    case Phase::kDone: return "done";
  }
  return "?";
}

std::string SmtpClient::TakeOutput() {
  if (streaming_) {
    // The next piece of the body, dot-stuffed; then the terminating dot.
    std::string_view body = body_ ? std::string_view(*body_) : std::string_view();
    body_pos_ = DotStuffChunk(body, body_pos_, kBodyChunk, &out_);
    if (body_pos_ >= body.size()) {
      DotStuffEnd(body, &out_);
      streaming_ = false;
    }
  }
  std::string o;
  o.swap(out_);
  return o;
}

void SmtpClient::Feed(std::string_view data) {
  if (phase_ == Phase::kDone) return;
  in_.append(data);
  std::string_view v = in_;
  Reply r;
  for (;;) {
    auto res = parser_.Next(&v, &r);
    if (res == ReplyParser::Result::kNeedMore) break;
    if (res == ReplyParser::Result::kError) {
      in_.clear();
      Fail(Synthetic(421, "4.5.0", "Malformed reply from server"));
      return;
    }
    HandleReply(r);
    if (phase_ == Phase::kDone || phase_ == Phase::kTlsHandshake) {
      v = std::string_view();  // nothing may follow a STARTTLS 220 in clear
      break;
    }
  }
  in_.erase(0, in_.size() - v.size());
}

void SmtpClient::Fail(const Reply& r) {
  if (phase_ == Phase::kDone) return;
  bool in_tx = phase_ == Phase::kTransaction || phase_ == Phase::kData || phase_ == Phase::kDot;
  phase_ = Phase::kDone;
  if (in_tx && in_tx_) {
    // Recipients without a final answer get this one (a drop after the dot
    // may mean delivered: the retry may duplicate, never lose).
    // Anything not already a failure (no answer, 2xx, or a stray 3xx) takes
    // this one: nothing is counted as delivered without the dot's 2xx.
    for (auto& res : results_) {
      if (!IsFailure(res.code)) res = RcptResult{r.code, r.enhanced, r.text};
    }
    in_tx_ = false;
    body_ = nullptr;
    streaming_ = false;
    host_->OnTransactionDone(std::move(results_));
  }
  streaming_ = false;
  host_->OnFailed(r);
}

void SmtpClient::Abort(const Reply& why) { Fail(why); }

void SmtpClient::Ready() {
  phase_ = Phase::kReady;
  host_->OnReady();
}

void SmtpClient::HandleReply(const Reply& r) {
  if (r.code == 421 && phase_ != Phase::kQuit) return Fail(r);
  switch (phase_) {
    case Phase::kBanner:
      banner_ = r.text;
      if (r.code != 220) return Fail(r);
      out_ += Cat("EHLO ", opts_.helo, "\r\n");
      phase_ = Phase::kEhlo;
      return;
    case Phase::kEhlo:
      if (r.code == 250) return AfterEhlo(r);
      if (r.code >= 500) {
        out_ += Cat("HELO ", opts_.helo, "\r\n");
        phase_ = Phase::kHelo;
        return;
      }
      return Fail(r);
    case Phase::kHelo:
      if (r.code != 250) return Fail(r);
      pipelining_ = smtputf8_ = eightbit_ = starttls_offered_ = auth_plain_ = size_offered_ = dsn_ = false;
      ehlo_done_ = true;
      max_size_ = 0;
      if (!tls_ && (opts_.tls == TlsPolicy::kRequired || opts_.tls == TlsPolicy::kRequiredVerify)) {
        return Fail(Synthetic(451, "4.7.5", "TLS required by policy but the server does not speak ESMTP"));
      }
      if (!opts_.auth_user.empty()) {
        return Fail(Synthetic(451, "4.7.0", "AUTH required by the route but the server does not speak ESMTP"));
      }
      return Ready();
    case Phase::kStartTls:
      if (r.code == 220) {
        phase_ = Phase::kTlsHandshake;
        host_->StartTls();
        return;
      }
      if (opts_.tls == TlsPolicy::kOpportunistic && opts_.auth_user.empty()) return Ready();
      return Fail(r);
    case Phase::kAuth:
      if (r.code == 235) return Ready();
      return Fail(r);
    case Phase::kTransaction: {
      Expect e = expect_.front();
      expect_.pop_front();
      if (e == Expect::kMail) {
        mail_ok_ = Is2xx(r.code);
        if (!mail_ok_) mail_fail_ = ResultOf(r, "MAIL");
      } else if (e == Expect::kRcpt) {
        RcptResult& res = results_[rcpt_index_++];
        res = ResultOf(r, "RCPT");
        if (Is2xx(res.code)) accepted_++;
      } else {  // kData
        if (r.code == 354 && mail_ok_ && accepted_ > 0) {
          data_ok_ = true;
          AppendBody();
          phase_ = Phase::kDot;
          return;
        }
        if (r.code == 354) {  // no recipient accepted yet the server wants data
          out_ += ".\r\n";
          phase_ = Phase::kDot;
          return;
        }
        // DATA refused (or answered out of step with a 2xx/3xx other than
        // 354): the accepted recipients get that answer, as a failure.
        RcptResult why = IsFailure(r.code) ? RcptResult{r.code, r.enhanced, r.text}
                                           : UnexpectedReply(r, "DATA");
        for (auto& res : results_) {
          if (Is2xx(res.code)) res = why;
        }
        return FinishTransaction();
      }
      if (!pipelining_) {
        if (!mail_ok_) return FinishTransaction();
        SendNextUnpipelined();
      }
      return;
    }
    case Phase::kDot:
      if (streaming_) {
        // A reply while we still have body to send: no 2xx here can mean
        // the message arrived whole. Stop; nothing counts as delivered.
        return Fail(Synthetic(421, "4.5.0", Cat("Reply before the end of the message data: ", r.ToString())));
      }
      if (data_ok_) {
        RcptResult final_result = ResultOf(r, "end of data");
        for (auto& res : results_) {
          if (Is2xx(res.code)) res = final_result;
        }
      }
      return FinishTransaction();
    case Phase::kRset:
      if (r.code >= 200 && r.code < 300) return Ready();
      return Fail(r);
    case Phase::kQuit:
      phase_ = Phase::kDone;
      return;
    case Phase::kReady:
    case Phase::kData:
    case Phase::kTlsHandshake:
    case Phase::kDone:
      return Fail(Synthetic(421, "4.5.0", Cat("Unexpected reply in phase ", PhaseName(), ": ", r.ToString())));
  }
}

void SmtpClient::AfterEhlo(const Reply& r) {
  pipelining_ = smtputf8_ = eightbit_ = starttls_offered_ = auth_plain_ = size_offered_ = dsn_ = false;
  max_size_ = 0;
  ehlo_done_ = true;
  for (size_t i = 1; i < r.lines.size(); ++i) {
    std::string kw = Upper(r.lines[i]);
    if (kw == "PIPELINING") pipelining_ = true;
    if (kw == "SMTPUTF8") smtputf8_ = true;
    if (kw == "8BITMIME") eightbit_ = true;
    if (kw == "DSN") dsn_ = true;
    if (kw == "STARTTLS") starttls_offered_ = true;
    if (kw == "SIZE" || kw.rfind("SIZE ", 0) == 0) {
      size_offered_ = true;
      max_size_ = std::strtoull(kw.c_str() + 4, nullptr, 10);
    }
    if (kw.rfind("AUTH", 0) == 0 && (kw.find(" PLAIN") != std::string::npos ||
                                     kw.find("=PLAIN") != std::string::npos)) {
      auth_plain_ = true;
    }
  }
  bool tls_required = opts_.tls == TlsPolicy::kRequired || opts_.tls == TlsPolicy::kRequiredVerify;
  if (!tls_ && opts_.tls != TlsPolicy::kNone && starttls_offered_) {
    out_ += "STARTTLS\r\n";
    phase_ = Phase::kStartTls;
    return;
  }
  if (!tls_ && tls_required) {
    return Fail(Synthetic(451, "4.7.5", "TLS required by policy but STARTTLS not offered"));
  }
  if (!opts_.auth_user.empty()) {
    if (!tls_) return Fail(Synthetic(451, "4.7.0", "Refusing to AUTH without TLS"));
    // Opportunistic TLS checked no certificate: whoever intercepted the
    // connection would get the password. (Config admits AUTH routes only with
    // required_verify, or required plus auth_over_unverified_tls = true.)
    if (!tls_required) {
      return Fail(Synthetic(451, "4.7.0", "Refusing to AUTH over TLS the route does not require"));
    }
    if (opts_.tls != TlsPolicy::kRequiredVerify && !opts_.auth_over_unverified_tls) {
      return Fail(Synthetic(451, "4.7.0", "Refusing to AUTH over TLS with an unverified certificate"));
    }
    if (!auth_plain_) return Fail(Synthetic(451, "4.7.0", "Server does not offer AUTH PLAIN"));
    std::string raw;
    raw.push_back('\0');
    raw += opts_.auth_user;
    raw.push_back('\0');
    raw += opts_.auth_password;
    std::string b64;
    absl::Base64Escape(absl::string_view(raw.data(), raw.size()), &b64);
    WipeString(raw);
    out_ += Cat("AUTH PLAIN ", b64, "\r\n");
    WipeString(b64);
    phase_ = Phase::kAuth;
    return;
  }
  Ready();
}

void SmtpClient::OnTlsDone(bool ok, const std::string& detail) {
  if (phase_ != Phase::kTlsHandshake) return;
  if (!ok) return Fail(Synthetic(421, "4.7.0", Cat("TLS handshake failed: ", detail)));
  tls_ = true;
  out_ += Cat("EHLO ", opts_.helo, "\r\n");
  phase_ = Phase::kEhlo;
}

bool SmtpClient::CanSend(const OutboundMessage& msg, RcptResult* why) const {
  if (msg.smtputf8 && !smtputf8_) {
    *why = RcptResult{553, "5.6.7",
                      "Message needs SMTPUTF8 but the receiving server does not support it"};
    return false;
  }
  uint64_t size = msg.body ? msg.body->size() : 0;
  if (max_size_ > 0 && size > max_size_) {
    *why = RcptResult{552, "5.3.4", Cat("Message size ", size, " exceeds the receiving server's limit ", max_size_)};
    return false;
  }
  return true;
}

void SmtpClient::Send(const OutboundMessage& msg) {
  in_tx_ = true;
  body_ = msg.body;  // only the body is needed after Send() returns
  results_.assign(msg.rcpts.size(), RcptResult{});
  rcpt_index_ = 0;
  accepted_ = 0;
  mail_ok_ = data_ok_ = false;
  expect_.clear();
  unsent_.clear();
  std::string mail = Cat("MAIL FROM:<", msg.sender, ">");
  if (size_offered_) mail += Cat(" SIZE=", msg.body ? msg.body->size() : 0);
  if (msg.body_8bit && eightbit_) mail += " BODY=8BITMIME";
  if (msg.smtputf8 && smtputf8_) mail += " SMTPUTF8";
  if (dsn_) mail += msg.mail_dsn;
  mail += "\r\n";
  phase_ = Phase::kTransaction;
  out_ += mail;
  expect_.push_back(Expect::kMail);
  if (pipelining_) {
    for (size_t i = 0; i < msg.rcpts.size(); ++i) {
      out_ += Cat("RCPT TO:<", msg.rcpts[i], ">", dsn_ && i < msg.rcpt_dsn.size() ? msg.rcpt_dsn[i] : "", "\r\n");
      expect_.push_back(Expect::kRcpt);
    }
    out_ += "DATA\r\n";
    expect_.push_back(Expect::kData);
  } else {
    for (size_t i = 0; i < msg.rcpts.size(); ++i) {
      unsent_.push_back(Cat("RCPT TO:<", msg.rcpts[i], ">",
                            dsn_ && i < msg.rcpt_dsn.size() ? msg.rcpt_dsn[i] : "", "\r\n"));
    }
    unsent_.push_back("DATA\r\n");
  }
}

void SmtpClient::SendNextUnpipelined() {
  if (unsent_.empty()) return;
  bool is_data = unsent_.front() == "DATA\r\n";
  if (is_data && accepted_ == 0) return FinishTransaction();
  out_ += unsent_.front();
  unsent_.erase(unsent_.begin());
  expect_.push_back(is_data ? Expect::kData : Expect::kRcpt);
}

void SmtpClient::AppendBody() {
  // Streamed by TakeOutput(), one chunk per call: the connection asks for
  // more as its socket drains, so no transaction holds a stuffed copy of a
  // whole body.
  streaming_ = true;
  body_pos_ = 0;
}

void SmtpClient::FinishTransaction() {
  bool failed = !mail_ok_ || accepted_ == 0 || !data_ok_;
  if (!mail_ok_) {
    for (auto& res : results_) res = mail_fail_;
  }
  bool any_ok = false;
  for (auto& res : results_) {
    if (res.code == 0) res = RcptResult{451, "4.4.0", "No reply for this recipient"};
    // Without a 354 the body was never sent: an accepted RCPT is not a delivery.
    if (!data_ok_ && Is2xx(res.code)) res = RcptResult{451, "4.5.0", "Message data not transferred"};
    any_ok |= Is2xx(res.code);
  }
  failed |= !any_ok;
  in_tx_ = false;
  body_ = nullptr;
  streaming_ = false;
  expect_.clear();
  unsent_.clear();
  host_->OnTransactionDone(std::move(results_));
  results_.clear();
  if (phase_ == Phase::kDone) return;  // host aborted inside the callback
  if (failed) {
    out_ += "RSET\r\n";
    phase_ = Phase::kRset;
    return;
  }
  Ready();
}

void SmtpClient::Quit() {
  if (phase_ == Phase::kDone) return;
  out_ += "QUIT\r\n";
  phase_ = Phase::kQuit;
}

}  // namespace mxr::delivery
