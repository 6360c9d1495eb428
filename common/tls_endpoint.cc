#include "common/tls_endpoint.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>

namespace mxr {

std::string OpenSslError() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

TlsEndpoint::TlsEndpoint(SSL_CTX* ctx) {
  ssl_ = SSL_new(ctx);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);  // ssl_ owns both
  SSL_set_accept_state(ssl_);
}

TlsEndpoint::TlsEndpoint(SSL_CTX* ctx, const std::string& server_name, bool verify_host) {
  ssl_ = SSL_new(ctx);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_connect_state(ssl_);
  if (!server_name.empty()) SSL_set_tlsext_host_name(ssl_, server_name.c_str());
  if (verify_host) {
    SSL_set_verify(ssl_, SSL_VERIFY_PEER, nullptr);
    SSL_set1_host(ssl_, server_name.c_str());
  } else {
    SSL_set_verify(ssl_, SSL_VERIFY_NONE, nullptr);
  }
}

std::string TlsEndpoint::verify_result() const {
  return X509_verify_cert_error_string(SSL_get_verify_result(ssl_));
}

long TlsEndpoint::verify_code() const { return SSL_get_verify_result(ssl_); }

void TlsEndpoint::ObserveVerification(const std::string& name) { SSL_set1_host(ssl_, name.c_str()); }

bool TlsEndpoint::verified() const {
  X509* peer = SSL_get0_peer_certificate(ssl_);
  return done_ && peer != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK;
}

TlsEndpoint::~TlsEndpoint() {
  if (ssl_) SSL_free(ssl_);
}

void TlsEndpoint::FeedCipher(std::string_view in) {
  if (!in.empty()) BIO_write(rbio_, in.data(), static_cast<int>(in.size()));
}

TlsEndpoint::Result TlsEndpoint::Handshake() {
  if (done_) return Result::kOk;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    return Result::kOk;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Result::kWantMore;
  error_ = OpenSslError();
  return Result::kError;
}

TlsEndpoint::Result TlsEndpoint::ReadPlain(std::string* out) {
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, n);
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Result::kOk;
    if (e == SSL_ERROR_ZERO_RETURN) return Result::kClosed;
    error_ = OpenSslError();
    return Result::kError;
  }
}

bool TlsEndpoint::WritePlain(std::string_view in) {
  while (!in.empty()) {
    ERR_clear_error();
    int n = SSL_write(ssl_, in.data(), static_cast<int>(std::min<size_t>(in.size(), 1 << 20)));
    if (n <= 0) {
      error_ = OpenSslError();
      return false;
    }
    in.remove_prefix(n);
  }
  return true;
}

bool TlsEndpoint::has_cipher() const { return BIO_ctrl_pending(wbio_) > 0; }

void TlsEndpoint::TakeCipher(std::string* out) {
  size_t n = BIO_ctrl_pending(wbio_);
  if (n == 0) return;
  size_t old = out->size();
  out->resize(old + n);
  int got = BIO_read(wbio_, out->data() + old, static_cast<int>(n));
  out->resize(old + (got > 0 ? got : 0));
}

void TlsEndpoint::Shutdown() {
  if (done_) SSL_shutdown(ssl_);
}

std::string TlsEndpoint::version() const { return SSL_get_version(ssl_); }
std::string TlsEndpoint::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

}  // namespace mxr
