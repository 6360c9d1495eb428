#include "delivery/message.h"

#include "common/check.h"

namespace mxr::delivery {

ActiveMessage::~ActiveMessage() {
  if (!abandoned) {
    MXR_DCHECK(pending_jobs == 0, "a message freed with a job pending");
    for (const auto& j : jobs) {
      MXR_DCHECK(!j->queued && !j->on_connection, "a message freed while its job is queued or sending");
    }
  }
  if (intake_budget) intake_budget->fetch_sub(static_cast<int64_t>(pinned_bytes));
}

}  // namespace mxr::delivery
