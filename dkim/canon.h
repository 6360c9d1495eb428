// DKIM canonicalization (RFC 6376 3.4): header fields and body, "simple"
// and "relaxed". Pure functions over bytes: no I/O, no allocation on the
// body path (output goes to a ByteSink, e.g. a SHA-256 context).
//
//   ParsedMessage m = ParseMessage(prefix, message);   // fields + body view
//   std::string canon = CanonicalizeHeader(Canon::kRelaxed, m.raw(0));
//   CanonicalizeBody(Canon::kRelaxed, m.body, &sink);   // sink: a ByteSink
//
// Input is the message as it goes on the wire. A message (or its last
// header line) that does not end with CRLF is treated as if it did: our SMTP
// client appends that CRLF before the final dot, so the receiver's verifier
// sees it. Bare CR and bare LF (which the relay refuses at reception) are
// ordinary characters here, as in dkimpy; lines end only at CRLF.
//
// Relaxed body costs one SSE2 pass over the bytes plus the copies of what
// changes; simple body is a memchr for CR per line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace mxr::dkim {

using Canon = DkimCanon;

// Where canonical bytes go. Append may be called with many small pieces.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void Append(const char* data, size_t n) = 0;
  void Append(std::string_view s) { Append(s.data(), s.size()); }
};

class StringSink final : public ByteSink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  void Append(const char* data, size_t n) override { out_->append(data, n); }

 private:
  std::string* out_;
};

// One header field, as offsets into ParsedMessage::storage: `raw` is its
// exact text from the name to the CRLF that ends it (continuation lines
// included; a CRLF is added when the input ended without one); `name` is
// the text before the first ':' with trailing SP/HTAB removed (empty when
// the first line has no ':', so such a field is never selected).
struct HeaderField {
  size_t begin = 0;
  size_t raw_len = 0;
  size_t name_len = 0;
};

// A message split into its header fields and its body (RFC 5322 2.1: the
// fields end at the first empty line; without one, everything is header
// and the body is empty). `storage` is a copy of the header section
// (headers are small); `body` points into the caller's message, which must
// outlive it.
struct ParsedMessage {
  std::string storage;
  std::vector<HeaderField> fields;
  std::string_view body;
  bool has_empty_line = false;  // the header section ended with an empty line

  std::string_view raw(size_t i) const { return std::string_view(storage).substr(fields[i].begin, fields[i].raw_len); }
  std::string_view name(size_t i) const { return std::string_view(storage).substr(fields[i].begin, fields[i].name_len); }
};

// `prefix` (our trace fields, CRLF-terminated, no empty line) comes first,
// then `message` (the client's header section, empty line, body).
ParsedMessage ParseMessage(std::string_view prefix, std::string_view message);

// What `message` (as parsed into `m`) lacks to end its header section
// with an empty line: "" when it has one (or has no header at all),
// "\r\n" or "\r\n\r\n" for a message of header fields only. The signer
// appends it: RFC 5322 lets a message without a body omit the empty line,
// but OpenDKIM then mis-canonicalizes the last field (simple): such a
// message failed its verification.
std::string_view MissingHeaderEnd(const ParsedMessage& m, std::string_view message);

// The canonical form of one field (RFC 6376 3.4.1 / 3.4.2), CRLF-terminated.
std::string CanonicalizeHeader(Canon c, std::string_view raw);
void CanonicalizeHeader(Canon c, std::string_view raw, std::string* out);

// The canonical body (RFC 6376 3.4.3 / 3.4.4) into `sink`. Simple: an empty
// body is one CRLF; relaxed: an empty body is nothing.
void CanonicalizeBody(Canon c, std::string_view body, ByteSink* sink);
std::string CanonicalizeBody(Canon c, std::string_view body);

// Header names compare ASCII case-insensitively.
bool HeaderNameEquals(std::string_view a, std::string_view b);

}  // namespace mxr::dkim
