#include "main/privileges.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace mxr {
namespace {

namespace fs = std::filesystem;

uid_t OwnerNoFollow(const fs::path& p) {
  struct stat st;
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st.st_uid;
}

class ChownTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (chown to another user)";
    struct passwd* pw = getpwnam("nobody");
    ASSERT_NE(pw, nullptr);
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    char tmpl[] = "/tmp/mxr-chown-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    // Outside the data dir, owned by root: what an attacker wants handed over.
    fs::create_directories(root_ / "outside" / "sub");
    Write(root_ / "outside" / "shadow");
    Write(root_ / "outside" / "sub" / "file");
    fs::create_directories(root_ / "data" / "spool");
    Write(root_ / "data" / "spool" / "000001.log");
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }
  static void Write(const fs::path& p) {
    std::ofstream(p) << "x\n";
  }
  fs::path root_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

// Issue 15, item 5: symlinks left in data_dir by the previous (unprivileged)
// run point at root-owned files and directories; handing data_dir over must
// change the links themselves, never what they point at.
TEST_F(ChownTreeTest, SymlinksInsideAreChangedNotFollowed) {
  fs::create_symlink(root_ / "outside" / "shadow", root_ / "data" / "users");
  fs::create_symlink(root_ / "outside" / "sub", root_ / "data" / "spool" / "archive");
  auto r = ChownTree((root_ / "data").string(), uid_, gid_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(OwnerNoFollow(root_ / "data"), uid_);
  EXPECT_EQ(OwnerNoFollow(root_ / "data" / "spool" / "000001.log"), uid_);
  EXPECT_EQ(OwnerNoFollow(root_ / "data" / "users"), uid_);  // the link itself
  EXPECT_EQ(OwnerNoFollow(root_ / "data" / "spool" / "archive"), uid_);
  EXPECT_EQ(OwnerNoFollow(root_ / "outside" / "shadow"), 0u);
  EXPECT_EQ(OwnerNoFollow(root_ / "outside" / "sub"), 0u);
  EXPECT_EQ(OwnerNoFollow(root_ / "outside" / "sub" / "file"), 0u);
}

// The directory handed over is itself a symlink (e.g. spool.path inside
// data_dir, replaced by the previous run): refused. Before, the walk followed
// it and handed over everything inside the target.
TEST_F(ChownTreeTest, ATopLevelSymlinkIsRefused) {
  fs::create_symlink(root_ / "outside", root_ / "data" / "spool2");
  auto r = ChownTree((root_ / "data" / "spool2").string(), uid_, gid_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("is a symbolic link"), std::string::npos) << r.status();
  EXPECT_EQ(OwnerNoFollow(root_ / "outside"), 0u);
  EXPECT_EQ(OwnerNoFollow(root_ / "outside" / "shadow"), 0u);
  EXPECT_EQ(OwnerNoFollow(root_ / "outside" / "sub" / "file"), 0u);
}

// A hard link to a root-owned file (possible where fs.protected_hardlinks
// is 0): chowning the link would chown the file. Skipped.
TEST_F(ChownTreeTest, HardLinksToFilesOfOthersAreSkipped) {
  fs::create_hard_link(root_ / "outside" / "shadow", root_ / "data" / "spool" / "000002.log");
  auto r = ChownTree((root_ / "data").string(), uid_, gid_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->skipped, 1u);
  EXPECT_EQ(OwnerNoFollow(root_ / "outside" / "shadow"), 0u);
  EXPECT_EQ(OwnerNoFollow(root_ / "data" / "spool" / "000001.log"), uid_);
}

TEST_F(ChownTreeTest, CreatesAMissingDirectoryOwnerOnly) {
  mode_t old = umask(077);
  auto r = ChownTree((root_ / "new" / "data").string(), uid_, gid_);
  umask(old);
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st;
  ASSERT_EQ(stat((root_ / "new" / "data").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid_);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

}  // namespace
}  // namespace mxr
