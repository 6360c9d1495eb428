#include "dkim/address.h"

#include <vector>

#include "common/strings.h"

namespace mxr::dkim {
namespace {

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// The domain part of an addr-spec ("local@domain", local part possibly
// quoted, spaces around the dot-atoms allowed by the obsolete syntax).
std::string DomainOf(std::string_view addr) {
  addr = Trim(addr);
  // Obsolete source route "@a,@b:user@dom": the address is after the ':'.
  if (!addr.empty() && addr.front() == '@') {
    size_t colon = addr.find(':');
    if (colon != std::string_view::npos) addr = Trim(addr.substr(colon + 1));
  }
  // The last '@' outside a quoted local part (a domain holds no '@').
  size_t at = std::string_view::npos;
  bool quoted = false;
  for (size_t i = 0; i < addr.size(); ++i) {
    char c = addr[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == '@' && !quoted) {
      at = i;
    }
  }
  if (at == std::string_view::npos) return "";
  std::string d;
  for (char c : addr.substr(at + 1)) {
    if (!IsSpace(c)) d.push_back(c);
  }
  while (!d.empty() && d.back() == '.') d.pop_back();
  // A domain name (UTF-8 labels allowed); anything else (an address
  // literal, an unbalanced quote or bracket that swallowed the rest) is no
  // domain a rule can name.
  for (char c : d) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_' || u >= 0x80;
    if (!ok) return "";
  }
  return LowerAscii(d);
}

}  // namespace

absl::StatusOr<std::string> FromDomain(std::string_view v) {
  // One pass: comments are dropped, quoted strings kept whole, and each
  // mailbox (ended by ',' ';' or a group's ':' at top level) keeps either
  // its <angle address> or, without one, its bare text.
  std::vector<std::string> addrs;
  std::string bare, angle;
  bool has_angle = false, in_angle = false;
  auto end_mailbox = [&] {
    std::string a = has_angle ? angle : bare;
    if (!Trim(a).empty()) addrs.push_back(a);
    bare.clear();
    angle.clear();
    has_angle = false;
  };
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    std::string& out = in_angle ? angle : bare;
    if (c == '(') {  // comment, nested, with quoted-pairs
      int depth = 1;
      for (++i; i < v.size() && depth > 0; ++i) {
        if (v[i] == '\\') {
          ++i;
        } else if (v[i] == '(') {
          ++depth;
        } else if (v[i] == ')') {
          --depth;
        }
      }
      --i;
      out.push_back(' ');
    } else if (c == '"') {  // quoted string: copied, with its quotes
      out.push_back(c);
      for (++i; i < v.size(); ++i) {
        out.push_back(v[i]);
        if (v[i] == '\\' && i + 1 < v.size()) {
          out.push_back(v[++i]);
        } else if (v[i] == '"') {
          break;
        }
      }
    } else if (c == '<' && !in_angle) {
      in_angle = true;
      has_angle = true;
      angle.clear();
    } else if (c == '>' && in_angle) {
      in_angle = false;
    } else if (!in_angle && (c == ',' || c == ';')) {
      end_mailbox();
    } else if (!in_angle && c == ':') {
      bare.clear();  // "group name:" starts a group; what came before is its name
    } else {
      out.push_back(c);
    }
  }
  end_mailbox();
  if (addrs.empty()) return absl::InvalidArgumentError("no address in From:");
  std::string domain;
  for (const auto& a : addrs) {
    std::string d = DomainOf(a);
    if (d.empty()) return absl::InvalidArgumentError("an address in From: has no domain");
    if (!domain.empty() && d != domain) {
      return absl::InvalidArgumentError(Cat("From: has addresses in two domains (", domain, ", ", d, ")"));
    }
    domain = d;
  }
  return domain;
}

std::string AddressDomain(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string d = LowerAscii(address.substr(at + 1));
  while (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

bool DomainMatches(std::string_view pattern, std::string_view domain) {
  if (domain.empty()) return false;
  if (pattern == "*") return true;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    std::string_view parent = pattern.substr(1);  // ".example.com"
    return domain.size() > parent.size() && domain.substr(domain.size() - parent.size()) == parent;
  }
  return pattern == domain;
}

}  // namespace mxr::dkim
