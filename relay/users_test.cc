#include "relay/users.h"

#include <crypt.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// A crypt(3) hash of `password` with a fresh salt for `prefix` ("$6$", "$2b$").
std::string MakeHash(const char* prefix, unsigned long cost, const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn(prefix, cost, nullptr, 0, setting, sizeof setting) == nullptr) {
    ADD_FAILURE() << "crypt_gensalt_rn failed for " << prefix;
    return "";
  }
  struct crypt_data data;
  std::memset(&data, 0, sizeof data);
  const char* h = crypt_r(password.c_str(), setting, &data);
  if (h == nullptr || h[0] == '*') {
    ADD_FAILURE() << "crypt_r failed for " << prefix;
    return "";
  }
  return h;
}

class UserDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto y = HashPassword("yes-pass");
    ASSERT_TRUE(y.ok()) << y.status();
    yescrypt_ = *y;
    sha512_ = MakeHash("$6$", 0, "sha-pass");
    bcrypt_ = MakeHash("$2b$", 4, "bcrypt-pass");
    ASSERT_THAT(yescrypt_, StartsWith("$y$"));
    ASSERT_THAT(sha512_, StartsWith("$6$"));
    ASSERT_THAT(bcrypt_, StartsWith("$2b$04$"));
  }

  std::string yescrypt_, sha512_, bcrypt_;
};

TEST_F(UserDbTest, ParsesAllHashKindsAndIgnoresCommentsAndBlankLines) {
  std::string text = "# mxrelay users\n"
                     "\n"
                     "alice:" + yescrypt_ + "\n"
                     "   \n"
                     "  # indented comment\n"
                     "bob@example.com:" + sha512_ + "\r\n"
                     "carol:" + bcrypt_ + "   \n";  // trailing spaces tolerated; no final newline next
  auto db = UserDb::Parse(text, "users");
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->size(), 3u);
  EXPECT_TRUE((*db)->Has("alice"));
  EXPECT_TRUE((*db)->Has("bob@example.com"));
  EXPECT_TRUE((*db)->Has("carol"));
  EXPECT_FALSE((*db)->Has("bob"));
  EXPECT_FALSE((*db)->Has("# mxrelay users"));

  EXPECT_TRUE((*db)->Verify("alice", "yes-pass"));
  EXPECT_TRUE((*db)->Verify("bob@example.com", "sha-pass"));
  EXPECT_TRUE((*db)->Verify("carol", "bcrypt-pass"));

  EXPECT_FALSE((*db)->Verify("alice", "yes-pas"));
  EXPECT_FALSE((*db)->Verify("alice", "yes-pass "));
  EXPECT_FALSE((*db)->Verify("alice", ""));
  EXPECT_FALSE((*db)->Verify("alice", "sha-pass"));
  EXPECT_FALSE((*db)->Verify("bob@example.com", "Sha-pass"));
  EXPECT_FALSE((*db)->Verify("carol", "bcrypt-pas"));
}

TEST_F(UserDbTest, UnknownUsersNeverVerify) {
  auto db = UserDb::Parse("alice:" + yescrypt_ + "\n", "users");
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_FALSE((*db)->Verify("mallory", "yes-pass"));
  EXPECT_FALSE((*db)->Verify("", ""));
  EXPECT_FALSE((*db)->Verify("Alice", "yes-pass"));  // names are exact
  EXPECT_FALSE((*db)->Verify("alice ", "yes-pass"));
  EXPECT_TRUE((*db)->Verify("alice", "yes-pass"));
}

TEST_F(UserDbTest, FullAddressAndBareNameAreDistinct) {
  auto other = HashPassword("other-pass");
  ASSERT_TRUE(other.ok());
  auto db = UserDb::Parse("alice:" + yescrypt_ + "\nalice@example.com:" + *other + "\n", "u");
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->size(), 2u);
  EXPECT_TRUE((*db)->Verify("alice", "yes-pass"));
  EXPECT_FALSE((*db)->Verify("alice", "other-pass"));
  EXPECT_TRUE((*db)->Verify("alice@example.com", "other-pass"));
  EXPECT_FALSE((*db)->Verify("alice@example.com", "yes-pass"));
  EXPECT_FALSE((*db)->Verify("alice@example.org", "other-pass"));
}

