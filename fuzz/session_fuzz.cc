// Fuzz target: a whole relay::Session (SMTP server state machine, with the
// command parser, DATA/BDAT readers, AUTH, STARTTLS and trace headers behind
// it) driven through an I/O-free SessionHost.
//
// Input: 4 header bytes, then the client's byte stream.
//   byte 0: bit 0 trusted client; bits 1-2 listener mode (starttls, starttls,
//           plain, implicit TLS); bit 3 auth_without_tls; bit 4 the spool
//           refuses every other MAIL/DATA (SpoolAccepting); bits 5-6 commit
//           result (ok, ok, ResourceExhausted, Internal); bit 7 every AUTH fails.
//   byte 1: bits 0-1 limits (defaults; 100-byte messages; 2 recipients and
//           3 errors; 64-byte lines and 1000-byte messages); bit 2 one AUTH
//           failure closes; bit 3 OnShutdown in the middle; bit 4 the host
//           answers only after the last piece; bit 5 a failed AUTH is answered
//           with OnAuthBlocked.
//   bytes 2-3: seed of the split points.
// The host answers deterministically: Authenticate succeeds iff the password
// is "secret" (and bit 7 is clear), Submit commits with the chosen status,
// StartTls completes at once (OnTlsEstablished) — each after the Feed that
// asked returns, as the event loop would.
//
// The stream is run twice: in one Feed, and in pieces cut at the seeded
// points. Invariants:
//  - replies are well formed: CRLF only, "ddd " / "ddd-" lines, enhanced
//    status codes of the right class (RFC 2034), nothing after 221/421;
//  - every submitted message comes from an authenticated or trusted client
//    (never an open relay), has 1..max_recipients valid recipients, a valid
//    sender, a body within max_message_size with CRLF line endings only (no
//    message is accepted after a bare CR/LF: the smuggling defence), trace
//    headers with CRLF endings, a body_size that adds up;
//  - one "250 2.0.0 Ok: queued" per successful commit, and Summary agrees;
//  - splitting the stream changes nothing (output, closes, messages) unless
//    STARTTLS or shutdown made the timing matter.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "common/config.h"
#include "fuzz/fuzz_util.h"
#include "queue/types.h"
#include "relay/session.h"
#include "relay/smtp_parser.h"

namespace mxr::relay {
namespace {

using fuzz::Escape;

constexpr char kPassword[] = "secret";

struct Flags {
  bool trusted = false;
  ListenerMode mode = ListenerMode::kStartTls;
  bool auth_without_tls = false;
  bool spool_flaky = false;
  absl::StatusCode commit = absl::StatusCode::kOk;
  bool auth_always_fails = false;
  int limits = 0;
  bool one_auth_failure = false;
  bool shutdown = false;
  bool answer_at_end = false;
  bool auth_blocked = false;
};

Flags Decode(uint8_t b0, uint8_t b1) {
  Flags f;
  f.trusted = b0 & 1;
  static constexpr ListenerMode kModes[] = {ListenerMode::kStartTls, ListenerMode::kStartTls,
                                            ListenerMode::kPlain, ListenerMode::kImplicitTls};
  f.mode = kModes[(b0 >> 1) & 3];
  f.auth_without_tls = b0 & 8;
  f.spool_flaky = b0 & 16;
  static constexpr absl::StatusCode kCommit[] = {absl::StatusCode::kOk, absl::StatusCode::kOk,
                                                 absl::StatusCode::kResourceExhausted,
                                                 absl::StatusCode::kInternal};
  f.commit = kCommit[(b0 >> 5) & 3];
  f.auth_always_fails = b0 & 128;
  f.limits = b1 & 3;
  f.one_auth_failure = b1 & 4;
  f.shutdown = b1 & 8;
  f.answer_at_end = b1 & 16;
  f.auth_blocked = b1 & 32;
  return f;
}

class FakeHost : public SessionHost {
 public:
  explicit FakeHost(const Flags& f) : f_(f) {}
  void StartTls() override { ++start_tls; }
  void Close() override { ++closes; }
  void Authenticate(std::string user, std::string password) override {
    auths.push_back({std::move(user), std::move(password)});
  }
  void Submit(queue::NewMessage msg) override { submitted.push_back(std::move(msg)); }
  bool SpoolAccepting() override { return !f_.spool_flaky || (spool_asks++ % 2) == 0; }

