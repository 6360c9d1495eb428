#include "dkim/signer.h"

#include <openssl/evp.h>

#include <cstring>

#include "common/strings.h"

namespace mxr::dkim {
namespace {

const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // fetched once (OpenSSL 3)
  return md;
}

// SHA-256 of whatever is appended; small pieces are gathered first so the
// digest sees few large updates.
class HashSink final : public ByteSink {
 public:
  HashSink() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, Sha256(), nullptr); }
  ~HashSink() override { EVP_MD_CTX_free(ctx_); }
  HashSink(const HashSink&) = delete;
  HashSink& operator=(const HashSink&) = delete;

  void Append(const char* data, size_t n) override {
    if (n >= kBuf / 2) {
      Drain();
      EVP_DigestUpdate(ctx_, data, n);
      return;
    }
    if (used_ + n > kBuf) Drain();
    std::memcpy(buf_ + used_, data, n);
    used_ += n;
  }
  // The context with everything appended so far (for copies).
  EVP_MD_CTX* ctx() {
    Drain();
    return ctx_;
  }
  Digest Final() {
    Drain();
    Digest d{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, d.data(), &len);
    return d;
  }

 private:
  void Drain() {
    if (used_ > 0) EVP_DigestUpdate(ctx_, buf_, used_);
    used_ = 0;
  }
  static constexpr size_t kBuf = 8192;
  EVP_MD_CTX* ctx_;
  char buf_[kBuf];
  size_t used_ = 0;
};

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return o;
}

size_t Count(const ParsedMessage& m, std::string_view name) {
  size_t n = 0;
  for (size_t i = 0; i < m.fields.size(); ++i) n += HeaderNameEquals(m.name(i), name);
  return n;
}

// Builds a header field folded below 78 characters: units are appended
// after a space (or, with `join`, directly), and a unit that would pass the
// limit starts a continuation line ("\r\n\t").
class Folder {
 public:
  explicit Folder(std::string start) : s_(std::move(start)), col_(s_.size()) {}
  void Add(std::string_view unit, bool join = false) {
    if (col_ + (join ? 0 : 1) + unit.size() > kMax) {
      s_ += "\r\n\t";
      col_ = 1;
    } else if (!join) {
      s_ += ' ';
      ++col_;
    }
    s_ += unit;
    col_ += unit.size();
  }
  std::string& str() { return s_; }

 private:
  static constexpr size_t kMax = 78;
  std::string s_;
  size_t col_;
};

const char* CanonName(Canon c) { return c == Canon::kSimple ? "simple" : "relaxed"; }

}  // namespace

const std::vector<std::string>& DefaultSignedHeaders() {
  static const std::vector<std::string> kList = {
      "reply-to", "cc", "sender", "in-reply-to", "references", "content-transfer-encoding",
      "list-id", "list-help", "list-subscribe", "list-post", "list-owner", "list-archive",
      "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-message-id",
      "auto-submitted", "feedback-id"};
  return kList;
}

const std::vector<std::string>& DefaultOversignedHeaders() {
  static const std::vector<std::string> kList = {
      "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
      "list-unsubscribe", "list-unsubscribe-post"};
  return kList;
}

SignOptions SignOptions::FromConfig(const DkimConfig& c) {
  SignOptions o;
  o.header_canon = c.header_canon;
  o.body_canon = c.body_canon;
  o.expire_after = c.expire_after;
  o.headers = c.headers.empty() ? DefaultSignedHeaders() : c.headers;
  o.oversign = c.oversign_headers.empty() ? DefaultOversignedHeaders() : c.oversign_headers;
  for (auto& h : o.headers) h = Lower(h);
  for (auto& h : o.oversign) h = Lower(h);
  bool from = false;
  for (const auto& h : o.oversign) from |= h == "from";
  for (const auto& h : o.headers) from |= h == "from";
  if (!from) o.oversign.insert(o.oversign.begin(), "from");
  return o;
}

std::vector<std::string> SignedHeaderNames(const ParsedMessage& m, const SignOptions& opt) {
  std::vector<std::string> names;
  std::vector<std::string_view> seen;
  auto listed = [&](std::string_view n) {
    for (auto s : seen) {
      if (s == n) return true;
    }
    seen.push_back(n);
    return false;
  };
  for (const auto& n : opt.oversign) {
    if (listed(n)) continue;
    size_t c = Count(m, n);
    size_t times = c > 0 ? c + 1 : (n == "from" ? 1 : 0);
    for (size_t i = 0; i < times; ++i) names.push_back(n);
  }
  for (const auto& n : opt.headers) {
    if (listed(n)) continue;
    size_t c = Count(m, n);
    for (size_t i = 0; i < c; ++i) names.push_back(n);
  }
  return names;
}

