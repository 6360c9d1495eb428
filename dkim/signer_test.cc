#include "dkim/signer.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <sstream>

#include "common/strings.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// RFC 8463 Appendix A: the RFC 6376 example message signed simple/simple by
// "brisbane" (Ed25519, the RFC 8032 7.1 TEST 1 key) and by "test" (the RSA
// key of RFC 6376 Appendix A). Ed25519 and RSASSA-PKCS1-v1_5 are
// deterministic, so our bytes must equal the published signatures. (The
// vectors as shipped with dkimpy's test data.)
constexpr char kRfcMessage[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n"
    "\r\n";
constexpr char kEd25519Pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";
constexpr char kRsaPem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
    "Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
    "AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
    "6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
    "zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
    "6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
    "uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
    "WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
    "WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
    "licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
    "o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
    "uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
    "-----END RSA PRIVATE KEY-----\n";

Digest Sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

const std::vector<std::string> kRfcNames = {"from", "to", "subject", "date", "message-id", "from", "subject", "date"};

TEST(SignerKnownAnswerTest, Rfc8463Ed25519) {
  ParsedMessage m = ParseMessage("", kRfcMessage);
  EXPECT_EQ(BodyHash(Canon::kSimple, m.body), "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=");
  std::string field =
      "DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; \r\n"
      " d=football.example.com; i=@football.example.com; \r\n"
      " q=dns/txt; s=brisbane; t=1518460054; h=from : to : \r\n"
      " subject : date : message-id : from : subject : date; \r\n"
      " bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \r\n"
      " b=";
  auto key = PrivateKey::FromPem(kEd25519Pem);
  ASSERT_TRUE(key.ok()) << key.status();
  auto sig = (*key)->SignDigest(Sha256(SignedData(m, Canon::kSimple, kRfcNames, field)));
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(Base64(*sig), "9/dsDChY0YMTtD5Eyw3wx7x22BlSJP7M5ECbJ7GWrR45nXlTCGb8l0YBo0wBLR++X5LqmsxXaOYLLJe46l10AQ==");
}

TEST(SignerKnownAnswerTest, Rfc8463Rsa) {
  ParsedMessage m = ParseMessage("", kRfcMessage);
  std::string field =
      "DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; \r\n"
      " d=football.example.com; i=@football.example.com; \r\n"
      " q=dns/txt; s=test; t=1527915362; h=from : to : subject : \r\n"
      " date : message-id : from : subject : date; \r\n"
      " bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \r\n"
      " b=";
  auto key = PrivateKey::FromPem(kRsaPem);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ((*key)->bits(), 1024);
  auto sig = (*key)->SignDigest(Sha256(SignedData(m, Canon::kSimple, kRfcNames, field)));
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(Base64(*sig),
            "icKcLSEZYXJ95flvWE8FT6hl5iqd8MC/LEKYH0QjsqYy6MO/4pgVNCZHl/RAXAuADxE/40Fg7uTlxwwD1hjN2Ple6J//cJfslBdDOq6zTVb"
            "ne1dqtlNOat7iamJ1AfRqyG+ja7a2AZsrpUuJ7VA6O+0zRYPqpwMEkEFIzI9i/Xk=");
}

// A minimal verifier for our own output: splits off the b= value, rebuilds
// the signed data from the h= list and checks the signature with the public
// key. (Independent verifiers: opendkim_diff_test.cc, tests/integration.)
struct Verified {
  bool ok = false;
  std::string why;
};
Verified VerifyOwn(const std::string& field, const ParsedMessage& m, const PrivateKey& key, Canon hc) {
  size_t b = field.rfind("b=");
  std::string unsigned_field = field.substr(0, b + 2);
  std::string value;
  for (char c : field.substr(b + 2)) {
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') value += c;
  }
  size_t h = field.find("h=");
  std::string hlist = field.substr(h + 2, field.find(';', h) - h - 2);
  std::vector<std::string> names;
  std::string cur;
  for (char c : hlist + ":") {
    if (c == ':') {
      names.push_back(cur);
      cur.clear();
    } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      cur += c;
    }
  }
  Digest d = Sha256(SignedData(m, hc, names, unsigned_field));
  std::string sig(value.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(sig.data()),
                          reinterpret_cast<const unsigned char*>(value.data()), static_cast<int>(value.size()));
  if (n < 0) return {false, "bad base64"};
  size_t pad = value.size() >= 2 && value[value.size() - 1] == '=' ? (value[value.size() - 2] == '=' ? 2 : 1) : 0;
  sig.resize(static_cast<size_t>(n) - pad);
  // Public key from the p= value.
  std::string p = key.PublicKeyBase64();
  std::string der(p.size(), '\0');
  int dn = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                           reinterpret_cast<const unsigned char*>(p.data()), static_cast<int>(p.size()));
  size_t dpad = p.back() == '=' ? (p[p.size() - 2] == '=' ? 2 : 1) : 0;
  der.resize(static_cast<size_t>(dn) - dpad);
  EVP_PKEY* pub = nullptr;
  if (key.algorithm() == Algorithm::kEd25519Sha256) {
    pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(der.data()),
                                      der.size());
  } else {
    const unsigned char* q = reinterpret_cast<const unsigned char*>(der.data());
    pub = d2i_PUBKEY(nullptr, &q, static_cast<long>(der.size()));
  }
  if (pub == nullptr) return {false, "bad public key"};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  int r = 0;
  if (key.algorithm() == Algorithm::kEd25519Sha256) {
    EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pub);
    r = EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(), d.data(), d.size());
  } else {
    std::string data = SignedData(m, hc, names, unsigned_field);
    EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pub);
    r = EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                         reinterpret_cast<const unsigned char*>(data.data()), data.size());
  }
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pub);
  return {r == 1, r == 1 ? "" : "signature does not verify"};
}

