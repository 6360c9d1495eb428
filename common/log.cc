#include "common/log.h"

#include "common/strings.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace mxr {

absl::Status SetupLogging(const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(Cat("log.level: unknown level '", level, "'"));
  }
  auto logger = spdlog::get("mxrelay");
  if (!logger) logger = spdlog::stderr_logger_mt("mxrelay");
  spdlog::set_default_logger(logger);
  // One line per event: time, level, thread, then logfmt-style key=value pairs.
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l [%t] %v", spdlog::pattern_time_type::utc);
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  return absl::OkStatus();
}

}  // namespace mxr
