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
  std::string action = "failed";  // RFC 3464 Action: failed / delayed / relayed
  std::string orcpt;       // RFC 3461 ORCPT as stored (addr-type;xtext), "" = none
};

// RFC 3461 parameters to pass to a next hop that offers DSN, built from the
// stored values: " RET=HDRS ENVID=..." and " NOTIFY=... ORCPT=..." ("" when
// there are none).
std::string MailDsnParams(const queue::MessageMeta& m);
std::string RcptDsnParams(const queue::Recipient& r);

// Builds the DSN for `original` (whose stored message is `original_body`)
// reporting `failed` (each with its Action: failed, delayed or relayed), addressed to the original envelope sender with the
// null sender <> (so a DSN never causes another DSN).
// REQUIRES: !original.sender.empty().
queue::NewMessage BuildDsn(const queue::MessageMeta& original, std::string_view original_body,
                           const std::vector<FailedRecipient>& failed,
                           const std::string& hostname, const queue::QueueId& id,
                           int64_t now_us);

// RET=FULL: a failure DSN carries the whole original message when it is at
// most this big; a bigger one, and every DSN without a failure (success,
// delay: RFC 3461 4.3), carries its headers only.
inline constexpr size_t kDsnMaxFullBytes = 256 * 1024;

// At most this much of the original's header section is returned in a DSN
// (RET=HDRS, no RET, or an original over kDsnMaxFullBytes). A
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