// Issue 21: domains are case-insensitive (RFC 5321 2.4), local parts are not.
TEST_F(UserDbTest, DomainPartMatchesInAnyCase) {
  auto db = UserDb::Parse("alice@Example.com:" + yescrypt_ + "\n", "u");
  ASSERT_TRUE(db.ok()) << db.status();
  for (const char* name : {"alice@Example.com", "alice@example.com", "alice@EXAMPLE.COM"}) {
    auto c = (*db)->CheckPassword(name, "yes-pass");
    EXPECT_EQ(c.result, UserDb::Result::kOk) << name;
    EXPECT_EQ(c.user, "alice@Example.com") << "the name as the file writes it";
  }
  EXPECT_EQ((*db)->CheckPassword("Alice@example.com", "yes-pass").result, UserDb::Result::kUnknownUser);
  EXPECT_EQ((*db)->CheckPassword("alice", "yes-pass").result, UserDb::Result::kUnknownUser)
      << "the local part alone needs local_part_login";
  EXPECT_EQ((*db)->CheckPassword("alice@example.com", "no").result, UserDb::Result::kBadPassword);
  auto dup = UserDb::Parse("a@x.test:" + yescrypt_ + "\na@X.TEST:" + yescrypt_ + "\n", "u");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(std::string(dup.status().message()).find("u:2: duplicate user 'a@X.TEST' (same as 'a@x.test'"),
            std::string::npos)
      << dup.status();
}

TEST_F(UserDbTest, LocalPartLoginOnlyWhenUnambiguous) {
  UserDb::Options o;
  o.local_part_login = true;
  auto db = UserDb::Parse("alice@example.com:" + yescrypt_ + "\nbob@a.test:" + yescrypt_ + "\nbob@b.test:" +
                              yescrypt_ + "\ncarol:" + yescrypt_ + "\ncarol@c.test:" + yescrypt_ + "\n",
                          "u", o);
  ASSERT_TRUE(db.ok()) << db.status();
  auto c = (*db)->CheckPassword("alice", "yes-pass");
  EXPECT_EQ(c.result, UserDb::Result::kOk);
  EXPECT_EQ(c.user, "alice@example.com");
  EXPECT_EQ((*db)->CheckPassword("alice", "wrong").result, UserDb::Result::kBadPassword);
  EXPECT_EQ((*db)->CheckPassword("bob", "yes-pass").result, UserDb::Result::kUnknownUser) << "two bobs";
  EXPECT_EQ((*db)->CheckPassword("bob@b.test", "yes-pass").result, UserDb::Result::kOk);
  // A bare user "carol" exists: "carol" is that user, never carol@c.test.
  EXPECT_EQ((*db)->CheckPassword("carol", "yes-pass").user, "carol");
  EXPECT_EQ((*db)->ambiguous_local_parts(), 2u);
  // Off (the default): the local part alone is unknown.
  auto off = UserDb::Parse("alice@example.com:" + yescrypt_ + "\n", "u");
  ASSERT_TRUE(off.ok());
  EXPECT_EQ((*off)->CheckPassword("alice", "yes-pass").result, UserDb::Result::kUnknownUser);
}

TEST_F(UserDbTest, PlaintextPasswordRejectedWithFileAndLine) {
  auto db = UserDb::Parse("# c\nalice:" + yescrypt_ + "\ndave:hunter2\n", "/etc/mxrelay/users");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(db.status()), StartsWith("/etc/mxrelay/users:3:"));
  EXPECT_THAT(Msg(db.status()), HasSubstr("'dave'"));
  EXPECT_THAT(Msg(db.status()), HasSubstr("plain text"));
  // Something that merely starts with '$' is not a hash either.
  db = UserDb::Parse("dave:$ecret\n", "f");
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(Msg(db.status()), StartsWith("f:1:"));
}

