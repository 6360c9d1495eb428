// Fuzz target: complaint reports (feedback/arf.h), which arrive by SMTP from
// anyone who can reach the complaint address.
//
// Input: a whole message. ParseArf runs GMime over it, then reads the
// feedback fields, the original message's addresses and our Received:
// fields.
//
// Invariants (when the report is accepted):
//  - feedback_type is non-empty and has no ASCII upper case;
//  - every queue id is 24 lower-case hex digits;
//  - every address in Recipients(), original_rcpt_to, provider_recipients
//    holds an '@' and no whitespace;
//  - parsing the same input twice gives the same result (no hidden state).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "feedback/arf.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

bool PlainAddress(const std::string& a) {
  if (a.find('@') == std::string::npos) return false;
  for (char c : a) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = mxr::feedback::ParseArf(in, "relay.test");
  auto again = mxr::feedback::ParseArf(in, "relay.test");
  Check(r.ok() == again.ok());
  if (!r.ok()) return 0;
  Check(!r->feedback_type.empty());
  for (char c : r->feedback_type) Check(!(c >= 'A' && c <= 'Z'));
  for (const auto& q : r->queue_ids) {
    Check(q.size() == 24);
    for (char c : q) Check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  }
  for (const auto& a : r->Recipients()) Check(PlainAddress(a));
  for (const auto& a : r->original_rcpt_to) Check(PlainAddress(a));
  for (const auto& a : r->provider_recipients) Check(PlainAddress(a));
  Check(r->queue_ids == again->queue_ids && r->Recipients() == again->Recipients() &&
        r->feedback_type == again->feedback_type);
  return 0;
}
