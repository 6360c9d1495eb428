// The egress-pool header (shaping.pool_header, "X-MxRelay-Pool" by
// default): every instance is removed from the header section of a
// received message (always: it must never reach a recipient), and its value
// says which egress pool to deliver through when the client may choose
// (authenticated or trusted). See delivery/egress.h for the precedence.
#pragma once

#include <string>

#include "common/config.h"

namespace mxr::relay {

// Removes every `name:` field (with its folded continuation lines) from the
// header section of `message` (CRLF lines, up to the first empty line).
// Returns the first one's value, trimmed ("" if none).
std::string TakeHeader(std::string* message, std::string_view name);

// The pool a message gets at reception: the header's (from an authenticated
// or trusted client, if the pool exists), else the authenticated user's
// ([[pool]] users), else "". `header_value` is TakeHeader's result.
std::string PoolAtReception(const Config& cfg, const std::string& header_value, const std::string& auth_user,
                            bool trusted);

}  // namespace mxr::relay
