#include "delivery/dsn.h"

#include "common/strings.h"

namespace mxr::delivery {
namespace {

bool NonAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

// Server text must not break our header/field lines.
std::string OneLine(std::string_view s) {
  std::string o;
  for (char c : s.substr(0, 900)) o.push_back(c == '\r' || c == '\n' ? ' ' : c);
  return o;
}

}  // namespace

std::string_view HeaderSection(std::string_view m) {
  if (m.substr(0, 2) == "\r\n") return m.substr(0, 0);  // blank first line: no headers
  size_t end = m.find("\r\n\r\n");
  if (end == std::string_view::npos) return m;
  return m.substr(0, end + 2);
}

std::string_view BoundedHeaderSection(std::string_view m, size_t max_bytes, bool* truncated) {
  std::string_view h = HeaderSection(m);
  *truncated = h.size() > max_bytes;
  if (!*truncated) return h;
  std::string_view cut = h.substr(0, max_bytes);
  size_t eol = cut.rfind("\r\n");
  return eol == std::string_view::npos || eol == 0 ? cut : cut.substr(0, eol + 2);
}

queue::NewMessage BuildDsn(const queue::MessageMeta& original, std::string_view original_body,
                           const std::vector<FailedRecipient>& failed,
                           const std::string& hostname, const queue::QueueId& id,
                           int64_t now_us) {
  bool utf8 = NonAscii(original.sender);
  for (const auto& f : failed) utf8 |= NonAscii(f.address);
  std::string boundary = Cat(id.ToString(), "/", hostname);
  std::string oid = original.id.ToString();

  std::string b;
  b += Cat("From: Mail Delivery System <MAILER-DAEMON@", hostname, ">\r\n");
  b += Cat("To: <", original.sender, ">\r\n");
  b += "Subject: Undelivered Mail Returned to Sender\r\n";
  b += Cat("Date: ", Rfc5322Date(now_us), "\r\n");
  b += Cat("Message-ID: <", id.ToString(), "@", hostname, ">\r\n");
  b += "Auto-Submitted: auto-replied\r\n";
  b += "MIME-Version: 1.0\r\n";
  b += Cat("Content-Type: multipart/report; report-type=",
           utf8 ? "global-delivery-status" : "delivery-status", ";\r\n\tboundary=\"", boundary,
           "\"\r\n\r\n");
  b += "This is a MIME-encapsulated message.\r\n\r\n";

  b += Cat("--", boundary, "\r\n");
  b += "Content-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  b += Cat("This is the mail system at host ", hostname, ".\r\n\r\n");
  b += "Your message could not be delivered to one or more recipients.\r\n";
  bool truncated = false;
  std::string_view headers = BoundedHeaderSection(original_body, kDsnMaxHeaderBytes, &truncated);
  if (original_body.empty()) {
    b += "Its content could not be read from the queue, so none is attached.\r\n\r\n";
  } else if (truncated) {
    b += Cat("Its headers are attached below, cut at ", headers.size(), " bytes.\r\n\r\n");
  } else {
    b += "It is attached below (headers only).\r\n\r\n";
  }
  for (const auto& f : failed) {
    b += Cat("<", f.address, ">: ");
    if (!f.remote_mta.empty()) b += Cat("host ", f.remote_mta, " said: ");
    b += Cat(f.code, " ", f.enhanced, " ", OneLine(f.text), "\r\n");
    if (!f.category.empty()) b += Cat("    (category: ", f.category, ")\r\n");
  }
  b += "\r\n";

  b += Cat("--", boundary, "\r\n");
  b += Cat("Content-Description: Delivery report\r\nContent-Type: message/",
           utf8 ? "global-delivery-status" : "delivery-status", "\r\n\r\n");
  b += Cat("Reporting-MTA: dns; ", hostname, "\r\n");
  b += Cat("X-Mxrelay-Queue-ID: ", oid, "\r\n");
  b += Cat("Arrival-Date: ", Rfc5322Date(original.received_us), "\r\n");
  for (const auto& f : failed) {
    b += "\r\n";
    b += Cat("Final-Recipient: ", NonAscii(f.address) ? "utf-8" : "rfc822", "; ", f.address, "\r\n");
    b += "Action: failed\r\n";
    b += Cat("Status: ", f.enhanced.empty() ? (f.code >= 500 ? "5.0.0" : "4.0.0") : f.enhanced, "\r\n");
    if (!f.remote_mta.empty()) {
      b += Cat("Remote-MTA: dns; ", f.remote_mta, "\r\n");
      b += Cat("Diagnostic-Code: smtp; ", f.code, " ", f.enhanced, " ", OneLine(f.text), "\r\n");
    } else {
      b += Cat("Diagnostic-Code: X-mxrelay; ", OneLine(f.text), "\r\n");
    }
    if (!f.category.empty()) b += Cat("X-Mxrelay-Bounce-Category: ", f.category, "\r\n");
    b += Cat("Last-Attempt-Date: ", Rfc5322Date(now_us), "\r\n");
  }
  b += "\r\n";

  b += Cat("--", boundary, "\r\n");
  b += Cat("Content-Description: Undelivered Message Headers\r\nContent-Type: ",
           utf8 ? "message/global-headers" : "text/rfc822-headers", "\r\n\r\n");
  b += headers;
  if (!headers.empty() && !headers.ends_with("\r\n")) b += "\r\n";
  b += Cat("\r\n--", boundary, "--\r\n");

  queue::NewMessage m;
  m.meta.id = id;
  m.meta.received_us = now_us;
  m.meta.next_attempt_us = now_us;
  m.meta.smtputf8 = utf8;
  m.meta.body_8bit = utf8;
  m.meta.sender = "";
  m.meta.recipients = {queue::Recipient{original.sender}};
  m.meta.helo = hostname;
  m.meta.client_ip = "127.0.0.1";
  m.meta.auth_user = "";
  m.body = std::move(b);
  m.meta.body_size = m.body.size();
  return m;
}

}  // namespace mxr::delivery
