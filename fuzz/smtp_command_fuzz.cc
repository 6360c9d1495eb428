// Fuzz target: the SMTP command-line parser (relay/smtp_parser.h).
//
// Input: byte 0 picks the line limit, the rest is a client byte stream. It is
// cut into lines with NextLine exactly as the session does, and every line
// goes through ParseCommand; its argument through ParseMailFrom, ParseRcptTo,
// ParseBdat and CheckMailbox (all of them, whatever the verb: cheap, and the
// fuzzer need not find the verb first).
//
// Invariants:
//  - NextLine: consumed/line/bare_lf agree with the bytes and the limit;
//  - ParseCommand: arg lies inside the line, trimmed; the verb matches the word;
//  - a parsed path round-trips (re-serialised MAIL/RCPT argument parses to
//    the same address, SIZE, BODY, SMTPUTF8), its address passes
//    CheckMailbox and holds no control character;
//  - a rejected path carries a 5xx code, an enhanced code and a reply text
//    without CR or LF (the text goes into a reply line);
//  - ParseBdat round-trips.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "relay/smtp_parser.h"

namespace mxr::relay {
namespace {

using fuzz::Escape;

// Control characters other than NUL: the session rejects a command line
// holding a NUL before parsing it, so NUL itself is not checked here.
bool HasCtl(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 32 && u != 0) || u == 127) return true;
  }
  return false;
}

bool IEq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x -= 32;
    if (y >= 'a' && y <= 'z') y -= 32;
    if (x != y) return false;
  }
  return true;
}

void CheckFailure(const PathResult& r, std::string_view arg) {
  FUZZ_CHECK(r.code == 501 || r.code == 555, Escape(arg));
  FUZZ_CHECK(r.enhanced.size() == 5 && r.enhanced[0] == '5' && r.enhanced[1] == '.', r.enhanced);
  FUZZ_CHECK(!r.text.empty());
  // The text ends up in a reply line: a CR or LF in it would end the line
  // early (reply injection). (NUL cannot get here: the session rejects
  // command lines holding one before parsing them.)
  FUZZ_CHECK(r.text.find_first_of("\r\n") == std::string::npos,
             "reply text echoes CR/LF: \"" + Escape(r.text) + "\" for argument \"" +
                 Escape(arg) + "\"");
}

void CheckPath(const PathResult& r, std::string_view arg, bool mail) {
  if (!r.ok) return CheckFailure(r, arg);
  FUZZ_CHECK(r.code == 0);
  FUZZ_CHECK(mail || !r.address.empty(), "null recipient accepted");
  FUZZ_CHECK(r.address.size() <= 254, Escape(r.address));
  FUZZ_CHECK(!HasCtl(r.address), Escape(r.address));
  if (!r.address.empty()) {
    bool utf8 = false;
    std::string why = CheckMailbox(r.address, &utf8);
    FUZZ_CHECK(why.empty(), why + ": " + Escape(r.address));
    FUZZ_CHECK(utf8 == r.has_utf8, Escape(r.address));
  } else {
    FUZZ_CHECK(!r.has_utf8);
  }
  FUZZ_CHECK(mail || (!r.size_given && !r.body_8bit && !r.smtputf8));

  // Round trip: the canonical form of what we understood parses the same.
  std::string again = std::string(mail ? "FROM:<" : "TO:<") + r.address + ">";
  if (r.size_given) again += " SIZE=" + std::to_string(r.size);
  if (r.body_8bit) again += " BODY=8BITMIME";
  if (r.smtputf8) again += " SMTPUTF8";
  PathResult r2 = mail ? ParseMailFrom(again) : ParseRcptTo(again);
  FUZZ_CHECK(r2.ok, Escape(again) + " -> " + r2.text);
  FUZZ_CHECK(r2.address == r.address && r2.has_utf8 == r.has_utf8 &&
                 r2.size_given == r.size_given && r2.size == r.size &&
                 r2.body_8bit == r.body_8bit && r2.smtputf8 == r.smtputf8,
             Escape(arg) + " vs " + Escape(again));
}

void CheckLine(std::string_view line) {
  Command c = ParseCommand(line);
  // arg is a trimmed slice of the line.
  if (!c.arg.empty()) {
    FUZZ_CHECK(c.arg.data() >= line.data() &&
               c.arg.data() + c.arg.size() <= line.data() + line.size());
    FUZZ_CHECK(c.arg.front() != ' ' && c.arg.back() != ' ' && c.arg.back() != '\t');
  }
  std::string_view word = line.substr(0, line.find(' '));
  if (c.verb != Verb::kUnknown) {
    FUZZ_CHECK(IEq(word, VerbName(c.verb)), Escape(line));
  } else {
    for (int v = 0; v < static_cast<int>(Verb::kUnknown); ++v) {
      FUZZ_CHECK(!IEq(word, VerbName(static_cast<Verb>(v))), Escape(line));
    }
  }

  CheckPath(ParseMailFrom(c.arg), c.arg, true);
  CheckPath(ParseRcptTo(c.arg), c.arg, false);

  BdatArgs b = ParseBdat(c.arg);
  if (b.ok) {
    std::string again = std::to_string(b.size) + (b.last ? " LAST" : "");
    BdatArgs b2 = ParseBdat(again);
    FUZZ_CHECK(b2.ok && b2.size == b.size && b2.last == b.last, Escape(c.arg));
  }

  bool utf8 = false;
  std::string why = CheckMailbox(c.arg, &utf8);
  if (why.empty()) {
    FUZZ_CHECK(c.arg.find('@') != std::string_view::npos);
    FUZZ_CHECK(!HasCtl(c.arg), Escape(c.arg));
  } else {
    FUZZ_CHECK(!HasCtl(why));
  }
}

}  // namespace
}  // namespace mxr::relay

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxr::relay;
  if (size < 1) return 0;
  // Line limit: 1000 (the default) most of the time, sometimes tiny.
  size_t max_len = data[0] < 200 ? 1000 : 1 + (data[0] - 200) * 4;
  std::string_view buf(reinterpret_cast<const char*>(data) + 1, size - 1);

  while (!buf.empty()) {
    size_t used = 0;
    std::string_view line;
    bool bare_lf = false;
    LineStatus st = NextLine(buf, max_len, &used, &line, &bare_lf);
    if (st == LineStatus::kNeedMore) {
      FUZZ_CHECK(buf.size() < max_len && buf.find('\n') == std::string_view::npos);
      CheckLine(buf);  // the session never parses this, but the parser must cope
      break;
    }
    if (st == LineStatus::kTooLong) {
      FUZZ_CHECK(buf.size() >= max_len && buf.substr(0, max_len).find('\n') == std::string_view::npos);
      buf.remove_prefix(max_len);
      continue;
    }
    FUZZ_CHECK(used >= 1 && used <= buf.size() && used <= max_len);
    FUZZ_CHECK(buf[used - 1] == '\n' && buf.substr(0, used - 1).find('\n') == std::string_view::npos);
    bool crlf = used >= 2 && buf[used - 2] == '\r';
    FUZZ_CHECK(bare_lf == !crlf);
    FUZZ_CHECK(line.data() == buf.data() && line.size() == used - 1 - (crlf ? 1 : 0));
    CheckLine(line);
    buf.remove_prefix(used);
  }
  return 0;
}
