// Encoding of spool keys and records (queue/FORMAT.md). Pure functions.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "queue/types.h"

namespace mxr::queue {

// Version written; records of version 1 (no attributes) are still read.
inline constexpr uint8_t kFormatVersion = 2;
inline constexpr uint8_t kOldestReadableVersion = 1;

// Attribute tags (queue/FORMAT.md). Never reuse a number.
enum MessageAttrTag : uint32_t {
  kAttrTenant = 1,
  kAttrCampaign = 2,
  kAttrPool = 3,
  kAttrDsnRet = 4,
  kAttrEnvid = 5,
};
enum RecipientAttrTag : uint32_t {
  kAttrNotify = 1,
  kAttrOrcpt = 2,
  kAttrDelayDsnSent = 20,  // issue 24's range is 20-29
};
inline constexpr size_t kMaxStoredResponse = 512;

std::string EncodeMeta(const MessageMeta& m);
// Errors: DataLossError for a truncated record or an unknown version byte.
// Attributes with unknown tags are kept in `unknown` and written back.
absl::StatusOr<MessageMeta> DecodeMeta(std::string_view key, std::string_view value);

// schedule CF key: 8-byte BE next_attempt_us + queue key.
std::string ScheduleKey(int64_t next_attempt_us, const QueueId& id);
bool ParseScheduleKey(std::string_view key, int64_t* next_attempt_us, QueueId* id);

}  // namespace mxr::queue
