// RFC 3461 section 4 "xtext": printable US-ASCII except '+' and '=', with
// any octet writable as "+XX" (two upper-case hex digits).
//
//   IsXtext("a+2Bb")      -> true
//   XtextDecode("a+2Bb")  -> "a+b"
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mxr {

bool IsXtext(std::string_view s);
// The decoded octets, or nullopt when `s` is not valid xtext.
std::optional<std::string> XtextDecode(std::string_view s);
std::string XtextEncode(std::string_view s);

}  // namespace mxr
