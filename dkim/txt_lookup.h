// A blocking DNS TXT lookup for the operator CLI (`mxrelay dkim check`):
// c-ares with the relay's resolver (delivery.resolver, "ip:port[,...]";
// "" = the system's). Never called from an event loop.
//
//   auto txt = LookupTxt("s1._domainkey.example.com", cfg.delivery.resolver, 5000);
//   // each element: one TXT record, its strings joined
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mxr::dkim {

// NotFound: NXDOMAIN or no TXT record; Unavailable: timeout, SERVFAIL,
// refused; InvalidArgument: a bad resolver string.
absl::StatusOr<std::vector<std::string>> LookupTxt(const std::string& name, const std::string& resolver,
                                                   int timeout_ms);

}  // namespace mxr::dkim
