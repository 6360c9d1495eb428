#include "delivery/dsn.h"

#include "common/strings.h"
#include "common/xtext.h"

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

std::string MailDsnParams(const queue::MessageMeta& m) {
  std::string out;
  if (m.dsn_ret == queue::DsnRet::kFull) out += " RET=FULL";
  if (m.dsn_ret == queue::DsnRet::kHeaders) out += " RET=HDRS";
  if (!m.envid.empty()) out += Cat(" ENVID=", m.envid);
  return out;
}

std::string RcptDsnParams(const queue::Recipient& r) {
  std::string out;
  if (r.notify & queue::kNotifyNever) {
    out += " NOTIFY=NEVER";
  } else if (r.notify != 0) {
    std::string list;
    if (r.notify & queue::kNotifySuccess) list += ",SUCCESS";
    if (r.notify & queue::kNotifyFailure) list += ",FAILURE";
    if (r.notify & queue::kNotifyDelay) list += ",DELAY";
    out += Cat(" NOTIFY=", list.substr(1));
  }
  if (!r.orcpt.empty()) out += Cat(" ORCPT=", r.orcpt);
  return out;
}

namespace {

// An xtext value for a DSN field: decoded (RFC 3464 fields carry the text,
// not its xtext form) when the result is printable US-ASCII; otherwise
// left encoded, so a "+0D+0A" can never split our field.
std::string FieldText(std::string_view xtext) {
  auto d = XtextDecode(xtext);
  if (!d) return std::string(xtext);
  for (unsigned char c : *d) {
    if (c < 32 || c > 126) return std::string(xtext);
  }
  return *d;
}

// ORCPT "addr-type;xtext" -> "addr-type;decoded".
std::string OriginalRecipient(std::string_view orcpt) {
  size_t semi = orcpt.find(';');
  if (semi == std::string_view::npos) return FieldText(orcpt);
  return Cat(orcpt.substr(0, semi), ";", FieldText(orcpt.substr(semi + 1)));
}

}  // namespace

queue::NewMessage BuildDsn(const queue::MessageMeta& original, std::string_view original_body,
                           const std::vector<FailedRecipient>& failed,
                           const std::string& hostname, const queue::QueueId& id,
                           int64_t now_us) {
  bool utf8 = NonAscii(original.sender);
  bool any_failed = false, any_delayed = false;
  for (const auto& f : failed) {
    utf8 |= NonAscii(f.address);
    any_failed |= f.action == "failed";
    any_delayed |= f.action == "delayed";
  }
  std::string boundary = Cat(id.ToString(), "/", hostname);
  std::string oid = original.id.ToString();
  // RFC 3461 4.3: the whole message only in a failure DSN that asked for it.
  bool full = any_failed && original.dsn_ret == queue::DsnRet::kFull && !original_body.empty() &&
              original_body.size() <= kDsnMaxFullBytes;

  std::string b;
  b += Cat("From: Mail Delivery System <MAILER-DAEMON@", hostname, ">\r\n");
  b += Cat("To: <", original.sender, ">\r\n");
  b += Cat("Subject: ", any_failed    ? "Undelivered Mail Returned to Sender"
                        : any_delayed ? "Delayed Mail (still being retried)"
                                      : "Successful Mail Delivery Report",
           "\r\n");
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
  if (any_failed) b += "Your message could not be delivered to one or more recipients.\r\n";
  if (any_delayed) {
    b += "Your message could not be delivered yet to one or more recipients; delivery is still being "
         "tried.\r\n";
  }
  for (const auto& f : failed) {
    if (f.action == "relayed") {
      b += "Your message was relayed to one or more recipients' mail servers, which do not report its "
           "final delivery.\r\n";
      break;
    }
  }
  bool truncated = false;
  std::string_view headers = BoundedHeaderSection(original_body, kDsnMaxHeaderBytes, &truncated);
  if (original_body.empty()) {
    b += "Its content could not be read from the queue, so none is attached.\r\n\r\n";
  } else if (full) {
    b += "It is attached below.\r\n\r\n";
  } else if (truncated) {
    b += Cat("Its headers are attached below, cut at ", headers.size(), " bytes.\r\n\r\n");
  } else {
    b += "It is attached below (headers only).\r\n\r\n";
  }
  for (const auto& f : failed) {
    b += Cat("<", f.address, ">: ", f.action == "failed" ? "" : f.action + ": ");
    if (!f.remote_mta.empty()) b += Cat("host ", f.remote_mta, " said: ");
    b += Cat(f.code, " ", f.enhanced, " ", OneLine(f.text), "\r\n");
    if (!f.category.empty()) b += Cat("    (category: ", f.category, ")\r\n");
  }
  b += "\r\n";

  b += Cat("--", boundary, "\r\n");
  b += Cat("Content-Description: Delivery report\r\nContent-Type: message/",
           utf8 ? "global-delivery-status" : "delivery-status", "\r\n\r\n");
  if (!original.envid.empty()) b += Cat("Original-Envelope-Id: ", FieldText(original.envid), "\r\n");
  b += Cat("Reporting-MTA: dns; ", hostname, "\r\n");
  b += Cat("X-Mxrelay-Queue-ID: ", oid, "\r\n");
  b += Cat("Arrival-Date: ", Rfc5322Date(original.received_us), "\r\n");
  for (const auto& f : failed) {
    b += "\r\n";
    if (!f.orcpt.empty()) b += Cat("Original-Recipient: ", OriginalRecipient(f.orcpt), "\r\n");
    b += Cat("Final-Recipient: ", NonAscii(f.address) ? "utf-8" : "rfc822", "; ", f.address, "\r\n");
    b += Cat("Action: ", f.action, "\r\n");
    std::string status = f.enhanced;
    if (status.empty() || (f.action == "relayed" && status[0] != '2')) {
      status = f.code >= 500 ? "5.0.0" : f.code >= 400 ? "4.0.0" : "2.0.0";
    }
    b += Cat("Status: ", status, "\r\n");
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
  if (full) {
    b += Cat("Content-Description: ", any_failed ? "Undelivered Message" : "Message", "\r\nContent-Type: ",
             utf8 ? "message/global" : "message/rfc822", "\r\n\r\n");
    b += original_body;
    if (!original_body.ends_with("\r\n")) b += "\r\n";
  } else {
    b += Cat("Content-Description: ", any_failed ? "Undelivered Message Headers" : "Message Headers",
             "\r\nContent-Type: ", utf8 ? "message/global-headers" : "text/rfc822-headers", "\r\n\r\n");
    b += headers;
    if (!headers.empty() && !headers.ends_with("\r\n")) b += "\r\n";
  }
  b += Cat("\r\n--", boundary, "--\r\n");

  queue::NewMessage m;
  m.meta.id = id;
  m.meta.received_us = now_us;
  m.meta.next_attempt_us = now_us;
  m.meta.smtputf8 = utf8;
  m.meta.body_8bit = utf8 || (full && original.body_8bit);
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