constexpr char kPrefix[] = "Received: from client ([127.0.0.1])\r\n\tby relay.test (mxrelay) with ESMTPS id 1;\r\n"
                           "\tSun, 22 Nov 2026 00:30:24 +0000\r\n";
constexpr char kMessage[] =
    "From: \"Sender\" <news@customer.test>\r\n"
    "To: a@x.test,\r\n b@y.test\r\n"
    "To: c@z.test\r\n"
    "Subject: Hello  \t there\r\n"
    "Date: Sun, 22 Nov 2026 00:30:00 +0000\r\n"
    "Message-ID: <1@customer.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "List-Unsubscribe: <https://customer.test/u>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "X-Other: not signed\r\n"
    "\r\n"
    "Body  line \r\n\r\n";

SignOptions Options(Canon hc = Canon::kRelaxed, Canon bc = Canon::kRelaxed) {
  DkimConfig c;
  c.header_canon = hc;
  c.body_canon = bc;
  return SignOptions::FromConfig(c);
}

TEST(SignedHeaderNamesTest, OversignsPresentFieldsAndSignsFromAlways) {
  ParsedMessage m = ParseMessage(kPrefix, kMessage);
  std::vector<std::string> names = SignedHeaderNames(m, Options());
  std::string joined;
  for (const auto& n : names) joined += n + ":";
  EXPECT_EQ(joined,
            "from:from:to:to:to:subject:subject:date:date:message-id:message-id:mime-version:mime-version:"
            "content-type:content-type:list-unsubscribe:list-unsubscribe:list-unsubscribe-post:"
            "list-unsubscribe-post:");
  // No From: still lists from once (its absence is signed); absent others are left out.
  m = ParseMessage("", "Subject: x\r\nCc: y@z\r\n\r\n");
  names = SignedHeaderNames(m, Options());
  EXPECT_EQ(names, (std::vector<std::string>{"from", "subject", "subject", "cc"}));
  // Configured lists replace the defaults; From is added when left out.
  DkimConfig c;
  c.headers = {"X-Other"};
  c.oversign_headers = {"Subject"};
  m = ParseMessage(kPrefix, kMessage);
  names = SignedHeaderNames(m, SignOptions::FromConfig(c));
  EXPECT_EQ(names, (std::vector<std::string>{"from", "from", "subject", "subject", "x-other"}));
}

