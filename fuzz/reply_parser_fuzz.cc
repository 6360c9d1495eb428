// Fuzz target: the outbound side's reading of server bytes
// (delivery/smtp_client.h): the multi-line ReplyParser, a whole SmtpClient
// session driven by the fuzzed server, and DotStuff.
//
// Input: 4 header bytes, then what the "server" sends.
//   byte 0: bits 0-1 TLS policy (none, opportunistic, required,
//           required+verify); bit 2 the route has AUTH credentials; bit 3 the
//           TLS handshake fails; bit 4 the messages need SMTPUTF8; bit 5
//           8BITMIME bodies; bits 6-7 messages to send (1-4).
//   byte 1: bits 0-2 recipients per message (1-8); bit 3 QUIT when done;
//           bits 4-5 body (empty, plain, dot-leading lines, the input itself
//           made CRLF-clean).
//   bytes 2-3: seed of the split points.
//
// Invariants:
//  - ReplyParser: codes are 3 digits, 1-200 lines; a reply re-serialised
//    parses back identical; parsing in pieces yields the same replies (and
//    error) as parsing everything at once;
//  - SmtpClient: what it writes has CRLF endings only; it never sends AUTH
//    before TLS is up, nor MAIL under a required-TLS policy without TLS;
//    every Send ends in exactly one OnTransactionDone with one result per
//    recipient (no code 0); a result the engine counts as delivered
//    (Classify() == kSuccess) is a 2xx and implies the dot-stuffed body was
//    written; at most one OnFailed and no callback after it;
//  - DotStuff: for a CRLF-clean body, a strict RFC 5321 reader recovers the
//    body exactly and ends exactly at the end of the stuffed text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "delivery/policy.h"
#include "delivery/smtp_client.h"
#include "fuzz/fuzz_util.h"