  struct Auth {
    std::string user, password;
  };
  const Flags& f_;
  int start_tls = 0;
  int closes = 0;
  int spool_asks = 0;
  std::vector<Auth> auths;
  std::vector<queue::NewMessage> submitted;
};

struct Run {
  std::string output;
  int closes = 0;
  int start_tls = 0;
  int commits_ok = 0;
  std::vector<queue::NewMessage> messages;
  std::vector<std::string> ok_users;  // users whose AUTH we accepted
};

// "ddd c.d.d text" (RFC 3463): enhanced code of the reply's class.
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

void CheckReplies(std::string_view out, std::string_view hostname) {
  if (out.empty()) return;
  FUZZ_CHECK(out.size() >= 2 && out.substr(out.size() - 2) == "\r\n", Escape(out.substr(out.size() > 200 ? out.size() - 200 : 0)));
  FUZZ_CHECK(fuzz::OnlyCrlf(out), "bare CR or LF in the replies: " + Escape(out, 4000));
  std::string greeting = std::string("220 ") + std::string(hostname) + " ESMTP";
  std::string continuing;  // code of an open multi-line reply
  bool closed = false;
  for (size_t pos = 0; pos < out.size();) {
    size_t eol = out.find("\r\n", pos);
    std::string_view line = out.substr(pos, eol - pos);
    pos = eol + 2;
    FUZZ_CHECK(!closed, "reply after 221/421: " + Escape(line));
    FUZZ_CHECK(line.size() >= 4 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
                   line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
                   (line[3] == ' ' || line[3] == '-'),
               "malformed reply line: " + Escape(line));
    std::string code(line.substr(0, 3));
    if (!continuing.empty()) FUZZ_CHECK(code == continuing, "multi-line code changed: " + Escape(line));
    if (line[3] == '-') {
      continuing = code;
      continue;
    }
    bool exempt = !continuing.empty() || line == "250 HELP" || code == "334" || code == "354" ||
                  line.substr(0, greeting.size()) == greeting;
    continuing.clear();
    if (!exempt) FUZZ_CHECK(HasEnhancedCode(line), "reply without enhanced code: " + Escape(line));
    if (code == "221" || code == "421") closed = true;
  }
  FUZZ_CHECK(continuing.empty(), "unfinished multi-line reply");
}

void CheckMessage(const queue::NewMessage& m, const Config& cfg, bool trusted,
                  const std::vector<std::string>& ok_users) {
  const auto& meta = m.meta;
  // Never an open relay: AUTH accepted by the host, or a trusted network.
  if (!trusted) {
    FUZZ_CHECK(!meta.auth_user.empty(), "message accepted from an untrusted, unauthenticated client");
    bool known = false;
    for (const auto& u : ok_users) known |= u == meta.auth_user;
    FUZZ_CHECK(known, "auth_user the host never accepted: " + Escape(meta.auth_user));
  }
  FUZZ_CHECK(!meta.recipients.empty());
  FUZZ_CHECK(meta.recipients.size() <= static_cast<size_t>(cfg.limits.max_recipients));
  bool utf8 = false, any_utf8 = false;
  if (!meta.sender.empty()) {
    FUZZ_CHECK(CheckMailbox(meta.sender, &utf8).empty(), Escape(meta.sender));
    any_utf8 |= utf8;
  }
  for (const auto& r : meta.recipients) {
    FUZZ_CHECK(CheckMailbox(r.address, &utf8).empty(), Escape(r.address));
    any_utf8 |= utf8;
  }
  if (any_utf8) FUZZ_CHECK(meta.smtputf8, "non-ASCII address without SMTPUTF8");
  FUZZ_CHECK(m.body.size() <= cfg.limits.max_message_size);
  // The smuggling defence: only CRLF-clean bodies are ever accepted.
  FUZZ_CHECK(fuzz::OnlyCrlf(m.body), "accepted body with a bare CR/LF: " + Escape(m.body, 2000));
  FUZZ_CHECK(fuzz::OnlyCrlf(m.header_prefix), Escape(m.header_prefix, 2000));
  FUZZ_CHECK(m.header_prefix.size() >= 2 && m.header_prefix.substr(m.header_prefix.size() - 2) == "\r\n");
  FUZZ_CHECK(m.header_prefix.rfind("Received: ", 0) == 0, Escape(m.header_prefix));
  FUZZ_CHECK(meta.body_size == m.header_prefix.size() + m.body.size());
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t p = s->find(from); p != std::string::npos; p = s->find(from, p + to.size())) {
    s->replace(p, from.size(), to);
  }
}

class Harness {
 public:
  Harness(const Flags& f) : f_(f), config_(DefaultConfig()), ids_(clock_) {
    switch (f.limits) {
      case 1:
        config_.limits.max_message_size = 100;
        break;
      case 2:
        config_.limits.max_recipients = 2;
        config_.limits.max_errors = 3;
        break;
      case 3:
        config_.limits.max_line_length = 64;
        config_.limits.max_message_size = 1000;
        break;
      default:
        break;
    }
    if (f.one_auth_failure) config_.auth.max_failures = 1;
    listener_.name = "fuzz";
    listener_.mode = f.mode;
    listener_.auth_without_tls = f.auth_without_tls;
    env_.config = &config_;
    env_.listener = &listener_;
    env_.hostname = "mx.fuzz.test";
    env_.ids = &ids_;
    env_.clock = &clock_;
  }

