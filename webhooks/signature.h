// Webhook request signatures: HMAC-SHA256 with the endpoint's secret over
// "<unix seconds>.<body>", sent as
//
//   X-MxRelay-Signature: t=1765000000,v1=<64 hex digits>
//
// The timestamp inside the signed text lets a receiver refuse replays older
// than it accepts (docs/WEBHOOKS.md has a verification snippet).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mxr::webhooks {

inline constexpr std::string_view kSignatureHeader = "X-MxRelay-Signature";

// "t=<unix_s>,v1=<hex>"
std::string Sign(std::string_view secret, int64_t unix_s, std::string_view body);
// Constant-time check of a header value against the body; false for any
// malformed value.
bool Verify(std::string_view secret, std::string_view header_value, std::string_view body);

}  // namespace mxr::webhooks
