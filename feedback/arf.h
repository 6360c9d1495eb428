// Abuse Reporting Format (RFC 5965) reports: what a mailbox provider's
// feedback loop sends when a user marks a message as spam.
//
//   auto r = ParseArf(raw_report, "relay.example.com");
//   if (r.ok()) for (auto& rcpt : r->Recipients()) suppress(rcpt, r->queue_ids ...);
//
// Parsed with GMime (a real MIME parser: nested multiparts, encodings,
// folded fields). Pure: no I/O, any thread (GMime is initialized once).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mxr::feedback {

struct ArfReport {
  // The machine-readable part (message/feedback-report), RFC 5965 section 3.1-3.2.
  std::string feedback_type;  // lowercased: "abuse", "fraud", "virus", "not-spam", "auth-failure", "other"
  std::string user_agent;
  std::string version;
  std::string original_envelope_id;
  std::string original_mail_from;
  std::vector<std::string> original_rcpt_to;  // addresses, angle brackets dropped
  std::string arrival_date;
  std::string reporting_mta;
  std::string source_ip;
  std::string reported_domain;
  // The reported message (message/rfc822, or text/rfc822-headers when the
  // provider sends headers only).
  bool has_original = false;
  std::string message_id;             // without angle brackets
  std::vector<std::string> original_to;  // To: and Cc: addresses of the original
  std::string original_from;          // its From: address
  std::string subject;
  // Queue ids from the original's Received: fields that our relay wrote
  // ("by <our hostname> (mxrelay) with ... id <24 hex>"), newest first.
  std::vector<std::string> queue_ids;
  // Fields of the original whose name starts with "X-MxRelay-" (lowercased
  // names), e.g. a tenant reference added at reception.
  std::vector<std::pair<std::string, std::string>> relay_fields;
  // Recipient fields some providers add to the original instead of
  // Original-Rcpt-To (Microsoft JMRP: X-HmXmrOriginalRecipient).
  std::vector<std::string> provider_recipients;

  // Who complained: Original-Rcpt-To when the provider gives it, else the
  // original's To:/Cc: (providers often redact one or the other), and
  // provider-specific fields (Microsoft's X-HmXmrOriginalRecipient).
  std::vector<std::string> Recipients() const;
};

// `our_hostname`: the relay's `hostname`, to recognize its own Received:
// fields. InvalidArgument (with the reason) for anything that is not an
// ARF report: not multipart/report with report-type=feedback-report, no
// message/feedback-report part, no Feedback-Type.
absl::StatusOr<ArfReport> ParseArf(std::string_view raw, std::string_view our_hostname);

}  // namespace mxr::feedback
