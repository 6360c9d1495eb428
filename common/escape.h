// Escaping of text we did not write (remote SMTP replies, client input) for
// our two line formats, so that no such text can end a field or forge a line:
//
//   spdlog::warn("event=x error=\"{}\"", LogEscape(reply_text));   // logfmt
//   AppendJsonString(&line, reply_text);                           // JSON
//
// Fuzzed by fuzz/escape_fuzz.cc (round trip and the invariants below).
#pragma once

#include <string>
#include <string_view>

namespace mxr {

// For a double-quoted logfmt value: `\` -> `\\`, `"` -> `\"`, CR -> `\r`,
// LF -> `\n`, TAB -> `\t`, any other byte below 0x20 and DEL -> `\xHH`.
// Bytes >= 0x80 are kept (UTF-8 text stays readable). The result holds no
// control character and no unescaped quote.
std::string LogEscape(std::string_view s);

// Appends `s` as a JSON string (with its quotes): `"` and `\` escaped,
// control characters (below 0x20) as \u00XX, and every byte sequence
// that is not well-formed UTF-8 replaced by U+FFFD, so the line is always
// valid JSON in valid UTF-8.
void AppendJsonString(std::string* out, std::string_view s);

// Length of the well-formed UTF-8 sequence at the start of `s` (1-4), or 0
// if it is not one (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
size_t Utf8SequenceLength(std::string_view s);

}  // namespace mxr
