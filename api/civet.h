// civetweb glue shared by the injection API and the admin API: start a
// server on "ip:port" (optionally HTTPS with an SSL_CTX's certificate),
// read a bounded body, answer JSON, stop promptly. Plain HTTP only: the
// TLS of Debian 12's civetweb 1.15 is not usable (api/tls_proxy.h fronts it).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "CivetServer.h"


namespace mxr::api {

struct CivetOptions {
  std::string listen;     // "ip:port"
  std::string what;       // "http_api", for errors
  int threads = 8;
  bool keep_alive = true;
};

// The server and its bound address ("127.0.0.1:8025"; the real port if 0).
absl::StatusOr<std::unique_ptr<CivetServer>> StartCivet(const CivetOptions& o, std::string* address);
// Closes `server` without waiting for civetweb's 2 s poll (connects to
// `address` until the close returned).
void StopCivet(std::unique_ptr<CivetServer> server, const std::string& address);

// Reads the request body: false and *too_big when it is longer than `max`.
bool ReadBody(mg_connection* conn, size_t max, std::string* out, bool* too_big);

// Writes a complete response (Content-Length, keep-alive friendly).
void Respond(mg_connection* conn, int status, std::string_view body,
             std::string_view content_type = "application/json", std::string_view extra_headers = "");
// {"error": {"status": 400, "field": "...", "message": "..."}}
std::string ErrorJson(int status, std::string_view field, std::string_view message);

// The value of header `name`, or "".
std::string Header(mg_connection* conn, const char* name);
// The bearer token of "Authorization: Bearer <t>" (or X-Api-Key), or "".
std::string BearerToken(mg_connection* conn);

}  // namespace mxr::api
