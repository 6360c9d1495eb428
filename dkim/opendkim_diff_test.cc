// Differential test: messages of every shape signed by our signer, verified
// by OpenDKIM's library (libopendkim, an independent implementation of RFC
// 6376 canonicalization and verification), keys served from a key file
// (DKIM_QUERY_FILE). Every signature must pass with a matching body hash;
// libopendkim's own body hash must equal ours byte for byte.
#include <unistd.h>

// libopendkim's header is C99 (_Bool) with extern "C" guards.
#define _Bool bool
#include <dkim.h>
#undef _Bool

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/strings.h"
#include "dkim/signer.h"
#include "gtest/gtest.h"

namespace mxr::dkim {
namespace {

// One message per generated shape (headers, body), wire form: CRLF only,
// the way our SMTP client sends it.
class MessageGen {
 public:
  explicit MessageGen(uint32_t seed) : rng_(seed) {}

  std::string Text(size_t max, bool eight_bit) {
    static const char* kWords[] = {"hello", "world", "a", "\xc3\xa9t\xc3\xa9", "=?utf-8?q?x?=", "(c)", "x.y",
                                   "\"q\"", "<id@x>", ";", ","};
    std::string s;
    size_t n = rng_() % max;
    for (size_t i = 0; i < n; ++i) {
      std::string w = kWords[rng_() % (eight_bit ? 11 : 11)];
      if (!eight_bit && static_cast<unsigned char>(w[0]) >= 0x80) w = "e";
      s += w;
      switch (rng_() % 6) {
        case 0: s += "  "; break;
        case 1: s += "\t"; break;
        case 2: s += " \t "; break;
        default: s += " "; break;
      }
    }
    return s;
  }

  // A field, folded at random places, sometimes very long.
  std::string Field(std::string name, std::string value) {
    std::string out = name;
    switch (rng_() % 4) {
      case 0: out += ": "; break;
      case 1: out += ":"; break;
      case 2: out += " : "; break;
      default: out += ":\t"; break;
    }
    for (size_t i = 0; i < value.size(); ++i) {
      char c = value[i];
      if ((c == ' ' || c == '\t') && i > 0 && rng_() % 7 == 0) out += "\r\n";  // fold before WSP
      out += c;
    }
    return out + "\r\n";
  }

  std::string Headers(const std::string& from_domain) {
    std::string h;
    static const char* kFroms[] = {"news@%s", "\"News, Desk\" <news@%s>", "=?utf-8?q?N=C3=A9ws?= <n@%s>",
                                   "<news@%s> (comment)", "News <news@%s>"};
    std::string from = kFroms[rng_() % 5];
    from.replace(from.find("%s"), 2, from_domain);
    bool eight = rng_() % 3 == 0;
    std::vector<std::string> fields;
    fields.push_back(Field(rng_() % 4 == 0 ? "FROM" : "From", from));
    for (int i = 0, n = static_cast<int>(rng_() % 3); i < n; ++i) fields.push_back(Field("To", "r" + std::to_string(i) + "@x.test"));
    if (rng_() % 4 != 0) fields.push_back(Field("Subject", Text(rng_() % 5 == 0 ? 400 : 12, eight)));
    if (rng_() % 2) fields.push_back(Field("Date", "Sun, 22 Nov 2026 00:30:00 +0000"));
    if (rng_() % 2) fields.push_back(Field("Message-ID", "<" + std::to_string(rng_()) + "@x.test>"));
    if (rng_() % 2) {
      fields.push_back(Field("MIME-Version", "1.0"));
      fields.push_back(Field("Content-Type", "text/plain;\tcharset=\"utf-8\""));
    }
    if (rng_() % 3 == 0) {
      fields.push_back(Field("List-Unsubscribe", "<https://x.test/u?id=1>,  <mailto:u@x.test>"));
      fields.push_back(Field("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"));
    }
    if (rng_() % 4 == 0) fields.push_back(Field("X-Custom", Text(20, eight)));
    if (rng_() % 5 == 0) fields.push_back(Field("X-Empty", ""));
    if (rng_() % 5 == 0) {  // already signed by someone else (not verifiable: its key is unknown)
      fields.push_back("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=other.test; s=x;\r\n"
                       "\th=from; bh=AAAA; b=AAAA\r\n");
    }
    // Shuffle all but keep From somewhere.
    for (size_t i = fields.size(); i > 1; --i) std::swap(fields[i - 1], fields[rng_() % i]);
    for (const auto& f : fields) h += f;
    return h;
  }

