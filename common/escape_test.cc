#include "common/escape.h"

#include <string>

#include "gtest/gtest.h"

namespace mxr {
namespace {

TEST(LogEscape, Table) {
  struct Row {
    std::string in, want;
  } rows[] = {
      {"plain text", "plain text"},
      {"say \"hi\"", "say \\\"hi\\\""},
      {"a\\b", "a\\\\b"},
      {"line1\r\nevent=forged ip=1.2.3.4", "line1\\r\\nevent=forged ip=1.2.3.4"},
      {"bare\rcr", "bare\\rcr"},
      {"bare\nlf", "bare\\nlf"},
      {std::string("nul\0x", 5), "nul\\x00x"},
      {"tab\there", "tab\\there"},
      {"del\x7f", "del\\x7f"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},  // UTF-8 kept
  };
  for (const auto& r : rows) EXPECT_EQ(LogEscape(r.in), r.want) << r.in;
}

TEST(LogEscape, NoControlCharacterOrUnescapedQuoteSurvives) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  std::string out = LogEscape(all);
  for (size_t i = 0; i < out.size(); ++i) {
    unsigned char u = static_cast<unsigned char>(out[i]);
    EXPECT_FALSE(u < 0x20 || u == 0x7f) << i;
    if (out[i] == '"') {
      size_t bs = 0;
      for (size_t k = i; k > 0 && out[k - 1] == '\\'; --k) ++bs;
      EXPECT_EQ(bs % 2, 1u) << "unescaped quote at " << i;
    }
  }
}

std::string Json(std::string_view s) {
  std::string o;
  AppendJsonString(&o, s);
  return o;
}

TEST(AppendJsonString, Table) {
  EXPECT_EQ(Json("abc"), "\"abc\"");
  EXPECT_EQ(Json("q\"b\\"), "\"q\\\"b\\\\\"");
  EXPECT_EQ(Json("a\r\nb\tc"), "\"a\\u000d\\u000ab\\u0009c\"");
  EXPECT_EQ(Json(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(Json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  // Not UTF-8: a lone continuation byte, a truncated sequence, an overlong
  // encoding, a surrogate, a code point past U+10FFFF.
  EXPECT_EQ(Json("a\x80z"), "\"a\xef\xbf\xbdz\"");
  EXPECT_EQ(Json("a\xe2\x82"), "\"a\xef\xbf\xbd\xef\xbf\xbd\"");
  EXPECT_EQ(Json("\xc0\xaf"), "\"\xef\xbf\xbd\xef\xbf\xbd\"");
  EXPECT_EQ(Json("\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
  EXPECT_EQ(Json("\xf4\x90\x80\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

TEST(Utf8SequenceLength, Table) {
  EXPECT_EQ(Utf8SequenceLength("a"), 1u);
  EXPECT_EQ(Utf8SequenceLength("\xc3\xa9"), 2u);
  EXPECT_EQ(Utf8SequenceLength("\xe2\x82\xac"), 3u);
  EXPECT_EQ(Utf8SequenceLength("\xf0\x9f\x98\x80"), 4u);
  EXPECT_EQ(Utf8SequenceLength("\xc1\xbf"), 0u);      // overlong
  EXPECT_EQ(Utf8SequenceLength("\xe0\x80\xaf"), 0u);  // overlong
  EXPECT_EQ(Utf8SequenceLength(""), 0u);
}

}  // namespace
}  // namespace mxr
