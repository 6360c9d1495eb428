// Header fields the relay reads or removes at reception (pure functions on a
// CRLF message: the header section ends at the first empty line).
//
//   HeaderValue(msg, "From")               -> the first From: value, unfolded
//   TakeHeader(&msg, "X-MxRelay-Campaign")  -> its value, every instance removed
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mxr::tenants {

// The value of the first field named `name` (any case), unfolded (CRLF +
// WSP -> the WSP), leading/trailing blanks trimmed; nullopt when absent.
std::optional<std::string> HeaderValue(std::string_view message, std::string_view name);

// Removes every field named `name` from the header section of `*message`;
// returns the first one's value as HeaderValue would (nullopt: none).
std::optional<std::string> TakeHeader(std::string* message, std::string_view name);

// The campaign header (docs/API.md): removed before the message is stored.
inline constexpr char kCampaignHeader[] = "X-MxRelay-Campaign";
// A campaign id: 1-128 printable ASCII characters without spaces.
bool ValidCampaign(std::string_view c);

}  // namespace mxr::tenants
