// RFC 3464 delivery status notifications (bounces).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "queue/spool.h"

namespace mxr::delivery {

struct FailedRecipient {
  std::string address;
  int code = 0;            // SMTP reply code (ours if no server answered)
  std::string enhanced;    // e.g. "5.1.1"; "4.4.7" for expiry
  std::string text;        // reply text / reason
  std::string remote_mta;  // host that answered, "" if none
};

// Builds the DSN for `original` (whose stored message is `original_body`)
// reporting `failed`, addressed to the original envelope sender with the
// null sender <> (so a DSN never causes another DSN).
// REQUIRES: !original.sender.empty().
queue::NewMessage BuildDsn(const queue::MessageMeta& original, std::string_view original_body,
                           const std::vector<FailedRecipient>& failed,
                           const std::string& hostname, const queue::QueueId& id,
                           int64_t now_us);

// The header section of a CRLF message (up to, not including, the blank line).
std::string_view HeaderSection(std::string_view message);

}  // namespace mxr::delivery
