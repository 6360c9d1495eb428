#include "dkim/keys.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/strings.h"

namespace mxr::dkim {
namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// The file's bytes, read through one descriptor whose mode was checked.
absl::StatusOr<std::string> ReadPrivateFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return absl::NotFoundError(Cat(path, ": cannot open: ", strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(Cat(path, ": cannot stat: ", strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(Cat(path, ": not a regular file"));
  }
  if ((st.st_mode & 0027) != 0) {
    close(fd);
    return absl::PermissionDeniedError(
        Cat(path, ": a private key must not be readable or writable by others (mode ",
            fmt::format("{:04o}", st.st_mode & 07777), "); chmod 600 it (or 640 with a group only the relay "
            "is in)"));
  }
  if (st.st_size > (1 << 20)) {
    close(fd);
    return absl::InvalidArgumentError(Cat(path, ": too large for a PEM private key"));
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t r = read(fd, data.data() + got, data.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  close(fd);
  data.resize(got);
  return data;
}

// Signing contexts of this thread, per key: set up once (OpenSSL 3 builds
// a context with provider look-ups), reused for every signature. A context
// holds a reference to its key, so an entry may outlive a PrivateKey
// replaced by SIGHUP until it is evicted or the thread ends.
class ContextCache {
 public:
  struct Entry {
    uint64_t key_id;
    EVP_PKEY_CTX* pctx;  // RSA: initialized for EVP_PKEY_sign
    EVP_MD_CTX* mctx;    // Ed25519: re-initialized per signature (one-shot)
  };
  ~ContextCache() {
    for (auto& e : entries_) Free(e);
  }
  Entry* Find(uint64_t id) {
    for (auto& e : entries_) {
      if (e.key_id == id) return &e;
    }
    return nullptr;
  }
  Entry* Add(Entry e) {
    if (entries_.size() >= kMax) {
      Free(entries_.front());
      entries_.erase(entries_.begin());
    }
    entries_.push_back(e);
    return &entries_.back();
  }

 private:
  static void Free(Entry& e) {
    EVP_PKEY_CTX_free(e.pctx);
    EVP_MD_CTX_free(e.mctx);
  }
  static constexpr size_t kMax = 16;
  std::vector<Entry> entries_;
};

thread_local ContextCache tls_contexts;

std::atomic<uint64_t> next_key_id{1};

}  // namespace

PrivateKey::PrivateKey(EVP_PKEY* pkey, Algorithm a, int bits)
    : pkey_(pkey), alg_(a), bits_(bits), id_(next_key_id.fetch_add(1, std::memory_order_relaxed)) {}

std::string_view AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kRsaSha256: return "rsa-sha256";
    case Algorithm::kEd25519Sha256: return "ed25519-sha256";
  }
  return "?";
}

std::optional<Algorithm> ParseAlgorithm(std::string_view name) {
  if (name == "rsa-sha256") return Algorithm::kRsaSha256;
  if (name == "ed25519-sha256") return Algorithm::kEd25519Sha256;
  return std::nullopt;
}

PrivateKey::~PrivateKey() { EVP_PKEY_free(pkey_); }

absl::StatusOr<std::shared_ptr<const PrivateKey>> PrivateKey::Adopt(EVP_PKEY* pkey) {
  int id = EVP_PKEY_get_base_id(pkey);
  int bits = EVP_PKEY_get_bits(pkey);
  if (id == EVP_PKEY_ED25519) {
    return std::shared_ptr<const PrivateKey>(new PrivateKey(pkey, Algorithm::kEd25519Sha256, bits));
  }
  if (id == EVP_PKEY_RSA) {
    if (bits < kMinRsaBits || bits > kMaxRsaBits) {
      EVP_PKEY_free(pkey);
      return absl::InvalidArgumentError(
          Cat("an RSA key of ", bits, " bits; DKIM keys must have ", kMinRsaBits, " to ", kMaxRsaBits,
              " bits (2048 recommended)"));
    }
    return std::shared_ptr<const PrivateKey>(new PrivateKey(pkey, Algorithm::kRsaSha256, bits));
  }
  EVP_PKEY_free(pkey);
  return absl::InvalidArgumentError(
      Cat("a ", OBJ_nid2sn(id), " key; DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256) keys"));
}

absl::StatusOr<std::shared_ptr<const PrivateKey>> PrivateKey::FromPem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, const_cast<char*>(""));
  BIO_free(bio);
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        Cat("not a PEM private key (", OpenSslError(), "); expected -----BEGIN PRIVATE KEY----- "
            "(PKCS#8) or -----BEGIN RSA PRIVATE KEY-----, unencrypted"));
  }
  return Adopt(pkey);
}

absl::StatusOr<std::shared_ptr<const PrivateKey>> PrivateKey::LoadFile(const std::string& path) {
  auto data = ReadPrivateFile(path);
  if (!data.ok()) return data.status();
  auto key = FromPem(*data);
  WipeString(*data);
  if (!key.ok()) return absl::Status(key.status().code(), Cat(path, ": ", key.status().message()));
  return key;
}

absl::StatusOr<std::shared_ptr<const PrivateKey>> PrivateKey::Generate(Algorithm a, int rsa_bits) {
  EVP_PKEY* pkey = nullptr;
  if (a == Algorithm::kEd25519Sha256) {
    pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else {
    if (rsa_bits < kMinRsaBits || rsa_bits > kMaxRsaBits) {
      return absl::InvalidArgumentError(Cat("RSA keys have ", kMinRsaBits, " to ", kMaxRsaBits, " bits"));
    }
    pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits));
  }
  if (pkey == nullptr) return absl::InternalError(Cat("key generation failed: ", OpenSslError()));
  return Adopt(pkey);
}

