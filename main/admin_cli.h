// `mxrelay queue ...` actions and `mxrelay tenant apikey`: clients of the
// running relay's admin API (api/admin_api.h), reading its address and
// token from the configuration (admin_api.listen, admin_api.token_file).
#pragma once

#include <string>

#include "common/config.h"

namespace mxr {

// One admin API call; prints the answer (JSON with `json`, else a table or
// a sentence). Returns the exit code: 0 on 2xx, 1 otherwise.
// method "GET"/"POST"; body "" for none.
int AdminCall(const Config& cfg, const std::string& method, const std::string& path, const std::string& body,
              bool json);

// Prints a new API key and the line to put in the tenants file.
int TenantApiKey(const std::string& tenant);

}  // namespace mxr
