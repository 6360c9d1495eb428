#include "suppression/entry.h"

namespace mxr::suppression {
namespace {

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    uint8_t b = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool GetString(std::string_view* in, std::string* s) {
  uint64_t n = 0;
  if (!GetVarint(in, &n) || n > in->size()) return false;
  s->assign(in->data(), n);
  in->remove_prefix(n);
  return true;
}

constexpr uint8_t kValueVersion = 1;

}  // namespace

std::string_view ReasonName(Reason r) {
  switch (r) {
    case Reason::kHardBounce: return "hard_bounce";
    case Reason::kComplaint: return "complaint";
    case Reason::kUnsubscribe: return "unsubscribe";
    case Reason::kManual: return "manual";
  }
  return "manual";
}

std::optional<Reason> ParseReason(std::string_view name) {
  for (Reason r : {Reason::kHardBounce, Reason::kComplaint, Reason::kUnsubscribe, Reason::kManual}) {
    if (name == ReasonName(r)) return r;
  }
  return std::nullopt;
}

std::optional<std::string> NormalizeAddress(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == a.size()) return std::nullopt;
  for (char c : a) {
    if (c == '\0' || c == '\r' || c == '\n') return std::nullopt;
  }
  std::string out(a);
  for (size_t i = at + 1; i < out.size(); ++i) {
    char& c = out[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string Key(std::string_view scope, std::string_view address) {
  std::string k;
  k.reserve(scope.size() + 1 + address.size());
  k.append(scope);
  k.push_back('\0');
  k.append(address);
  return k;
}

bool SplitKey(std::string_view key, std::string_view* scope, std::string_view* address) {
  size_t nul = key.find('\0');
  if (nul == std::string_view::npos) return false;
  *scope = key.substr(0, nul);
  *address = key.substr(nul + 1);
  return !address->empty();
}

std::string EncodeValue(const Entry& e) {
  std::string v;
  v.reserve(24 + e.category.size() + e.source.size());
  v.push_back(static_cast<char>(kValueVersion));
  v.push_back(static_cast<char>(e.reason));
  PutVarint(&v, static_cast<uint64_t>(e.created_us));
  PutVarint(&v, static_cast<uint64_t>(e.expires_us));
  PutVarint(&v, e.category.size());
  v.append(e.category);
  PutVarint(&v, e.source.size());
  v.append(e.source);
  return v;
}

bool DecodeValue(std::string_view v, Entry* e) {
  if (v.size() < 2 || static_cast<uint8_t>(v[0]) != kValueVersion) return false;
  auto reason = static_cast<uint8_t>(v[1]);
  if (reason < 1 || reason > 4) return false;
  e->reason = static_cast<Reason>(reason);
  v.remove_prefix(2);
  uint64_t created = 0, expires = 0;
  if (!GetVarint(&v, &created) || !GetVarint(&v, &expires) || !GetString(&v, &e->category) ||
      !GetString(&v, &e->source) || !v.empty()) {
    return false;
  }
  e->created_us = static_cast<int64_t>(created);
  e->expires_us = static_cast<int64_t>(expires);
  return true;
}

}  // namespace mxr::suppression
