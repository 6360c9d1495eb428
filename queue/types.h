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

struct Recipient {
  std::string address;
  RcptState state = RcptState::kPending;
  uint32_t attempts = 0;
  uint32_t last_code = 0;
  std::string last_response;
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

  size_t PendingRecipients() const;
};

}  // namespace mxr::queue
