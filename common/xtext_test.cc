#include "common/xtext.h"

#include <gtest/gtest.h>

namespace mxr {
namespace {

TEST(Xtext, DecodesHexcharsAndPlainChars) {
  EXPECT_EQ(XtextDecode("abc"), "abc");
  EXPECT_EQ(XtextDecode("a+2Bb"), "a+b");
  EXPECT_EQ(XtextDecode("+3D+20"), "= ");
  EXPECT_EQ(XtextDecode(""), "");
}

TEST(Xtext, RefusesBadEncodings) {
  EXPECT_FALSE(IsXtext("a+2b"));   // lower-case hex
  EXPECT_FALSE(IsXtext("a+2"));    // truncated
  EXPECT_FALSE(IsXtext("a+"));
  EXPECT_FALSE(IsXtext("a=b"));    // '=' must be encoded
  EXPECT_FALSE(IsXtext("a b"));    // space
  EXPECT_FALSE(IsXtext("\x7f"));
  EXPECT_FALSE(IsXtext("caf\xc3\xa9"));  // 8-bit
  EXPECT_TRUE(IsXtext("rfc822;user@example.com"));
}

TEST(Xtext, EncodeRoundTrips) {
  std::string raw = "a+b=c d\r\n\xff";
  std::string enc = XtextEncode(raw);
  EXPECT_TRUE(IsXtext(enc));
  EXPECT_EQ(XtextDecode(enc), raw);
  EXPECT_EQ(XtextEncode("user@example.com"), "user@example.com");
}

}  // namespace
}  // namespace mxr
