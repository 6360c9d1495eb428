#include "relay/pool_header.h"

#include "gtest/gtest.h"

namespace mxr::relay {
namespace {

TEST(TakeHeader, RemovesEveryInstanceWithFoldedLines) {
  std::string m =
      "From: a@example.com\r\nX-MxRelay-Pool: marketing\r\nSubject: hi\r\n"
      "x-mxrelay-pool: other\r\n\tfolded\r\nTo: b@example.com\r\n\r\nX-MxRelay-Pool: body text stays\r\n";
  EXPECT_EQ(TakeHeader(&m, "X-MxRelay-Pool"), "marketing");
  EXPECT_EQ(m, "From: a@example.com\r\nSubject: hi\r\nTo: b@example.com\r\n\r\nX-MxRelay-Pool: body text stays\r\n");
}

TEST(TakeHeader, FirstLineAndAbsent) {
  std::string m = "X-MxRelay-Pool:  tx  \r\nSubject: s\r\n\r\nbody\r\n";
  EXPECT_EQ(TakeHeader(&m, "X-MxRelay-Pool"), "tx");
  EXPECT_EQ(m, "Subject: s\r\n\r\nbody\r\n");
  std::string n = "Subject: s\r\nX-MxRelay-Poolish: no\r\n\r\nbody\r\n";
  std::string copy = n;
  EXPECT_EQ(TakeHeader(&n, "X-MxRelay-Pool"), "");
  EXPECT_EQ(n, copy);
}

TEST(PoolAtReception, HeaderThenUser) {
  Config c = DefaultConfig();
  PoolConfig p;
  p.name = "mkt";
  p.users = {"alice"};
  c.pools.push_back(p);
  PoolConfig t;
  t.name = "tx";
  c.pools.push_back(t);
  EXPECT_EQ(PoolAtReception(c, "tx", "alice", false), "tx");    // header wins
  EXPECT_EQ(PoolAtReception(c, "tx", "", false), "");           // not authenticated: ignored
  EXPECT_EQ(PoolAtReception(c, "tx", "", true), "tx");          // trusted network
  EXPECT_EQ(PoolAtReception(c, "nope", "alice", false), "mkt"); // unknown pool: the user's
  EXPECT_EQ(PoolAtReception(c, "", "alice", false), "mkt");
  EXPECT_EQ(PoolAtReception(c, "", "bob", false), "");
}

}  // namespace
}  // namespace mxr::relay