namespace mxr::delivery {
namespace {

using fuzz::Escape;

bool SameReply(const Reply& a, const Reply& b) {
  return a.code == b.code && a.enhanced == b.enhanced && a.text == b.text && a.lines == b.lines;
}

std::string Serialise(const Reply& r) {
  std::string out;
  char code[4];
  std::snprintf(code, sizeof code, "%03d", r.code);
  for (size_t i = 0; i < r.lines.size(); ++i) {
    out += code;
    out += i + 1 == r.lines.size() ? ' ' : '-';
    out += r.lines[i];
    out += "\r\n";
  }
  return out;
}

struct Parsed {
  std::vector<Reply> replies;
  bool error = false;
};

Parsed ParseAll(std::string_view in) {
  Parsed p;
  ReplyParser parser;
  for (;;) {
    Reply r;
    auto res = parser.Next(&in, &r);
    if (res == ReplyParser::Result::kNeedMore) break;
    if (res == ReplyParser::Result::kError) {
      p.error = true;
      break;
    }
    p.replies.push_back(std::move(r));
  }
  return p;
}

// As SmtpClient feeds it: a growing buffer, consumed lines erased.
Parsed ParsePieces(const std::vector<std::string_view>& pieces) {
  Parsed p;
  ReplyParser parser;
  std::string buf;
  for (std::string_view piece : pieces) {
    buf.append(piece);
    std::string_view v = buf;
    for (;;) {
      Reply r;
      auto res = parser.Next(&v, &r);
      if (res == ReplyParser::Result::kNeedMore) break;
      if (res == ReplyParser::Result::kError) {
        p.error = true;
        return p;
      }
      p.replies.push_back(std::move(r));
    }
    buf.erase(0, buf.size() - v.size());
  }
  return p;
}

void CheckReply(const Reply& r) {
  FUZZ_CHECK(r.code >= 0 && r.code <= 999);
  FUZZ_CHECK(!r.lines.empty() && r.lines.size() <= 200);
  for (const auto& l : r.lines) FUZZ_CHECK(l.size() <= 4096 && l.find('\n') == std::string::npos);
  if (!r.enhanced.empty()) {
    FUZZ_CHECK(r.enhanced[0] == '0' + r.code / 100 && r.enhanced[1] == '.', r.enhanced);
  }
  Parsed again = ParseAll(Serialise(r));
  FUZZ_CHECK(!again.error && again.replies.size() == 1 && SameReply(again.replies[0], r),
             "reply does not round-trip: " + Escape(Serialise(r)));
}

// Bare CR / bare LF -> CRLF.
std::string CrlfClean(std::string_view s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      o += "\r\n";
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else if (s[i] == '\n') {
      o += "\r\n";
    } else {
      o += s[i];
    }
  }
  return o;
}

// A strict RFC 5321 4.5.2 reader: returns the unstuffed body and how many
// bytes it consumed up to and including the terminating ".\r\n", or npos.
size_t Unstuff(std::string_view s, std::string* body) {
  std::string t = "\r\n" + std::string(s);
  size_t k = t.find("\r\n.\r\n");
  if (k == std::string::npos) return std::string::npos;
  std::string_view content = s.substr(0, k);
  for (size_t i = 0; i < content.size(); ++i) {
    bool line_start = i == 0 || (i >= 2 && content[i - 2] == '\r' && content[i - 1] == '\n');
    if (line_start && content[i] == '.') continue;
    *body += content[i];
  }
  return k + 3;
}

void CheckDotStuff(const std::string& body) {
  std::string stuffed;
  DotStuff(body, &stuffed);
  std::string back;
  size_t used = Unstuff(stuffed, &back);
  // DotStuff completes a last line without CRLF (so "" is sent as one empty line).
  std::string want = body;
  if (want.size() < 2 || want.substr(want.size() - 2) != "\r\n") want += "\r\n";
  FUZZ_CHECK(used == stuffed.size(), "terminator not at the end: " + Escape(stuffed));
  FUZZ_CHECK(back == want, Escape(body) + " -> " + Escape(stuffed));
}

class Host : public ClientHost {
 public:
  void StartTls() override {
    FUZZ_CHECK(!failed, "callback after OnFailed");
    ++start_tls;
  }
  void OnReady() override {
    FUZZ_CHECK(!failed, "callback after OnFailed");
    ++ready;
  }
  void OnTransactionDone(std::vector<RcptResult> results) override {
    FUZZ_CHECK(!failed, "callback after OnFailed");
    done.push_back(std::move(results));
  }
  void OnFailed(const Reply& why) override {
    FUZZ_CHECK(!failed, "OnFailed twice");
    failed = true;
    fail_code = why.code;
  }
  int start_tls = 0, ready = 0;
  std::vector<std::vector<RcptResult>> done;
  bool failed = false;
  int fail_code = 0;
};

void DriveClient(uint8_t b0, uint8_t b1, const std::vector<std::string_view>& pieces,
                 std::string_view input) {
  static constexpr TlsPolicy kPolicies[] = {TlsPolicy::kNone, TlsPolicy::kOpportunistic,
                                            TlsPolicy::kRequired, TlsPolicy::kRequiredVerify};
  ClientOptions opts;
  opts.helo = "relay.fuzz.test";
  opts.tls = kPolicies[b0 & 3];
  if (b0 & 4) {
    opts.auth_user = "route-user";
    opts.auth_password = "route-pass";
  }
  bool tls_fails = b0 & 8;
  int messages = 1 + (b0 >> 6);
  int rcpts = 1 + (b1 & 7);
  bool quit = b1 & 8;
  std::string body;
  switch ((b1 >> 4) & 3) {
    case 0: break;
    case 1: body = "Subject: hi\r\n\r\nhello\r\n"; break;
    case 2: body = ".\r\n..\r\n.x\r\nend"; break;
    case 3: body = CrlfClean(input.substr(0, 2000)); break;
  }
  std::string stuffed;
  DotStuff(body, &stuffed);

  Host host;
  SmtpClient c(opts, &host);
  std::string out;            // everything the client wrote
  size_t tls_up_at = std::string::npos;  // out.size() when TLS came up
  int sent = 0, tls_answered = 0;
  std::vector<std::string> rcpt_list;
  for (int i = 0; i < rcpts; ++i) rcpt_list.push_back("r" + std::to_string(i) + "@dest.example");
  OutboundMessage msg;
  msg.sender = (b0 & 16) ? "s\xc3\xa9nder@src.example" : "sender@src.example";
  msg.rcpts = rcpt_list;
  msg.smtputf8 = b0 & 16;
  msg.body_8bit = b0 & 32;
  msg.body = &body;

  auto take = [&] { out += c.TakeOutput(); };
  auto drive = [&] {
    for (;;) {
      take();
      if (host.start_tls > tls_answered) {
        FUZZ_CHECK(c.phase() == SmtpClient::Phase::kTlsHandshake);
        ++tls_answered;
        c.OnTlsDone(!tls_fails, "fuzz");
        if (!tls_fails) tls_up_at = out.size();
        continue;
      }
      if (c.phase() == SmtpClient::Phase::kReady && !host.failed) {
        if (sent < messages) {
          RcptResult why;
          ++sent;
          if (c.CanSend(msg, &why)) {
            FUZZ_CHECK(why.code == 0);
            size_t before = host.done.size();
            c.Send(msg);
            FUZZ_CHECK(host.done.size() == before);
            continue;
          }
          FUZZ_CHECK(why.code == 553 || why.code == 552);
          --sent;
          messages = sent;  // the engine would bounce it and try no more here
          continue;
        }
        if (quit) c.Quit();
      }
      break;
    }
  };
  drive();
  // A server answers what it was asked: each piece is also cut after every
  // LF, so that the client (and we, its host) act between two replies, as
  // they would when the next reply is only sent after our next command.
  // (Replies arriving when none is expected still happen: after the last
  // message, or when a multi-line reply ends early.)
  for (std::string_view p : pieces) {
    while (!p.empty()) {
      size_t lf = p.find('\n');
      size_t n = lf == std::string_view::npos ? p.size() : lf + 1;
      c.Feed(p.substr(0, n));
      drive();
      p.remove_prefix(n);
    }
  }
  Reply timeout;
  timeout.code = 421;
  timeout.enhanced = "4.4.2";
  timeout.text = "fuzz: connection ended";
  c.Abort(timeout);
  take();

  FUZZ_CHECK(fuzz::OnlyCrlf(out), "client wrote a bare CR/LF: " + Escape(out, 2000));
  // Commands the client wrote (at a line start, outside any message body).
  auto find_command = [&](std::string_view cmd) -> size_t {
    std::vector<std::pair<size_t, size_t>> bodies;
    for (size_t p = out.find(stuffed); !stuffed.empty() && p != std::string::npos;
         p = out.find(stuffed, p + stuffed.size())) {
      bodies.push_back({p, p + stuffed.size()});
    }
    for (size_t p = out.find(cmd); p != std::string::npos; p = out.find(cmd, p + 1)) {
      bool line_start = p == 0 || (p >= 2 && out[p - 2] == '\r' && out[p - 1] == '\n');
      bool in_body = false;
      for (auto [b, e] : bodies) in_body |= p >= b && p < e;
      if (line_start && !in_body) return p;
    }
    return std::string::npos;
  };
  size_t auth = find_command("AUTH PLAIN");
  if (auth != std::string::npos) {
    FUZZ_CHECK(!opts.auth_user.empty());
    FUZZ_CHECK(tls_up_at != std::string::npos && auth >= tls_up_at, "AUTH sent before TLS");
  }
  size_t mail = find_command("MAIL FROM:");
  if (mail != std::string::npos &&
      (opts.tls == TlsPolicy::kRequired || opts.tls == TlsPolicy::kRequiredVerify)) {
    FUZZ_CHECK(tls_up_at != std::string::npos && mail >= tls_up_at, "MAIL sent in clear under required TLS");
  }
  FUZZ_CHECK(static_cast<int>(host.done.size()) == sent,
             std::to_string(host.done.size()) + " results for " + std::to_string(sent) + " sends");
  bool body_written = out.find(stuffed) != std::string::npos;
  for (const auto& results : host.done) {
    FUZZ_CHECK(results.size() == rcpt_list.size());
    for (const auto& r : results) {
      FUZZ_CHECK(r.code != 0);
      // The engine marks a recipient delivered when Classify() says success.
      if (Classify(r.code) == ReplyClass::kSuccess) {
        FUZZ_CHECK(r.code >= 200 && r.code < 300,
                   "recipient result " + std::to_string(r.code) + " counts as delivered");
        FUZZ_CHECK(body_written, "recipient reported delivered (" + std::to_string(r.code) +
                                     ") but the body was never sent");
      }
    }
  }
  FUZZ_CHECK(host.failed || c.phase() == SmtpClient::Phase::kDone);
}

}  // namespace
}  // namespace mxr::delivery

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxr::delivery;
  if (size < 4) return 0;
  mxr::fuzz::Splitter split(static_cast<uint32_t>(data[2]) << 8 | data[3]);
  std::string_view in(reinterpret_cast<const char*>(data) + 4, size - 4);
  std::vector<std::string_view> pieces;
  for (size_t pos = 0; pos < in.size();) {
    size_t n = std::min(split.Piece(512), in.size() - pos);
    pieces.push_back(in.substr(pos, n));
    pos += n;
  }

  Parsed whole = ParseAll(in);
  for (const auto& r : whole.replies) CheckReply(r);
  Parsed parts = ParsePieces(pieces);
  FUZZ_CHECK(whole.error == parts.error && whole.replies.size() == parts.replies.size(),
             "split changed the parse: " + std::to_string(whole.replies.size()) + "/" +
                 std::to_string(whole.error) + " vs " + std::to_string(parts.replies.size()) + "/" +
                 std::to_string(parts.error));
  for (size_t i = 0; i < whole.replies.size(); ++i) {
    FUZZ_CHECK(SameReply(whole.replies[i], parts.replies[i]));
  }

  CheckDotStuff(CrlfClean(in.substr(0, 4000)));
  DriveClient(data[0], data[1], pieces, in);
  return 0;
}
