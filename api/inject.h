// The HTTP injection request (docs/API.md, POST /api/v1/messages): JSON in,
// the messages to queue out. No I/O: the server (api/http_api.h) checks the
// key and the tenant's rules, then commits what this builds.
//
//   auto req = ParseInjectRequest(body, limits);       // 400 with the field at fault
//   auto built = BuildMessages(*req);                   // one per distinct rendering
//
// Content is either a complete RFC 5322 message (a JSON string) or
// structured parts built into MIME by GMime (never by hand). `{{name}}`
// placeholders are replaced per recipient from its `substitutions` (then
// the request's, then the built-in `email`); recipients whose renderings
// are identical share one message.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mxr::api {

struct Attachment {
  std::string filename;
  std::string content_type = "application/octet-stream";
  std::string data;  // decoded bytes
  bool inline_part = false;
  std::string content_id;
};

struct Structured {
  std::string from, to, reply_to, subject, text, html;
  std::vector<std::pair<std::string, std::string>> headers;  // extra fields, in order
  std::vector<Attachment> attachments;
};

struct InjectRecipient {
  std::string email;
  std::map<std::string, std::string> vars;
};

struct InjectRequest {
  std::string envelope_sender;
  std::vector<InjectRecipient> recipients;
  std::map<std::string, std::string> vars;  // defaults for every recipient
  std::string campaign;
  std::optional<std::string> raw;  // content as a string
  Structured parts;                // content as an object (when !raw)
};

// A client error: the HTTP status (400/413), the JSON path of the field at
// fault ("recipients[2].email"; "" = the body) and a sentence.
struct RequestError {
  int status = 400;
  std::string field;
  std::string message;
};

struct InjectLimits {
  size_t max_recipients = 10000;
  uint64_t max_message_size = 50ull << 20;
};

// Parses and validates the JSON body. Unknown fields are errors.
std::optional<RequestError> ParseInjectRequest(std::string_view body, const InjectLimits& limits, InjectRequest* out);

struct BuiltMessage {
  std::string content;                  // CRLF lines, as the spool stores it
  std::vector<std::string> recipients;  // those this rendering is for
};

// Renders and builds the messages. Errors (a placeholder with no value, a
// rendered message over the size limit) name the recipient's field.
std::optional<RequestError> BuildMessages(const InjectRequest& req, const InjectLimits& limits,
                                          std::vector<BuiltMessage>* out);

// Replaces every {{name}} (spaces allowed inside the braces) from `vars`;
// a name without a value is reported in `missing` (first one) and left as is.
std::string Substitute(std::string_view text, const std::map<std::string, std::string>& vars,
                       const std::map<std::string, std::string>& defaults, std::string* missing);

// Bare LF (and lone CR) -> CRLF; a message without an empty line between
// header and body is left as it is.
std::string ToCrlf(std::string_view text);

// Builds a MIME message from structured parts with GMime (CRLF lines).
absl::StatusOr<std::string> BuildMime(const Structured& s);

// Whether `addr` looks like a mailbox local@domain (no spaces, no angle brackets).
bool PlausibleAddress(std::string_view addr);

}  // namespace mxr::api
