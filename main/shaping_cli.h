// `mxrelay shaping status`: egress sources (warm-up), pools, shaping rules
// in use and every egress path under an automation action, from the
// running relay through its admin socket ("SHAPING" request,
// main/admin_socket.h).
#pragma once

#include <string>

#include "delivery/stats.h"

namespace mxr {

// The listing the admin socket sends for "SHAPING" (text, one item a line).
std::string FormatShapingStatus(const delivery::DeliveryStats& stats);

// Connects to the admin socket at `path`, prints the listing. Exit code.
int RunShapingStatus(const std::string& path);

}  // namespace mxr
