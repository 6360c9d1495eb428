// Message records as the spool stores them (see queue/FORMAT.md).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"

namespace mxr::queue {

// Identifies a message: ingest time + sequence; its 12-byte big-endian form
// is the RocksDB key, so keys sort oldest first.
struct QueueId {
  uint64_t time_us = 0;
  uint32_t seq = 0;

  static constexpr size_t kKeySize = 12;
  std::array<char, kKeySize> Key() const;
  static std::optional<QueueId> FromKey(std::string_view key);
  std::string ToString() const;  // 24 lowercase hex characters
  static std::optional<QueueId> Parse(std::string_view hex);
  auto operator<=>(const QueueId&) const = default;
};

// Hands out unique ids. Thread-safe, lock-free.
class QueueIdGenerator {
 public:
  explicit QueueIdGenerator(const Clock& clock);
  QueueId Next();

 private:
  const Clock& clock_;
  std::atomic<uint32_t> seq_;
};

enum class RcptState : uint8_t { kPending = 0, kDelivered = 1, kBounced = 2 };

// RFC 3461 NOTIFY= of a recipient, as bits; 0 = the client gave none (the
// default: failure DSNs, and delay DSNs at the relay's discretion).
inline constexpr uint8_t kNotifyNever = 1;
inline constexpr uint8_t kNotifySuccess = 2;
inline constexpr uint8_t kNotifyFailure = 4;
inline constexpr uint8_t kNotifyDelay = 8;

// RFC 3461 RET= of a message.
enum class DsnRet : uint8_t { kUnset = 0, kFull = 1, kHeaders = 2 };

// An attribute this build does not know, kept as read so that rewriting a
// record written by a newer build does not drop it (queue/FORMAT.md).
struct UnknownAttr {
  uint32_t tag = 0;
  std::string value;
  bool operator==(const UnknownAttr&) const = default;
};

struct Recipient {
  std::string address;
  RcptState state = RcptState::kPending;
  uint32_t attempts = 0;
  uint32_t last_code = 0;
  std::string last_response;
  // Attributes (record version 2); empty / 0 = absent.
  uint8_t notify = 0;     // kNotify* bits
  std::string orcpt;      // RFC 3461 ORCPT= as given ("rfc822;user@example.com", xtext)
  bool delay_dsn_sent = false;  // a delay DSN (RFC 3461 NOTIFY=DELAY) went out (issue 24, tag 20)
  std::vector<UnknownAttr> unknown;
};

struct MessageMeta {
  QueueId id;
  int64_t received_us = 0;
  int64_t next_attempt_us = 0;
  uint32_t attempts = 0;
  uint64_t body_size = 0;
  bool smtputf8 = false;
  bool body_8bit = false;
  std::string sender;  // "" = null sender
  std::string auth_user;
  std::string client_ip;
  std::string helo;
  std::vector<Recipient> recipients;
  // Attributes (record version 2); empty = absent.
  std::string tenant;    // the tenant the message was accepted for
  std::string campaign;  // campaign tag (API field or header)
  std::string pool;      // egress pool chosen at reception, "" = decided at delivery
  DsnRet dsn_ret = DsnRet::kUnset;
  std::string envid;     // RFC 3461 ENVID= as given (xtext)
  std::vector<UnknownAttr> unknown;

  size_t PendingRecipients() const;
};

}  // namespace mxr::queue
