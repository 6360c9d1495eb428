#include "relay/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>

#include <filesystem>

#include "common/status.h"
#include "common/strings.h"
#include "common/tls_policy.h"
#include "spdlog/spdlog.h"

namespace mxr::relay {
namespace {

absl::Status GenerateSelfSigned(const std::string& cert_path, const std::string& key_path,
                                const std::string& hostname, const std::vector<std::string>& ips) {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  if (pkey == nullptr) return absl::InternalError("EC key generation failed: " + OpenSslError());
  X509* x = X509_new();
  X509_set_version(x, 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(hostname.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  std::string san = "DNS:" + hostname;
  for (const auto& ip : ips) san += ",IP:" + ip;
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str())) {
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  absl::Status st;
  if (X509_sign(x, pkey, EVP_sha256()) == 0) {
    st = absl::InternalError("signing certificate failed: " + OpenSslError());
  }
  if (st.ok()) {
    mode_t old = umask(077);
    FILE* kf = fopen(key_path.c_str(), "w");
    FILE* cf = kf ? fopen(cert_path.c_str(), "w") : nullptr;
    umask(old);
    if (kf == nullptr || cf == nullptr ||
        PEM_write_PrivateKey(kf, pkey, nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
        PEM_write_X509(cf, x) != 1) {
      st = absl::InternalError(Cat("writing ", cert_path, " / ", key_path, " failed"));
    }
    if (kf) fclose(kf);
    if (cf) fclose(cf);
  }
  X509_free(x);
  EVP_PKEY_free(pkey);
  return st;
}

// What the generated certificate at `path` does not name of hostname and
// ips ("" when it names them all, or cannot be read: then it is kept and
// loading reports the error).
std::string MissingNames(const std::string& path, const std::string& hostname,
                         const std::vector<std::string>& ips) {
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return "";
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  if (x == nullptr) return "";
  std::string missing;
  if (X509_check_host(x, hostname.c_str(), hostname.size(), 0, nullptr) != 1) missing += "DNS:" + hostname;
  for (const auto& ip : ips) {
    if (X509_check_ip_asc(x, ip.c_str(), 0) != 1) missing += (missing.empty() ? "IP:" : ",IP:") + ip;
  }
  X509_free(x);
  return missing;
}

}  // namespace

std::vector<std::string> TlsContext::ListeningAddresses(const std::vector<ListenerConfig>& listeners) {
  std::vector<std::string> out;
  auto add = [&out](std::string a) {
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(std::move(a));
  };
  for (const auto& l : listeners) {
    if (l.address != "0.0.0.0" && l.address != "::" && l.address != "[::]") {
      add(l.address.size() > 2 && l.address.front() == '[' ? l.address.substr(1, l.address.size() - 2) : l.address);
      continue;
    }
    bool v6 = l.address != "0.0.0.0";
    ifaddrs* ifs = nullptr;
    if (getifaddrs(&ifs) != 0) continue;
    for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr) continue;
      char buf[INET6_ADDRSTRLEN] = {0};
      if (i->ifa_addr->sa_family == AF_INET && !v6) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
      } else if (i->ifa_addr->sa_family == AF_INET6 && v6) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        if (IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;  // needs a scope: useless in a SAN
        inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
      } else {
        continue;
      }
      add(buf);
    }
    freeifaddrs(ifs);
  }
  return out;
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Create(const TlsConfig& cfg,
                                                               const std::string& data_dir,
                                                               const std::string& hostname,
                                                               const std::vector<std::string>& ips) {
  std::string cert = cfg.cert_file, key = cfg.key_file;
  if (cert.empty()) {
    std::string dir = data_dir + "/tls";
    cert = dir + "/selfsigned-cert.pem";
    key = dir + "/selfsigned-key.pem";
    std::error_code ec;
    bool exists = std::filesystem::exists(cert, ec) && std::filesystem::exists(key, ec);
    std::string missing = exists ? MissingNames(cert, hostname, ips) : "";
    if (!exists || !missing.empty()) {
      std::filesystem::create_directories(dir, ec);
      if (ec) return absl::InternalError(Cat("cannot create ", dir, ": ", ec.message()));
      auto st = GenerateSelfSigned(cert, key, hostname, ips);
      if (!st.ok()) return st;
      std::string sans = "DNS:" + hostname;
      for (const auto& ip : ips) sans += ",IP:" + ip;
      spdlog::warn(
          "event=tls_selfsigned_generated cert={} key={} cn={} san={}{} note=\"no tls.cert_file "
          "configured: generated a self-signed ECDSA P-256 certificate; clients verify it only if told to "
          "trust this file. Configure tls.cert_file/tls.key_file for production\"",
          cert, key, hostname, sans, missing.empty() ? "" : Cat(" replaced_because_missing=", missing));
    } else {
      spdlog::info("event=tls_selfsigned_loaded cert={}", cert);
    }
  }
  auto c = std::make_shared<TlsContext>();
  c->cert_path_ = cert;
  c->ctx_ = SSL_CTX_new(TLS_server_method());
  if (c->ctx_ == nullptr) return absl::InternalError("SSL_CTX_new: " + OpenSslError());
  SSL_CTX_set_min_proto_version(c->ctx_, cfg.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(c->ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                   SSL_OP_NO_COMPRESSION);
  // Buffers are freed while a connection is idle: this matters with many
  // idle clients (each would otherwise hold ~34 KB).
  SSL_CTX_set_mode(c->ctx_, SSL_MODE_RELEASE_BUFFERS);
  MXR_RETURN_IF_ERROR(ApplyTlsCipherPolicy(c->ctx_));  // AEAD + ECDHE only in TLS 1.2
  SSL_CTX_set_session_id_context(c->ctx_, reinterpret_cast<const unsigned char*>("mxrelay"), 7);
  if (SSL_CTX_use_certificate_chain_file(c->ctx_, cert.c_str()) != 1) {
    return absl::InvalidArgumentError(Cat("tls.cert_file ", cert, ": ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(c->ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(Cat("tls.key_file ", key, ": ", OpenSslError()));
  }
  if (SSL_CTX_check_private_key(c->ctx_) != 1) {
    return absl::InvalidArgumentError(Cat("tls.key_file ", key, " does not match ", cert));
  }
  return c;
}

TlsContext::~TlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

}  // namespace mxr::relay
