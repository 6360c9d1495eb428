// `mxrelay queue list|summary`: reads the spool (read-only, safe while the
// relay runs) and prints it for an operator.
#pragma once

#include <string>

#include "common/config.h"

namespace mxr {

int QueueList(const Config& cfg, size_t limit, bool json);
int QueueSummary(const Config& cfg);

}  // namespace mxr
