#include "relay/dsn_params.h"

#include "common/strings.h"
#include "common/xtext.h"
#include "queue/types.h"

namespace mxr::relay {

std::string ParseDsnRet(std::string_view v, uint8_t* ret) {
  if (AsciiIEquals(v, "FULL")) {
    *ret = static_cast<uint8_t>(queue::DsnRet::kFull);
  } else if (AsciiIEquals(v, "HDRS")) {
    *ret = static_cast<uint8_t>(queue::DsnRet::kHeaders);
  } else {
    return "RET must be FULL or HDRS";
  }
  return "";
}

std::string ParseDsnEnvid(std::string_view v, std::string* envid) {
  if (v.empty() || v.size() > kMaxEnvidLength) return "ENVID must be 1 to 100 characters of xtext";
  if (!IsXtext(v)) return "ENVID is not valid xtext";
  envid->assign(v);
  return "";
}

std::string ParseDsnNotify(std::string_view v, uint8_t* notify) {
  uint8_t bits = 0;
  size_t items = 0;
  while (true) {
    size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    uint8_t bit = 0;
    if (AsciiIEquals(item, "NEVER")) {
      bit = queue::kNotifyNever;
    } else if (AsciiIEquals(item, "SUCCESS")) {
      bit = queue::kNotifySuccess;
    } else if (AsciiIEquals(item, "FAILURE")) {
      bit = queue::kNotifyFailure;
    } else if (AsciiIEquals(item, "DELAY")) {
      bit = queue::kNotifyDelay;
    } else {
      return "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY";
    }
    if (bits & bit) return "NOTIFY lists a keyword twice";
    bits |= bit;
    items++;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  if ((bits & queue::kNotifyNever) && items > 1) return "NOTIFY=NEVER cannot be combined with other keywords";
  *notify = bits;
  return "";
}

std::string ParseDsnOrcpt(std::string_view v, std::string* orcpt) {
  if (v.size() > kMaxOrcptLength) return "ORCPT longer than 500 characters";
  size_t semi = v.find(';');
  if (semi == std::string_view::npos || semi == 0) return "ORCPT must be addr-type;xtext";
  std::string_view type = v.substr(0, semi), addr = v.substr(semi + 1);
  for (char c : type) {
    // addr-type = atom (RFC 5321 atext).
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
    if (!ok) return "ORCPT address type is not an atom";
  }
  if (addr.empty() || !IsXtext(addr)) return "ORCPT address is not valid xtext";
  orcpt->assign(v);
  return "";
}

}  // namespace mxr::relay
