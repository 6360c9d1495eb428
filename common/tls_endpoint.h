// A TLS endpoint over memory BIOs: the event loop owns all socket I/O and
// moves ciphertext in and out; OpenSSL never touches a file descriptor.
//
//   TlsEndpoint tls(ctx);                    // server; or (ctx, "mx.example", true) client
//   tls.FeedCipher(bytes_from_socket);
//   tls.Handshake();  tls.ReadPlain(&plain);  tls.WritePlain(data);
//   send(tls.TakeCipher());
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <string_view>

namespace mxr {

// Drains OpenSSL's error queue into one readable line.
std::string OpenSslError();

class TlsEndpoint {
 public:
  enum class Result { kOk, kWantMore, kError, kClosed };

  // Server side (accept state).
  explicit TlsEndpoint(SSL_CTX* ctx);
  // Client side: SNI `server_name`; when `verify_host` is set, the peer's
  // certificate must be valid for it (the SSL_CTX must verify peers).
  TlsEndpoint(SSL_CTX* ctx, const std::string& server_name, bool verify_host);
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
  // The OpenSSL connection, for what this class does not wrap (a client
  // offering a saved session, SSL_session_reused).
  SSL* native() const { return ssl_; }
  std::string last_error() const { return error_; }
  // Result of certificate verification (client side), e.g. "ok".
  std::string verify_result() const;
  // The X509_V_* code of that result (X509_V_OK = 0).
  long verify_code() const;
  // Client side without verify_host: still check the certificate against
  // the context's trust store and `name` (without failing the handshake),
  // so verified() tells whether it would have passed (MTA-STS "testing").
  void ObserveVerification(const std::string& name);
  // A peer certificate was presented and verified (chain and name).
  bool verified() const;

 private:
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // network -> SSL
  BIO* wbio_ = nullptr;  // SSL -> network
  bool done_ = false;
  std::string error_;
};

}  // namespace mxr
