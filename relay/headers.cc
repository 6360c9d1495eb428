#include "relay/headers.h"

#include "common/strings.h"

namespace mxr::relay {
namespace {

// Header values we copy from the client must not break our header lines.
std::string Clean(std::string_view s, size_t max = 255) {
  std::string out;
  for (char c : s.substr(0, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 32 || u == 127 || c == '(' || c == ')' ? '?' : c);
  }
  return out;
}

}  // namespace

HeaderPresence ScanHeaders(std::string_view m) {
  HeaderPresence p;
  size_t pos = 0;
  while (pos < m.size()) {
    size_t eol = m.find("\r\n", pos);
    std::string_view line = m.substr(pos, eol == std::string_view::npos ? m.npos : eol - pos);
    if (line.empty()) break;  // end of the header section
    if (AsciiIStartsWith(line, "date:")) p.date = true;
    if (AsciiIStartsWith(line, "message-id:")) p.message_id = true;
    if (AsciiIStartsWith(line, "received:")) p.received++;
    if (eol == std::string_view::npos) break;
    pos = eol + 2;
  }
  return p;
}

std::string TraceHeaders(const TraceInfo& t, HeaderPresence present) {
  std::string h = Cat("Received: from ", Clean(t.helo.empty() ? "unknown" : t.helo), " ([",
                      t.client_ip, "])\r\n\tby ", t.hostname, " (mxrelay) with ", t.protocol,
                      " id ", t.queue_id);
  if (!t.tls_version.empty()) {
    h += Cat("\r\n\t(using ", t.tls_version, " with cipher ", t.tls_cipher, ")");
  }
  if (!t.auth_user.empty()) h += Cat("\r\n\t(authenticated user ", Clean(t.auth_user), ")");
  if (!t.single_rcpt.empty()) h += Cat("\r\n\tfor <", Clean(t.single_rcpt, 300), ">");
  h += Cat(";\r\n\t", Rfc5322Date(t.now_us), "\r\n");
  if (!present.date) h += Cat("Date: ", Rfc5322Date(t.now_us), "\r\n");
  if (!present.message_id) h += Cat("Message-ID: <", t.queue_id, "@", t.hostname, ">\r\n");
  return h;
}

}  // namespace mxr::relay
