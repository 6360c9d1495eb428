// TLS in front of an HTTP listener: accepts TLS connections on `listen`
// (the relay's certificate: relay/tls.h's SSL_CTX) and relays the
// decrypted bytes to a plain backend on loopback (the civetweb listener),
// one thread per connection (at most max_conns; more are closed at once).
// Used for http_api.tls because Debian 12's civetweb cannot serve TLS with
// OpenSSL 3 (docs/API.md). The backend sees 127.0.0.1 as the client.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace mxr::api {

class TlsProxy {
 public:
  static absl::StatusOr<std::unique_ptr<TlsProxy>> Start(const std::string& listen, SSL_CTX* ctx,
                                                         const std::string& backend, int max_conns);
  // Stops accepting, ends every connection, joins the threads.
  ~TlsProxy();
  const std::string& address() const { return address_; }

 private:
  TlsProxy() = default;
  void AcceptLoop();
  void Serve(int fd);

  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  std::string backend_host_;
  uint16_t backend_port_ = 0;
  int max_conns_ = 64;
  std::string address_;
  std::atomic<int> conns_{0};
  std::mutex mu_;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> threads_;  // finished ones are joined at the next accept
  std::thread acceptor_;
};

}  // namespace mxr::api
