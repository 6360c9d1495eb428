#include "tenants/headers.h"

#include <vector>

#include "common/strings.h"

namespace mxr::tenants {
namespace {

struct Field {
  size_t begin = 0, end = 0;  // [begin, end) including the final CRLF
  size_t colon = 0;
};

// The fields of the header section, in order.
std::vector<Field> Fields(std::string_view m) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < m.size()) {
    if (m.compare(pos, 2, "\r\n") == 0) break;  // the empty line
    Field f;
    f.begin = pos;
    size_t eol = m.find("\r\n", pos);
    while (eol != std::string_view::npos && eol + 2 < m.size() && (m[eol + 2] == ' ' || m[eol + 2] == '\t')) {
      eol = m.find("\r\n", eol + 2);
    }
    f.end = eol == std::string_view::npos ? m.size() : eol + 2;
    f.colon = m.find(':', pos);
    if (f.colon == std::string_view::npos || f.colon >= f.end) break;  // not a header section any more
    out.push_back(f);
    pos = f.end;
  }
  return out;
}

std::string Unfold(std::string_view v) {
  std::string o;
  o.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\r' || v[i] == '\n') continue;
    o.push_back(v[i]);
  }
  size_t a = o.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = o.find_last_not_of(" \t");
  return o.substr(a, b - a + 1);
}

bool NameIs(std::string_view m, const Field& f, std::string_view name) {
  std::string_view n = m.substr(f.begin, f.colon - f.begin);
  while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
  return AsciiIEquals(n, name);
}

}  // namespace

std::optional<std::string> HeaderValue(std::string_view m, std::string_view name) {
  for (const Field& f : Fields(m)) {
    if (NameIs(m, f, name)) return Unfold(m.substr(f.colon + 1, f.end - f.colon - 1));
  }
  return std::nullopt;
}

std::optional<std::string> TakeHeader(std::string* message, std::string_view name) {
  std::string_view m(*message);
  std::optional<std::string> first;
  std::vector<Field> drop;
  for (const Field& f : Fields(m)) {
    if (!NameIs(m, f, name)) continue;
    if (!first) first = Unfold(m.substr(f.colon + 1, f.end - f.colon - 1));
    drop.push_back(f);
  }
  for (auto it = drop.rbegin(); it != drop.rend(); ++it) message->erase(it->begin, it->end - it->begin);
  return first;
}

bool ValidCampaign(std::string_view c) {
  if (c.empty() || c.size() > 128) return false;
  for (char ch : c) {
    if (ch <= ' ' || ch > '~') return false;
  }
  return true;
}

}  // namespace mxr::tenants
