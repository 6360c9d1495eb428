// TLS for ingress: an SSL_CTX built from config (or a self-signed ECDSA
// P-256 certificate generated at first start), and a memory-BIO endpoint per
// connection so the io_uring loop owns all socket I/O.
//
//   auto ctx = TlsContext::Create(cfg.tls, cfg.data_dir, hostname);
//   TlsEndpoint tls(ctx->get());   // common/tls_endpoint.h
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/tls_endpoint.h"

namespace mxr::relay {

using ::mxr::TlsEndpoint;

class TlsContext {
 public:
  // Loads cert_file/key_file, or when both are empty uses (creating it on
  // first start) a self-signed P-256 certificate in data_dir/tls/ whose
  // subject alternative names are `hostname` and `ips` (so a client that
  // connects by address can verify it once told to trust it). A generated
  // certificate that does not name them all (the host name or a listening
  // address changed) is generated again.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Create(const TlsConfig& cfg,
                                                            const std::string& data_dir,
                                                            const std::string& hostname,
                                                            const std::vector<std::string>& ips = {});
  // The addresses the listeners accept on: each listener's address, or for a
  // wildcard (0.0.0.0, ::) every address of the machine's interfaces.
  static std::vector<std::string> ListeningAddresses(const std::vector<ListenerConfig>& listeners);
  ~TlsContext();
  SSL_CTX* get() const { return ctx_; }
  const std::string& cert_path() const { return cert_path_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  std::string cert_path_;
};

}  // namespace mxr::relay
