// Logging setup. Components log through spdlog's default logger
// (spdlog::info("event=... key=value ...")); this only configures the sink
// (stderr, for journald/docker), level and pattern.
// Never log a password or an AUTH payload.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace mxr {

// level: trace|debug|info|warn|error|critical|off.
absl::Status SetupLogging(const std::string& level);

}  // namespace mxr
