#include "delivery/classify.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

#ifndef MXR_SOURCE_DIR
#error "MXR_SOURCE_DIR must be defined (delivery/CMakeLists.txt)"
#endif

namespace mxr::delivery {
namespace {

std::shared_ptr<const Classifier> Shipped() {
  auto c = Classifier::Load({{"shipped", kShippedClassification}});
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// Every line of tests/data/bounce-corpus.tsv (real replies from providers'
// documentation) gets the category written next to it.
TEST(Classify, CorpusMatches) {
  auto c = Shipped();
  std::ifstream in(std::string(MXR_SOURCE_DIR) + "/tests/data/bounce-corpus.tsv");
  ASSERT_TRUE(in.good());
  std::string line;
  int n = 0;
  std::set<std::string> seen;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    ASSERT_EQ(f.size(), 5u) << line;
    int code = std::stoi(f[1]);
    Category got = c->Classify(code, f[2], f[3]);
    EXPECT_EQ(CategoryName(got), f[0]) << line;
    seen.insert(f[0]);
    n++;
  }
  EXPECT_GE(n, 20);
  EXPECT_GE(seen.size(), 9u);  // the corpus covers most categories
}

TEST(Classify, UnknownIsOther) {
  EXPECT_EQ(Shipped()->Classify(451, "4.3.0", "Temporary local problem"), Category::kOther);
}

TEST(Classify, OperatorRulesComeFirst) {
  auto c = Classifier::Load({{"op", R"(
[[rule]]
category = "policy"
regex = '''user unknown'''
)"},
                             {"shipped", kShippedClassification}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->Classify(550, "5.1.1", "user unknown"), Category::kPolicy);
  EXPECT_EQ((*c)->Classify(552, "5.2.2", "Mailbox full"), Category::kMailboxFull);
}

TEST(Classify, RejectsBadRules) {
  EXPECT_FALSE(Classifier::Load({{"f", "[[rule]]\ncategory=\"nope\"\nregex=\"x\"\n"}}).ok());
  EXPECT_FALSE(Classifier::Load({{"f", "[[rule]]\ncategory=\"policy\"\nregex=\"(\"\n"}}).ok());
  EXPECT_FALSE(Classifier::Load({{"f", "[[rule]]\ncategory=\"policy\"\n"}}).ok());
  EXPECT_FALSE(Classifier::Load({{"f", "[rules]\nx=1\n"}}).ok());
}

TEST(Classify, NamesRoundTrip) {
  for (size_t i = 0; i < kCategoryCount; ++i) {
    auto c = static_cast<Category>(i);
    EXPECT_EQ(CategoryFromName(CategoryName(c)), c);
  }
  EXPECT_FALSE(CategoryFromName("x").has_value());
}

}  // namespace
}  // namespace mxr::delivery