  std::string Body() {
    switch (rng_() % 12) {
      case 0: return "";
      case 1: return "\r\n\r\n\r\n";
      case 2: return " \r\n\t\r\n";
      default: break;
    }
    std::string b;
    size_t lines = rng_() % 30;
    for (size_t i = 0; i < lines; ++i) {
      switch (rng_() % 8) {
        case 0: b += "\r\n"; break;                                  // empty line
        case 1: b += ".dot at the start\r\n"; break;                 // stuffed on the wire
        case 2: b += "trailing  \t \r\n"; break;
        case 3: b += std::string(900, 'x') + "  y\r\n"; break;       // long line
        case 4: b += "\t  leading and  inner\t\twhitespace\r\n"; break;
        default: b += Text(15, true) + "\r\n"; break;
      }
    }
    for (size_t i = rng_() % 4; i > 0; --i) b += rng_() % 2 ? "\r\n" : "  \r\n";  // trailing (empty) lines
    if (rng_() % 8 == 0) b += "no final CRLF  ";
    return b;
  }

  uint32_t Next() { return rng_(); }

 private:
  std::mt19937 rng_;
};

class OpenDkimDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lib_ = dkim_init(nullptr, nullptr);
    ASSERT_NE(lib_, nullptr);
    ed25519_ = dkim_libfeature(lib_, DKIM_FEATURE_ED25519);
    char tmpl[] = "/tmp/mxrelay-opendkim-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    keyfile_ = dir_ + "/keys";
    std::ofstream f(keyfile_);
    auto add = [&](const std::string& d, const std::string& s, Algorithm a, int bits) {
      auto k = PrivateKey::Generate(a, bits);
      ASSERT_TRUE(k.ok()) << k.status();
      keys_.push_back(SigningKey{d, s, *k});
      f << s << "._domainkey." << d << " " << KeyRecordText(**k) << "\n";
    };
    add("customer.test", "rsa1024", Algorithm::kRsaSha256, 1024);
    add("customer.test", "rsa2048", Algorithm::kRsaSha256, 2048);
    add("platform.test", "ed", Algorithm::kEd25519Sha256, 0);
    f.close();
    dkim_query_t q = DKIM_QUERY_FILE;
    ASSERT_EQ(dkim_options(lib_, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &q, sizeof q), DKIM_STAT_OK);
    ASSERT_EQ(dkim_options(lib_, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, const_cast<char*>(keyfile_.c_str()),
                           keyfile_.size()),
              DKIM_STAT_OK);
  }
  void TearDown() override {
    if (lib_ != nullptr) dkim_close(lib_);
    std::filesystem::remove_all(dir_);
  }

  struct SigVerdict {
    std::string domain, selector;
    bool passed = false;
    bool bh_match = false;
    std::string bh;  // libopendkim's body hash, base64
    std::string error;
  };

  // libopendkim's verdict on every signature of `message` (fed whole).
  std::vector<SigVerdict> Verify(const std::string& message, std::string* overall) {
    DKIM_STAT st;
    DKIM* d = dkim_verify(lib_, reinterpret_cast<const unsigned char*>("diff"), nullptr, &st);
    EXPECT_NE(d, nullptr);
    std::vector<SigVerdict> out;
    if (d == nullptr) return out;
    std::string copy = message;
    dkim_chunk(d, reinterpret_cast<unsigned char*>(copy.data()), copy.size());
    dkim_chunk(d, nullptr, 0);
    st = dkim_eom(d, nullptr);
    *overall = Cat(st, " ", dkim_geterror(d) ? dkim_geterror(d) : "");
    DKIM_SIGINFO** sigs = nullptr;
    int n = 0;
    if (dkim_getsiglist(d, &sigs, &n) == DKIM_STAT_OK) {
      for (int i = 0; i < n; ++i) {
        SigVerdict v;
        v.domain = reinterpret_cast<const char*>(dkim_sig_getdomain(sigs[i]));
        const unsigned char* sel = dkim_sig_getselector(sigs[i]);
        v.selector = sel ? reinterpret_cast<const char*>(sel) : "";
        v.passed = (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_PASSED) != 0;
        v.bh_match = dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MATCH;
        void *hh = nullptr, *bh = nullptr;
        size_t hhlen = 0, bhlen = 0;
        if (dkim_sig_gethashes(sigs[i], &hh, &hhlen, &bh, &bhlen) == DKIM_STAT_OK && bh != nullptr) {
          v.bh = Base64(std::string_view(static_cast<const char*>(bh), bhlen));
        }
        v.error = dkim_sig_geterrorstr(dkim_sig_geterror(sigs[i]));
        out.push_back(v);
      }
    }
    dkim_free(d);
    return out;
  }

  DKIM_LIB* lib_ = nullptr;
  bool ed25519_ = false;
  std::string dir_, keyfile_;
  std::vector<SigningKey> keys_;
};

