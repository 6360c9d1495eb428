// RFC 3461 DSN parameters of MAIL (RET, ENVID) and RCPT (NOTIFY, ORCPT):
// syntax checks for the parser. Values are kept as given (xtext, upper-cased
// keywords where the RFC defines keywords) so they can be passed on to a
// next hop that offers DSN unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mxr::relay {

// RFC 3461 limits: ENVID at most 100 characters, ORCPT at most 500.
inline constexpr size_t kMaxEnvidLength = 100;
inline constexpr size_t kMaxOrcptLength = 500;

// Each returns "" when `v` is valid (storing the parsed value), else the
// reason for a 501 5.5.4 reply.
// RET=FULL|HDRS -> *ret 1 (FULL) / 2 (HDRS), as queue::DsnRet.
std::string ParseDsnRet(std::string_view v, uint8_t* ret);
// ENVID=xtext.
std::string ParseDsnEnvid(std::string_view v, std::string* envid);
// NOTIFY=NEVER | SUCCESS,FAILURE,DELAY (any non-empty subset, no repeats)
// -> queue::kNotify* bits.
std::string ParseDsnNotify(std::string_view v, uint8_t* notify);
// ORCPT=addr-type;xtext -> as given, with addr-type as given.
std::string ParseDsnOrcpt(std::string_view v, std::string* orcpt);

}  // namespace mxr::relay
