// The domains that choose a signing rule: of the From: header field (RFC
// 5322 3.4 address lists: display names, quoted strings, comments, angle
// addresses, groups, obsolete routes) and of the envelope sender.
// Pure functions; no allocation beyond the result.
//
//   FromDomain("\"Doe, J.\" <j@Example.COM> (work)") -> "example.com"
//   FromDomain("a@x.test, b@y.test")                 -> error: two domains
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mxr::dkim {

// The one domain of every mailbox in a From: field value (unfolded or
// not), lower-cased (ASCII letters only; UTF-8 domains stay as they are)
// without a trailing dot. InvalidArgument when there is no mailbox, a
// mailbox without a domain, or mailboxes of more than one domain (DMARC
// could not align such a message with one signature).
absl::StatusOr<std::string> FromDomain(std::string_view field_value);

// The domain of an envelope address ("user@Example.com" -> "example.com");
// "" for the null sender or an address without '@'.
std::string AddressDomain(std::string_view address);

// Whether `domain` (lower-case) matches a rule's pattern: "example.com"
// exactly, "*.example.com" any subdomain of it (not itself), "*" anything.
bool DomainMatches(std::string_view pattern, std::string_view domain);

}  // namespace mxr::dkim
