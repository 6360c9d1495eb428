#include "relay/smtp_parser.h"

#include "relay/dsn_params.h"

#include <charconv>
#include <cstring>

#include "common/escape.h"
#include "common/net.h"
#include "common/strings.h"

namespace mxr::relay {
namespace {

constexpr auto IEquals = AsciiIEquals;
constexpr auto IStartsWith = AsciiIStartsWith;

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size();
}

bool IsAtext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != 0;
}

PathResult Fail(int code, const char* enhanced, std::string text) {
  PathResult r;
  r.code = code;
  r.enhanced = enhanced;
  r.text = std::move(text);
  return r;
}

// Parses "<path>" at the start of s; returns the rest after '>'.
bool TakePath(std::string_view* s, std::string_view* path) {
  if (s->empty() || (*s)[0] != '<') return false;
  // A quoted local part may contain '>', so scan with quote awareness.
  bool quoted = false;
  for (size_t i = 1; i < s->size(); ++i) {
    char c = (*s)[i];
    if (quoted && c == '\\') {
      ++i;
      continue;
    }
    if (c == '"') quoted = !quoted;
    if (c == '>' && !quoted) {
      *path = s->substr(1, i - 1);
      s->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

// Validates a UTF-8 sequence starting at s[i]; advances i past it.
bool TakeUtf8(std::string_view s, size_t* i) {
  size_t n = Utf8SequenceLength(s.substr(*i));
  *i += n;
  return n > 0;
}

std::string CheckLocalPart(std::string_view lp, bool* utf8) {
  if (lp.empty()) return "empty local part";
  if (lp.size() > 64) return "local part longer than 64 octets";
  if (lp[0] == '"') {
    if (lp.size() < 2 || lp.back() != '"') return "unterminated quoted local part";
    for (size_t i = 1; i + 1 < lp.size();) {
      unsigned char c = static_cast<unsigned char>(lp[i]);
      if (c == '\\') {
        if (i + 2 >= lp.size()) return "bad quoted pair";
        unsigned char q = static_cast<unsigned char>(lp[i + 1]);
        if (q < 32 || q > 126) return "bad quoted pair";
        i += 2;
      } else if (c >= 0x80) {
        if (!TakeUtf8(lp, &i)) return "invalid UTF-8 in local part";
        *utf8 = true;
      } else if (c < 32 || c == 127 || c == '"') {
        return "invalid character in quoted local part";
      } else {
        ++i;
      }
    }
    return "";
  }
  bool prev_dot = true;  // no leading dot
  for (size_t i = 0; i < lp.size();) {
    unsigned char c = static_cast<unsigned char>(lp[i]);
    if (c == '.') {
      if (prev_dot) return "empty atom in local part";
      prev_dot = true;
      ++i;
    } else if (c >= 0x80) {
      if (!TakeUtf8(lp, &i)) return "invalid UTF-8 in local part";
      *utf8 = true;
      prev_dot = false;
    } else if (IsAtext(c)) {
      prev_dot = false;
      ++i;
    } else {
      return "invalid character in local part";
    }
  }
  if (prev_dot) return "local part ends with a dot";
  return "";
}

std::string CheckDomain(std::string_view d, bool* utf8) {
  if (d.empty()) return "empty domain";
  if (d.size() > 255) return "domain longer than 255 octets";
  if (d[0] == '[') {
    if (d.back() != ']') return "unterminated address literal";
    std::string_view lit = d.substr(1, d.size() - 2);
    bool v6 = IStartsWith(lit, "IPv6:");
    if (v6) lit.remove_prefix(5);
    // IpAddress::Parse accepts one pair of brackets around an address (as in
    // a config file); inside a literal they are never valid ("[[1.2.3.4]]").
    if (lit.find_first_of("[]") != std::string_view::npos) return "invalid address literal";
    auto ip = IpAddress::Parse(lit);
    if (!ip.ok() || ip->is_v4() == v6) return "invalid address literal";
    return "";
  }
  size_t label_len = 0;
  unsigned char prev = '.';
  for (size_t i = 0; i < d.size();) {
    unsigned char c = static_cast<unsigned char>(d[i]);
    if (c == '.') {
      if (label_len == 0) return "empty label in domain";
      if (prev == '-') return "label ends with a hyphen";
      label_len = 0;
      prev = c;
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t start = i;
      if (!TakeUtf8(d, &i)) return "invalid UTF-8 in domain";
      *utf8 = true;
      label_len += i - start;
      prev = 'a';
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      ++label_len;
      prev = c;
      ++i;
    } else if (c == '-') {
      if (label_len == 0) return "label starts with a hyphen";
      ++label_len;
      prev = c;
      ++i;
    } else {
      return "invalid character in domain";
    }
    if (label_len > 63) return "domain label longer than 63 octets";
  }
  if (label_len == 0) return "domain ends with a dot";
  if (prev == '-') return "label ends with a hyphen";
  return "";
}

// RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
// Checked before a keyword is ever echoed in a reply (fuzz finding
// param-echo-cr: a CR inside an unknown keyword reached the reply).
bool IsEsmtpKeyword(std::string_view k) {
  if (k.empty() || k.size() > 64) return false;
  for (size_t i = 0; i < k.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(k[i]);
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || c != '-')) return false;
  }
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 octets (RFC 6531 3.3).
bool IsEsmtpValue(std::string_view v) {
  if (v.empty()) return false;
  for (unsigned char c : v) {
    if (c < 33 || c == '=' || c == 127) return false;
  }
  return true;
}

// Parses " KEY=VALUE KEY" parameters. Returns false on syntax errors.
bool SplitParams(std::string_view s, std::vector<std::pair<std::string_view, std::string_view>>* out) {
  while (!s.empty()) {
    if (s[0] != ' ') return false;
    while (!s.empty() && s[0] == ' ') s.remove_prefix(1);
    if (s.empty()) break;
    size_t end = s.find(' ');
    std::string_view p = s.substr(0, end);
    s = end == std::string_view::npos ? std::string_view() : s.substr(end);
    size_t eq = p.find('=');
    std::string_view k = p.substr(0, eq), v;
    if (eq != std::string_view::npos) {
      v = p.substr(eq + 1);
      if (!IsEsmtpValue(v)) return false;
    }
    if (!IsEsmtpKeyword(k)) return false;
    out->emplace_back(k, v);
    if (out->size() > 16) return false;
  }
  return true;
}

PathResult ParsePath(std::string_view arg, std::string_view keyword, bool allow_null) {
  if (!IStartsWith(arg, keyword)) {
    return Fail(501, "5.5.4", std::string("Syntax: ") + (allow_null ? "MAIL FROM:<address>" : "RCPT TO:<address>"));
  }
  arg.remove_prefix(keyword.size());
  while (!arg.empty() && arg[0] == ' ') arg.remove_prefix(1);  // tolerate "FROM: <a>"
  std::string_view path;
  if (!TakePath(&arg, &path)) {
    return Fail(501, "5.5.4", "Address must be enclosed in <>");
  }
  PathResult r;
  if (path.empty()) {
    if (!allow_null) return Fail(501, "5.1.3", "Null recipient address not allowed");
  } else {
    if (path[0] == '@') {
      return Fail(501, "5.1.3", "Source routes are not supported");
    }
    if (path.size() > 254) return Fail(501, allow_null ? "5.1.7" : "5.1.3", "Address too long");
    std::string why = CheckMailbox(path, &r.has_utf8);
    if (!why.empty()) {
      return Fail(501, allow_null ? "5.1.7" : "5.1.3", "Bad address syntax: " + why);
    }
  }
  r.address.assign(path);
  std::vector<std::pair<std::string_view, std::string_view>> params;
  if (!SplitParams(arg, &params)) return Fail(501, "5.5.4", "Syntax error in parameters");
  for (auto [k, v] : params) {
    if (allow_null && IEquals(k, "SIZE")) {
      if (!ParseU64(v, &r.size)) return Fail(501, "5.5.4", "Bad SIZE value");
      r.size_given = true;
    } else if (allow_null && IEquals(k, "BODY")) {
      if (IEquals(v, "8BITMIME")) {
        r.body_8bit = true;
      } else if (!IEquals(v, "7BIT")) {
        return Fail(501, "5.5.4", "BODY must be 7BIT or 8BITMIME");
      }
    } else if (allow_null && IEquals(k, "SMTPUTF8")) {
      if (!v.empty()) return Fail(501, "5.5.4", "SMTPUTF8 takes no value");
      r.smtputf8 = true;
    } else if (IEquals(k, allow_null ? "RET" : "NOTIFY") || IEquals(k, allow_null ? "ENVID" : "ORCPT")) {
      std::string why;
      bool dup;
      if (IEquals(k, "RET")) {
        dup = r.dsn_ret != 0;
        why = ParseDsnRet(v, &r.dsn_ret);
      } else if (IEquals(k, "ENVID")) {
        dup = !r.envid.empty();
        why = ParseDsnEnvid(v, &r.envid);
      } else if (IEquals(k, "NOTIFY")) {
        dup = r.notify != 0;
        why = ParseDsnNotify(v, &r.notify);
      } else {
        dup = !r.orcpt.empty();
        why = ParseDsnOrcpt(v, &r.orcpt);
      }
      if (dup) return Fail(501, "5.5.4", std::string("Duplicate parameter ") + std::string(k));
      if (!why.empty()) return Fail(501, "5.5.4", why);
    } else if (allow_null && IEquals(k, "AUTH")) {
      // RFC 4954 AUTH=<mailbox>: accepted and ignored (we trust our own AUTH).
    } else {
      return Fail(555, "5.5.4", std::string("Unsupported parameter ") + std::string(k));
    }
  }
  r.ok = true;
  return r;
}

}  // namespace

LineStatus NextLine(std::string_view buf, size_t max_len, size_t* consumed,
                    std::string_view* line, bool* bare_lf) {
  size_t limit = buf.size() < max_len ? buf.size() : max_len;
  const void* p = std::memchr(buf.data(), '\n', limit);
  if (p == nullptr) {
    return buf.size() >= max_len ? LineStatus::kTooLong : LineStatus::kNeedMore;
  }
  size_t lf = static_cast<const char*>(p) - buf.data();
  *consumed = lf + 1;
  bool crlf = lf > 0 && buf[lf - 1] == '\r';
  if (bare_lf) *bare_lf = !crlf;
  *line = buf.substr(0, crlf ? lf - 1 : lf);
  return LineStatus::kLine;
}

Command ParseCommand(std::string_view line) {
  static constexpr struct {
    std::string_view name;
    Verb verb;
  } kVerbs[] = {
      {"HELO", Verb::kHelo}, {"EHLO", Verb::kEhlo}, {"MAIL", Verb::kMail},
      {"RCPT", Verb::kRcpt}, {"DATA", Verb::kData}, {"BDAT", Verb::kBdat},
      {"RSET", Verb::kRset}, {"NOOP", Verb::kNoop}, {"QUIT", Verb::kQuit},
      {"VRFY", Verb::kVrfy}, {"EXPN", Verb::kExpn}, {"HELP", Verb::kHelp},
      {"STARTTLS", Verb::kStartTls}, {"AUTH", Verb::kAuth},
  };
  size_t sp = line.find(' ');
  std::string_view word = line.substr(0, sp);
  Command c;
  for (const auto& v : kVerbs) {
    if (IEquals(word, v.name)) {
      c.verb = v.verb;
      break;
    }
  }
  if (sp != std::string_view::npos) {
    std::string_view arg = line.substr(sp);
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    while (!arg.empty() && (arg.back() == ' ' || arg.back() == '\t')) arg.remove_suffix(1);
    c.arg = arg;
  }
  return c;
}

std::string_view VerbName(Verb v) {
  switch (v) {
    case Verb::kHelo: return "HELO";
    case Verb::kEhlo: return "EHLO";
    case Verb::kMail: return "MAIL";
    case Verb::kRcpt: return "RCPT";
    case Verb::kData: return "DATA";
    case Verb::kBdat: return "BDAT";
    case Verb::kRset: return "RSET";
    case Verb::kNoop: return "NOOP";
    case Verb::kQuit: return "QUIT";
    case Verb::kVrfy: return "VRFY";
    case Verb::kExpn: return "EXPN";
    case Verb::kHelp: return "HELP";
    case Verb::kStartTls: return "STARTTLS";
    case Verb::kAuth: return "AUTH";
    case Verb::kUnknown: return "UNKNOWN";
  }
  return "UNKNOWN";
}

std::string CheckMailbox(std::string_view mailbox, bool* has_utf8) {
  *has_utf8 = false;
  // The '@' that separates local part and domain is the last one outside quotes.
  size_t at = mailbox.rfind('@');
  if (at == std::string_view::npos) return "missing @domain";
  std::string why = CheckLocalPart(mailbox.substr(0, at), has_utf8);
  if (!why.empty()) return why;
  return CheckDomain(mailbox.substr(at + 1), has_utf8);
}

PathResult ParseMailFrom(std::string_view arg) { return ParsePath(arg, "FROM:", true); }
PathResult ParseRcptTo(std::string_view arg) { return ParsePath(arg, "TO:", false); }

BdatArgs ParseBdat(std::string_view arg) {
  BdatArgs b;
  size_t sp = arg.find(' ');
  if (!ParseU64(arg.substr(0, sp), &b.size)) return b;
  if (sp != std::string_view::npos) {
    std::string_view rest = arg.substr(sp);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (!IEquals(rest, "LAST")) return b;
    b.last = true;
  }
  b.ok = true;
  return b;
}

}  // namespace mxr::relay