  // Feeds `pieces` in order; answers the host's requests after each piece
  // (or only after the last with answer_at_end).
  Run Drive(const std::vector<std::string_view>& pieces, bool answer_at_end, bool shutdown) {
    FakeHost host(f_);
    Session s(env_, &host, ConnInfo{"192.0.2.7", f_.trusted});
    Run r;
    if (f_.mode == ListenerMode::kImplicitTls) s.OnTlsEstablished("TLSv1.3", "TLS_AES_128_GCM_SHA256");
    s.Start();
    r.output = s.TakeOutput();
    size_t authed = 0, committed = 0;
    int tls_done = 0;
    auto answer = [&] {
      for (;;) {
        FUZZ_CHECK(host.auths.size() + host.submitted.size() <= authed + committed + 1,
                   "more than one request outstanding");
        if (authed < host.auths.size()) {
          FUZZ_CHECK(s.mode() == Session::Mode::kWaitAuth);
          const auto& a = host.auths[authed++];
          bool ok = !f_.auth_always_fails && a.password == kPassword;
          if (ok) r.ok_users.push_back(a.user);
          if (!ok && f_.auth_blocked) {
            s.OnAuthBlocked();
          } else {
            s.OnAuthResult(ok);
          }
        } else if (committed < host.submitted.size()) {
          FUZZ_CHECK(s.mode() == Session::Mode::kWaitSpool);
          ++committed;
          if (f_.commit == absl::StatusCode::kOk) {
            ++r.commits_ok;
            s.OnCommitted(absl::OkStatus());
          } else {
            s.OnCommitted(absl::Status(f_.commit, "fuzz"));
          }
        } else if (tls_done < host.start_tls) {
          FUZZ_CHECK(s.mode() == Session::Mode::kTlsSwitch);
          ++tls_done;
          s.OnTlsEstablished("TLSv1.3", "TLS_AES_256_GCM_SHA384");
        } else {
          break;
        }
        r.output += s.TakeOutput();
      }
    };
    for (size_t i = 0; i < pieces.size(); ++i) {
      s.Feed(pieces[i]);
      r.output += s.TakeOutput();
      if (!answer_at_end) answer();
      if (shutdown && i == pieces.size() / 2) {
        s.OnShutdown();
        r.output += s.TakeOutput();
      }
    }
    answer();
    FUZZ_CHECK(s.summary().messages == static_cast<uint32_t>(r.commits_ok));
    // Replies are checked in the end state too: a timeout now closes.
    s.OnTimeout();
    std::string tail = s.TakeOutput();
    FUZZ_CHECK(s.mode() == Session::Mode::kClosed);
    CheckReplies(r.output + tail, env_.hostname);

    for (const auto& m : host.submitted) CheckMessage(m, config_, f_.trusted, r.ok_users);
    size_t queued = 0;
    for (size_t p = r.output.find("250 2.0.0 Ok: queued as "); p != std::string::npos;
         p = r.output.find("250 2.0.0 Ok: queued as ", p + 1)) {
      ++queued;
    }
    FUZZ_CHECK(queued == static_cast<size_t>(r.commits_ok));

    // Queue ids are random: normalise them so that runs compare.
    for (auto& m : host.submitted) {
      std::string id = m.meta.id.ToString();
      ReplaceAll(&r.output, id, "<ID>");
      ReplaceAll(&m.header_prefix, id, "<ID>");
    }
    r.closes = host.closes;
    r.start_tls = host.start_tls;
    r.messages = std::move(host.submitted);
    return r;
  }

