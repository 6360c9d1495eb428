// Least privilege: a relay started as root switches to an unprivileged user
// before it opens or creates anything, keeping only CAP_NET_BIND_SERVICE so
// its listeners may still bind ports 25/465/587 (bound later, per thread).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mxr {

// Becomes `user` (uid, gid, supplementary groups) with CAP_NET_BIND_SERVICE
// as the only capability, after handing `dirs` (created if missing) over to
// that user. Must run before any thread is started. Not root: succeeds only
// if we already are `user`.
absl::Status DropPrivileges(const std::string& user, const std::vector<std::string>& dirs);

}  // namespace mxr
