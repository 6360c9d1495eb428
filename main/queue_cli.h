// `mxrelay queue list|summary|show`: reads the spool (read-only, safe while the
// relay runs) and prints it for an operator.
#pragma once

#include <string>

#include "common/config.h"

namespace mxr {

int QueueList(const Config& cfg, size_t limit, bool json);
int QueueSummary(const Config& cfg);
// One message: its record (every recipient's state, attempts, last reply,
// the next attempt) and its history from delivery.event_log when configured.
// Exit 1 when the id is neither queued nor in the event log.
int QueueShow(const Config& cfg, const std::string& id, bool json);

}  // namespace mxr
