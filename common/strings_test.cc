#include "common/strings.h"

#include <utility>

#include "gtest/gtest.h"

namespace mxr {
namespace {

// Reads every byte `s` owns, past its size (within capacity).
bool AllZero(const std::string& s) {
  const char* p = s.data();
  for (size_t i = 0; i < s.capacity(); ++i) {
    if (p[i] != '\0') return false;
  }
  return true;
}

// A moved-from short string keeps its bytes in the inline buffer: wiping
// only size() bytes (0 after the move) left the password in memory.
TEST(WipeString, ClearsTheMovedFromInlineBuffer) {
  std::string pw = "hunter2";  // short: stored inline
  std::string taken = std::move(pw);
  EXPECT_EQ(taken, "hunter2");
  WipeString(pw);
  EXPECT_TRUE(pw.empty());
  EXPECT_TRUE(AllZero(pw));
}

TEST(WipeString, ClearsAHeapBufferBeyondItsSize) {
  std::string pw(100, 'x');
  pw.resize(10);  // 90 stale 'x' beyond size()
  WipeString(pw);
  EXPECT_TRUE(pw.empty());
  EXPECT_TRUE(AllZero(pw));
}

}  // namespace
}  // namespace mxr
