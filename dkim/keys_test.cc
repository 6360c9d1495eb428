#include "dkim/keys.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

using ::testing::HasSubstr;

// RFC 8032 7.1 TEST 1 secret key: RFC 8463's "brisbane" key.
constexpr char kRfc8463Ed25519[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxrelay-dkim-keys-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text, mode_t mode) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    chmod(p.c_str(), mode);
    return p;
  }
  std::string dir_;
};

TEST_F(KeyFileTest, ModesOthersMayNotReadAreAccepted) {
  for (mode_t m : {0400, 0600, 0640}) {
    auto k = PrivateKey::LoadFile(Write("k.pem", kRfc8463Ed25519, m));
    ASSERT_TRUE(k.ok()) << std::oct << m << ": " << k.status();
    EXPECT_EQ((*k)->algorithm(), Algorithm::kEd25519Sha256);
  }
}

TEST_F(KeyFileTest, ReadableByOthersOrGroupWritableIsRefused) {
  for (mode_t m : {0644, 0604, 0660, 0602, 0666}) {
    auto k = PrivateKey::LoadFile(Write("k.pem", kRfc8463Ed25519, m));
    ASSERT_FALSE(k.ok()) << std::oct << m;
    EXPECT_EQ(k.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(std::string(k.status().message()), HasSubstr("chmod 600"));
    EXPECT_THAT(std::string(k.status().message()), HasSubstr(dir_));
  }
}

TEST_F(KeyFileTest, MissingUnparsableAndWrongKinds) {
  auto k = PrivateKey::LoadFile(dir_ + "/absent.pem");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(k.status().message()), HasSubstr("absent.pem"));
  k = PrivateKey::LoadFile(Write("junk.pem", "-----BEGIN PRIVATE KEY-----\nnot base64!!\n-----END PRIVATE KEY-----\n", 0600));
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(k.status().message()), HasSubstr("not a PEM private key"));
  k = PrivateKey::LoadFile(Write("empty.pem", "", 0600));
  EXPECT_FALSE(k.ok());
  k = PrivateKey::LoadFile(dir_);  // a directory
  EXPECT_FALSE(k.ok());
  // An EC key is not a DKIM key; nor is a 512-bit RSA key.
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EVP_PKEY* small = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{512});
  for (EVP_PKEY* p : {ec, small}) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, p, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    k = PrivateKey::FromPem(std::string(data, static_cast<size_t>(n)));
    EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
    BIO_free(bio);
    EVP_PKEY_free(p);
  }
}

TEST(KeysTest, Rfc8463PublicKey) {
  auto k = PrivateKey::FromPem(kRfc8463Ed25519);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ((*k)->PublicKeyBase64(), "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  EXPECT_EQ(KeyRecordText(**k), "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
}

TEST(KeysTest, GenerateRoundTripAndZoneLine) {
  for (auto [alg, bits] : {std::pair{Algorithm::kRsaSha256, 2048}, std::pair{Algorithm::kEd25519Sha256, 0}}) {
    auto k = PrivateKey::Generate(alg, bits);
    ASSERT_TRUE(k.ok()) << k.status();
    auto again = PrivateKey::FromPem((*k)->ToPem());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->PublicKeyBase64(), (*k)->PublicKeyBase64());
    EXPECT_EQ((*again)->algorithm(), alg);
    std::string zone = KeyRecordZoneLine(**k, "example.test", "s1");
    EXPECT_THAT(zone, HasSubstr("s1._domainkey.example.test. IN TXT ("));
    // Every quoted string fits a TXT string (255 bytes).
    size_t pos = 0;
    while ((pos = zone.find('"', pos)) != std::string::npos) {
      size_t end = zone.find('"', pos + 1);
      EXPECT_LE(end - pos - 1, 255u);
      pos = end + 1;
    }
  }
  EXPECT_EQ((*PrivateKey::Generate(Algorithm::kRsaSha256, 1024))->bits(), 1024);
  EXPECT_FALSE(PrivateKey::Generate(Algorithm::kRsaSha256, 512).ok());
  EXPECT_FALSE(PrivateKey::Generate(Algorithm::kRsaSha256, 8192).ok());
}

TEST(KeysTest, ParseKeyRecord) {
  auto r = ParseKeyRecord("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->key_type, "ed25519");
  EXPECT_EQ(r->public_key, "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  r = ParseKeyRecord("p=MIIB IjAN\r\n Bgkq; t=y ; h=sha256");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->key_type, "rsa");
  EXPECT_EQ(r->public_key, "MIIBIjANBgkq");
  EXPECT_EQ(r->flags, "y");
  r = ParseKeyRecord("v=DKIM1; p=");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->public_key, "");  // revoked
  EXPECT_FALSE(ParseKeyRecord("v=DKIM2; p=abc").ok());
  EXPECT_FALSE(ParseKeyRecord("k=rsa; v=DKIM1; p=abc").ok());
  EXPECT_FALSE(ParseKeyRecord("v=DKIM1; k=rsa").ok());
  EXPECT_FALSE(ParseKeyRecord("garbage").ok());
}

// Ed25519 and RSASSA-PKCS1-v1_5 are deterministic: the per-thread context
// cache (more keys than it holds, several threads) must not change a byte.
TEST(KeysTest, SignaturesDoNotDependOnTheContextCacheOrTheThread) {
  std::vector<std::shared_ptr<const PrivateKey>> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(*PrivateKey::Generate(Algorithm::kEd25519Sha256));
  keys.push_back(*PrivateKey::FromPem(kRfc8463Ed25519));
  keys.push_back(*PrivateKey::Generate(Algorithm::kRsaSha256, 1024));
  Digest d{};
  d[0] = 16;
  std::vector<std::string> first;
  for (const auto& k : keys) first.push_back(*k->SignDigest(d));
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(*keys[i]->SignDigest(d), first[i]) << i;  // after evictions
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = 0; i < keys.size(); ++i) {
          if (*keys[i]->SignDigest(d) != first[i]) mismatches++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(KeysTest, AlgorithmNames) {
  EXPECT_EQ(ParseAlgorithm("rsa-sha256"), Algorithm::kRsaSha256);
  EXPECT_EQ(ParseAlgorithm("ed25519-sha256"), Algorithm::kEd25519Sha256);
  EXPECT_EQ(ParseAlgorithm("rsa-sha1"), std::nullopt);
  EXPECT_EQ(AlgorithmName(Algorithm::kEd25519Sha256), "ed25519-sha256");
}

}  // namespace
}  // namespace mxr::dkim
