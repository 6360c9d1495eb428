// TLS for ingress: an SSL_CTX built from config (or a self-signed ECDSA
// P-256 certificate generated at first start), and a memory-BIO endpoint per
// connection so the io_uring loop owns all socket I/O.
//
//   auto ctx = TlsContext::Create(cfg.tls, cfg.data_dir, hostname);
//   TlsEndpoint tls(ctx->get());
//   tls.FeedCipher(bytes_from_socket);
//   tls.Handshake();  tls.ReadPlain(&plain);  tls.WritePlain(reply);
//   send(tls.TakeCipher());
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace mxr::relay {

class TlsContext {
 public:
  // Loads cert_file/key_file, or when both are empty uses (creating it on
  // first start) a self-signed P-256 certificate in data_dir/tls/.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Create(const TlsConfig& cfg,
                                                            const std::string& data_dir,
                                                            const std::string& hostname);
  ~TlsContext();
  SSL_CTX* get() const { return ctx_; }
  const std::string& cert_path() const { return cert_path_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  std::string cert_path_;
};

class TlsEndpoint {
 public:
  enum class Result { kOk, kWantMore, kError, kClosed };

  explicit TlsEndpoint(SSL_CTX* ctx);  // server side
  ~TlsEndpoint();
  TlsEndpoint(const TlsEndpoint&) = delete;
  TlsEndpoint& operator=(const TlsEndpoint&) = delete;

  void FeedCipher(std::string_view in);
  // Drives the handshake; kOk once complete.
  Result Handshake();
  bool handshake_done() const { return done_; }
  // Appends all plaintext currently available.
  Result ReadPlain(std::string* out);
  // Encrypts `in` (all of it, memory BIOs never block).
  bool WritePlain(std::string_view in);
  // Ciphertext waiting to go to the socket.
  bool has_cipher() const;
  void TakeCipher(std::string* out);
  // Queues close_notify.
  void Shutdown();

  std::string version() const;
  std::string cipher() const;
  std::string last_error() const { return error_; }

 private:
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // network -> SSL
  BIO* wbio_ = nullptr;  // SSL -> network
  bool done_ = false;
  std::string error_;
};

}  // namespace mxr::relay
