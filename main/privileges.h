// Least privilege: a relay started as root switches to an unprivileged user
// before it opens or creates anything, keeping only CAP_NET_BIND_SERVICE so
// its listeners may still bind ports 25/465/587 (bound later, per thread).
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mxr {

struct TreeOwnership {
  size_t changed = 0;  // entries whose owner was changed
  size_t skipped = 0;  // hard links to files owned by someone else: left alone
};

// chown -R `dir` (created 0700 if missing) to uid:gid without ever following
// a symlink: walked by descriptor with openat(O_NOFOLLOW|O_DIRECTORY) and
// fchownat(AT_SYMLINK_NOFOLLOW). `dir` itself must not be a symlink. A
// non-directory with more than one link that is owned by someone else is
// skipped. REQUIRES: root (or CAP_CHOWN).
absl::StatusOr<TreeOwnership> ChownTree(const std::string& dir, uid_t uid, gid_t gid);

// Becomes `user` (uid, gid, supplementary groups) with CAP_NET_BIND_SERVICE
// as the only capability, after handing `dirs` (created if missing) over to
// that user. Must run before any thread is started. Not root: succeeds only
// if we already are `user`.
absl::Status DropPrivileges(const std::string& user, const std::vector<std::string>& dirs);

}  // namespace mxr