std::string PrivateKey::ToPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio != nullptr && PEM_write_bio_PrivateKey(bio, pkey_, nullptr, nullptr, 0, nullptr, nullptr) == 1) {
    char* p = nullptr;
    long n = BIO_get_mem_data(bio, &p);
    out.assign(p, static_cast<size_t>(n));
  }
  BIO_free(bio);
  return out;
}

std::string PrivateKey::PublicKeyBase64() const {
  std::string der;
  if (alg_ == Algorithm::kEd25519Sha256) {
    size_t n = 0;
    EVP_PKEY_get_raw_public_key(pkey_, nullptr, &n);
    der.resize(n);
    EVP_PKEY_get_raw_public_key(pkey_, reinterpret_cast<unsigned char*>(der.data()), &n);
    der.resize(n);
  } else {
    int n = i2d_PUBKEY(pkey_, nullptr);
    if (n <= 0) return "";
    der.resize(static_cast<size_t>(n));
    unsigned char* p = reinterpret_cast<unsigned char*>(der.data());
    i2d_PUBKEY(pkey_, &p);
  }
  return Base64(der);
}

absl::StatusOr<std::string> PrivateKey::SignDigest(const Digest& digest) const {
  ContextCache::Entry* e = tls_contexts.Find(id_);
  if (e == nullptr) {
    ContextCache::Entry fresh{id_, nullptr, nullptr};
    bool ok;
    if (alg_ == Algorithm::kEd25519Sha256) {
      fresh.mctx = EVP_MD_CTX_new();
      ok = fresh.mctx != nullptr;
    } else {
      fresh.pctx = EVP_PKEY_CTX_new(pkey_, nullptr);
      ok = fresh.pctx != nullptr && EVP_PKEY_sign_init(fresh.pctx) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(fresh.pctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(fresh.pctx, EVP_sha256()) == 1;
    }
    if (!ok) {
      EVP_PKEY_CTX_free(fresh.pctx);
      EVP_MD_CTX_free(fresh.mctx);
      return absl::InternalError(Cat("signing context: ", OpenSslError()));
    }
    e = tls_contexts.Add(fresh);
  }
  std::string sig;
  if (alg_ == Algorithm::kEd25519Sha256) {
    // PureEdDSA over the 32 hash bytes: one-shot EVP_DigestSign, no digest.
    size_t len = 64;
    sig.resize(len);
    bool ok = EVP_DigestSignInit(e->mctx, nullptr, nullptr, nullptr, pkey_) == 1 &&
              EVP_DigestSign(e->mctx, reinterpret_cast<unsigned char*>(sig.data()), &len, digest.data(),
                             digest.size()) == 1;
    if (!ok) return absl::InternalError(Cat("Ed25519 signing failed: ", OpenSslError()));
    sig.resize(len);
    return sig;
  }
  size_t len = static_cast<size_t>(EVP_PKEY_get_size(pkey_));
  sig.resize(len);
  if (EVP_PKEY_sign(e->pctx, reinterpret_cast<unsigned char*>(sig.data()), &len, digest.data(), digest.size()) != 1) {
    return absl::InternalError(Cat("RSA signing failed: ", OpenSslError()));
  }
  sig.resize(len);
  return sig;
}

std::string KeyRecordText(const PrivateKey& key) {
  return Cat("v=DKIM1; k=", key.algorithm() == Algorithm::kEd25519Sha256 ? "ed25519" : "rsa",
             "; p=", key.PublicKeyBase64());
}

std::string KeyRecordZoneLine(const PrivateKey& key, std::string_view domain, std::string_view selector) {
  std::string text = KeyRecordText(key);
  std::string out = Cat(selector, "._domainkey.", domain, ". IN TXT (");
  for (size_t i = 0; i < text.size(); i += 255) out += Cat(" \"", text.substr(i, 255), "\"");
  out += " )";
  return out;
}

absl::StatusOr<KeyRecord> ParseKeyRecord(std::string_view txt) {
  KeyRecord r;
  r.key_type = "rsa";
  bool has_p = false;
  size_t pos = 0;
  bool first = true;
  while (pos <= txt.size()) {
    size_t semi = txt.find(';', pos);
    std::string_view spec = txt.substr(pos, semi == std::string_view::npos ? txt.npos : semi - pos);
    pos = semi == std::string_view::npos ? txt.size() + 1 : semi + 1;
    auto trim = [](std::string_view s) {
      while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
        s.remove_prefix(1);
      }
      while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
        s.remove_suffix(1);
      }
      return s;
    };
    spec = trim(spec);
    if (spec.empty()) continue;
    size_t eq = spec.find('=');
    if (eq == std::string_view::npos) return absl::InvalidArgumentError(Cat("malformed tag '", spec, "'"));
    std::string_view tag = trim(spec.substr(0, eq));
    std::string_view value = trim(spec.substr(eq + 1));
    if (tag == "v") {
      if (!first) return absl::InvalidArgumentError("v= must be the first tag");
      if (value != "DKIM1") return absl::InvalidArgumentError(Cat("v=", value, " is not DKIM1"));
      r.version = std::string(value);
    } else if (tag == "k") {
      r.key_type = std::string(value);
    } else if (tag == "p") {
      has_p = true;
      r.public_key.clear();
      for (char c : value) {
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') r.public_key.push_back(c);
      }
    } else if (tag == "h") {
      r.hashes = std::string(value);
    } else if (tag == "t") {
      r.flags = std::string(value);
    }
    first = false;
  }
  if (!has_p) return absl::InvalidArgumentError("no p= tag");
  return r;
}

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace mxr::dkim