TEST_F(OpenDkimDiffTest, LibraryVerifiesEd25519) {
  EXPECT_TRUE(ed25519_) << "Debian's libopendkim should be built with Ed25519 (OpenSSL >= 1.1.1)";
}

TEST_F(OpenDkimDiffTest, EveryShapeVerifies) {
  MessageGen gen(20261122);
  const Canon kCanons[] = {Canon::kRelaxed, Canon::kSimple};
  int checked = 0;
  for (int iter = 0; iter < 600; ++iter) {
    std::string prefix = "Received: from client ([127.0.0.1])\r\n\tby relay.test (mxrelay) with ESMTPS id " +
                         std::to_string(iter) + ";\r\n\tSun, 22 Nov 2026 00:30:24 +0000\r\n";
    std::string message = gen.Headers("customer.test") + "\r\n" + gen.Body();
    if (gen.Next() % 10 == 0) message = gen.Headers("customer.test");  // no body, no empty line
    DkimConfig cfg;
    cfg.header_canon = kCanons[gen.Next() % 2];
    cfg.body_canon = kCanons[gen.Next() % 2];
    SignOptions opt = SignOptions::FromConfig(cfg);
    std::vector<SigningKey> keys;
    keys.push_back(keys_[gen.Next() % 2]);  // an RSA key
    if (ed25519_ && gen.Next() % 2) keys.push_back(keys_[2]);
    ParsedMessage m = ParseMessage(prefix, message);
    int64_t now = static_cast<int64_t>(time(nullptr));
    SignResult r = Sign(m, opt, keys, now);
    ASSERT_EQ(r.per_key.size(), keys.size());
    // The wire form: our fields, the prefix, the message with the CRLF our
    // SMTP client adds when it does not end with one.
    std::string wire = r.fields + prefix + message + std::string(MissingHeaderEnd(m, message));
    if (!wire.ends_with("\r\n")) wire += "\r\n";
    std::string overall;
    std::vector<SigVerdict> verdicts = Verify(wire, &overall);
    std::string ours_bh = BodyHash(cfg.body_canon, m.body);
    for (const SigningKey& k : keys) {
      const SigVerdict* v = nullptr;
      for (const auto& x : verdicts) {
        if (x.domain == k.domain && x.selector == k.selector) v = &x;
      }
      ASSERT_NE(v, nullptr) << "libopendkim did not see our signature d=" << k.domain << " (" << overall
                            << ")\n" << wire;
      EXPECT_EQ(v->bh, ours_bh) << "body hash differs\n" << wire;
      ASSERT_TRUE(v->passed && v->bh_match)
          << "iteration " << iter << " d=" << k.domain << " s=" << k.selector << " c=" << (int)cfg.header_canon
          << "/" << (int)cfg.body_canon << ": " << v->error << " (" << overall << ")\n" << wire;
      ++checked;
    }
  }
  EXPECT_GE(checked, 600);
}

TEST_F(OpenDkimDiffTest, AlteredMessagesFail) {
  DkimConfig cfg;
  SignOptions opt = SignOptions::FromConfig(cfg);
  std::string prefix = "Received: by relay.test\r\n";
  std::string message = "From: a@customer.test\r\nSubject: s\r\nX-Unsigned: u\r\n\r\nbody line\r\n";
  ParsedMessage m = ParseMessage(prefix, message);
  SignResult r = Sign(m, opt, {keys_[0]}, static_cast<int64_t>(time(nullptr)));
  std::string wire = r.fields + prefix + message;
  std::string overall;
  auto pass = [&](const std::string& w) {
    auto v = Verify(w, &overall);
    for (const auto& x : v) {
      if (x.domain == "customer.test") return x.passed && x.bh_match;
    }
    return false;
  };
  EXPECT_TRUE(pass(wire)) << overall;
  std::string body_byte = wire;
  body_byte.replace(body_byte.find("body line"), 1, "B");
  EXPECT_FALSE(pass(body_byte));
  std::string header = wire;
  header.replace(header.find("Subject: s"), 10, "Subject: t");
  EXPECT_FALSE(pass(header));
  std::string added_from = wire;
  added_from.insert(added_from.find("Subject:"), "From: evil@attacker.test\r\n");
  EXPECT_FALSE(pass(added_from)) << "over-signing must stop a second From:";
  std::string unsigned_field = wire;
  unsigned_field.replace(unsigned_field.find("X-Unsigned: u"), 13, "X-Unsigned: v");
  EXPECT_TRUE(pass(unsigned_field)) << overall;
}

}  // namespace
}  // namespace mxr::dkim
