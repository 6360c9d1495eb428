#include "main/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr {
namespace {

constexpr int kMaxDepth = 64;  // the relay's own tree is 2 deep; deeper is not ours

std::string Errno(const char* what, const std::string& path) {
  return Cat(what, " ", path, ": ", strerror(errno));
}

// Changes the entries of the open directory `dirfd` (recursively), by
// descriptor and name only: fchownat(AT_SYMLINK_NOFOLLOW) changes a symlink
// itself, openat(O_NOFOLLOW|O_DIRECTORY) never enters one, so a symlink or
// directory swapped in meanwhile (the previous, unprivileged run owns the
// tree) cannot redirect the walk outside it.
absl::Status ChownEntries(int dirfd, const std::string& path, uid_t uid, gid_t gid, int depth,
                          TreeOwnership* out) {
  if (depth > kMaxDepth) return absl::FailedPreconditionError(Cat(path, ": nested deeper than ", kMaxDepth));
  int dup_fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return absl::InternalError(Errno("dup", path));
  DIR* d = fdopendir(dup_fd);
  if (d == nullptr) {
    ::close(dup_fd);
    return absl::InternalError(Errno("opendir", path));
  }
  absl::Status result;
  while (result.ok()) {
    errno = 0;
    struct dirent* e = readdir(d);
    if (e == nullptr) {
      if (errno != 0) result = absl::InternalError(Errno("readdir", path));
      break;
    }
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string child = Cat(path, "/", name);
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (st.st_uid != uid || st.st_gid != gid) {
      // A second name of a file someone else owns (a hard link made by the
      // previous run, possible where fs.protected_hardlinks = 0): changing it
      // would change the original (e.g. /etc/shadow). Left alone.
      if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
        out->skipped++;
        spdlog::warn("event=hand_over_skipped path={} owner_uid={} links={} reason=\"a hard link to a file "
                     "we do not own\"",
                     child, st.st_uid, st.st_nlink);
        continue;
      }
      if (fchownat(dirfd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        result = absl::InternalError(Errno("chown", child));
        break;
      }
      out->changed++;
    }
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) continue;  // swapped or gone meanwhile
        result = absl::InternalError(Errno("open", child));
        break;
      }
      result = ChownEntries(sub, child, uid, gid, depth + 1, out);
      ::close(sub);
    }
  }
  closedir(d);
  return result;
}

}  // namespace

absl::StatusOr<TreeOwnership> ChownTree(const std::string& dir, uid_t uid, gid_t gid) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);  // 0700 under the relay's umask (077)
  if (ec) return absl::InternalError(Cat("cannot create ", dir, ": ", ec.message()));
  // The directory's own parents are the operator's (root-owned) path; the
  // last component must not be a symlink: it may be one the previous run
  // swapped in (e.g. a spool.path inside data_dir).
  fs::path p = fs::path(dir).lexically_normal();
  if (p.has_filename() == false) p = p.parent_path();
  std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
  std::string base = p.filename().string();
  int pfd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) return absl::InternalError(Errno("open", parent));
  int fd = openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int err = errno;
  ::close(pfd);
  if (fd < 0) {
    if (err == ELOOP || err == ENOTDIR) {
      return absl::FailedPreconditionError(
          Cat(dir, " is a symbolic link (or not a directory): refusing to hand it over to another user; "
                   "configure the real path"));
    }
    errno = err;
    return absl::InternalError(Errno("open", dir));
  }
  TreeOwnership out;
  struct stat st;
  absl::Status result;
  if (fstat(fd, &st) != 0) {
    result = absl::InternalError(Errno("stat", dir));
  } else {
    if (st.st_uid != uid || st.st_gid != gid) {
      if (fchown(fd, uid, gid) != 0) result = absl::InternalError(Errno("chown", dir));
      out.changed++;
    }
    if (result.ok()) result = ChownEntries(fd, dir, uid, gid, 0, &out);
  }
  ::close(fd);
  if (!result.ok()) return result;
  return out;
}

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
    auto owned = ChownTree(d, uid, gid);
    if (!owned.ok()) return owned.status();
    if (owned->changed > 0) {
      spdlog::info("event=dir_handed_over dir={} files={} owner_uid={}", d, owned->changed, uid);
    }
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
