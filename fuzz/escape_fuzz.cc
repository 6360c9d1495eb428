// Fuzzes the escaping of remote text for our log lines (common/escape.h):
// LogEscape must leave no control character and no unescaped quote, and
// decode back to the input; AppendJsonString must give a valid JSON string
// in valid UTF-8 that decodes back to the input with every ill-formed
// sequence replaced by U+FFFD.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/escape.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  std::abort();
}

std::string UnLog(std::string_view s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      o.push_back(s[i]);
      continue;
    }
    Check(i + 1 < s.size());
    char c = s[++i];
    switch (c) {
      case '\\': o.push_back('\\'); break;
      case '"': o.push_back('"'); break;
      case 'r': o.push_back('\r'); break;
      case 'n': o.push_back('\n'); break;
      case 't': o.push_back('\t'); break;
      case 'x':
        Check(i + 2 < s.size());
        o.push_back(static_cast<char>(Hex(s[i + 1]) * 16 + Hex(s[i + 2])));
        i += 2;
        break;
      default: std::abort();
    }
  }
  return o;
}

// The input as the JSON string should carry it.
std::string Sanitized(std::string_view s) {
  std::string o;
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      o.push_back(s[i++]);
      continue;
    }
    size_t n = mxr::Utf8SequenceLength(s.substr(i));
    if (n == 0) {
      o += "\xef\xbf\xbd";
      ++i;
    } else {
      o.append(s.substr(i, n));
      i += n;
    }
  }
  return o;
}

std::string UnJson(std::string_view s) {
  Check(s.size() >= 2 && s.front() == '"' && s.back() == '"');
  s = s.substr(1, s.size() - 2);
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char u = static_cast<unsigned char>(s[i]);
    Check(u >= 0x20);
    Check(s[i] != '"');
    if (s[i] != '\\') {
      o.push_back(s[i]);
      continue;
    }
    Check(i + 1 < s.size());
    char c = s[++i];
    if (c == '\\' || c == '"') {
      o.push_back(c);
    } else {
      Check(c == 'u' && i + 4 < s.size() && s[i + 1] == '0' && s[i + 2] == '0');
      o.push_back(static_cast<char>(Hex(s[i + 3]) * 16 + Hex(s[i + 4])));
      i += 4;
    }
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string log = mxr::LogEscape(in);
  for (char c : log) {
    unsigned char u = static_cast<unsigned char>(c);
    Check(u >= 0x20 && u != 0x7f);
  }
  Check(UnLog(log) == in);
  std::string json;
  mxr::AppendJsonString(&json, in);
  for (size_t i = 0; i < json.size();) {  // valid UTF-8 throughout
    size_t n = mxr::Utf8SequenceLength(std::string_view(json).substr(i));
    Check(n > 0);
    i += n;
  }
  Check(UnJson(json) == Sanitized(in));
  return 0;
}
