#include "relay/pool_header.h"

#include <cctype>

#include "common/escape.h"
#include "spdlog/spdlog.h"

namespace mxr::relay {
namespace {

bool NameIs(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != std::tolower(static_cast<unsigned char>(name[i]))) {
      return false;
    }
  }
  return true;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::string TakeHeader(std::string* message, std::string_view name) {
  if (name.empty()) return "";
  std::string value, out;
  bool found = false, removing = false;
  size_t pos = 0;
  while (pos < message->size()) {
    size_t eol = message->find("\r\n", pos);
    size_t next = eol == std::string::npos ? message->size() : eol + 2;
    std::string_view line(message->data() + pos, (eol == std::string::npos ? message->size() : eol) - pos);
    if (line.empty()) break;  // the empty line ending the header section
    bool continuation = line[0] == ' ' || line[0] == '\t';
    if (!continuation) removing = NameIs(line, name);
    if (removing) {
      if (!found) value = Trim(line.substr(name.size() + 1));
      found = true;
    } else {
      out.append(message->data() + pos, next - pos);
    }
    pos = next;
  }
  if (!found) return "";
  out.append(*message, pos, std::string::npos);
  *message = std::move(out);
  return value;
}

std::string PoolAtReception(const Config& cfg, const std::string& header_value, const std::string& auth_user,
                            bool trusted) {
  auto exists = [&cfg](const std::string& p) {
    if (p == "default") return true;
    for (const auto& pc : cfg.pools) {
      if (pc.name == p) return true;
    }
    return false;
  };
  if (!header_value.empty()) {
    if ((!auth_user.empty() || trusted) && exists(header_value)) return header_value;
    spdlog::info("event=pool_header_ignored pool=\"{}\" reason={}", LogEscape(header_value),
                 auth_user.empty() && !trusted ? "not_authenticated" : "unknown_pool");
  }
  if (!auth_user.empty()) {
    for (const auto& pc : cfg.pools) {
      for (const auto& u : pc.users) {
        if (u == auth_user) return pc.name;
      }
    }
  }
  return "";
}

}  // namespace mxr::relay