TEST_F(UserDbTest, DuplicateUserRejected) {
  auto db = UserDb::Parse("alice:" + yescrypt_ + "\n\nalice:" + sha512_ + "\n", "users");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(db.status()), StartsWith("users:3:"));
  EXPECT_THAT(Msg(db.status()), HasSubstr("duplicate user 'alice'"));
}

TEST_F(UserDbTest, MalformedLinesRejected) {
  auto db = UserDb::Parse("alice\n", "users");
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(Msg(db.status()), StartsWith("users:1:"));
  db = UserDb::Parse(":" + yescrypt_ + "\n", "users");
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(Msg(db.status()), StartsWith("users:1:"));
  db = UserDb::Parse("\nbob:$9$nosuchmethod$abcdef\n", "users");
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(Msg(db.status()), StartsWith("users:2:"));
  EXPECT_THAT(Msg(db.status()), HasSubstr("unsupported or malformed hash"));
}

TEST_F(UserDbTest, EmptyFileIsValid) {
  auto db = UserDb::Parse("# nobody yet\n\n", "users");
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->size(), 0u);
  EXPECT_FALSE((*db)->Verify("alice", "yes-pass"));
}

TEST_F(UserDbTest, LoadReadsAFileAndNamesItInErrors) {
  char dir_tmpl[] = "/tmp/mxrelay_users_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  std::string dir = dir_tmpl;
  std::string path = dir + "/users";
  {
    std::ofstream f(path);
    f << "alice:" << yescrypt_ << "\nbob:plain\n";
  }
  auto db = UserDb::Load(path);
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(Msg(db.status()), StartsWith(path + ":2:"));
  {
    std::ofstream f(path);
    f << "alice:" << yescrypt_ << "\n";
  }
  db = UserDb::Load(path);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE((*db)->Verify("alice", "yes-pass"));
  std::remove(path.c_str());
  db = UserDb::Load(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kNotFound);
  rmdir(dir.c_str());
}

TEST(HashPasswordTest, FreshSaltEachTime) {
  auto a = HashPassword("same");
  auto b = HashPassword("same");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_THAT(*a, StartsWith("$y$"));
  EXPECT_NE(*a, *b);
  auto db = UserDb::Parse("a:" + *a + "\nb:" + *b + "\n", "t");
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE((*db)->Verify("a", "same"));
  EXPECT_TRUE((*db)->Verify("b", "same"));
}

TEST(RandomPasswordTest, LengthAndAlphabet) {
  std::string p = RandomPassword(24);
  EXPECT_EQ(p.size(), 24u);
  EXPECT_THAT(p, MatchesRegex("[a-zA-Z2-9]*"));
  for (char c : p) {
    EXPECT_EQ(std::strchr("ilo01IO", c), nullptr) << "ambiguous character " << c;
  }
  EXPECT_NE(RandomPassword(24), p);
  EXPECT_EQ(RandomPassword(0), "");
}

TEST(RandomPasswordTest, LongPasswordsAreRandomThroughout) {
  std::string p = RandomPassword(1000);
  ASSERT_EQ(p.size(), 1000u);
  EXPECT_THAT(p, MatchesRegex("[a-zA-Z2-9]*"));
  // Every 100-character window uses many distinct characters (a filler
  // such as "xxxx..." would not).
  for (size_t start = 0; start + 100 <= p.size(); start += 100) {
    std::string window = p.substr(start, 100);
    std::sort(window.begin(), window.end());
    window.erase(std::unique(window.begin(), window.end()), window.end());
    EXPECT_GT(window.size(), 20u) << "window at " << start << ": " << p.substr(start, 100);
  }
}

}  // namespace
}  // namespace mxr::relay
