// Slow, obviously-correct canonicalization written line by line from RFC
// 6376 3.4 (with canon.h's wire rule: a last line without CRLF gets one).
// For the unit tests and the fuzz target's differential checks only; the
// relay uses canon.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dkim/canon.h"

namespace mxr::dkim::reference {

// The body's lines: split at CRLF, after adding the CRLF a non-empty body
// without one will have on the wire.
inline std::vector<std::string> Lines(std::string_view body) {
  std::string b(body);
  if (!b.empty() && !(b.size() >= 2 && b.compare(b.size() - 2, 2, "\r\n") == 0)) b += "\r\n";
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < b.size()) {
    size_t e = b.find("\r\n", pos);
    lines.push_back(b.substr(pos, e - pos));
    pos = e + 2;
  }
  return lines;
}

inline std::string Join(std::vector<std::string> lines) {
  while (!lines.empty() && lines.back().empty()) lines.pop_back();  // empty lines at the end
  std::string out;
  for (const auto& l : lines) out += l + "\r\n";
  return out;
}

inline std::string SimpleBody(std::string_view body) {
  std::string out = Join(Lines(body));
  return out.empty() ? "\r\n" : out;
}

inline std::string RelaxedBody(std::string_view body) {
  std::vector<std::string> lines = Lines(body);
  for (auto& l : lines) {
    std::string o;
    for (char c : l) {
      bool wsp = c == ' ' || c == '\t';
      if (wsp) {
        if (!o.empty() && o.back() == ' ') continue;  // a run becomes one SP
        o += ' ';
      } else {
        o += c;
      }
    }
    while (!o.empty() && o.back() == ' ') o.pop_back();  // no WSP at the end of a line
    l = o;
  }
  return Join(lines);
}

inline std::string RelaxedHeader(std::string_view raw) {
  size_t colon = raw.find(':');
  std::string name(raw.substr(0, colon));
  std::string value(colon == std::string_view::npos ? "" : raw.substr(colon + 1));
  std::string unfolded;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value.compare(i, 2, "\r\n") == 0) {
      ++i;
      continue;
    }
    unfolded += value[i];
  }
  std::string v;
  for (char c : unfolded) {
    bool wsp = c == ' ' || c == '\t';
    if (wsp && !v.empty() && v.back() == ' ') continue;
    v += wsp ? ' ' : c;
  }
  while (!v.empty() && v.front() == ' ') v.erase(0, 1);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t' || name.back() == '\r' || name.back() == '\n')) {
    name.pop_back();
  }
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return name + ":" + v + "\r\n";
}

}  // namespace mxr::dkim::reference