TEST(SignTest, FieldsVerifyAndAreWellFormed) {
  auto ed = PrivateKey::FromPem(kEd25519Pem);
  auto rsa = PrivateKey::Generate(Algorithm::kRsaSha256, 2048);
  ASSERT_TRUE(ed.ok() && rsa.ok());
  for (Canon hc : {Canon::kRelaxed, Canon::kSimple}) {
    for (Canon bc : {Canon::kRelaxed, Canon::kSimple}) {
      ParsedMessage m = ParseMessage(kPrefix, kMessage);
      SignOptions opt = Options(hc, bc);
      opt.expire_after = 7 * 86400;
      SignResult r = Sign(m, opt, {{"customer.test", "s2026", *rsa}, {"platform.test", "ed1", *ed}}, 1'800'000'000);
      ASSERT_EQ(r.per_key.size(), 2u);
      ASSERT_TRUE(r.per_key[0].ok() && r.per_key[1].ok());
      // Two fields, each starting a line.
      size_t second = r.fields.find("DKIM-Signature:", 1);
      ASSERT_NE(second, std::string::npos);
      std::string f1 = r.fields.substr(0, second), f2 = r.fields.substr(second);
      EXPECT_THAT(f1, StartsWith("DKIM-Signature: v=1; a=rsa-sha256; c="));
      EXPECT_THAT(f2, StartsWith("DKIM-Signature: v=1; a=ed25519-sha256; c="));
      for (const std::string& f : {f1, f2}) {
        EXPECT_THAT(f, HasSubstr("t=1800000000;"));
        EXPECT_THAT(f, HasSubstr("x=1800604800;"));
        EXPECT_THAT(f, Not(HasSubstr("l=")));
        EXPECT_THAT(f, HasSubstr(Cat("bh=", BodyHash(bc, m.body), ";")));
        ASSERT_TRUE(f.ends_with("\r\n"));
        std::istringstream lines(f);
        std::string line;
        for (int i = 0; std::getline(lines, line) && i < 100; ++i) {
          EXPECT_LE(line.size(), 79u) << line;  // 78 + the CR getline leaves
          EXPECT_TRUE(i == 0 || line[0] == '\t') << line;
        }
      }
      Verified v1 = VerifyOwn(f1.substr(0, f1.size() - 2), m, **rsa, hc);
      Verified v2 = VerifyOwn(f2.substr(0, f2.size() - 2), m, **ed, hc);
      EXPECT_TRUE(v1.ok) << v1.why;
      EXPECT_TRUE(v2.ok) << v2.why;
      // An altered signed header field does not verify.
      std::string altered = kMessage;
      altered.replace(altered.find("Hello"), 5, "Hellp");
      ParsedMessage m2 = ParseMessage(kPrefix, altered);
      EXPECT_FALSE(VerifyOwn(f2.substr(0, f2.size() - 2), m2, **ed, hc).ok);
      // An unsigned one may change.
      altered = kMessage;
      altered.replace(altered.find("not signed"), 3, "NOT");
      m2 = ParseMessage(kPrefix, altered);
      EXPECT_TRUE(VerifyOwn(f2.substr(0, f2.size() - 2), m2, **ed, hc).ok);
    }
  }
}

TEST(SignTest, NoXTagWithoutExpiry) {
  auto ed = PrivateKey::FromPem(kEd25519Pem);
  ParsedMessage m = ParseMessage("", kMessage);
  SignResult r = Sign(m, Options(), {{"customer.test", "s", *ed}}, 1'800'000'000);
  EXPECT_THAT(r.fields, HasSubstr("t=1800000000;"));
  EXPECT_THAT(r.fields, Not(HasSubstr("x=")));
}

TEST(SignTest, NoKeysNoFields) {
  ParsedMessage m = ParseMessage("", kMessage);
  SignResult r = Sign(m, Options(), {}, 1);
  EXPECT_EQ(r.fields, "");
  EXPECT_TRUE(r.per_key.empty());
}

}  // namespace
}  // namespace mxr::dkim
