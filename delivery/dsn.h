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
  std::string category;    // bounce category (delivery/classify.h), "" = not classified
};

// Builds the DSN for `original` (whose stored message is `original_body`)
// reporting `failed`, addressed to the original envelope sender with the
// null sender <> (so a DSN never causes another DSN).
// REQUIRES: !original.sender.empty().
queue::NewMessage BuildDsn(const queue::MessageMeta& original, std::string_view original_body,
                           const std::vector<FailedRecipient>& failed,
                           const std::string& hostname, const queue::QueueId& id,
                           int64_t now_us);

// At most this much of the original's header section is returned in a DSN
// (RET=FULL is not supported: a DSN never carries the original body). A
// message without a blank line is all header section by RFC 5322, so without
// this cap a 50 MB message without one came back whole.
inline constexpr size_t kDsnMaxHeaderBytes = 64 * 1024;

// The header section of a CRLF message (up to, not including, the blank line).
std::string_view HeaderSection(std::string_view message);

// HeaderSection() cut at the last line end within `max_bytes` (a single line
// longer than that is cut at `max_bytes` and ended with CRLF by the caller).
// *truncated tells whether anything was cut.
std::string_view BoundedHeaderSection(std::string_view message, size_t max_bytes, bool* truncated);

}  // namespace mxr::delivery
