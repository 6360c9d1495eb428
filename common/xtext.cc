#include "common/xtext.h"

namespace mxr {
namespace {

int HexUpper(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // RFC 3461: "+" followed by two upper-case hexadecimal digits
}

}  // namespace

std::optional<std::string> XtextDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '+') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = HexUpper(s[i + 1]), lo = HexUpper(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return std::nullopt;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

bool IsXtext(std::string_view s) { return XtextDecode(s).has_value(); }

std::string XtextEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c < 33 || c > 126 || c == '+' || c == '=') {
      out += '+';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace mxr
