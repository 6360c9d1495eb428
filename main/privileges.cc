#include "main/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr {
namespace {

// chown -R, not following symlinks; counts what it changed.
absl::Status HandOver(const std::string& dir, uid_t uid, gid_t gid) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(Cat("cannot create ", dir, ": ", ec.message()));
  size_t changed = 0;
  auto own = [&](const fs::path& p) -> absl::Status {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return absl::OkStatus();  // gone meanwhile
    if (st.st_uid == uid && st.st_gid == gid) return absl::OkStatus();
    if (lchown(p.c_str(), uid, gid) != 0) {
      return absl::InternalError(Cat("chown ", p.string(), ": ", strerror(errno)));
    }
    changed++;
    return absl::OkStatus();
  };
  if (auto st = own(dir); !st.ok()) return st;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (auto st = own(it->path()); !st.ok()) return st;
  }
  if (ec) return absl::InternalError(Cat("walking ", dir, ": ", ec.message()));
  if (changed > 0) spdlog::info("event=dir_handed_over dir={} files={} owner_uid={}", dir, changed, uid);
  return absl::OkStatus();
}

}  // namespace

absl::Status DropPrivileges(const std::string& user, const std::vector<std::string>& dirs) {
  errno = 0;
  struct passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) return absl::NotFoundError(Cat("user: no such user '", user, "'"));
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (geteuid() != 0) {
    if (geteuid() == uid) return absl::OkStatus();
    return absl::PermissionDeniedError(
        Cat("user = \"", user, "\" needs the relay to be started as root (or as that user)"));
  }
  if (uid == 0) return absl::InvalidArgumentError("user: refusing to 'switch' to root");
  for (const auto& d : dirs) {
    if (auto st = HandOver(d, uid, gid); !st.ok()) return st;
  }
  if (prctl(PR_SET_KEEPCAPS, 1) != 0) return absl::InternalError(Cat("prctl(KEEPCAPS): ", strerror(errno)));
  if (initgroups(pw->pw_name, gid) != 0) return absl::InternalError(Cat("initgroups: ", strerror(errno)));
  if (setresgid(gid, gid, gid) != 0) return absl::InternalError(Cat("setresgid: ", strerror(errno)));
  if (setresuid(uid, uid, uid) != 0) return absl::InternalError(Cat("setresuid: ", strerror(errno)));
  // Permitted capabilities survived the uid change (KEEPCAPS); keep only
  // the one we need, and make it effective.
  cap_t caps = cap_from_text("cap_net_bind_service=ep");
  if (caps == nullptr) return absl::InternalError("cap_from_text failed");
  int rc = cap_set_proc(caps);
  int err = errno;
  cap_free(caps);
  if (rc != 0) return absl::InternalError(Cat("cap_set_proc: ", strerror(err)));
  prctl(PR_SET_KEEPCAPS, 0);
  if (setuid(0) == 0) return absl::InternalError("could regain root after dropping privileges");
  spdlog::info("event=privileges_dropped user={} uid={} gid={} capabilities=cap_net_bind_service", user, uid,
               gid);
  return absl::OkStatus();
}

}  // namespace mxr
