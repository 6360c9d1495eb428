// Header work done at submission (RFC 5321 4.4 trace, RFC 6409 8.2/8.3).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/strings.h"

namespace mxr::relay {

struct HeaderPresence {
  bool date = false;
  bool message_id = false;
  int received = 0;  // Received: fields: the hops the message has made (loop detection)
};

// Looks at the header section (up to the first empty line) of a CRLF message.
HeaderPresence ScanHeaders(std::string_view message);

struct TraceInfo {
  std::string helo;
  std::string client_ip;
  std::string hostname;     // ours
  std::string protocol;     // SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848)
  std::string tls_version;  // "" without TLS
  std::string tls_cipher;
  std::string auth_user;    // "" without AUTH
  std::string queue_id;
  std::string single_rcpt;  // "for <x>" only when there is exactly one
  int64_t now_us = 0;
};

// "Received: ..." plus, when missing, "Date:" and "Message-ID:". CRLF-terminated.
std::string TraceHeaders(const TraceInfo& t, HeaderPresence present);

// RFC 5322 date-time in UTC: common/strings.h.
using ::mxr::Rfc5322Date;

}  // namespace mxr::relay