 private:
  const Flags& f_;
  Config config_;
  ListenerConfig listener_;
  ManualClock clock_;
  queue::QueueIdGenerator ids_;
  SessionEnv env_;
};

void ExpectSame(const Run& a, const Run& b, std::string_view in) {
  FUZZ_CHECK(a.output == b.output, "split changed the replies:\n  whole: " + Escape(a.output, 3000) +
                                       "\n  split: " + Escape(b.output, 3000));
  FUZZ_CHECK(a.closes == b.closes);
  FUZZ_CHECK(a.messages.size() == b.messages.size());
  for (size_t i = 0; i < a.messages.size(); ++i) {
    const auto& x = a.messages[i];
    const auto& y = b.messages[i];
    FUZZ_CHECK(x.meta.sender == y.meta.sender);
    FUZZ_CHECK(x.meta.recipients.size() == y.meta.recipients.size());
    for (size_t k = 0; k < x.meta.recipients.size(); ++k) {
      FUZZ_CHECK(x.meta.recipients[k].address == y.meta.recipients[k].address);
    }
    FUZZ_CHECK(x.body == y.body, "split changed a body: " + Escape(x.body) + " vs " + Escape(y.body));
    FUZZ_CHECK(x.header_prefix == y.header_prefix);
    FUZZ_CHECK(x.meta.auth_user == y.meta.auth_user);
    FUZZ_CHECK(x.meta.smtputf8 == y.meta.smtputf8 && x.meta.body_8bit == y.meta.body_8bit);
  }
}

}  // namespace
}  // namespace mxr::relay

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxr::relay;
  if (size < 4) return 0;
  Flags f = Decode(data[0], data[1]);
  mxr::fuzz::Splitter split(static_cast<uint32_t>(data[2]) << 8 | data[3]);
  std::string_view in(reinterpret_cast<const char*>(data) + 4, size - 4);

  Harness h(f);
  Run whole = h.Drive({in}, false, false);

  std::vector<std::string_view> pieces;
  for (size_t pos = 0; pos < in.size();) {
    size_t n = std::min(split.Piece(256), in.size() - pos);
    pieces.push_back(in.substr(pos, n));
    pos += n;
  }
  Run parts = h.Drive(pieces, f.answer_at_end, f.shutdown);
  // STARTTLS discards what was pipelined after it in the same read, so the
  // split points matter there; so does a shutdown in the middle.
  if (whole.start_tls == 0 && parts.start_tls == 0 && !f.shutdown) ExpectSame(whole, parts, in);
  return 0;
}