void AppendSignedFields(const ParsedMessage& m, Canon c, const std::vector<std::string>& names, ByteSink* out) {
  // For each name in h=, the last instance not yet used (RFC 6376 5.4.2);
  // a name with none left adds nothing.
  std::vector<bool> used(m.fields.size(), false);
  std::string canon;
  for (const auto& n : names) {
    for (size_t i = m.fields.size(); i-- > 0;) {
      if (used[i] || !HeaderNameEquals(m.name(i), n)) continue;
      used[i] = true;
      canon.clear();
      CanonicalizeHeader(c, m.raw(i), &canon);
      out->Append(canon);
      break;
    }
  }
}

std::string SignedData(const ParsedMessage& m, Canon c, const std::vector<std::string>& names,
                       std::string_view sig_field) {
  std::string out;
  StringSink sink(&out);
  AppendSignedFields(m, c, names, &sink);
  std::string sig_canon;
  CanonicalizeHeader(c, Cat(sig_field, "\r\n"), &sig_canon);
  sig_canon.resize(sig_canon.size() - 2);
  return out + sig_canon;
}

std::string BodyHash(Canon c, std::string_view body) {
  HashSink h;
  CanonicalizeBody(c, body, &h);
  Digest d = h.Final();
  return Base64(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

SignResult Sign(const ParsedMessage& m, const SignOptions& opt, const std::vector<SigningKey>& keys,
                int64_t now_s) {
  SignResult res;
  res.per_key.resize(keys.size());
  std::string bh = BodyHash(opt.body_canon, m.body);
  std::vector<std::string> names = SignedHeaderNames(m, opt);

  HashSink headers;
  AppendSignedFields(m, opt.header_canon, names, &headers);
  EVP_MD_CTX* base = headers.ctx();

  for (size_t k = 0; k < keys.size(); ++k) {
    const SigningKey& key = keys[k];
    Folder f("DKIM-Signature:");
    f.Add("v=1;");
    f.Add(Cat("a=", AlgorithmName(key.key->algorithm()), ";"));
    f.Add(Cat("c=", CanonName(opt.header_canon), "/", CanonName(opt.body_canon), ";"));
    f.Add(Cat("d=", key.domain, ";"));
    f.Add(Cat("s=", key.selector, ";"));
    f.Add(Cat("t=", now_s, ";"));
    if (opt.expire_after > 0) f.Add(Cat("x=", now_s + opt.expire_after, ";"));
    for (size_t i = 0; i < names.size(); ++i) {
      std::string unit = Cat(i == 0 ? "h=" : "", names[i], i + 1 < names.size() ? ":" : ";");
      f.Add(unit, /*join=*/i > 0);
    }
    f.Add(Cat("bh=", bh, ";"));
    std::string& text = f.str();
    text += "\r\n\tb=";
    // What is hashed: this field with an empty b= value, canonicalized,
    // without its CRLF (RFC 6376 3.7).
    std::string sig_canon;
    CanonicalizeHeader(opt.header_canon, text + "\r\n", &sig_canon);
    sig_canon.resize(sig_canon.size() - 2);

    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    Digest d{};
    unsigned int len = 0;
    bool ok = ctx != nullptr && EVP_MD_CTX_copy_ex(ctx, base) == 1 &&
              EVP_DigestUpdate(ctx, sig_canon.data(), sig_canon.size()) == 1 &&
              EVP_DigestFinal_ex(ctx, d.data(), &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
      res.per_key[k] = absl::InternalError("SHA-256 failed");
      continue;
    }
    auto sig = key.key->SignDigest(d);
    if (!sig.ok()) {
      res.per_key[k] = sig.status();
      continue;
    }
    std::string b = Base64(*sig);
    // The value folded in lines of 72 ("\tb=" + 72 < 78).
    for (size_t i = 0; i < b.size(); i += 72) {
      if (i > 0) text += "\r\n\t";
      text.append(b, i, 72);
    }
    text += "\r\n";
    res.fields += text;
  }
  return res;
}

}  // namespace mxr::dkim
